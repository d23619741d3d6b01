"""numpy <-> TFF tensor protos, in both of the wire forms TFF has used.

Why not federated-language's `array.from_proto`: TFF 0.87 sends every non-scalar numeric tensor as
raw little-endian bytes in `Array.content` (field 18), which that function ignores; and TFF <= 0.82
sent tensors as `Any(tensorflow.TensorProto)`. This codec reads all of those and writes exactly
what TFF 0.87 writes (typed lists for scalars and strings, `content` otherwise), so files it writes
are byte-identical to TFF's. Every value comes back as an `np.ndarray` (0-d for scalars) of the
exact dtype; strings are object arrays holding `bytes`.
"""
from __future__ import annotations

import numpy as np
from federated_language.proto import array_pb2

from tffexec.errors import ArgumentError
from tffexec.formats import limits
from tffexec.formats import types as tt
from tffexec.formats.protos import tf_graph_pb2

# dtype -> (typed-list field of Array, numpy dtype of the list's items). float16/bfloat16 travel as
# uint16 bit patterns; complex numbers as interleaved (real, imag) pairs of their component type.
_LIST_FIELD = {
    "bool": ("bool_list", np.bool_),
    "int8": ("int8_list", np.int8),
    "int16": ("int16_list", np.int16),
    "int32": ("int32_list", np.int32),
    "int64": ("int64_list", np.int64),
    "uint8": ("uint8_list", np.uint8),
    "uint16": ("uint16_list", np.uint16),
    "uint32": ("uint32_list", np.uint32),
    "uint64": ("uint64_list", np.uint64),
    "float16": ("float16_list", np.uint16),
    "bfloat16": ("bfloat16_list", np.uint16),
    "float32": ("float32_list", np.float32),
    "float64": ("float64_list", np.float64),
    "complex64": ("complex64_list", np.float32),
    "complex128": ("complex128_list", np.float64),
    "string": ("string_list", None),
}


def _little(dtype: np.dtype) -> np.dtype:
    """The explicitly little-endian version of a dtype (the wire order whatever the host's)."""
    return dtype.newbyteorder("<") if dtype.itemsize > 1 and dtype.kind in "iufcb" else dtype


def _to_raw(arr: np.ndarray) -> bytes:
    """C-order little-endian bytes of a numeric array (bfloat16 via its uint16 bit pattern)."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype == tt.BFLOAT16:
        return arr.view(np.uint16).astype("<u2").tobytes()
    return arr.astype(_little(arr.dtype), copy=False).tobytes()


def _from_raw(raw: bytes, dtype: np.dtype, shape: tuple[int, ...], what: str) -> np.ndarray:
    """Decode little-endian raw bytes (Array.content / TensorProto.tensor_content)."""
    count = limits.element_count(shape)  # exact: np.prod wraps at 2**64
    if len(raw) != count * dtype.itemsize:
        raise ArgumentError(f"{what}: raw content has {len(raw)} bytes, expected "
                            f"{count * dtype.itemsize} for {tt.dtype_name(dtype)}{list(shape)}")
    if dtype == tt.BFLOAT16:
        arr = np.frombuffer(raw, "<u2").astype(np.uint16).view(tt.BFLOAT16)
    else:
        arr = np.frombuffer(raw, _little(dtype)).astype(dtype)
    return arr.reshape(shape)


def _from_items(items, dtype: np.dtype, shape: tuple[int, ...], what: str) -> np.ndarray:
    """Decode a typed list (already a sequence of Python/numpy items) into the final array."""
    count = limits.element_count(shape)  # exact: np.prod wraps at 2**64
    name = tt.dtype_name(dtype)
    if dtype.kind != "c" and len(items) != count:  # before allocating anything for them
        raise ArgumentError(f"{what}: {len(items)} values for shape {list(shape)} "
                            f"({count} expected)")
    if name == "string":
        flat = np.empty(len(items), dtype=object)
        flat[:] = [bytes(b) for b in items]
    elif dtype.kind in "iu" or name in ("float16", "bfloat16"):
        # Narrow ints and 16-bit float bit patterns arrive in 32-bit fields: range-check them
        # instead of letting numpy wrap a corrupt value around.
        bits = np.dtype(np.uint16) if dtype.kind == "f" or dtype == tt.BFLOAT16 else dtype
        info = np.iinfo(bits)
        if len(items) <= 16:  # scalars: Python's min/max cost less than numpy's reductions
            low, high = (min(items), max(items)) if len(items) else (0, 0)
            wide = None
        else:
            wide = np.asarray(items, dtype=np.uint64 if bits == np.uint64 else np.int64)
            low, high = (int(wide.min()), int(wide.max())) if wide.size else (0, 0)
        if low < info.min or high > info.max:
            raise ArgumentError(f"{what}: value out of range for {tt.dtype_name(dtype)}")
        flat = (np.asarray(items, dtype=bits) if wide is None else wide.astype(bits)).view(dtype)
    else:
        item_dtype = _LIST_FIELD[name][1]
        flat = np.asarray(items, dtype=item_dtype)
        if dtype.kind == "c":
            if flat.size % 2:
                raise ArgumentError(f"{what}: complex values need (real, imag) pairs, found an "
                                    f"odd count {flat.size}")
            flat = flat.view(dtype) if flat.size else np.empty(0, dtype)
        else:
            flat = flat.astype(dtype, copy=False)
    if flat.size != count:
        raise ArgumentError(f"{what}: {flat.size} values for shape {list(shape)} "
                            f"({count} expected)")
    return flat.reshape(shape)


def raw_to_array(args: tuple) -> np.ndarray:
    """(raw bytes, dtype, shape) -> the array: the raw `content` of several equal members
    decoded at once (`values._raw_members`); the length is checked against the shape."""
    raw, dtype, shape = args
    return _from_raw(raw, dtype, shape, "Array")


def _shape_from_dims(dims, unknown_rank: bool, what: str) -> tuple[int, ...]:
    if unknown_rank:
        raise ArgumentError(f"{what}: a tensor value must have a known shape (unknown_rank set)")
    if any(d < 0 for d in dims):
        raise ArgumentError(f"{what}: a tensor value cannot have unknown dimensions {list(dims)}")
    shape = tuple(int(d) for d in dims)
    # numpy refuses a shape whose non-zero dimensions multiply past its index range, even for an
    # empty array ([0, 2**31, 2**31]); no real tensor comes near it.
    if limits.element_count(tuple(d for d in shape if d)) > _MAX_ELEMENTS:
        raise ArgumentError(f"{what}: shape {list(shape)} is larger than any array can be")
    return shape


#: Elements numpy can index (with room for 16-byte dtypes).
_MAX_ELEMENTS = (1 << 62) // 16


def array_from_proto(pb: array_pb2.Array) -> np.ndarray:
    """Decode a federated-language `Array` in either of TFF's forms (typed list or `content`)."""
    dtype = tt.dtype_from_enum(pb.dtype)
    shape = _shape_from_dims(pb.shape.dim, pb.shape.unknown_rank, "Array")
    kind = pb.WhichOneof("kind")
    if pb.HasField("content"):
        if tt.is_string(dtype):
            raise ArgumentError("Array: string tensors cannot use raw content")
        if kind is not None and len(getattr(pb, kind).value):
            raise ArgumentError("Array: both raw content and a typed list are set")
        return _from_raw(pb.content, dtype, shape, "Array")
    _check_list_field(dtype, kind)
    items = getattr(pb, kind).value if kind is not None else []
    return _from_items(items, dtype, shape, "Array")


def _check_list_field(dtype: np.dtype, kind: str | None) -> None:
    expected = _LIST_FIELD[tt.dtype_name(dtype)][0]
    if kind is not None and kind != expected:
        raise ArgumentError(f"Array: dtype {tt.dtype_name(dtype)} stored in {kind} "
                            f"(expected {expected})")


def items_to_array(args: tuple) -> np.ndarray:
    """(items, dtype enum, list field, shape) -> the array: the typed lists of several equal
    members decoded at once (`values._scalar_members`); `items` is a callable giving them all
    (a numpy array), called only once the dtype and field agree."""
    items, dtype_enum, kind, dims = args
    dtype = tt.dtype_from_enum(dtype_enum)
    shape = _shape_from_dims(dims, False, "Array")
    _check_list_field(dtype, kind)
    return _from_items(items(), dtype, shape, "Array")


def array_to_proto(arr) -> array_pb2.Array:
    """Encode like TFF 0.87: typed lists for scalars and strings, little-endian `content` else."""
    arr = np.asarray(arr)
    if arr.dtype.kind in "SU":
        arr = arr.astype(object)
    dtype = arr.dtype
    pb = array_pb2.Array(dtype=tt.dtype_to_enum(dtype))
    pb.shape.SetInParent()  # scalars still carry an (empty) shape message, as TFF writes it
    pb.shape.dim.extend(arr.shape)
    name = tt.dtype_name(dtype)
    if name == "string":
        items = [_as_bytes(x) for x in arr.reshape(-1)]
        pb.string_list.value.extend(items)
        return pb
    if arr.ndim:
        pb.content = _to_raw(arr)
        return pb
    field, item_dtype = _LIST_FIELD[name]
    flat = arr.reshape(-1)
    if name in ("float16", "bfloat16"):
        flat = flat.view(np.uint16)
    elif dtype.kind == "c":
        flat = flat.view(item_dtype)
    getattr(pb, field).value.extend(flat.tolist())
    return pb


def _as_bytes(x) -> bytes:
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode("utf-8")
    raise ArgumentError(f"string tensor holds a {type(x).__name__}, expected bytes or str")


# TensorFlow's TensorProto: which repeated field carries each dtype when tensor_content is unset.
_TENSOR_FIELD = {
    "bool": "bool_val", "int8": "int_val", "int16": "int_val", "int32": "int_val",
    "uint8": "int_val", "uint16": "int_val", "int64": "int64_val", "uint32": "uint32_val",
    "uint64": "uint64_val", "float16": "half_val", "bfloat16": "half_val",
    "float32": "float_val", "float64": "double_val", "complex64": "scomplex_val",
    "complex128": "dcomplex_val", "string": "string_val",
}


def tensor_proto_to_array(pb: bytes | tf_graph_pb2.TensorProto) -> np.ndarray:
    """Decode TFF <= 0.82's tensor form: a `tensorflow.TensorProto` (bytes or message).

    TensorFlow lets the typed `*_val` list be shorter than the tensor: the last value repeats
    (an empty list means zeros). `tensor_content` holds raw little-endian bytes when set.
    """
    if isinstance(pb, (bytes, bytearray, memoryview)):
        msg = tf_graph_pb2.TensorProto()
        try:
            msg.ParseFromString(bytes(pb))
        except Exception:  # noqa: BLE001 - protobuf raises DecodeError/RuntimeWarning variants
            raise ArgumentError("TensorProto: truncated or corrupt bytes") from None
        pb = msg
    dtype = tt.dtype_from_enum(pb.dtype)
    shape = _shape_from_dims([d.size for d in pb.tensor_shape.dim], pb.tensor_shape.unknown_rank,
                             "TensorProto")
    name = tt.dtype_name(dtype)
    if pb.tensor_content and name != "string":
        return _from_raw(pb.tensor_content, dtype, shape, "TensorProto")
    items = list(getattr(pb, _TENSOR_FIELD[name]))
    count = limits.element_count(shape)  # exact: np.prod wraps at 2**64
    per = 2 if dtype.kind == "c" else 1
    if name == "string":
        if len(items) != count and len(items) != 1:
            raise ArgumentError(f"TensorProto: {len(items)} strings for shape {list(shape)}")
        items = items * count if len(items) == 1 else items
        return _from_items(items, dtype, shape, "TensorProto")
    if not items:
        return np.zeros(shape, dtype)
    if len(items) < count * per:  # TensorFlow's compression: repeat the last value
        last = items[-per:]
        items = items + last * ((count * per - len(items)) // per)
    return _from_items(items, dtype, shape, "TensorProto")


def array_to_tensor_proto(arr) -> tf_graph_pb2.TensorProto:
    """Encode in TFF <= 0.82's form (for answering old clients): raw content, strings listed."""
    arr = np.asarray(arr)
    pb = tf_graph_pb2.TensorProto(dtype=tt.dtype_to_enum(arr.dtype))
    pb.tensor_shape.dim.extend(tf_graph_pb2.TensorShapeProto.Dim(size=d) for d in arr.shape)
    if tt.is_string(arr.dtype):
        pb.string_val.extend(_as_bytes(x) for x in arr.reshape(-1))
    else:
        pb.tensor_content = _to_raw(arr)
    return pb
