"""ServingCheck: infra validation before the push. A blessed model must load in a model server and
answer on every signature, or nothing is pushed.

TFX's InfraValidator runs TF Serving only under Docker or Kubernetes. This stand-in, for runs
without either, copies the model into a staging model base path, starts the development server
(`python -m serving.server`, the same REST and gRPC APIs and warmup replay as TF Serving) on
free loopback ports in a separate process, waits for the version to be AVAILABLE (its warmup
requests replayed), sends one canary request per signature (recommend, then predict_ids and
serving_default for the movie recommend returned), and stops the server. The InfraBlessing's
`blessed` property (what TFX's Pusher reads) is 1 only if everything answered within
`timeout_seconds`; `reason` says what failed. A model the gate did not bless is not started.
TFX 1.16's KubeflowV2DagRunner cannot compile TFX's InfraValidator (NotImplementedError), so the
Kubeflow pipeline runs this component too, in the pipeline image (which holds serving/). The
server is started by module name: components never import serving/.
"""


import base64
import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from models import contract, memory

_LOG = logging.getLogger(__name__)
BLESSED_KEY = "blessed"  # read by TFX's Pusher (model_utils.is_infra_validated)
REASON_KEY = "reason"
SERVER_LOG = "server.log"
SERVER_MODULE = "serving.server"
DEFAULT_TIMEOUT_SECONDS = 180


class CanaryError(RuntimeError):
    """The server did not load the model or answered a canary request wrongly."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, body: dict | None, deadline: float) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"})
    timeout = max(deadline - time.monotonic(), 0.1)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        raise CanaryError(f"{url}: HTTP {e.code}: {e.read()[:300]!r}") from None


def wait_until_available(server: subprocess.Popen, base_url: str, deadline: float) -> None:
    """Polls the model status until version AVAILABLE; CanaryError if the server exits or time
    runs out first."""
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CanaryError(f"the server exited with code {server.returncode} before the model "
                              f"was available")
        try:
            versions = _call(base_url, None, deadline).get("model_version_status", [])
        except (OSError, CanaryError, ValueError):
            versions = []  # not listening yet, or no version loaded yet
        if any(v.get("state") == "AVAILABLE" for v in versions):
            return
        for v in versions:  # a load that failed: TF Serving's status carries the error
            error = v.get("status", {})
            if error.get("error_code") not in (None, "OK", 0) or v.get("state") == "END":
                raise CanaryError(f"version {v.get('version')} did not load: "
                                  f"{error.get('error_message') or v.get('state')}")
        time.sleep(0.5)
    raise CanaryError("the model was not available before the time limit")


def _example(user_id: int, movie_id: int) -> str:
    example = tf.train.Example()
    example.features.feature[contract.USER_ID].int64_list.value.append(user_id)
    example.features.feature[contract.MOVIE_ID].int64_list.value.append(movie_id)
    return base64.b64encode(example.SerializeToString()).decode()


def _rating(outputs: dict, signature: str) -> float:
    value = outputs.get("outputs", {})
    value = value.get(contract.RATING) if isinstance(value, dict) else value
    value = value[0] if isinstance(value, list) and value else value
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CanaryError(f"{signature} answered no finite rating: {outputs}")
    return float(value)


def canary(predict_url: str, deadline: float) -> dict[str, float]:
    """One request per signature; the seconds of each. Raises CanaryError on a wrong answer."""
    seconds = {}
    start = time.monotonic()
    top = _call(predict_url, {"signature_name": contract.RECOMMEND,
                              "inputs": {contract.USER_ID: [1], contract.K: [1]}}, deadline)
    movies = top.get("outputs", {}).get(contract.MOVIE_IDS)
    if not movies or not movies[0]:
        raise CanaryError(f"{contract.RECOMMEND} answered no movie: {top}")
    movie = int(movies[0][0])
    seconds[contract.RECOMMEND] = time.monotonic() - start
    for signature, inputs in (
            (contract.PREDICT_IDS, {contract.USER_ID: [1], contract.MOVIE_ID: [movie]}),
            (contract.SERVING_DEFAULT, {contract.EXAMPLES: [{"b64": _example(1, movie)}]})):
        start = time.monotonic()
        _rating(_call(predict_url, {"signature_name": signature, "inputs": inputs}, deadline),
                signature)
        seconds[signature] = time.monotonic() - start
    return seconds


def check_model(serving_dir: str, work_dir: str, timeout_seconds: float) -> dict[str, float]:
    """Serves a staging copy of the SavedModel at serving_dir from a development server started
    here, and runs the canary; the seconds per step. Raises CanaryError."""
    deadline = time.monotonic() + timeout_seconds
    staging = os.path.join(work_dir, "staging")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(serving_dir, os.path.join(staging, "1"))
    rest, grpc = free_port(), free_port()
    command = [sys.executable, "-m", SERVER_MODULE, "--model-base-path", staging,
               "--model-name", contract.MODEL_NAME, "--host", "127.0.0.1",
               "--rest-port", str(rest), "--grpc-port", str(grpc)]
    start = time.monotonic()
    with open(os.path.join(work_dir, SERVER_LOG), "wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            base_url = f"http://127.0.0.1:{rest}/v1/models/{contract.MODEL_NAME}"
            wait_until_available(server, base_url, deadline)
            seconds = {"load": time.monotonic() - start}
            seconds.update(canary(f"{base_url}:predict", deadline))
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
    shutil.rmtree(staging, ignore_errors=True)
    return seconds


@component
def ServingCheck(  # noqa: N802 - TFX component names are classes
    model: InputArtifact[standard_artifacts.Model],
    model_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    blessing: OutputArtifact[standard_artifacts.InfraBlessing],
    timeout_seconds: Parameter[int] = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Sets blessing's `blessed` to 1 when the gate-blessed model loads and answers (module
    docstring), else 0 with the `reason`."""
    if model_blessing.get_int_custom_property(BLESSED_KEY) != 1:
        reason = "not checked: the gate did not bless the model"
        blessed = 0
    else:
        serving_dir = path_utils.serving_model_path(model.uri)
        # The server runs beside this process: what the runner's earlier steps freed goes back.
        memory.give_back("ServingCheck")
        try:
            seconds = check_model(serving_dir, blessing.uri, timeout_seconds)
            blessed = 1
            reason = "answered on every signature: " + ", ".join(
                f"{k} {v:.1f} s" for k, v in seconds.items())
        except (CanaryError, OSError) as e:
            blessed = 0
            reason = (f"the model did not serve: {e} (server log: "
                      f"{os.path.join(blessing.uri, SERVER_LOG)})")
    blessing.set_int_custom_property(BLESSED_KEY, blessed)
    blessing.set_string_custom_property(REASON_KEY, reason)
    with open(os.path.join(blessing.uri, "INFRA_BLESSED" if blessed else "INFRA_NOT_BLESSED"),
              "w") as f:
        f.write(reason + "\n")
    (_LOG.info if blessed else _LOG.warning)("Serving check: %s", reason)
