"""Loads and serves the versions of a SavedModel under a base path, the way TF Serving does.

Versions are the numeric folders under the base path (the Pusher's serving_model/movielens/<v>).
The highest one is served (TF Serving's default "latest" version policy). A poller looks for new
versions every `poll_seconds`; a new version is loaded and warmed up (assets.extra/
tf_serving_warmup_requests replayed) while the current one keeps serving, then swapped in with
one reference assignment; the previous version is unloaded once its in-flight requests are done.
A version that fails to load (e.g. still being copied) is retried on the next polls.

Signatures are served generically from the SavedModel's SignatureDefs: nothing here knows the
movielens model's signatures. Each version is loaded into a TF1 session, as TF Serving's loader
does (a SavedModelBundle), and a signature runs as a session callable on the request's thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    input_pb2,
    prediction_log_pb2,
)

from models import contract
from pipeline import configs
from serving import tensors
from serving.batching import Batcher
from serving.errors import CODE_NAMES, ServingError, invalid

_LOG = logging.getLogger(__name__)


class _LoaderDeprecation(logging.Filter):
    """TF2 points Python users of the TF1 SavedModel loader to tf.saved_model.load; that loads
    the model as Python functions, slower per request. The notice would only mislead here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "loader_impl) is deprecated" not in record.getMessage()


tf.get_logger().addFilter(_LoaderDeprecation())

# The table initializers of a TF2 SavedModel: run by the loader, not a servable signature.
INIT_OP_SIGNATURE = "__saved_model_init_op"
# TF Serving's retry budget for a version that fails to load (--max_num_load_retries).
MAX_LOAD_ATTEMPTS = 5
State = get_model_status_pb2.ModelVersionStatus.State


# One thread pool for the sessions (one thread per core), which a run can decline: requests run
# their graph on the calling thread (RunOptions.inter_op_thread_pool = -1), as TF's docs advise
# for small graphs. Handing each op to a pool thread and back cost more than the ops themselves:
# a one-pair predict took 0.9 ms after an idle gap, against 0.47 ms on the calling thread
# (measured; see bench/serving.py).
_SESSION_CONFIG = tf.compat.v1.ConfigProto()
_SESSION_CONFIG.session_inter_op_thread_pool.add()
_SESSION_CONFIG.experimental.disable_thread_spinning = True
_RUN_OPTIONS = tf.compat.v1.RunOptions(inter_op_thread_pool=-1)


@dataclasses.dataclass
class Signature:
    """One SignatureDef and the session callable that runs it."""

    name: str
    definition: meta_graph_pb2.SignatureDef
    # Arrays for `input_keys`, in order -> arrays for `output_keys` (tf.Session.make_callable).
    function: Callable[..., list[np.ndarray]]
    input_keys: tuple[str, ...]
    output_keys: tuple[str, ...]
    # Rows one request may have (TF Serving's max_batch_size).
    max_batch_size: int
    # Concurrent requests are merged into one run (serving/batching.py).
    batcher: Batcher = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.batcher = Batcher(self._run, max_rows=self.max_batch_size)

    def check_inputs(self, inputs: dict[str, np.ndarray], model: str) -> None:
        """TF Serving's checks before a run: the inputs the signature names, of its dtypes and
        shapes. Errors name the input."""
        expected = self.definition.inputs
        if set(inputs) != set(expected):
            extra = sorted(set(inputs) - set(expected))
            missing = sorted(set(expected) - set(inputs))
            raise invalid(f"Request inputs do not match required inputs for model `{model}`, "
                          f"signature `{self.name}`. Send extra: {{{', '.join(extra)}}}. "
                          f"Missing but required: {{{', '.join(missing)}}}.")
        for key, array in inputs.items():
            info = expected[key]
            want = tensors.numpy_dtype(info.dtype)
            if array.dtype != want and not (want.kind == "O" and array.dtype.kind in "OS"):
                got = tensors.dtype_name(tensors.data_type(array))
                raise invalid(f"input '{key}' of signature `{self.name}` expects "
                              f"{tensors.dtype_name(info.dtype)} but {got} is provided")
            if info.tensor_shape.unknown_rank:
                continue
            dims = [d.size for d in info.tensor_shape.dim]
            if len(dims) != array.ndim or any(d >= 0 and d != s for d, s in
                                              zip(dims, array.shape, strict=True)):
                want_shape = [d if d >= 0 else None for d in dims]
                raise invalid(f"input '{key}' of signature `{self.name}` expects shape "
                              f"{want_shape} but got {list(array.shape)}")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.batcher(inputs)

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            outputs = self.function(*[inputs[k] for k in self.input_keys], options=_RUN_OPTIONS)
        except tf.errors.OpError as e:
            raise ServingError(CODE_NAMES[e.error_code] if e.error_code < len(CODE_NAMES)
                               else "UNKNOWN", e.message) from e
        except (TypeError, ValueError) as e:
            raise invalid(str(e)) from e
        return dict(zip(self.output_keys, outputs, strict=True))


class Servable:
    """One loaded version of the model."""

    def __init__(self, name: str, version: int, path: str,
                 max_batch_size: int = configs.SERVING.max_batch_size):
        self.name = name
        self.version = version
        self.path = path
        self.max_batch_size = max_batch_size
        # A TF1 session over the SavedModel's MetaGraph, as TF Serving loads it (a
        # SavedModelBundle): signatures run by tensor name, with no Python function between.
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=_SESSION_CONFIG)
        with self._graph.as_default():
            meta_graph = tf.compat.v1.saved_model.load(self._session, ["serve"], path)
        self.signature_defs = dict(meta_graph.signature_def)
        self.signatures = {key: self._signature(key, definition)
                           for key, definition in self.signature_defs.items()
                           if key != INIT_OP_SIGNATURE}
        self._in_flight = 0
        self._unloading = False
        self._idle = threading.Condition()

    def _signature(self, key: str, definition: meta_graph_pb2.SignatureDef) -> Signature:
        inputs, outputs = sorted(definition.inputs), sorted(definition.outputs)
        tensor = self._graph.get_tensor_by_name
        function = self._session.make_callable(
            [tensor(definition.outputs[k].name) for k in outputs],
            feed_list=[tensor(definition.inputs[k].name) for k in inputs], accept_options=True)
        return Signature(key, definition, function, tuple(inputs), tuple(outputs),
                         self.max_batch_size)

    def close(self) -> None:
        """Frees the session (its variables and tables); no request may be running."""
        self._session.close()

    def signature(self, name: str) -> Signature:
        key = name or contract.SERVING_DEFAULT
        if key not in self.signatures:
            # TF Serving: FAILED_PRECONDITION over gRPC; its REST API checks first, as 400.
            raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{key}" not found.')
        return self.signatures[key]

    def predict(self, signature_name: str, inputs: dict[str, np.ndarray],
                output_filter: list[str] | tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        signature = self.signature(signature_name)
        signature.check_inputs(inputs, self.name)
        unknown = [k for k in output_filter if k not in signature.definition.outputs]
        if unknown:
            names = ",".join(signature.definition.outputs)
            raise invalid(f"output tensor alias not found in signature: {unknown[0]} Outputs "
                          f"expected to be in the set {{{names}}}.")
        outputs = signature.run(inputs)
        return {k: outputs[k] for k in output_filter} if output_filter else outputs

    def regress(self, signature_name: str, input_: input_pb2.Input) -> np.ndarray:
        """TF Serving's Regress: tf.Examples into a regression signature -> float [B]."""
        signature = self.signature(signature_name)
        definition = signature.definition
        if definition.method_name != contract.REGRESS_METHOD:
            raise invalid("Expected regression signature method_name to be "
                          f"{contract.REGRESS_METHOD}. Was: {definition.method_name}")
        if len(definition.inputs) != 1:
            raise invalid("Expected one input Tensor.")
        if contract.REGRESS_OUTPUTS not in definition.outputs:
            raise invalid(f"No regression outputs found in signature `{signature.name}`: "
                          f"expected an output named '{contract.REGRESS_OUTPUTS}'.")
        examples = serialized_examples(input_)
        (key,) = definition.inputs
        values = np.empty(len(examples), dtype=object)
        values[:] = examples
        scores = signature.run({key: values})[contract.REGRESS_OUTPUTS]
        if scores.ndim == 2 and scores.shape[1] == 1:
            scores = scores[:, 0]
        if scores.shape != (len(examples),):
            raise invalid(f"Expected output Tensor shape to be [{len(examples)}] or "
                          f"[{len(examples)}, 1] but got {list(scores.shape)}")
        return scores

    def acquire(self) -> bool:
        """Counts a request in; False once the version is being unloaded."""
        with self._idle:
            if self._unloading:
                return False
            self._in_flight += 1
            return True

    def release(self) -> None:
        with self._idle:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.notify_all()

    def unload(self, timeout: float) -> bool:
        """Takes no new requests, waits up to `timeout` s for those in flight, then frees the
        session. False when requests were still running (they fail)."""
        with self._idle:
            self._unloading = True
            idle = self._idle.wait_for(lambda: self._in_flight == 0, timeout)
        self.close()
        return idle

    def replay_warmup(self) -> int:
        """Runs every request in assets.extra/tf_serving_warmup_requests, as TF Serving does
        before a version serves; a failing request fails the load. Returns the count."""
        path = os.path.join(self.path, contract.WARMUP_FILE)
        if not tf.io.gfile.exists(path):
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            log = prediction_log_pb2.PredictionLog.FromString(record)
            kind = log.WhichOneof("log_type")
            if kind == "predict_log":
                request = log.predict_log.request
                inputs = {k: tensors.from_tensor_proto(v, k) for k, v in request.inputs.items()}
                self.predict(request.model_spec.signature_name, inputs,
                             tuple(request.output_filter))
            elif kind == "regress_log":
                request = log.regress_log.request
                self.regress(request.model_spec.signature_name, request.input)
            else:
                raise invalid(f"warmup record {count}: {kind} is not supported by the "
                              "development server (predict_log and regress_log are)")
            count += 1
        return count


def serialized_examples(input_: input_pb2.Input) -> list[bytes]:
    """The tf.Examples of a Classify/Regress Input, the context merged into each."""
    kind = input_.WhichOneof("kind")
    if kind == "example_list":
        examples = list(input_.example_list.examples)
    elif kind == "example_list_with_context":
        context = input_.example_list_with_context.context
        examples = []
        for example in input_.example_list_with_context.examples:
            merged = type(example)()
            merged.CopyFrom(context)
            merged.MergeFrom(example)
            examples.append(merged)
    else:
        raise invalid("Input is empty: it needs example_list or example_list_with_context.")
    if not examples:
        raise invalid("Input is empty: no examples.")
    return [e.SerializeToString() for e in examples]


def serve_meta_graph(path: str) -> meta_graph_pb2.MetaGraphDef:
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ValueError(f"{path}: no MetaGraph tagged 'serve'")


def list_versions(base_path: str) -> list[int]:
    """The numeric version folders under base_path, ascending (others ignored, as TF Serving)."""
    if not tf.io.gfile.isdir(base_path):
        return []
    return sorted(int(name.rstrip("/")) for name in tf.io.gfile.listdir(base_path)
                  if name.rstrip("/").isdigit())


@dataclasses.dataclass
class _VersionState:
    state: int
    error_code: str = "OK"
    error_message: str = ""
    attempts: int = 0
    # The version folder's files when its last load failed: a folder still being copied changes,
    # and is retried however often that takes; an unchanged one gets MAX_LOAD_ATTEMPTS.
    files: tuple = ()


def _files(path: str) -> tuple:
    """(relative path, size) of every file under path, sorted."""
    out = []
    for root, _, names in tf.io.gfile.walk(path):
        for name in names:
            full = os.path.join(root, name)
            out.append((os.path.relpath(full, path), tf.io.gfile.stat(full).length))
    return tuple(sorted(out))


class ModelManager:
    """Serves the newest loadable version of one model under `base_path`."""

    def __init__(self, name: str, base_path: str | Path, poll_seconds: float = 1.0,
                 warmup: bool = True, max_batch_size: int = configs.SERVING.max_batch_size):
        self.name = name
        self.max_batch_size = max_batch_size
        self.base_path = str(base_path)
        self.poll_seconds = poll_seconds
        self.warmup = warmup
        self._current: Servable | None = None
        self._states: dict[int, _VersionState] = {}
        self._lock = threading.Lock()  # guards _states; _current is swapped by assignment
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.warmup_requests = 0  # replayed for the version being served

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Loads the newest version now (if there is one), then polls in the background."""
        self.poll_once()
        if self._current is None:
            _LOG.warning("No loadable version of %s under %s yet; polling every %.1f s",
                         self.name, self.base_path, self.poll_seconds)
        self._poller = threading.Thread(target=self._poll_loop, name="model-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=30)
        if self._current is not None:
            self._current.unload(timeout=10)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # keep serving what is loaded whatever a poll hits
                _LOG.exception("Polling %s failed", self.base_path)

    def poll_once(self) -> None:
        """One look at the base path: loads the highest version if it is not the served one."""
        versions = list_versions(self.base_path)
        current = self._current
        candidates = [v for v in versions if self._may_load(v)]
        if not candidates:
            return
        target = max(candidates)
        if current is not None and (target == current.version
                                    or (target < current.version and current.version in versions)):
            return  # serving the newest: nothing to do (older failed ones are not fallen back to)
        self._load(target)

    def _may_load(self, version: int) -> bool:
        entry = self._states.get(version)
        if entry is None or entry.state != State.END or not entry.error_message:
            return entry is None or entry.attempts < MAX_LOAD_ATTEMPTS
        # Given up on: only a change to its files (a new copy) brings it back.
        if _files(os.path.join(self.base_path, str(version))) != entry.files:
            entry.attempts = 0
            return True
        return False

    def _set_state(self, version: int, state: int, code: str = "OK", message: str = "") -> None:
        with self._lock:
            entry = self._states.setdefault(version, _VersionState(state))
            entry.state, entry.error_code, entry.error_message = state, code, message

    def _load(self, version: int) -> None:
        path = os.path.join(self.base_path, str(version))
        self._set_state(version, State.LOADING)
        self._states[version].attempts += 1
        start = time.time()
        try:
            servable = Servable(self.name, version, path, self.max_batch_size)
            warmed = servable.replay_warmup() if self.warmup else 0
        except Exception as e:  # noqa: BLE001 - any failure: report it and retry later
            entry = self._states[version]
            files = _files(path)
            if files != entry.files:  # still being written: not a failure of this copy yet
                entry.attempts = min(entry.attempts, 1)
            entry.files = files
            attempts = entry.attempts
            message = f"Failed to load version {version} from {path}: {e}"
            final = attempts >= MAX_LOAD_ATTEMPTS
            _LOG.warning("%s (attempt %d of %d%s)", message, attempts, MAX_LOAD_ATTEMPTS,
                         "; giving up on it" if final else "; retrying at the next poll")
            code = e.code if isinstance(e, ServingError) else "UNKNOWN"
            self._set_state(version, State.END if final else State.START, code, message)
            return
        previous = self._current
        self._current = servable  # requests from here on get the new version
        self.warmup_requests = warmed
        self._set_state(version, State.AVAILABLE)
        _LOG.info("Serving %s version %d (loaded in %.1f s, %d warmup requests)", self.name,
                  version, time.time() - start, warmed)
        if previous is not None:
            self._set_state(previous.version, State.UNLOADING)
            if not previous.unload(timeout=60):
                _LOG.warning("Version %d still had requests in flight after 60 s; unloaded",
                             previous.version)
            self._set_state(previous.version, State.END)
            _LOG.info("Unloaded %s version %d", self.name, previous.version)

    # -- requests ----------------------------------------------------------------------------

    @contextmanager
    def servable(self, name: str, version: int | None = None) -> Iterator[Servable]:
        """The servable for a request, kept loaded until the block exits."""
        while True:
            current = self._current
            if name != self.name or current is None or (version is not None
                                                         and version != current.version):
                spec = (f"Latest({name})" if version is None else f"Specific({name}, {version})")
                raise ServingError("NOT_FOUND", f"Servable not found for request: {spec}")
            if current.acquire():
                break
            # Unloaded between the read and the count: its successor is current by now.
        try:
            yield current
        finally:
            current.release()

    def status(self, name: str, version: int | None = None
               ) -> get_model_status_pb2.GetModelStatusResponse:
        """TF Serving's GetModelStatus: every version seen, newest first, or one version."""
        if name != self.name:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        with self._lock:
            states = {v: dataclasses.replace(s) for v, s in self._states.items()}
        if version is not None:
            if version not in states:
                raise ServingError("NOT_FOUND",
                                   f"Could not find version {version} of model {name}")
            states = {version: states[version]}
        if not states:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for v in sorted(states, reverse=True):
            entry = response.model_version_status.add(version=v, state=states[v].state)
            entry.status.error_code = CODE_NAMES.index(states[v].error_code)
            entry.status.error_message = states[v].error_message
        return response

    @property
    def current_version(self) -> int | None:
        current = self._current
        return None if current is None else current.version
