"""A seeded fuzz of the development server: hundreds of malformed requests over gRPC and REST,
each answered as a client error, with the server's memory bounded and a valid request answered
afterwards.

The server runs in a process of its own (`python -m serving.server`) on the pushed fixture model,
so that its resident set size is its own and a request that made it allocate without bound would
show (or kill it) here rather than in production. Every request comes from one class below, drawn
round-robin with a seeded generator: the same run each time. Each class names the answers it may
get; beyond that, no answer may be INTERNAL, UNKNOWN or a 5xx, and no message may name a Python
exception. `pytest -s` prints the answers per class.
"""

from __future__ import annotations

import base64
import collections
import http.client
import json
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    predict_pb2,
    regression_pb2,
)

from models import contract
from pipeline import configs
from serving import tensors
from serving.client import Client

pytestmark = pytest.mark.e2e

SEED = 24
GRPC_REQUESTS = 320
REST_REQUESTS = 320
# Growth allowed between the RSS after warmup and after the fuzz (freed memory is not always
# returned to the system).
MAX_RSS_GROWTH = 1.5
FUZZ_SECONDS = 30.0
MODEL = contract.MODEL_NAME
USER, MOVIE = contract.USER_ID, contract.MOVIE_ID
MAX_ROWS = configs.SERVING.max_batch_size
BAD = "INVALID_ARGUMENT"
# A Python exception's name, or a traceback, in an answer's message.
PYTHON_ERROR = re.compile(r"Traceback|\b[A-Z][A-Za-z]*(Error|Exception)\b")
SERVICE = "/tensorflow.serving.PredictionService/"


@dataclass
class Sent:
    """One request: over gRPC a method and a message (or raw bytes); over REST an HTTP method,
    a path, a body and extra headers."""

    method: str
    payload: Any = None
    path: str = ""
    headers: tuple[tuple[str, str], ...] = ()


# --- gRPC requests ------------------------------------------------------------------------------

def _ids(values: list[int], dtype: np.dtype = np.int64) -> tensor_pb2.TensorProto:
    return tensors.to_tensor_proto(np.asarray(values, dtype))


def _predict(inputs: dict[str, tensor_pb2.TensorProto], signature: str = contract.PREDICT_IDS,
             name: str = MODEL) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    for key, proto in inputs.items():
        request.inputs[key].CopyFrom(proto)
    return request


def _declared(shape: list[int], values: list[int], dtype: int = types_pb2.DT_INT64
              ) -> tensor_pb2.TensorProto:
    """A TensorProto declaring `shape` but holding `values` (int64_val, or int_val)."""
    proto = tensor_pb2.TensorProto(dtype=dtype)
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    field = proto.int64_val if dtype == types_pb2.DT_INT64 else proto.int_val
    field.extend(values)
    return proto


def g_declared_beyond_values(rng: random.Random) -> Sent:
    # The 83-byte request of issue 24 and its relatives: one value, a huge declared shape.
    size = rng.choice([2**31, 2**40, 2**62, rng.randint(MAX_ROWS + 1, 2**33)])
    shape = rng.choice([[size], [1, size], [size, 1]])
    return Sent("Predict", _predict({USER: _declared(shape, [1]), MOVIE: _declared(shape, [3])}))


def g_dims_negative_or_overflowing(rng: random.Random) -> Sent:
    shape = rng.choice([[-1], [-(2**63)], [2**62, 4], [2**40, 2**40, 2**40], [1, -5]])
    return Sent("Predict", _predict({USER: _declared(shape, [1]), MOVIE: _ids([3])}))


def g_values_not_filling_shape(rng: random.Random) -> Sent:
    rows = rng.randint(0, 20)
    sent = rng.choice([n for n in range(0, 22) if n != rows])
    return Sent("Predict", _predict({USER: _declared([rows], [1] * sent),
                                     MOVIE: _declared([rows], [3] * rows)}))


def g_content_of_wrong_length(rng: random.Random) -> Sent:
    proto = _ids([1, 2, 3])
    proto.tensor_content = rng.randbytes(rng.choice([1, 7, 23, 25, 4096]))
    return Sent("Predict", _predict({USER: proto, MOVIE: _ids([3, 6, 9])}))


def g_unknown_dtype(rng: random.Random) -> Sent:
    proto = _ids([1])
    proto.dtype = rng.choice([0, types_pb2.DT_COMPLEX64, types_pb2.DT_RESOURCE,
                              types_pb2.DT_VARIANT, 101, 999, rng.randint(30, 2**31 - 1)])
    return Sent("Predict", _predict({USER: proto, MOVIE: _ids([3])}))


def g_dtype_not_the_signatures(rng: random.Random) -> Sent:
    user = rng.choice([np.array([1.5], np.float32), np.array([1], np.int32),
                       np.array([b"1"], object), np.array([True]), np.array([1.0])])
    return Sent("Predict", _predict({USER: tensors.to_tensor_proto(user), MOVIE: _ids([3])}))


def g_rank_unknown_or_too_high(rng: random.Random) -> Sent:
    proto = _ids([1])
    if rng.random() < 0.5:
        proto.tensor_shape.unknown_rank = True
    else:
        for _ in range(rng.randint(tensors.MAX_RANK, 3 * tensors.MAX_RANK)):
            proto.tensor_shape.dim.add().size = 1
    return Sent("Predict", _predict({USER: proto, MOVIE: _ids([3])}))


def g_more_rows_than_a_batch(rng: random.Random) -> Sent:
    rows = rng.randint(MAX_ROWS + 1, 3 * MAX_ROWS)
    return Sent("Predict", _predict({USER: _ids([1] * rows), MOVIE: _ids([3] * rows)}))


def g_narrow_ints_out_of_range(rng: random.Random) -> Sent:
    dtype = rng.choice([types_pb2.DT_INT8, types_pb2.DT_UINT8, types_pb2.DT_INT16,
                        types_pb2.DT_HALF])
    value = rng.choice([70_000, -70_000, 300, -1])
    return Sent("Predict", _predict({USER: _declared([1], [value], dtype), MOVIE: _ids([3])}))


def g_unknown_model_version_or_signature(rng: random.Random) -> Sent:
    request = _predict({USER: _ids([1]), MOVIE: _ids([3])})
    choice = rng.randrange(4)
    if choice == 0:
        request.model_spec.name = rng.choice(["", "nope", "movielens/../x", "\u00e9" * 50])
    elif choice == 1:
        request.model_spec.version.value = rng.choice([1, -1, 2**63 - 1])
    elif choice == 2:
        request.model_spec.version_label = rng.choice(["stable", ""])
    else:
        request.model_spec.signature_name = rng.choice(["nope", "predict", " "])
    return Sent("Predict", request)


def g_missing_or_extra_inputs(rng: random.Random) -> Sent:
    inputs = rng.choice([{}, {USER: _ids([1])}, {MOVIE: _ids([3])},
                         {USER: _ids([1]), MOVIE: _ids([3]), "extra": _ids([0])}])
    return Sent("Predict", _predict(inputs))


def g_ids_the_model_does_not_know(rng: random.Random) -> Sent:
    if rng.random() < 0.5:
        return Sent("Predict", _predict({USER: _ids([1]), MOVIE: _ids([rng.choice([4, -3])])}))
    user = rng.choice([0, -1, -(2**63)])
    return Sent("Predict", _predict({USER: _ids([user]), MOVIE: _ids([3])}))


def g_recommend_k_out_of_range(rng: random.Random) -> Sent:
    k = rng.choice([0, -1, contract.MAX_K + 1, 2**31 - 1, -(2**31)])
    return Sent("Predict", _predict({USER: _ids([1]), contract.K: _ids([k], np.int32)},
                                    contract.RECOMMEND))


def g_regress_malformed_examples(rng: random.Random) -> Sent:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = rng.choice([contract.REGRESS, contract.PREDICT_IDS])
    choice = rng.randrange(4)
    examples = request.input.example_list.examples
    if choice == 0:
        examples.add()  # no features
    elif choice == 1:
        examples.append(contract.tf_example({USER: 1.5, MOVIE: b"x"}))
    elif choice == 2:
        examples.extend([contract.tf_example({USER: 1, MOVIE: 3})] * (MAX_ROWS + 1))
    else:
        request.input.Clear()  # no examples at all
    return Sent("Regress", request)


def g_bytes_that_are_no_message(rng: random.Random) -> Sent:
    method = rng.choice(["Predict", "Regress", "GetModelMetadata", "Classify"])
    data = rng.choice([rng.randbytes(rng.randint(1, 64)), b"\xff" * 10, b"\x0a\xff\xff\xff\x0f"])
    return Sent(method, data)


def g_metadata_fields(rng: random.Random) -> Sent:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.metadata_field.extend(rng.choice([[], ["nope"], ["signature_def", "x"]]))
    return Sent("GetModelMetadata", request)


def g_classify(rng: random.Random) -> Sent:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = rng.choice(list(contract.SIGNATURES))
    request.input.example_list.examples.append(contract.tf_example({USER: 1, MOVIE: 3}))
    return Sent("Classify", request)


def g_message_over_the_limit(rng: random.Random) -> Sent:
    rows = configs.SERVING.max_request_bytes // 8 + rng.randint(1, 1000)
    return Sent("Predict", _predict({USER: _ids(np.ones(rows, np.int64)),
                                     MOVIE: _ids([3])}))


ANY_NOT_FOUND = {BAD, "NOT_FOUND", "FAILED_PRECONDITION"}
# (class, its answers): every class of malformed gRPC request generated.
GRPC_CLASSES: list[tuple[Callable[[random.Random], Sent], set[str]]] = [
    (g_declared_beyond_values, {BAD}),
    (g_dims_negative_or_overflowing, {BAD}),
    (g_values_not_filling_shape, {BAD}),
    (g_content_of_wrong_length, {BAD}),
    (g_unknown_dtype, {BAD}),
    (g_dtype_not_the_signatures, {BAD}),
    (g_rank_unknown_or_too_high, {BAD}),
    (g_more_rows_than_a_batch, {BAD}),
    (g_narrow_ints_out_of_range, {BAD}),
    (g_unknown_model_version_or_signature, ANY_NOT_FOUND),
    (g_missing_or_extra_inputs, {BAD}),
    (g_ids_the_model_does_not_know, {BAD}),
    (g_recommend_k_out_of_range, {BAD}),
    (g_regress_malformed_examples, {BAD}),
    (g_bytes_that_are_no_message, {BAD, "NOT_FOUND"}),
    (g_metadata_fields, {BAD}),
    (g_classify, {BAD}),
    (g_message_over_the_limit, {"RESOURCE_EXHAUSTED"}),
]


def send_grpc(channel: grpc.Channel, sent: Sent) -> tuple[str, str]:
    """(status code name, message) of one gRPC call."""
    serialize = None if isinstance(sent.payload, bytes) else type(sent.payload).SerializeToString
    call = channel.unary_unary(SERVICE + sent.method, request_serializer=serialize,
                               response_deserializer=None)
    try:
        call(sent.payload, timeout=30)
        return "OK", ""
    except grpc.RpcError as e:
        return e.code().name, e.details() or ""


# --- REST requests ------------------------------------------------------------------------------

PREDICT_PATH = f"/v1/models/{MODEL}:predict"


def _post(body: Any, path: str = PREDICT_PATH) -> Sent:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Sent("POST", data, path)


def _ids_body(users: Any, movies: Any, signature: str = contract.PREDICT_IDS) -> dict:
    return {"signature_name": signature, "inputs": {USER: users, MOVIE: movies}}


def r_not_json(rng: random.Random) -> Sent:
    return _post(rng.choice([rng.randbytes(rng.randint(1, 200)), b"{not json", b"\xff\xfe{}",
                             b'{"inputs": [1, 2', b"", b"   ", b"{'inputs': 1}"]))


def r_nested_too_deep(rng: random.Random) -> Sent:
    depth = rng.choice([50, 200, 999, 2000, 100_000])
    return _post(rng.choice([b"[" * depth, b"[" * depth + b"]" * depth,
                             b'{"inputs": ' + b"[" * depth + b"1" + b"]" * depth + b"}",
                             b'{"a": ' * depth + b"1" + b"}" * depth]))


def r_numbers_no_tensor_holds(rng: random.Random) -> Sent:
    number = rng.choice([b"9" * 5000, b"1" + b"0" * 30, b"-1" + b"0" * 20, b"1e400", b"1.5",
                         b"NaN", b"-Infinity"])
    return _post(b'{"signature_name": "predict_ids", "inputs": {"user_id": [' + number +
                 b'], "movie_id": [3]}}')


def r_document_not_an_object(rng: random.Random) -> Sent:
    return _post(rng.choice([[1, 2], "inputs", None, 7, {"instances": 5},
                             {"inputs": {USER: [1], MOVIE: [3]}, "instances": [1]},
                             {"signature_name": 7, "instances": [1]}, {"signature_name": None},
                             {"instances": []}, {"instances": [1, 2]}]))


def r_wrong_value_types(rng: random.Random) -> Sent:
    value = rng.choice(["1", True, None, {"b64": "AQ=="}, {"x": 1}, [[]], 1.5, {"b64": "!!"}])
    return _post(_ids_body([value], [3]))


def r_ragged_lists(rng: random.Random) -> Sent:
    return _post(_ids_body(rng.choice([[[1], 2], [1, [2]], [[1, 2], [3]], [[[1]], [[2, 3]]]]),
                           [3, 6]))


def r_more_rows_than_a_batch(rng: random.Random) -> Sent:
    rows = rng.randint(MAX_ROWS + 1, 3 * MAX_ROWS)
    if rng.random() < 0.5:
        return _post(_ids_body([1] * rows, [3] * rows))
    return _post({"signature_name": contract.PREDICT_IDS,
                  "instances": [{USER: 1, MOVIE: 3}] * rows})


def r_unknown_model_version_signature_or_path(rng: random.Random) -> Sent:
    body = _ids_body([1], [3])
    path = rng.choice([
        "/v1/models/nope:predict", f"/v1/models/{MODEL}/versions/1:predict",
        f"/v1/models/{MODEL}/versions/{'9' * 40}:predict", f"/v1/models/{MODEL}:explode",
        f"/v1/models/{MODEL}/versions/-1:predict", "/v2/models", "/", "/v1/models/%ff:predict",
        f"/v1/models/{MODEL}/labels/stable:predict"])
    if rng.random() < 0.3:
        body["signature_name"] = rng.choice(["nope", "", "serving_default "])
        path = PREDICT_PATH
    return _post(body, path)


def r_methods_not_served(rng: random.Random) -> Sent:
    return Sent(rng.choice(["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]), b"",
                rng.choice([PREDICT_PATH, f"/v1/models/{MODEL}", "/"]))


def r_bad_framing(rng: random.Random) -> Sent:
    headers = rng.choice([(("Content-Length", "-5"),), (("Content-Length", "abc"),),
                          (("Content-Length", "1e3"),),
                          (("Transfer-Encoding", "chunked"),),
                          (("Content-Length", str(100 * configs.SERVING.max_request_bytes)),)])
    body = b"zz\r\n{}\r\n0\r\n\r\n" if headers[0][0] == "Transfer-Encoding" else b"{}"
    return Sent("POST", body, PREDICT_PATH, headers)


def r_regress_malformed_examples(rng: random.Random) -> Sent:
    examples = rng.choice([None, 5, [], [1], [[{USER: 1}]], [{USER: None, MOVIE: 3}],
                           [{USER: [[1]], MOVIE: 3}], [{USER: 2**70, MOVIE: 3}],
                           [{USER: [1, "a"], MOVIE: 3}], [{USER: {"b64": "@@"}, MOVIE: 3}],
                           [{USER: 1.5, MOVIE: 3}]])
    body = {"signature_name": contract.REGRESS}
    if examples is not None:
        body["examples"] = examples
    return _post(body, f"/v1/models/{MODEL}:regress")


def r_ids_the_model_does_not_know(rng: random.Random) -> Sent:
    if rng.random() < 0.5:
        return _post(_ids_body([1], [rng.choice([4, -3, 2**63 - 1])]))
    return _post({"signature_name": contract.RECOMMEND,
                  "inputs": {USER: [rng.choice([0, -7])], contract.K: [10]}})


def r_serving_default_bad_examples(rng: random.Random) -> Sent:
    example = rng.choice([{"b64": base64.b64encode(rng.randbytes(20)).decode()},
                          "not an example", {"b64": ""}])
    return _post({"instances": [example]})


def r_classify(rng: random.Random) -> Sent:
    return _post({"signature_name": rng.choice(list(contract.SIGNATURES)),
                  "examples": [{USER: 1, MOVIE: 3}]}, f"/v1/models/{MODEL}:classify")


REST_CLASSES: list[tuple[Callable[[random.Random], Sent], set[int]]] = [
    (r_not_json, {400}),
    (r_nested_too_deep, {400}),
    (r_numbers_no_tensor_holds, {400}),
    (r_document_not_an_object, {400}),
    (r_wrong_value_types, {400}),
    (r_ragged_lists, {400}),
    (r_more_rows_than_a_batch, {400}),
    (r_unknown_model_version_signature_or_path, {400, 404}),
    (r_methods_not_served, {400, 404}),
    (r_bad_framing, {400, 413}),
    (r_regress_malformed_examples, {400}),
    (r_ids_the_model_does_not_know, {400}),
    (r_serving_default_bad_examples, {400}),
    (r_classify, {400}),
]


def send_rest(port: int, sent: Sent) -> tuple[int, str]:
    """(HTTP status, error message) of one request written to a socket as is: bodies and
    headers that http.client would refuse to send are sent."""
    headers = dict(sent.headers)
    headers.setdefault("Content-Length", str(len(sent.payload)))
    head = f"{sent.method} {sent.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head.encode() + sent.payload)
        response = http.client.HTTPResponse(s, method=sent.method)
        response.begin()
        body = response.read()
    if sent.method == "HEAD":
        return response.status, "(HEAD: no body)"
    return response.status, json.loads(body)["error"]


# --- the run ------------------------------------------------------------------------------------

def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@pytest.fixture(scope="module")
def served(pushed_model):
    """(server process, ports) of `python -m serving.server` on the pushed fixture model."""
    base_path, _, _ = pushed_model
    server = subprocess.Popen(
        [sys.executable, "-m", "serving.server", "--model-base-path", str(base_path),
         "--grpc-port", "0", "--rest-port", "0"],
        cwd=configs.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield server, json.loads(server.stdout.readline())
    finally:
        server.terminate()
        server.wait(timeout=60)


def _answer_valid_requests(ports: dict) -> None:
    for transport in ("grpc", "rest"):
        port = ports["grpc_port" if transport == "grpc" else "rest_port"]
        with Client(transport, port=port, timeout=30) as client:
            assert client.predict([(1, 3), (2, 6)]).shape == (2,)
            assert len(client.recommend(1, 10)) == 10


def _run(classes: list, total: int, send: Callable[[Sent], tuple[Any, str]],
         rng: random.Random) -> tuple[dict, list[str]]:
    """Sends `total` requests, round-robin over `classes`; (answers by class, failures)."""
    answers: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures = []
    for i in range(total):
        make, allowed = classes[i % len(classes)]
        sent = make(rng)
        code, message = send(sent)
        answers[make.__name__][code] += 1
        if code not in allowed or PYTHON_ERROR.search(message):
            failures.append(f"{make.__name__}: {code} {message[:300]!r} for "
                            f"{sent.method} {sent.path} {repr(sent.payload)[:200]}")
    return answers, failures


def test_malformed_requests_get_client_errors_and_bounded_memory(served):
    server, ports = served
    _answer_valid_requests(ports)  # every signature warm, both transports connected
    rss_start = rss_bytes(server.pid)
    rng = random.Random(SEED)
    start = time.monotonic()
    with grpc.insecure_channel(f"127.0.0.1:{ports['grpc_port']}") as channel:
        grpc_answers, grpc_failures = _run(GRPC_CLASSES, GRPC_REQUESTS,
                                           lambda sent: send_grpc(channel, sent), rng)
    rest_answers, rest_failures = _run(REST_CLASSES, REST_REQUESTS,
                                       lambda sent: send_rest(ports["rest_port"], sent), rng)
    seconds = time.monotonic() - start
    assert server.poll() is None, "the server died during the fuzz"
    rss_end = rss_bytes(server.pid)
    _answer_valid_requests(ports)

    mb = 1 << 20
    print(f"\nfuzz: {GRPC_REQUESTS} gRPC and {REST_REQUESTS} REST requests in {seconds:.1f} s; "
          f"server RSS {rss_start / mb:.0f} MB after warmup, {rss_end / mb:.0f} MB after")
    for name, counts in {**grpc_answers, **rest_answers}.items():
        print(f"  {name}: {dict(counts)}")
    failures = grpc_failures + rest_failures
    assert not failures, f"{len(failures)} requests got a wrong answer:\n" + "\n".join(
        failures[:20])
    assert rss_end <= MAX_RSS_GROWTH * rss_start, (rss_start, rss_end)
    assert seconds <= FUZZ_SECONDS
