"""Development server: TF Serving's gRPC and REST APIs over a ModelManager, in one process.

    python -m serving.server                          # serving_model/movielens, 127.0.0.1:8500/8501
    python -m serving.server --model-base-path DIR --grpc-port 0 --rest-port 0 --host 0.0.0.0

For development and tests where neither Docker nor a TF Serving binary runs; production uses the
TF Serving container (serving/Dockerfile). It serves any SavedModel's signatures generically:
  gRPC  PredictionService: Predict, GetModelMetadata, Regress (Classify checks the signature as
        TF Serving does, then answers UNIMPLEMENTED, as MultiInference does); ModelService:
        GetModelStatus.
  REST  GET  /v1/models/<name>[/versions/<v>]                 model status
        GET  /v1/models/<name>[/versions/<v>]/metadata        signatures
        POST /v1/models/<name>[/versions/<v>]:predict         "instances" (row) or "inputs"
        POST /v1/models/<name>[/versions/<v>]:regress         "examples" (+ "context")
Errors are TF Serving's: a gRPC status, or an HTTP status with {"error": "..."}. Concurrent
requests for a signature are merged into one model run (serving/batching.py).

One request path, as in TF Serving: `Handler` takes TF Serving's request protos and returns its
response protos; the gRPC services pass their requests to it, and the REST API is a JSON adapter
that fills the same requests (TF Serving's http_rest_api_handler fills a PredictRequest and calls
the predictor the gRPC service calls).

Oversized requests are refused before they take the memory (configs.SERVING): a REST body or a
gRPC message over max_request_bytes (HTTP 413 / RESOURCE_EXHAUSTED, unread), a tensor whose
declared shape has more than max_batch_size rows or does not match the values sent
(INVALID_ARGUMENT, before anything is allocated: serving/tensors.py), JSON nested deeper than
MAX_JSON_DEPTH. The model itself refuses a recommend k over contract.MAX_K.

A malformed request is the client's error: INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
RESOURCE_EXHAUSTED or UNIMPLEMENTED (REST: a 4xx), never INTERNAL or a 5xx, and no message names a
Python exception (tests/test_serving_fuzz.py sends hundreds). Bytes that are no request message at
all are INVALID_ARGUMENT too, where gRPC's own deserialisation would answer INTERNAL.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

# TensorFlow's C++ log level, read when TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from google.protobuf import json_format, symbol_database  # noqa: E402
from tensorflow.core.example import example_pb2  # noqa: E402
from tensorflow.core.protobuf import meta_graph_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    model_service_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from models import contract  # noqa: E402
from pipeline import configs  # noqa: E402
from serving import tensors  # noqa: E402
from serving.errors import ServingError, invalid  # noqa: E402
from serving.model_manager import ModelManager, Servable  # noqa: E402

_LOG = logging.getLogger(__name__)
# REST bodies nested deeper are refused before any recursion over them (a tensor has at most
# tensors.MAX_RANK levels, an instance object and the document add a few).
MAX_JSON_DEPTH = tensors.MAX_RANK + 8
# Model versions are int64s (TF Serving's).
_MAX_VERSION = 2**63 - 1
_CLASSIFY_METHOD = "tensorflow/serving/classify"


def _version(spec: Any) -> int | None:
    if spec.WhichOneof("version_choice") == "version_label":
        raise invalid(f"Unrecognized servable version label: {spec.version_label} (the "
                      "development server has no version labels)")
    return spec.version.value if spec.HasField("version") else None


def _fill_spec(spec: Any, servable: Servable, signature_name: str) -> None:
    spec.name = servable.name
    spec.version.value = servable.version
    spec.signature_name = signature_name


# --- the request handling both APIs share ------------------------------------------------------

class Handler:
    """TF Serving's request handling: its request protos in, its response protos out, failures
    as ServingErrors. The gRPC servicers pass their requests straight in; the REST API fills the
    same requests from JSON (TF Serving's http_rest_api_handler does the same in front of the
    predictor the gRPC service calls), so both run one code path."""

    def __init__(self, manager: ModelManager):
        self.manager = manager

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        spec = request.model_spec
        with self.manager.servable(spec.name, _version(spec)) as servable:
            rows = self.manager.max_batch_size
            inputs = {k: tensors.from_tensor_proto(v, k, max_rows=rows)
                      for k, v in request.inputs.items()}
            outputs = servable.predict(spec.signature_name, inputs, tuple(request.output_filter))
            response = predict_pb2.PredictResponse()
            _fill_spec(response.model_spec, servable,
                       spec.signature_name or contract.SERVING_DEFAULT)
            for key, value in outputs.items():
                tensors.fill_tensor_proto(value, response.outputs[key])
            return response

    def regress(self, request: regression_pb2.RegressionRequest
                ) -> regression_pb2.RegressionResponse:
        spec = request.model_spec
        with self.manager.servable(spec.name, _version(spec)) as servable:
            scores = servable.regress(spec.signature_name, request.input)
            response = regression_pb2.RegressionResponse()
            _fill_spec(response.model_spec, servable,
                       spec.signature_name or contract.SERVING_DEFAULT)
            response.result.regressions.extend(
                regression_pb2.Regression(value=float(s)) for s in scores)
            return response

    def classify(self, request: classification_pb2.ClassificationRequest) -> NoReturn:
        """TF Serving runs Classify on a classification signature. The movielens model has none,
        so TF Serving's own check of the signature answers (INVALID_ARGUMENT); a model that has
        one is beyond the development server (UNIMPLEMENTED)."""
        spec = request.model_spec
        with self.manager.servable(spec.name, _version(spec)) as servable:
            method = servable.signature(spec.signature_name).definition.method_name
        if method != _CLASSIFY_METHOD:
            raise invalid("Expected classification signature method_name to be "
                          f"{_CLASSIFY_METHOD}. Was: {method}")
        raise ServingError("UNIMPLEMENTED", "Classify is not supported by the development "
                           "server")

    def metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest
                 ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        fields = list(request.metadata_field)
        if not fields:
            raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
        unsupported = [f for f in fields if f != "signature_def"]
        if unsupported:
            raise invalid(f"Metadata field {unsupported[0]} is not supported")
        with self.manager.servable(request.model_spec.name,
                                   _version(request.model_spec)) as servable:
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            _fill_spec(response.model_spec, servable, "")
            signatures = get_model_metadata_pb2.SignatureDefMap()
            for key, definition in servable.signature_defs.items():
                signatures.signature_def[key].CopyFrom(definition)
            response.metadata["signature_def"].Pack(signatures)
            return response

    def status(self, request: get_model_status_pb2.GetModelStatusRequest
               ) -> get_model_status_pb2.GetModelStatusResponse:
        return self.manager.status(request.model_spec.name, _version(request.model_spec))


# --- gRPC -------------------------------------------------------------------------------------

class _Unparsed:
    """A request whose bytes are not the method's message: the servicer answers
    INVALID_ARGUMENT (gRPC's own deserialiser would answer INTERNAL)."""

    def __init__(self, type_name: str, size: int):
        self.type_name = type_name
        self.size = size


def _lenient(message_class: Any):
    def parse(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError and its relatives
            return _Unparsed(message_class.DESCRIPTOR.full_name, len(data))
    return parse


def add_service(servicer: Any, service: Any, server: grpc.Server) -> None:
    """Registers `servicer` for a service descriptor as the generated add_*_to_server does, but
    with requests parsed by _lenient."""
    symbols = symbol_database.Default()
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=_lenient(symbols.GetSymbol(method.input_type.full_name)),
            response_serializer=symbols.GetSymbol(method.output_type.full_name
                                                  ).SerializeToString)
        for method in service.methods}
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),))


def _grpc_errors(method):
    """Runs a servicer method; ServingError -> its status, MemoryError -> RESOURCE_EXHAUSTED,
    anything else -> INTERNAL (logged, its text not sent): a bad request never takes the server
    down."""
    def wrapper(self, request, context):
        if isinstance(request, _Unparsed):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Failed to parse the request: "
                          f"{request.size} bytes are not a {request.type_name}")
        try:
            return method(self, request, context)
        except ServingError as e:
            context.abort(grpc.StatusCode[e.code], e.message)
        except MemoryError:
            _LOG.exception("%s ran out of memory", method.__name__)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          "Out of memory while serving the request")
        except Exception:  # noqa: BLE001
            _LOG.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL,
                          f"{method.__name__} failed on the server; its log has the details")
    wrapper.__name__ = method.__name__
    return wrapper


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, handler: Handler):
        self.handler = handler

    @_grpc_errors
    def Predict(self, request, context):
        return self.handler.predict(request)

    @_grpc_errors
    def Regress(self, request, context):
        return self.handler.regress(request)

    @_grpc_errors
    def GetModelMetadata(self, request, context):
        return self.handler.metadata(request)

    @_grpc_errors
    def Classify(self, request, context):
        return self.handler.classify(request)

    @_grpc_errors
    def MultiInference(self, request, context):
        raise ServingError("UNIMPLEMENTED",
                           "MultiInference is not supported by the development server")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, handler: Handler):
        self.handler = handler

    @_grpc_errors
    def GetModelStatus(self, request, context):
        return self.handler.status(request)

    @_grpc_errors
    def HandleReloadConfigRequest(self, request, context):
        raise ServingError("UNIMPLEMENTED", "The development server serves one model from "
                           "--model-base-path; it takes no model config")


# --- REST: JSON in front of the Handler -------------------------------------------------------

_PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:(classify|regress|predict)",
                           re.IGNORECASE)
_STATUS_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+))?(/metadata)?",
                          re.IGNORECASE)


def _load_json(body: bytes) -> dict:
    if not body:
        raise invalid("JSON Parse error: The document is empty")
    try:
        document = json.loads(body)
    except RecursionError:
        raise invalid(f"JSON Parse error: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an int of > 4300 digits
        if "integer string conversion" in str(e):
            raise invalid("JSON Parse error: a number has more than 4300 digits") from None
        raise invalid(f"JSON Parse error: {e}") from None
    if not isinstance(document, dict):
        raise invalid(f"JSON Value: {body[:200]!r} Is not object")
    _check_depth(document)
    return document


def _check_depth(document: Any) -> None:
    """Refuses a document nested deeper than MAX_JSON_DEPTH, without recursion: the code that
    reads it (and error messages that print parts of it) recurses."""
    level = [document]  # the containers at depth 1, then 2, ...
    for _ in range(MAX_JSON_DEPTH):
        level = [v for c in level for v in (c.values() if isinstance(c, dict) else c)
                 if isinstance(v, (dict, list))]
        if not level:
            return
    raise invalid(f"JSON Parse error: nested deeper than {MAX_JSON_DEPTH} levels")


def _path_version(text: str | None) -> int | None:
    if not text:
        return None
    version = int(text)
    if version > _MAX_VERSION:
        raise ServingError("NOT_FOUND", f"Servable version {text} is not an int64")
    return version


def _rest_inputs(document: dict, signature: meta_graph_pb2.SignatureDef
                 ) -> tuple[dict[str, np.ndarray], bool]:
    """A predict body's tensors by input name, and whether it used the row format."""
    infos = signature.inputs
    if "instances" in document and "inputs" in document:
        raise invalid("Not formatted correctly: expecting only one of 'inputs' or 'instances' "
                      "keys to exist")
    if "instances" in document:
        rows = document["instances"]
        if not isinstance(rows, list):
            raise invalid("Expecting 'instances' to be an list/array")
        if not rows:
            raise invalid("No values in 'instances' array")
        named = isinstance(rows[0], dict) and set(rows[0]) != {"b64"}
        if not named:
            if len(infos) != 1:
                raise invalid("instances is a plain list, but expecting list of objects as "
                              f"multiple input tensors required: {', '.join(sorted(infos))}")
            (key,) = infos
            return {key: tensors.json_to_array(rows, infos[key].dtype, key)}, True
        columns: dict[str, list] = {key: [] for key in infos}
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or set(row) != set(infos):
                raise invalid(f"Failed to process element: {i} of 'instances' list. JSON "
                              f"object: {json.dumps(row)[:200]} keys must be equal to: "
                              f"{','.join(sorted(infos))}")
            for key, value in row.items():
                columns[key].append(value)
        return {k: tensors.json_to_array(v, infos[k].dtype, k) for k, v in columns.items()}, True
    if "inputs" in document:
        value = document["inputs"]
        if not isinstance(value, dict) or set(value) == {"b64"}:
            if len(infos) != 1:
                raise invalid("inputs is a plain value/list, but expecting an object as "
                              f"multiple input tensors required: {', '.join(sorted(infos))}")
            (key,) = infos
            return {key: tensors.json_to_array(value, infos[key].dtype, key)}, False
        missing = sorted(set(infos) - set(value))
        if missing:
            raise invalid(f"Missing named input: {missing[0]} in 'inputs' object.")
        extra = sorted(set(value) - set(infos))
        if extra:
            raise invalid(f"Unknown named input: {extra[0]} in 'inputs' object; the signature "
                          f"takes {', '.join(sorted(infos))}.")
        return {k: tensors.json_to_array(value[k], infos[k].dtype, k) for k in infos}, False
    raise invalid("Missing 'inputs' or 'instances' key")


def _predictions(outputs: dict[str, np.ndarray], row_format: bool) -> dict:
    if not row_format:
        if len(outputs) == 1:
            ((key, value),) = outputs.items()
            return {"outputs": tensors.array_to_json(value, key)}
        return {"outputs": {k: tensors.array_to_json(v, k) for k, v in outputs.items()}}
    sizes = {v.shape[0] if v.ndim else None for v in outputs.values()}
    if len(sizes) != 1 or None in sizes:
        raise invalid("Output tensors have no common batch size: use the columnar format "
                      "('inputs') for this signature")
    if len(outputs) == 1:
        ((key, value),) = outputs.items()
        return {"predictions": tensors.array_to_json(value, key)}
    columns = {k: tensors.array_to_json(v, k) for k, v in outputs.items()}
    (size,) = sizes
    return {"predictions": [{k: c[i] for k, c in columns.items()} for i in range(size)]}


def _example(value: Any, where: str) -> example_pb2.Example:
    """A tf.Example from TF Serving's JSON form: feature name -> value(s), bytes as {"b64"}."""
    if not isinstance(value, dict):
        raise invalid(f"{where}: Example must be JSON object but got JSON {type(value).__name__}")
    decoded = {}
    for name, content in value.items():
        items = content if isinstance(content, list) else [content]
        decoded[name] = [tensors.decode_b64(v, name) if isinstance(v, dict) else v
                         for v in items]
    try:
        return contract.tf_example(decoded)
    except ValueError as e:
        raise invalid(str(e)) from e


def regress_input(document: dict, verb: str = "regress") -> input_pb2.Input:
    """The Input of a :regress (or :classify) body's "examples" and "context"."""
    examples = document.get("examples")
    if examples is None:
        raise invalid(f"When method is {verb}, key 'examples' is expected and was not found")
    if not isinstance(examples, list):
        raise invalid("Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid("'examples' value is an empty array")
    input_ = input_pb2.Input()
    if "context" in document:
        target = input_.example_list_with_context
        target.context.CopyFrom(_example(document["context"], "context"))
    else:
        target = input_.example_list
    target.examples.extend(_example(e, f"examples[{i}]") for i, e in enumerate(examples))
    return input_


# The longest chunk-size or trailer line read: a line without an end is not buffered whole.
_LINE = 1024


def _too_large(size: int, limit: int) -> ServingError:
    # 413 as HTTP has it; TF Serving's gRPC answers an oversized message RESOURCE_EXHAUSTED.
    return ServingError("RESOURCE_EXHAUSTED", f"Request body of {size} bytes is larger than "
                        f"the limit of {limit} bytes", http_status=413)


class RestHandler(BaseHTTPRequestHandler):
    """TF Serving's REST API: JSON in, a request proto to the Handler, its response as JSON out.
    HTTP/1.1 with keep-alive: one thread per client connection."""

    protocol_version = "HTTP/1.1"
    server_version = "movielens-dev-server"
    handler: Handler  # set on a subclass per server
    max_request_bytes: int

    def setup(self) -> None:
        super().setup()
        # Responses go out in one write; without NODELAY a kept-alive connection can still wait
        # for the peer's delayed ACK (40 ms) between requests.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        _LOG.debug("%s " + format, self.address_string(), *args)

    def _reply(self, status: int, document: Any) -> None:
        body = json.dumps(document).encode()
        head = (f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                + ("Connection: close\r\n" if self.close_connection else "") + "\r\n")
        self.wfile.write(head.encode() + body)

    def _declared_length(self) -> int:
        length = self.headers.get("Content-Length")
        if not length:
            return 0
        if not length.strip().isdigit():
            self.close_connection = True  # where this body ends is unknown
            raise invalid(f"Content-Length is not a number of bytes: {length[:40]!r}")
        return int(length)

    def handle_expect_100(self) -> bool:
        """A client that asks before sending a large body (curl does above 1 MB) is refused
        here, so the body is never sent."""
        if self._declared_length() > self.max_request_bytes:
            self.close_connection = True
            error = _too_large(self._declared_length(), self.max_request_bytes)
            self._reply(error.http_status, {"error": error.message})
            return False
        return super().handle_expect_100()

    def _body(self) -> bytes:
        """The request body, refused (and the connection closed: the rest is never read) beyond
        max_request_bytes, before it is read whole."""
        limit = self.max_request_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, size = [], 0
            while True:
                chunk = self._chunk_size()
                if chunk == 0:
                    while self.rfile.readline(_LINE) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                size += chunk
                if size > limit:
                    self.close_connection = True
                    raise _too_large(size, limit)
                chunks.append(self.rfile.read(chunk))
                self.rfile.readline()
        length = self._declared_length()
        if length > limit:
            self.close_connection = True
            raise _too_large(length, limit)
        return self.rfile.read(length) if length else b""

    def _chunk_size(self) -> int:
        line = self.rfile.readline(_LINE)
        try:
            return int(line.split(b";")[0], 16)
        except ValueError:
            self.close_connection = True
            raise invalid(f"Malformed chunked body: chunk size line {line[:40]!r}") from None

    def _handle(self, method: str) -> None:
        try:
            if method != "POST" and (self.headers.get("Content-Length", "0") != "0"
                                     or "Transfer-Encoding" in self.headers):
                self.close_connection = True  # a body nobody reads: the connection ends here
            body = self._body() if method == "POST" else b""
            status, document = 200, self._dispatch(method, self.path.split("?", 1)[0], body)
        except ServingError as e:
            status, document = e.http_status, {"error": e.message}
        except MemoryError:
            _LOG.exception("%s %s ran out of memory", method, self.path)
            status, document = 429, {"error": "Out of memory while serving the request"}
        except Exception:  # noqa: BLE001 - a bad request never takes the server down
            _LOG.exception("%s %s failed", method, self.path)
            status, document = 500, {"error": f"{method} failed on the server; its log has "
                                              "the details"}
        self._reply(status, document)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    # TF Serving answers any other method "Malformed request" (400), where http.server would
    # answer 501. A HEAD's answer has a body here, so its connection is closed after it.
    def do_HEAD(self) -> None:
        self.close_connection = True
        self._handle("HEAD")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_OPTIONS(self) -> None:
        self._handle("OPTIONS")

    def _dispatch(self, method: str, path: str, body: bytes) -> Any:
        if not path.lower().startswith("/v1/"):
            raise ServingError("NOT_FOUND", f"No handler for {method} {path}: TF Serving's "
                               "REST API is under /v1/models/")
        match = _PREDICT_PATH.fullmatch(path)
        if method == "POST" and match:
            name, version, verb = match.group(1), match.group(2), match.group(3).lower()
            version = _path_version(version)
            document = _load_json(body)
            signature_name = document.get("signature_name", "")
            if not isinstance(signature_name, str):
                raise invalid("'signature_name' key must be a string value.")
            if verb == "predict":
                return self._predict(name, version, signature_name, document)
            if verb == "regress":
                request = regression_pb2.RegressionRequest()
                tensors.fill_model_spec(request.model_spec, name, signature_name, version)
                request.input.CopyFrom(regress_input(document))
                response = self.handler.regress(request)
                return {"results": [r.value for r in response.result.regressions]}
            request = classification_pb2.ClassificationRequest()
            tensors.fill_model_spec(request.model_spec, name, signature_name, version)
            request.input.CopyFrom(regress_input(document, verb))
            self.handler.classify(request)
        match = _STATUS_PATH.fullmatch(path)
        if method == "GET" and match:
            name, version, metadata = match.groups()
            if not name:
                raise invalid("Missing model name in request.")
            version = _path_version(version)
            if metadata:
                request = get_model_metadata_pb2.GetModelMetadataRequest(
                    metadata_field=["signature_def"])
                tensors.fill_model_spec(request.model_spec, name, "", version)
                response = self.handler.metadata(request)
                signatures = get_model_metadata_pb2.SignatureDefMap()
                response.metadata["signature_def"].Unpack(signatures)
                return {"model_spec": _as_dict(response.model_spec),
                        "metadata": {"signature_def": _as_dict(signatures)}}
            request = get_model_status_pb2.GetModelStatusRequest()
            tensors.fill_model_spec(request.model_spec, name, "", version)
            return _as_dict(self.handler.status(request))
        raise invalid(f"Malformed request: {method} {path}")

    def _predict(self, name: str, version: int | None, signature_name: str,
                 document: dict) -> dict:
        """JSON -> PredictRequest (typed by the signature's inputs) -> Handler -> JSON."""
        with self.handler.manager.servable(name, version) as servable:
            try:
                definition = servable.signature(signature_name).definition
            except ServingError as e:  # TF Serving's REST API reports it this way
                key = signature_name or contract.SERVING_DEFAULT
                raise invalid(f'Serving signature name: "{key}" not found in signature '
                              "def") from e
        inputs, row_format = _rest_inputs(document, definition)
        request = predict_pb2.PredictRequest()
        tensors.fill_model_spec(request.model_spec, name, signature_name, version)
        for key, value in inputs.items():
            tensors.fill_tensor_proto(value, request.inputs[key])
        response = self.handler.predict(request)
        outputs = {k: tensors.from_tensor_proto(v, k) for k, v in response.outputs.items()}
        return _predictions(outputs, row_format)


def _as_dict(message: Any) -> dict:
    # As TF Serving prints them: proto field names, defaults included, int64 as strings.
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     including_default_value_fields=True)


class _RestServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the benchmark opens 32 connections at once; the default is 5


# --- the server -------------------------------------------------------------------------------

class DevServer:
    """The model manager, the gRPC server and the REST server, started and stopped together."""

    def __init__(self, model_base_path: str | Path, model_name: str = contract.MODEL_NAME,
                 host: str = configs.SERVING.host, grpc_port: int = configs.SERVING.grpc_port,
                 rest_port: int = configs.SERVING.rest_port,
                 poll_seconds: float = configs.SERVING.poll_seconds, grpc_threads: int = 16,
                 max_request_bytes: int = configs.SERVING.max_request_bytes,
                 max_batch_size: int = configs.SERVING.max_batch_size):
        self.manager = ModelManager(model_name, model_base_path, poll_seconds,
                                    max_batch_size=max_batch_size)
        self.handler = Handler(self.manager)
        self.host = host
        # gRPC itself refuses a larger message, unread, with RESOURCE_EXHAUSTED; responses are
        # not limited (recommend's grow with B x K, both bounded by the model and the batch).
        self._grpc = grpc.server(futures.ThreadPoolExecutor(grpc_threads,
                                                            thread_name_prefix="grpc"),
                                 options=[("grpc.max_receive_message_length", max_request_bytes),
                                          ("grpc.max_send_message_length", -1)])
        add_service(PredictionServicer(self.handler),
                    prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"],
                    self._grpc)
        add_service(ModelServicer(self.handler),
                    model_service_pb2.DESCRIPTOR.services_by_name["ModelService"], self._grpc)
        self.grpc_port = self._grpc.add_insecure_port(f"{host}:{grpc_port}")
        if not self.grpc_port:
            raise OSError(f"cannot listen for gRPC on {host}:{grpc_port}")
        rest_handler = type("Handler", (RestHandler,), {
            "handler": self.handler, "max_request_bytes": max_request_bytes})
        self._rest = _RestServer((host, rest_port), rest_handler)
        self.rest_port = self._rest.server_address[1]
        self._rest_thread = threading.Thread(target=self._rest.serve_forever, name="rest",
                                             daemon=True)

    def start(self) -> DevServer:
        # Like TF Serving: load the model first, then open the ports.
        self.manager.start()
        self._grpc.start()
        self._rest_thread.start()
        _LOG.info("gRPC on %s:%d, REST on http://%s:%d/v1/models/%s", self.host, self.grpc_port,
                  self.host, self.rest_port, self.manager.name)
        return self

    def stop(self) -> None:
        if self._rest_thread.is_alive():  # shutdown() waits for a serve_forever that runs
            self._rest.shutdown()
        self._rest.server_close()
        self._grpc.stop(grace=1).wait()
        self.manager.stop()

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", type=Path, default=configs.SERVING_MODEL_DIR,
                        help="folder of numeric version folders (default: %(default)s)")
    parser.add_argument("--model-name", default=contract.MODEL_NAME)
    parser.add_argument("--host", default=configs.SERVING.host,
                        help="address to listen on (default: %(default)s, loopback only)")
    parser.add_argument("--grpc-port", type=int, default=configs.SERVING.grpc_port,
                        help="0 picks a free port (default: %(default)s)")
    parser.add_argument("--rest-port", type=int, default=configs.SERVING.rest_port,
                        help="0 picks a free port (default: %(default)s)")
    parser.add_argument("--poll-seconds", type=float, default=configs.SERVING.poll_seconds,
                        help="how often to look for new versions (default: %(default)s)")
    parser.add_argument("--grpc-threads", type=int, default=16)
    parser.add_argument("--verbose", action="store_true", help="log every REST request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    server = DevServer(args.model_base_path, args.model_name, args.host, args.grpc_port,
                       args.rest_port, args.poll_seconds, args.grpc_threads).start()
    # One line a script can wait for and parse (tests, bench/serving.py).
    print(json.dumps({"grpc_port": server.grpc_port, "rest_port": server.rest_port,
                      "version": server.manager.current_version}), flush=True)
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
