"""Tensors between numpy, TensorProto (gRPC) and TF Serving's REST JSON, fast enough for the
per-request path and without TensorFlow's own converters (tf.make_tensor_proto costs more than
the model does here, and clients should not need TensorFlow ops).

JSON follows TF Serving's rules (util/json_tensor.cc): numbers and strings, nested lists for
higher ranks, {"b64": ...} for binary strings, outputs named *_bytes returned as {"b64": ...}.

A request's tensors are checked before anything is allocated for them: the declared shape (rank,
negative dimensions, more than 2**63 - 1 elements, rows over the server's batch limit) and the
values actually sent against it. TensorFlow would fill a tensor of a declared [2**31] from one
value; here a proto whose values do not match its shape is refused, so what a request can make the
server hold is bounded by the request's own size.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, regression_pb2

from serving.errors import ServingError, invalid, too_many_rows

# DataType enum <-> numpy dtype for the types TF Serving's APIs carry. DT_STRING is an object
# array of bytes.
_NUMPY = {
    types_pb2.DT_FLOAT: np.dtype(np.float32), types_pb2.DT_DOUBLE: np.dtype(np.float64),
    types_pb2.DT_INT32: np.dtype(np.int32), types_pb2.DT_INT64: np.dtype(np.int64),
    types_pb2.DT_INT16: np.dtype(np.int16), types_pb2.DT_INT8: np.dtype(np.int8),
    types_pb2.DT_UINT8: np.dtype(np.uint8), types_pb2.DT_UINT16: np.dtype(np.uint16),
    types_pb2.DT_UINT32: np.dtype(np.uint32), types_pb2.DT_UINT64: np.dtype(np.uint64),
    types_pb2.DT_BOOL: np.dtype(np.bool_), types_pb2.DT_HALF: np.dtype(np.float16),
    types_pb2.DT_STRING: np.dtype(object),
}
_DTYPE = {v: k for k, v in _NUMPY.items()}
# The repeated field of TensorProto that holds each type's values when tensor_content is empty.
_FIELD = {
    types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val", types_pb2.DT_INT16: "int_val", types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val", types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val", types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val", types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_HALF: "half_val", types_pb2.DT_STRING: "string_val",
}


# At most this many dimensions (numpy's limit; TensorFlow allows 254, no signature here takes
# more than 2). Also bounds the recursion over nested JSON lists.
MAX_RANK = 32
# TensorFlow's TensorShape limit on the number of elements.
MAX_ELEMENTS = 2**63 - 1


def dtype_name(dtype: int) -> str:
    """"int64" for DT_INT64: the names TensorFlow's messages use."""
    return types_pb2.DataType.Name(dtype)[3:].lower() if dtype in _NUMPY else enum_name(dtype)


def enum_name(dtype: int) -> str:
    """"DT_COMPLEX64" for a DataType TensorFlow knows, "DataType 999" for one it does not."""
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"DataType {dtype}"


def numpy_dtype(dtype: int) -> np.dtype:
    if dtype not in _NUMPY:
        raise invalid(f"unsupported tensor dtype {enum_name(dtype)}")
    return _NUMPY[dtype]


def data_type(array: np.ndarray) -> int:
    """The DataType enum of a numpy array; str/bytes arrays are DT_STRING."""
    if array.dtype.kind in "OSU":
        return types_pb2.DT_STRING
    if array.dtype not in _DTYPE:
        raise invalid(f"unsupported numpy dtype {array.dtype}")
    return _DTYPE[array.dtype]


def as_array(values: Any, dtype: np.dtype | type) -> np.ndarray:
    """A numpy array for a request, strings as an object array of UTF-8 bytes."""
    dtype = np.dtype(dtype)
    if dtype.kind in "OSU":
        flat = [v.encode() if isinstance(v, str) else bytes(v) for v in np.ravel(values)]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(np.shape(values))
    return np.asarray(values, dtype=dtype)


# --- TensorProto ------------------------------------------------------------------------------

def fill_tensor_proto(array: np.ndarray, proto: tensor_pb2.TensorProto) -> None:
    """Writes `array` into `proto` (numbers as little-endian tensor_content, one copy)."""
    dtype = data_type(array)
    proto.dtype = dtype
    dims = proto.tensor_shape.dim
    for s in array.shape:
        dims.add().size = s
    if dtype == types_pb2.DT_STRING:
        proto.string_val.extend(v.encode() if isinstance(v, str) else bytes(v)
                                for v in array.ravel())
    else:
        little = _LITTLE[dtype]
        proto.tensor_content = (array if array.dtype == little else array.astype(little)
                                ).tobytes()


def to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto()
    fill_tensor_proto(np.asarray(array), proto)
    return proto


# Little-endian views of the numeric dtypes: TensorProto.tensor_content's byte order.
_LITTLE = {k: v.newbyteorder("<") for k, v in _NUMPY.items() if v.kind != "O"}


def _shape_text(shape: Sequence[int]) -> str:
    # A message stays short whatever the request declared.
    return str(list(shape)) if len(shape) <= 8 else f"[{', '.join(map(str, shape[:8]))}, ...]"


def _parse_error(name: str, why: str) -> ServingError:
    # TF Serving's words for a TensorProto it cannot read, and why.
    return invalid(f"tensor parsing error: {name}: {why}")


def declared_shape(proto: tensor_pb2.TensorProto, name: str = "tensor",
                   max_rows: int | None = None) -> tuple[int, ...]:
    """The shape a TensorProto declares, checked before anything is allocated for it: a known
    rank of at most MAX_RANK, no negative dimension, at most MAX_ELEMENTS elements, and at most
    `max_rows` along dimension 0 (TF Serving's batching's refusal)."""
    shape_proto = proto.tensor_shape
    if shape_proto.unknown_rank:
        raise _parse_error(name, "tensor_shape has unknown rank")
    if len(shape_proto.dim) > MAX_RANK:
        raise _parse_error(name, f"tensor_shape has {len(shape_proto.dim)} dimensions, more "
                           f"than {MAX_RANK}")
    shape = tuple(d.size for d in shape_proto.dim)
    if any(s < 0 for s in shape):
        raise _parse_error(name, f"negative dimension in tensor_shape {_shape_text(shape)}")
    if math.prod(shape) > MAX_ELEMENTS:
        raise _parse_error(name, f"tensor_shape {_shape_text(shape)} has more than 2**63 - 1 "
                           "elements")
    if max_rows is not None and shape and shape[0] > max_rows:
        raise too_many_rows(shape[0], max_rows)
    return shape


def _ints(values: Any, dtype: np.dtype, name: str) -> np.ndarray:
    """int_val / half_val values (int32 on the wire) as `dtype`, refused when out of its range
    rather than wrapped."""
    wide = np.asarray(values, dtype=np.int64)
    info = np.iinfo(dtype)
    if wide.size and (wide.min() < info.min or wide.max() > info.max):
        raise _parse_error(name, f"a value is out of range for {dtype}")
    return wide.astype(dtype)


def from_tensor_proto(proto: tensor_pb2.TensorProto, name: str = "tensor",
                      max_rows: int | None = None) -> np.ndarray:
    """The numpy array a TensorProto holds; a malformed proto is an InvalidArgument naming it.
    The declared shape is checked first (declared_shape), then the values sent must fill it
    exactly: nothing larger than the request is ever allocated."""
    shape = declared_shape(proto, name, max_rows)
    size = math.prod(shape)
    dtype = _NUMPY.get(proto.dtype)
    if dtype is None:
        raise invalid(f"{name}: unsupported dtype {enum_name(proto.dtype)}")
    content = proto.tensor_content
    if content:
        if dtype.kind == "O":
            raise _parse_error(name, "string tensors cannot use tensor_content")
        if len(content) != size * dtype.itemsize:
            raise _parse_error(name, f"tensor_content has {len(content)} bytes, shape "
                               f"{_shape_text(shape)} of {dtype_name(proto.dtype)} needs "
                               f"{size * dtype.itemsize}")
        # Read-only view of the request's bytes; TensorFlow copies it into its own tensor.
        data = np.frombuffer(content, dtype=_LITTLE[proto.dtype])
        return (data if dtype.isnative and data.dtype == dtype else data.astype(dtype)
                ).reshape(shape)
    values = getattr(proto, _FIELD[proto.dtype])
    if len(values) != size:
        raise _parse_error(name, f"{len(values)} values for shape {_shape_text(shape)} "
                           f"({size} values)")
    if proto.dtype == types_pb2.DT_STRING:
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
    elif proto.dtype == types_pb2.DT_HALF:  # half_val holds the float16 bit patterns
        array = _ints(values, np.dtype(np.uint16), name).view(np.float16)
    elif _FIELD[proto.dtype] == "int_val":
        array = _ints(values, dtype, name)
    else:
        array = np.asarray(values, dtype=dtype)
    return array.reshape(shape)


# --- JSON (REST) ------------------------------------------------------------------------------

def _json_type(value: Any) -> str:
    return {dict: "Object", list: "Array", str: "String", bool: "Boolean",
            type(None): "Null"}.get(type(value), "Number")


def _type_error(name: str, value: Any, dtype: int) -> Exception:
    # TF Serving's wording, prefixed with the input it concerns.
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return invalid(f"input '{name}': JSON Value: {text} Type: {_json_type(value)} is not of "
                   f"expected type: {dtype_name(dtype)}")


def _shape_of(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _flatten(value: Any, shape: Sequence[int], level: int, out: list, name: str) -> None:
    if level == len(shape):
        if isinstance(value, list):
            raise invalid(f"input '{name}': list nested deeper than the first element's "
                          f"{len(shape)} levels")
        out.append(value)
        return
    if not isinstance(value, list) or len(value) != shape[level]:
        got = len(value) if isinstance(value, list) else "a scalar"
        raise invalid(f"input '{name}': ragged nested lists: expected {shape[level]} values at "
                      f"level {level}, got {got}")
    for v in value:
        _flatten(v, shape, level + 1, out, name)


def decode_b64(value: dict, name: str) -> bytes:
    if set(value) != {"b64"} or not isinstance(value["b64"], str):
        raise invalid(f"input '{name}': JSON Value: {value} not formatted correctly for base64 "
                      "data: expected an object with one key, \"b64\", holding a string")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError) as e:
        raise invalid(f"input '{name}': unable to base64 decode {value['b64']!r}: {e}") from e


def _json_shape(value: Any, name: str) -> list[int]:
    shape = _shape_of(value)
    if len(shape) > MAX_RANK:
        raise invalid(f"input '{name}': lists nested {len(shape)} deep, more than {MAX_RANK}")
    return shape


def json_to_array(value: Any, dtype: int, name: str) -> np.ndarray:
    """A JSON value (scalar or nested lists) as an array of the signature input's dtype."""
    shape = _json_shape(value, name)
    flat: list = []
    _flatten(value, shape, 0, flat, name)
    np_dtype = numpy_dtype(dtype)
    if np_dtype.kind == "O":
        out = np.empty(len(flat), dtype=object)
        for i, v in enumerate(flat):
            if isinstance(v, str):
                out[i] = v.encode()
            elif isinstance(v, dict):
                out[i] = decode_b64(v, name)
            else:
                raise _type_error(name, v, dtype)
        return out.reshape(shape)
    for v in flat:  # bools are ints to Python, and floats must not be truncated into ints
        if np_dtype.kind == "b":
            ok = isinstance(v, bool)
        elif np_dtype.kind in "iu":
            ok = isinstance(v, int) and not isinstance(v, bool)
        else:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        if not ok:
            raise _type_error(name, v, dtype)
    if np_dtype.kind in "iu" and flat:
        info = np.iinfo(np_dtype)
        bad = next((v for v in flat if not info.min <= v <= info.max), None)
        if bad is not None:
            raise invalid(f"input '{name}': {bad} is out of range for {dtype_name(dtype)}")
    try:
        return np.asarray(flat, dtype=np_dtype).reshape(shape)
    except OverflowError:  # an integer beyond any float, e.g. 10**400 for a float input
        raise invalid(f"input '{name}': a number is out of range for {dtype_name(dtype)}"
                      ) from None


def _json_value(value: Any, as_bytes: bool) -> Any:
    if isinstance(value, bytes):
        if not as_bytes:
            try:
                return value.decode()
            except UnicodeDecodeError:
                pass  # not text: the only lossless JSON form is base64
        return {"b64": base64.b64encode(value).decode()}
    return value


def array_to_json(array: np.ndarray, name: str) -> Any:
    """Nested lists for JSON; strings as text, or {"b64": ...} for outputs named *_bytes."""
    if array.dtype.kind != "O":
        return array.tolist()
    as_bytes = name.endswith("_bytes")
    flat = [_json_value(v, as_bytes) for v in array.ravel()]
    if array.ndim == 0:
        return flat[0]
    return np.array(flat, dtype=object).reshape(array.shape).tolist() if array.ndim > 1 else flat


def json_to_numpy(value: Any, name: str = "output") -> np.ndarray:
    """A REST response's value back to numpy (clients, which do not know the dtypes): numbers
    as numpy infers them, strings and {"b64": ...} as an object array of bytes, as over gRPC."""
    shape = _json_shape(value, name)
    flat: list = []
    _flatten(value, shape, 0, flat, name)
    if not any(isinstance(v, (str, dict)) for v in flat):
        return np.asarray(value)
    out = np.empty(len(flat), dtype=object)
    out[:] = [decode_b64(v, name) if isinstance(v, dict) else v.encode() for v in flat]
    return out.reshape(shape)


# --- requests ---------------------------------------------------------------------------------

def fill_model_spec(spec: Any, model_name: str, signature_name: str, version: int | None
                    ) -> None:
    spec.name = model_name
    spec.signature_name = signature_name
    if version is not None:
        spec.version.value = version


def predict_request(model_name: str, signature_name: str, inputs: dict[str, np.ndarray],
                    version: int | None = None) -> predict_pb2.PredictRequest:
    """A PredictRequest for numpy inputs (warmup files, clients)."""
    request = predict_pb2.PredictRequest()
    fill_model_spec(request.model_spec, model_name, signature_name, version)
    for key, value in inputs.items():
        fill_tensor_proto(np.asarray(value), request.inputs[key])
    return request


def regression_request(model_name: str, signature_name: str, examples: list,
                       version: int | None = None) -> regression_pb2.RegressionRequest:
    """A RegressionRequest for tf.Examples (contract.tf_example builds them)."""
    request = regression_pb2.RegressionRequest()
    fill_model_spec(request.model_spec, model_name, signature_name, version)
    request.input.example_list.examples.extend(examples)
    return request
