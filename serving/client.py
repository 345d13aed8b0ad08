"""Clients for the served model: the same calls over TF Serving's gRPC and REST APIs.

    from serving.client import Client
    with Client(transport="grpc") as client:          # or transport="rest"; host=..., port=...
        client.predict([(1, 1), (1, 2)])              # ratings in stars, float32 [2]
        client.recommend(user_id=1, k=10)             # [Recommendation(movie_id, title, rating)]
        client.status(); client.metadata()

    python -m serving.client --transport grpc recommend --user 1 -k 10
    python -m serving.client --transport rest predict --pairs 1:1,1:2
    python -m serving.client status | metadata

Connections stay open between calls (one gRPC channel; one HTTP/1.1 keep-alive connection per
thread). Calls time out after `timeout` seconds and are retried with exponential backoff when the
server is unavailable (gRPC UNAVAILABLE, HTTP 503, connection refused or reset). Every failure is
a serving.errors.ServingError with the gRPC code name and the server's message.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import importlib.util
import json
import random
import socket
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar


def _protos_without_tensorflow() -> None:
    """TF Serving's protos import tensorflow.core.*_pb2, and importing those runs tensorflow's
    __init__: all of TensorFlow, many seconds. The CLI needs the protos only, so it registers the
    tensorflow package without running its __init__. Library users are untouched."""
    if "tensorflow" not in sys.modules:
        spec = importlib.util.find_spec("tensorflow")
        package = types.ModuleType("tensorflow")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["tensorflow"] = package


if __name__ == "__main__":
    _protos_without_tensorflow()

import numpy as np  # noqa: E402

from models import contract  # noqa: E402
from pipeline import configs  # noqa: E402
from serving.errors import CODE_FOR_HTTP, CODE_NAMES, ServingError  # noqa: E402

TRANSPORTS = ("grpc", "rest")
_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class Recommendation:
    movie_id: int
    title: str
    rating: float


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str  # TF Serving's: START, LOADING, AVAILABLE, UNLOADING, END
    error_code: str
    error_message: str


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    dtype: str  # "DT_INT64", ...
    shape: tuple[int, ...] | None  # -1 for any size; None: unknown rank


@dataclasses.dataclass(frozen=True)
class SignatureInfo:
    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    name: str
    version: int
    signatures: dict[str, SignatureInfo]


def _signature_info(definition: dict) -> SignatureInfo:
    """From a SignatureDef as a JSON dict (REST, or MessageToDict of the gRPC proto)."""
    def spec(info: dict) -> TensorSpec:
        shape = info.get("tensor_shape", {})
        dims = None if shape.get("unknown_rank") else tuple(
            int(d.get("size", 0)) for d in shape.get("dim", []))
        return TensorSpec(info.get("dtype", "DT_INVALID"), dims)
    return SignatureInfo(definition.get("method_name", ""),
                         {k: spec(v) for k, v in definition.get("inputs", {}).items()},
                         {k: spec(v) for k, v in definition.get("outputs", {}).items()})


def _retrying(call: Callable[[], _T], retries: int, backoff: float) -> _T:
    for attempt in range(retries + 1):
        try:
            return call()
        except ServingError as e:
            if e.code != "UNAVAILABLE" or attempt == retries:
                raise
            # Exponential backoff with jitter so that many clients do not retry in lockstep.
            time.sleep(backoff * (2 ** attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


class _Grpc:
    def __init__(self, host: str, port: int, timeout: float):
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self._grpc = grpc
        self.target = f"{host}:{port}"
        self.timeout = timeout
        self.channel = grpc.insecure_channel(self.target, options=[
            ("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)])
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def _call(self, method: Callable, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout)
        except self._grpc.RpcError as e:
            raise ServingError(e.code().name, e.details() or str(e)) from None

    def run(self, model: str, version: int | None, signature: str,
            inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from serving import tensors

        request = tensors.predict_request(model, signature, inputs, version)
        response = self._call(self.predictions.Predict, request)
        return {k: tensors.from_tensor_proto(v, k) for k, v in response.outputs.items()}

    def regress(self, model: str, version: int | None, signature: str,
                examples: list[dict[str, Any]]) -> np.ndarray:
        from serving import tensors

        request = tensors.regression_request(
            model, signature, [contract.tf_example(e) for e in examples], version)
        response = self._call(self.predictions.Regress, request)
        return np.array([r.value for r in response.result.regressions], dtype=np.float32)

    def status(self, model: str, version: int | None) -> list[VersionStatus]:
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = version
        response = self._call(self.models.GetModelStatus, request)
        state = get_model_status_pb2.ModelVersionStatus.State.Name
        return [VersionStatus(s.version, state(s.state), CODE_NAMES[s.status.error_code]
                              if s.status.error_code < len(CODE_NAMES) else "UNKNOWN",
                              s.status.error_message) for s in response.model_version_status]

    def metadata(self, model: str, version: int | None) -> ModelMetadata:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = version
        response = self._call(self.predictions.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        as_dict = json_format.MessageToDict(signatures, preserving_proto_field_name=True)
        return ModelMetadata(response.model_spec.name, response.model_spec.version.value,
                             {k: _signature_info(v)
                              for k, v in as_dict.get("signature_def", {}).items()})

    def close(self) -> None:
        self.channel.close()


class _Rest:
    # Connection failures worth a retry on a fresh connection: the server restarted, or closed
    # an idle keep-alive connection.
    _RETRYABLE = (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine)

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self._local = threading.local()  # http.client connections are not thread-safe

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            connection.connect()
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.connection = connection
        return connection

    def request(self, method: str, path: str, document: Any = None) -> Any:
        body = None if document is None else json.dumps(document)
        try:
            connection = self._connection()
            connection.request(method, path, body,
                               {"Content-Type": "application/json"} if body else {})
            response = connection.getresponse()
            payload = response.read()
        except TimeoutError:
            self.close()
            raise ServingError("DEADLINE_EXCEEDED", f"no answer from http://{self.host}:"
                               f"{self.port}{path} within {self.timeout} s") from None
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise ServingError("UNAVAILABLE", f"http://{self.host}:{self.port}{path}: "
                               f"{type(e).__name__}: {e}") from None
        try:
            result = json.loads(payload)
        except ValueError:
            result = None
        if response.status != 200:
            message = result.get("error") if isinstance(result, dict) else None
            raise ServingError(CODE_FOR_HTTP.get(response.status, "UNKNOWN"),
                               message or payload.decode(errors="replace")[:500] or
                               response.reason, response.status)
        if result is None:
            raise ServingError("INTERNAL", f"{path}: the response is not JSON: {payload[:200]!r}")
        return result

    @staticmethod
    def _path(model: str, version: int | None) -> str:
        return f"/v1/models/{model}" + (f"/versions/{version}" if version is not None else "")

    def run(self, model: str, version: int | None, signature: str,
            inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from serving import tensors

        columns = {k: tensors.array_to_json(np.asarray(v), k) for k, v in inputs.items()}
        result = self.request("POST", self._path(model, version) + ":predict",
                              {"signature_name": signature, "inputs": columns})
        outputs = result["outputs"]
        if not isinstance(outputs, dict):  # one output: TF Serving omits its name
            return {"": tensors.json_to_numpy(outputs)}
        return {k: tensors.json_to_numpy(v, k) for k, v in outputs.items()}

    def regress(self, model: str, version: int | None, signature: str,
                examples: list[dict[str, Any]]) -> np.ndarray:
        plain = [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in e.items()}
                 for e in examples]
        result = self.request("POST", self._path(model, version) + ":regress",
                              {"signature_name": signature, "examples": plain})
        return np.asarray(result["results"], dtype=np.float32)

    def status(self, model: str, version: int | None) -> list[VersionStatus]:
        result = self.request("GET", self._path(model, version))
        return [VersionStatus(int(s["version"]), s["state"], s["status"]["error_code"],
                              s["status"].get("error_message", ""))
                for s in result["model_version_status"]]

    def metadata(self, model: str, version: int | None) -> ModelMetadata:
        result = self.request("GET", self._path(model, version) + "/metadata")
        signatures = result["metadata"]["signature_def"].get("signature_def", {})
        return ModelMetadata(result["model_spec"]["name"], int(result["model_spec"]["version"]),
                             {k: _signature_info(v) for k, v in signatures.items()})

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


class Client:
    """The served model over gRPC or REST: predict ratings, recommend movies, status, metadata."""

    def __init__(self, transport: str = "grpc", host: str = configs.SERVING.host,
                 port: int | None = None, model_name: str = contract.MODEL_NAME,
                 version: int | None = None, timeout: float = 5.0, retries: int = 3,
                 backoff: float = 0.05):
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
        if port is None:
            port = configs.SERVING.grpc_port if transport == "grpc" else configs.SERVING.rest_port
        self.transport = transport
        self.model_name = model_name
        self.version = version
        self.retries, self.backoff = retries, backoff
        self._backend: _Grpc | _Rest = (_Grpc if transport == "grpc" else _Rest)(
            host, port, timeout)

    def _call(self, method: str, *args: Any) -> Any:
        bound = getattr(self._backend, method)
        return _retrying(lambda: bound(self.model_name, self.version, *args), self.retries,
                         self.backoff)

    def run(self, signature: str, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Any signature of the model: numpy inputs by name -> numpy outputs by name."""
        arrays = {k: np.asarray(v) for k, v in inputs.items()}
        return self._call("run", signature, arrays)

    def predict(self, pairs: Iterable[tuple[int, int]]) -> np.ndarray:
        """Predicted ratings (stars) for (user_id, movie_id) pairs, float32 [len(pairs)]."""
        pairs = list(pairs)
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        users, movies = np.asarray(pairs, dtype=np.int64).reshape(-1, 2).T
        outputs = self.run(contract.PREDICT_IDS, {contract.USER_ID: users,
                                                  contract.MOVIE_ID: movies})
        (rating,) = outputs.values()
        return np.asarray(rating, dtype=np.float32)

    def recommend(self, user_id: int, k: int = 10) -> list[Recommendation]:
        """The k best movies for the user that they have not rated, best first."""
        outputs = self.run(contract.RECOMMEND, {contract.USER_ID: np.array([user_id], np.int64),
                                                contract.K: np.array([k], np.int32)})
        # The signature pads every row to the batch's largest k: keep this request's own k.
        movie_ids = np.asarray(outputs[contract.MOVIE_IDS])[0][:k]
        ratings = np.asarray(outputs[contract.RATINGS], dtype=np.float32)[0][:k]
        titles = np.asarray(outputs[contract.TITLES], dtype=object)[0][:k]
        return [Recommendation(int(m), t.decode() if isinstance(t, bytes) else str(t), float(r))
                for m, t, r in zip(movie_ids, titles, ratings, strict=True)]

    def regress(self, examples: Sequence[dict[str, Any]],
                signature: str = contract.REGRESS) -> np.ndarray:
        """TF Serving's Regress API: feature dicts (tf.Examples) -> float32 [len(examples)]."""
        return self._call("regress", signature, list(examples))

    def status(self) -> list[VersionStatus]:
        return self._call("status")

    def metadata(self) -> ModelMetadata:
        return self._call("metadata")

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _pairs(text: str) -> list[tuple[int, int]]:
    try:
        pairs = [tuple(int(x) for x in item.split(":")) for item in text.split(",") if item]
    except ValueError:
        pairs = []
    if not pairs or any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError(f"--pairs: expected USER:MOVIE[,USER:MOVIE...], "
                                         f"got {text!r}")
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=TRANSPORTS, default="grpc")
    parser.add_argument("--host", default=configs.SERVING.host)
    parser.add_argument("--port", type=int, help=f"default: {configs.SERVING.grpc_port} for "
                        f"gRPC, {configs.SERVING.rest_port} for REST")
    parser.add_argument("--model", default=contract.MODEL_NAME)
    parser.add_argument("--version", type=int, help="a specific version (default: the latest)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per attempt")
    commands = parser.add_subparsers(dest="command", required=True)
    recommend = commands.add_parser("recommend", help="top-k movies for a user")
    recommend.add_argument("--user", type=int, required=True)
    recommend.add_argument("-k", type=int, default=10)
    predict = commands.add_parser("predict", help="ratings for user:movie pairs")
    predict.add_argument("--pairs", type=_pairs, required=True, help="e.g. 1:1,1:2")
    commands.add_parser("status", help="the model's versions and their states")
    commands.add_parser("metadata", help="the served version's signatures")
    args = parser.parse_args(argv)

    try:
        with Client(args.transport, args.host, args.port, args.model, args.version,
                    args.timeout) as client:
            if args.command == "recommend":
                for rank, r in enumerate(client.recommend(args.user, args.k), start=1):
                    print(f"{rank:3d}. {r.rating:4.2f}  {r.title}  (movie {r.movie_id})")
            elif args.command == "predict":
                for (user, movie), rating in zip(args.pairs, client.predict(args.pairs),
                                                 strict=True):
                    print(f"user {user} movie {movie}: {rating:.3f}")
            elif args.command == "status":
                for s in client.status():
                    error = "" if s.error_code == "OK" else f"  {s.error_code}: {s.error_message}"
                    print(f"version {s.version}: {s.state}{error}")
            else:
                metadata = client.metadata()
                print(f"{metadata.name} version {metadata.version}")
                for name, signature in sorted(metadata.signatures.items()):
                    def fmt(specs: dict[str, TensorSpec]) -> str:
                        return ", ".join(f"{k}: {s.dtype[3:].lower()}{list(s.shape or [])}"
                                         for k, s in sorted(specs.items()))
                    print(f"  {name} ({signature.method_name or '-'}): {fmt(signature.inputs)}"
                          f" -> {fmt(signature.outputs)}")
    except ServingError as e:
        print(f"error: {e.code}: {e.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
