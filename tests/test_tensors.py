"""Fast unit tests of a request's way into numpy: serving/tensors.py (TensorProto and TF
Serving's JSON) and the REST body checks in front of it (serving/server.py's _load_json).

Each refusal must come before anything is allocated for the request, name the input, and be an
INVALID_ARGUMENT; tests/test_serving_fuzz.py sends the same kinds of request to a real server.
"""

from __future__ import annotations

import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving import server, tensors
from serving.errors import ServingError


def proto(shape: list[int], dtype: int = types_pb2.DT_INT64, **values) -> tensor_pb2.TensorProto:
    p = tensor_pb2.TensorProto(dtype=dtype, **values)
    for size in shape:
        p.tensor_shape.dim.add().size = size
    return p


def refused(call, *args, **kwargs) -> ServingError:
    with pytest.raises(ServingError) as e:
        call(*args, **kwargs)
    assert e.value.code == "INVALID_ARGUMENT", e.value
    return e.value


# --- TensorProto ------------------------------------------------------------------------------

@pytest.mark.parametrize("array", [
    np.array([1, -2, 2**62], np.int64), np.array([[1.5, -2.0]], np.float32),
    np.array([1, 2], np.int32), np.array([True, False]), np.array([0.5], np.float16),
    np.array([-128, 127], np.int8), np.array([65535], np.uint16),
    np.array([b"a", b"\xff"], object), np.zeros((0, 3), np.int64),
])
def test_tensor_protos_round_trip(array):
    back = tensors.from_tensor_proto(tensors.to_tensor_proto(array), "x")
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tolist() == array.tolist()


@pytest.mark.parametrize("field, values, dtype, expected", [
    # Values in the typed fields rather than tensor_content, as other clients send them.
    ("int64_val", [1, 2, 3], types_pb2.DT_INT64, [1, 2, 3]),
    ("int_val", [-128, 127, 0], types_pb2.DT_INT8, [-128, 127, 0]),
    ("float_val", [0.5, 1.5, 2.5], types_pb2.DT_FLOAT, [0.5, 1.5, 2.5]),
    ("half_val", [0x3C00, 0x4000, 0], types_pb2.DT_HALF, [1.0, 2.0, 0.0]),  # 1.0, 2.0, 0.0
    ("string_val", [b"a", b"", b"c"], types_pb2.DT_STRING, [b"a", b"", b"c"]),
])
def test_values_in_the_typed_fields_fill_the_shape(field, values, dtype, expected):
    array = tensors.from_tensor_proto(proto([3], dtype, **{field: values}), "x")
    assert array.tolist() == expected


def test_one_value_for_a_huge_shape_is_refused_not_broadcast():
    # Issue 24: 83 bytes on the wire made the server allocate 2**31 int64s (16 GiB).
    e = refused(tensors.from_tensor_proto, proto([2**31], int64_val=[1]), "user_id")
    assert e.message == ("tensor parsing error: user_id: 1 values for shape [2147483648] "
                         "(2147483648 values)")


@pytest.mark.parametrize("sent, rows", [(1, 3), (0, 2), (4, 3), (2, 0)])
def test_values_must_fill_the_shape_exactly(sent, rows):
    e = refused(tensors.from_tensor_proto, proto([rows], int64_val=[7] * sent), "movie_id")
    assert f"movie_id: {sent} values for shape [{rows}]" in e.message


def test_rows_over_the_batch_limit_are_refused_from_the_declared_shape():
    # Nothing is sent but the shape: the refusal reads only the declaration.
    e = refused(tensors.from_tensor_proto, proto([5000], int64_val=[1]), "user_id", max_rows=2048)
    assert e.message == "Task size 5000 is larger than maximum input batch size 2048"
    # At the limit: read.
    assert tensors.from_tensor_proto(proto([2048], int64_val=[1] * 2048), "u",
                                     max_rows=2048).shape == (2048,)


@pytest.mark.parametrize("shape, why", [
    ([-1], "negative dimension in tensor_shape [-1]"),
    ([3, -2], "negative dimension"),
    ([2**62, 4], "more than 2**63 - 1 elements"),
    ([2**40, 2**40], "more than 2**63 - 1 elements"),
    ([1] * (tensors.MAX_RANK + 1), f"more than {tensors.MAX_RANK}"),
])
def test_impossible_shapes_are_refused(shape, why):
    e = refused(tensors.from_tensor_proto, proto(shape, int64_val=[1]), "user_id")
    assert e.message.startswith("tensor parsing error: user_id: ") and why in e.message


def test_an_unknown_rank_is_refused():
    p = proto([], int64_val=[1])
    p.tensor_shape.unknown_rank = True
    assert "unknown rank" in refused(tensors.from_tensor_proto, p, "k").message


def test_messages_about_long_shapes_stay_short():
    e = refused(tensors.from_tensor_proto, proto([1] * 10_000, int64_val=[1]), "user_id")
    assert len(e.message) < 200


@pytest.mark.parametrize("dtype, name", [
    (999, "DataType 999"), (0, "DT_INVALID"), (types_pb2.DT_COMPLEX64, "DT_COMPLEX64"),
    (types_pb2.DT_RESOURCE, "DT_RESOURCE"),
])
def test_unknown_and_unsupported_dtypes_are_named(dtype, name):
    e = refused(tensors.from_tensor_proto, proto([1], dtype), "user_id")
    assert e.message == f"user_id: unsupported dtype {name}"
    assert name in refused(tensors.numpy_dtype, dtype).message


def test_tensor_content_must_match_the_shape_and_dtype():
    e = refused(tensors.from_tensor_proto, proto([2], tensor_content=b"\x01" * 15), "user_id")
    assert "tensor_content has 15 bytes, shape [2] of int64 needs 16" in e.message
    e = refused(tensors.from_tensor_proto, proto([1], types_pb2.DT_STRING, tensor_content=b"a"),
                "examples")
    assert "string tensors cannot use tensor_content" in e.message


@pytest.mark.parametrize("dtype, value", [
    (types_pb2.DT_INT8, 128), (types_pb2.DT_INT8, -129), (types_pb2.DT_UINT8, -1),
    (types_pb2.DT_UINT16, 65536), (types_pb2.DT_INT16, 40_000), (types_pb2.DT_HALF, 70_000),
])
def test_narrow_ints_out_of_range_are_refused_not_wrapped(dtype, value):
    field = "half_val" if dtype == types_pb2.DT_HALF else "int_val"
    e = refused(tensors.from_tensor_proto, proto([1], dtype, **{field: [value]}), "k")
    assert "k: a value is out of range" in e.message


# --- JSON -------------------------------------------------------------------------------------

INT64, FLOAT, STRING, BOOL = (types_pb2.DT_INT64, types_pb2.DT_FLOAT, types_pb2.DT_STRING,
                              types_pb2.DT_BOOL)


@pytest.mark.parametrize("value, dtype, expected", [
    ([1, 2], INT64, [1, 2]), ([[1.5], [2]], FLOAT, [[1.5], [2.0]]), (3, INT64, 3),
    (["a", {"b64": "/w=="}], STRING, [b"a", b"\xff"]), ([True], BOOL, [True]),
    ([2**63 - 1, -(2**63)], INT64, [2**63 - 1, -(2**63)]),
])
def test_json_values_become_arrays_of_the_inputs_dtype(value, dtype, expected):
    assert tensors.json_to_array(value, dtype, "x").tolist() == expected


@pytest.mark.parametrize("value, dtype, why", [
    # A float is never truncated into an int (1.5 must not become 1), nor a bool taken as one.
    ([1.5], INT64, "JSON Value: 1.5 Type: Number is not of expected type: int64"),
    ([1.0], INT64, "JSON Value: 1.0 Type: Number is not of expected type: int64"),
    ([True], INT64, "JSON Value: True Type: Boolean is not of expected type: int64"),
    (["1"], INT64, 'JSON Value: "1" Type: String is not of expected type: int64'),
    ([None], INT64, "Type: Null is not of expected type: int64"),
    ([1], BOOL, "JSON Value: 1 Type: Number is not of expected type: bool"),
    ([1], STRING, "JSON Value: 1 Type: Number is not of expected type: string"),
    (["x"], FLOAT, "is not of expected type: float"),
    ([2**63], INT64, "9223372036854775808 is out of range for int64"),
    ([-(2**63) - 1], INT64, "is out of range for int64"),
    ([10**400], FLOAT, "a number is out of range for float"),
    ([[1], 2], INT64, "ragged nested lists"),
    ([1, [2]], INT64, "nested deeper than the first element's 1 levels"),
    ([{"b64": "!!"}], STRING, "unable to base64 decode"),
    ([{"b64": "AA==", "x": 1}], STRING, "expected an object with one key"),
])
def test_json_values_of_the_wrong_type_or_shape_are_refused(value, dtype, why):
    e = refused(tensors.json_to_array, value, dtype, "user_id")
    assert e.message.startswith("input 'user_id': ") and why in e.message


def test_json_nested_beyond_the_rank_limit_is_refused_before_recursing():
    value = 1
    for _ in range(5000):  # deeper than Python's recursion limit
        value = [value]
    e = refused(tensors.json_to_array, value, INT64, "user_id")
    assert f"nested 5000 deep, more than {tensors.MAX_RANK}" in e.message


@pytest.mark.parametrize("body, why", [
    (b"", "The document is empty"),
    (b"{not json", "JSON Parse error"),
    (b"\xff\xfe{}", "JSON Parse error"),
    (b"[" * 100_000, f"nested deeper than {server.MAX_JSON_DEPTH} levels"),  # RecursionError
    (b'{"a": ' * 100 + b"1" + b"}" * 100, f"nested deeper than {server.MAX_JSON_DEPTH}"),
    (b'{"inputs": [' + b"9" * 5000 + b"]}", "a number has more than 4300 digits"),
    (b"[1, 2]", "Is not object"),
])
def test_rest_bodies_that_are_no_request_are_refused(body, why):
    e = refused(server._load_json, body)
    assert why in e.message and "Error" not in e.message


def test_rest_bodies_at_the_depth_limit_are_read():
    depth = server.MAX_JSON_DEPTH
    body = b'{"a": ' * (depth - 1) + b"[]" + b"}" * (depth - 1)  # `depth` containers
    assert isinstance(server._load_json(body), dict)
    deeper = b'{"a": ' * depth + b"[]" + b"}" * depth
    assert "nested deeper" in refused(server._load_json, deeper).message


def test_the_declared_shape_limits_are_inclusive():
    # Exactly MAX_RANK dimensions and exactly 2**63 - 1 elements are declarations TensorFlow
    # accepts; the values must still fill them (refused then with the values' count).
    assert tensors.declared_shape(proto([1] * tensors.MAX_RANK), "x") == (1,) * tensors.MAX_RANK
    assert tensors.declared_shape(proto([tensors.MAX_ELEMENTS]), "x") == (2**63 - 1,)
    assert tensors.declared_shape(proto([2048]), "x", max_rows=2048) == (2048,)


@pytest.mark.parametrize("tensor, message", [
    (proto([], int64_val=[1]), "tensor parsing error: k: tensor_shape has unknown rank"),
    (proto([1], types_pb2.DT_STRING, tensor_content=b"a"),
     "tensor parsing error: k: string tensors cannot use tensor_content"),
    (proto([2], tensor_content=b"\x01" * 3),
     "tensor parsing error: k: tensor_content has 3 bytes, shape [2] of int64 needs 16"),
    (proto([1] * 9, int64_val=[1, 2]),
     "tensor parsing error: k: 2 values for shape [1, 1, 1, 1, 1, 1, 1, 1, ...] (1 values)"),
])
def test_refusals_name_the_input_and_say_why_in_full(tensor, message):
    if "unknown rank" in message:
        tensor.tensor_shape.unknown_rank = True
    assert refused(tensors.from_tensor_proto, tensor, "k").message == message


# --- the client and response path (array_to_json, json_to_numpy, requests) --------------------

def test_as_array_makes_strings_utf8_bytes_in_an_object_array_of_the_same_shape():
    got = tensors.as_array([["é", "a"], ["", "b"]], str)
    assert got.dtype == object and got.shape == (2, 2)
    assert got.tolist() == [["é".encode(), b"a"], [b"", b"b"]]
    assert tensors.as_array([b"\xff", b"c"], bytes).tolist() == [b"\xff", b"c"]
    numbers = tensors.as_array([[1, 2]], np.int32)
    assert numbers.dtype == np.int32 and numbers.tolist() == [[1, 2]]


@pytest.mark.parametrize("array, name, expected", [
    (np.array([[1.5, 2.0]], np.float32), "rating", [[1.5, 2.0]]),
    (np.array(3, np.int64), "n", 3),
    (np.array(b"hi", object), "title", "hi"),
    (np.array([b"a", b"\xff"], object), "titles", ["a", {"b64": "/w=="}]),  # not UTF-8
    (np.array([b"a"], object), "title_bytes", [{"b64": "YQ=="}]),  # *_bytes: always base64
    (np.array([[b"a", b"b"], [b"c", b"d"]], object), "t", [["a", "b"], ["c", "d"]]),
    (np.array(["x"], object), "t", ["x"]),  # str items pass as they are
])
def test_outputs_become_json_as_tf_serving_writes_them(array, name, expected):
    assert tensors.array_to_json(array, name) == expected


@pytest.mark.parametrize("value, expected", [
    ([[1, 2], [3, 4]], np.array([[1, 2], [3, 4]])),
    ([0.5], np.array([0.5])),
    (7, np.array(7)),
])
def test_json_numbers_come_back_as_numpy_infers_them(value, expected):
    got = tensors.json_to_numpy(value)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tolist() == expected.tolist()


def test_json_strings_come_back_as_bytes_in_their_shape():
    got = tensors.json_to_numpy([["a", {"b64": "/w=="}], ["é", "d"]], "titles")
    assert got.dtype == object and got.shape == (2, 2)
    assert got.tolist() == [[b"a", b"\xff"], ["é".encode(), b"d"]]
    scalar = tensors.json_to_numpy("x")
    assert scalar.dtype == object and scalar.shape == () and scalar.item() == b"x"


def test_json_responses_must_be_rectangular_and_base64_valid():
    assert "input 'scores': ragged nested lists" in refused(
        tensors.json_to_numpy, [[1], [2, 3]], "scores").message
    assert "input 'output': unable to base64 decode" in refused(
        tensors.json_to_numpy, [{"b64": "!!"}]).message


def test_responses_survive_json_both_ways():
    for array, name in [(np.array([[b"a", b"\xff"]], object), "titles"),
                        (np.array([b"z"], object), "x_bytes"),
                        (np.array([[1, 2]], np.int64), "ids")]:
        back = tensors.json_to_numpy(tensors.array_to_json(array, name), name)
        assert back.shape == array.shape and back.tolist() == array.tolist()


def test_a_predict_request_names_the_model_signature_and_version_and_holds_each_input():
    request = tensors.predict_request("movielens", "predict_ids",
                                      {"user_id": [1, 2], "movie_id": np.array([[3], [4]])},
                                      version=7)
    assert (request.model_spec.name, request.model_spec.signature_name,
            request.model_spec.version.value) == ("movielens", "predict_ids", 7)
    assert sorted(request.inputs) == ["movie_id", "user_id"]
    assert tensors.from_tensor_proto(request.inputs["user_id"]).tolist() == [1, 2]
    assert tensors.from_tensor_proto(request.inputs["movie_id"]).tolist() == [[3], [4]]
    # No version: the newest one serves, so none is sent.
    latest = tensors.predict_request("m", "s", {"x": [1.0]})
    assert not latest.model_spec.HasField("version")
    assert tensors.predict_request("m", "s", {}, version=0).model_spec.HasField("version")


def test_a_regression_request_carries_the_examples_in_order():
    from tensorflow.core.example import example_pb2

    examples = []
    for user in (5, 6):
        example = example_pb2.Example()
        example.features.feature["user_id"].int64_list.value.append(user)
        examples.append(example)
    request = tensors.regression_request("movielens", "regress", examples, version=3)
    assert (request.model_spec.name, request.model_spec.signature_name,
            request.model_spec.version.value) == ("movielens", "regress", 3)
    assert list(request.input.example_list.examples) == examples
    assert not tensors.regression_request("m", "s", []).model_spec.HasField("version")


# --- exact messages and edges mutation testing found untested ---------------------------------

def test_refusals_without_a_name_call_the_tensor_tensor():
    e = refused(tensors.from_tensor_proto, proto([-1], int64_val=[1]))
    assert e.message == "tensor parsing error: tensor: negative dimension in tensor_shape [-1]"
    e = refused(tensors.declared_shape, proto([-1]))
    assert e.message == "tensor parsing error: tensor: negative dimension in tensor_shape [-1]"


def test_a_shape_of_eight_dimensions_is_written_in_full_and_longer_ones_cut():
    e = refused(tensors.from_tensor_proto, proto([1] * 8, int64_val=[1, 2]), "k")
    assert e.message == ("tensor parsing error: k: 2 values for shape [1, 1, 1, 1, 1, 1, 1, 1] "
                         "(1 values)")


def test_dtype_names_of_unsupported_types_are_the_enum_names():
    assert tensors.dtype_name(types_pb2.DT_INT64) == "int64"
    assert tensors.dtype_name(types_pb2.DT_COMPLEX64) == "DT_COMPLEX64"
    assert tensors.dtype_name(999) == "DataType 999"


def test_an_unsupported_numpy_dtype_is_named():
    e = refused(tensors.data_type, np.array([1 + 2j]))
    assert e.message == "unsupported numpy dtype complex128"


def test_python_strings_in_a_tensor_proto_are_utf8():
    for array in (np.array(["é", "b"], object), np.array(["é", "b"])):
        assert list(tensors.to_tensor_proto(array).string_val) == ["é".encode(), b"b"]


def test_json_ragged_lists_say_what_they_got():
    e = refused(tensors.json_to_array, [[1], 2], INT64, "user_id")
    assert e.message == ("input 'user_id': ragged nested lists: expected 1 values at level 1, "
                         "got a scalar")
    e = refused(tensors.json_to_array, [[1], [2, 3]], INT64, "user_id")
    assert e.message == ("input 'user_id': ragged nested lists: expected 1 values at level 1, "
                         "got 2")


def test_a_json_object_where_a_number_belongs_is_named_object():
    e = refused(tensors.json_to_array, [{"a": 1}], INT64, "user_id")
    assert e.message == ("input 'user_id': JSON Value: {'a': 1} Type: Object is not of expected "
                         "type: int64")


def test_json_b64_objects_of_the_wrong_form_are_refused_in_full():
    e = refused(tensors.json_to_array, [{"b64": 1}], STRING, "title")
    assert e.message == ("input 'title': JSON Value: {'b64': 1} not formatted correctly for "
                         "base64 data: expected an object with one key, \"b64\", holding a "
                         "string")


@pytest.mark.parametrize("call", [
    lambda value: tensors.json_to_array(value, INT64, "user_id"),
    lambda value: tensors.json_to_numpy(value, "user_id"),
])
def test_json_nesting_is_refused_beyond_max_rank_naming_the_input(call):
    value = 1
    for _ in range(tensors.MAX_RANK):
        value = [value]
    assert call(value).shape == (1,) * tensors.MAX_RANK  # exactly MAX_RANK: read
    e = refused(call, [value])
    assert e.message == (f"input 'user_id': lists nested {tensors.MAX_RANK + 1} deep, more "
                         f"than {tensors.MAX_RANK}")


@pytest.mark.parametrize("value, shape", [([], (0,)), ([[]], (1, 0)), ([[], []], (2, 0))])
def test_empty_json_lists_are_empty_arrays(value, shape):
    assert tensors.json_to_array(value, INT64, "x").shape == shape
    assert tensors.json_to_array(value, STRING, "x").shape == shape


def test_json_strings_keep_their_nesting():
    got = tensors.json_to_array([["a", "b"], ["c", {"b64": "/w=="}]], STRING, "titles")
    assert got.shape == (2, 2) and got.tolist() == [[b"a", b"b"], [b"c", b"\xff"]]


def test_text_outputs_keep_trailing_nul_characters():
    # numpy's fixed-width str arrays would drop them: the nested lists are built as objects.
    assert tensors.array_to_json(np.array([[b"a\x00", b"b"]], object), "t") == [["a\x00", "b"]]
