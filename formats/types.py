"""Thin helpers over federated-language's type system.

tffexec never defines its own type classes: `federated_language.Type` and its subclasses are the
one vocabulary shared by the formats, the executors and the CLI. This module only adds what
federated-language leaves out: protobuf decoding that also accepts abstract types and reports
failures as tffexec errors, the dtype <-> `DataType` enum mapping under one name, and the dtype
names used by the JSON format (numpy's names, except ``"string"`` for TFF's ``str``).
"""
from __future__ import annotations

import functools

import federated_language as fl
import ml_dtypes
import numpy as np
from federated_language.proto import computation_pb2, data_type_pb2

from tffexec.errors import ArgumentError, TffexecError

Type = fl.Type

#: numpy dtype of every TFF `DataType` (strings are `np.str_` in types, `object` in values).
_ENUM_TO_DTYPE: dict[int, np.dtype] = {
    data_type_pb2.DT_BOOL: np.dtype(np.bool_),
    data_type_pb2.DT_INT8: np.dtype(np.int8),
    data_type_pb2.DT_INT16: np.dtype(np.int16),
    data_type_pb2.DT_INT32: np.dtype(np.int32),
    data_type_pb2.DT_INT64: np.dtype(np.int64),
    data_type_pb2.DT_UINT8: np.dtype(np.uint8),
    data_type_pb2.DT_UINT16: np.dtype(np.uint16),
    data_type_pb2.DT_UINT32: np.dtype(np.uint32),
    data_type_pb2.DT_UINT64: np.dtype(np.uint64),
    data_type_pb2.DT_HALF: np.dtype(np.float16),
    data_type_pb2.DT_BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    data_type_pb2.DT_FLOAT: np.dtype(np.float32),
    data_type_pb2.DT_DOUBLE: np.dtype(np.float64),
    data_type_pb2.DT_COMPLEX64: np.dtype(np.complex64),
    data_type_pb2.DT_COMPLEX128: np.dtype(np.complex128),
    data_type_pb2.DT_STRING: np.dtype(np.str_),
}
_DTYPE_TO_ENUM = {d: e for e, d in _ENUM_TO_DTYPE.items()}
STRING_DTYPE = np.dtype(np.str_)
BFLOAT16 = np.dtype(ml_dtypes.bfloat16)


def dtype_from_enum(enum: int, error: type[TffexecError] = ArgumentError) -> np.dtype:
    """The numpy dtype of a `DataType` enum value (`np.str_` for DT_STRING)."""
    try:
        return _ENUM_TO_DTYPE[enum]
    except KeyError:
        name = data_type_pb2.DataType.Name(enum) if enum in data_type_pb2.DataType.values() else enum
        raise error(f"unsupported tensor dtype {name}") from None


def dtype_to_enum(dtype: np.dtype | type) -> int:
    """The `DataType` enum value of a numpy dtype; object/bytes/unicode dtypes are DT_STRING."""
    dtype = np.dtype(dtype)
    if dtype.kind in "OSU":
        return data_type_pb2.DT_STRING
    try:
        return _DTYPE_TO_ENUM[dtype]
    except KeyError:
        raise ArgumentError(f"numpy dtype {dtype} has no TFF equivalent") from None


def is_string(dtype: np.dtype) -> bool:
    """True for TFF's string dtype, whichever numpy spelling carries it."""
    return np.dtype(dtype).kind in "OSU"


def is_floating(dtype: np.dtype) -> bool:
    """True for float16/bfloat16/float32/float64 (bfloat16's numpy kind is 'V', hence this)."""
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or dtype == BFLOAT16


@functools.lru_cache(maxsize=256)
def dtype_name(dtype: np.dtype) -> str:
    """The JSON/CLI name of a dtype: numpy's name, except 'string' for TFF's str.

    Cached: numpy builds the name anew on every call, and a value of a million scalars asks
    a million times."""
    return "string" if is_string(dtype) else np.dtype(dtype).name


def dtype_from_name(name: str) -> np.dtype:
    """Inverse of `dtype_name`; also accepts 'str'. Raises ArgumentError for unknown names."""
    if name in ("string", "str"):
        return STRING_DTYPE
    for dtype in _ENUM_TO_DTYPE.values():
        if dtype.name == name:
            return dtype
    raise ArgumentError(f"unknown dtype name {name!r}")


def value_dtype(tensor_type: fl.TensorType) -> np.dtype:
    """The dtype a tensor VALUE of this type has: object (holding bytes) for strings."""
    return np.dtype(object) if is_string(tensor_type.dtype) else tensor_type.dtype


def type_from_proto(pb: computation_pb2.Type, error: type[TffexecError] = ArgumentError) -> Type:
    """A `federated_language.Type` from its proto; failures raise `error` (not ValueError).

    federated-language's own `Type.from_proto` forgets abstract types and raises assorted
    Python exceptions; callers here need one tffexec error class that says what was wrong.
    """
    kind = pb.WhichOneof("type")
    try:
        if kind == "abstract":
            return fl.AbstractType(pb.abstract.label)
        if kind == "function":
            param = type_from_proto(pb.function.parameter, error) if pb.function.HasField(
                "parameter") else None
            return fl.FunctionType(param, type_from_proto(pb.function.result, error))
        if kind == "struct":
            # convert=False: the elements are Types already, and federated-language's
            # conversion re-checks each one through abc `isinstance` calls (seconds for 10^5).
            return fl.StructType([(e.name or None, type_from_proto(e.value, error))
                                  for e in pb.struct.element], convert=False)
        if kind == "sequence":
            return fl.SequenceType(type_from_proto(pb.sequence.element, error))
        if kind == "federated":
            if pb.federated.placement.WhichOneof("placement") != "value":
                raise error("federated type with a placement label is not supported")
            from federated_language.types import placements
            placement = placements.uri_to_placement_literal(pb.federated.placement.value.uri)
            return fl.FederatedType(type_from_proto(pb.federated.member, error), placement,
                                    pb.federated.all_equal)
        if kind in ("tensor", "placement"):
            return _leaf_type(pb.SerializeToString(deterministic=True))
    except TffexecError:
        raise
    except (ValueError, TypeError, NotImplementedError) as e:
        raise error(f"invalid type in proto: {e}") from None
    raise error("type proto has no kind set" if kind is None else f"unknown type kind {kind!r}")


@functools.lru_cache(maxsize=4096)
def _leaf_type(serialized: bytes) -> Type:
    """A tensor or placement type from its serialized proto, cached: a struct of a million
    elements has a handful of distinct leaf types, and building one costs ~50 us."""
    return fl.Type.from_proto(computation_pb2.Type.FromString(serialized))


def type_to_proto(t: Type) -> computation_pb2.Type:
    """The proto of a type (federated-language's own encoder; kept here for symmetry)."""
    return t.to_proto()


def type_str(t: Type | None) -> str:
    """TFF's compact notation, e.g. `<a=int32,b={float32[2]}@CLIENTS>` (federated-language's str)."""
    if t is None:
        return "<no value>"
    return str(t)



@functools.lru_cache(maxsize=512)
def contains(type_spec: Type, kind: type) -> bool:
    """Whether a type of class `kind` (`fl.SequenceType`, `fl.FunctionType`, ...) occurs anywhere
    in `type_spec`. Types are immutable and hashable, so each distinct type is walked once, not
    on every call that asks."""
    pending = [type_spec]
    while pending:
        t = pending.pop()
        if isinstance(t, kind):
            return True
        if isinstance(t, fl.StructType):
            pending.extend(element for _, element in t.items())
        elif isinstance(t, fl.FederatedType):
            pending.append(t.member)
        elif isinstance(t, fl.SequenceType):
            pending.append(t.element)
        elif isinstance(t, fl.FunctionType):
            pending.extend(x for x in (t.parameter, t.result) if x is not None)
    return False
