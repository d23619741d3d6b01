"""TFF's compact type notation, written straight from a `Type` proto, in time linear in its size.

Why not `str(federated_language.Type.from_proto(pb))`: for a struct of 10^5 elements that takes
about 10 s (converting each element through abc-checked `isinstance` calls, then a string
builder that appends to one growing line), and `validate` needs the notation of the
signature, the parameter and the result. Here each node of the proto is visited once, each
distinct tensor type is named once, and the text is built with `join`.

The notation is federated-language's own (`<a=int32,b={float32[?]}@CLIENTS>`, `(int32 -> int32)`,
`int32*`), and a proto federated-language would refuse is refused here too (`ValueError`), for the
same reasons: no kind set (or an abstract type, which its `from_proto` does not read), an unknown
dtype, a placement label or unknown placement URI, a struct with repeated or reserved element
names, a sequence of federated/function/sequence types, a federated type holding a federated
or function type. tests/test_wide_types.py checks that both agree, text and refusals, on every
committed case and on generated types.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

from federated_language.proto import computation_pb2

#: Bits of what a type holds (itself included); sequences and federated types restrict them.
_FEDERATED, _FUNCTION, _SEQUENCE, _PLACEMENT = 1, 2, 4, 8
#: The placements a valid type can name, and their bits.
_URI_BITS = {"clients": 16, "server": 32}


@dataclasses.dataclass(frozen=True)
class TypeSummary:
    """What one walk of a valid type proto tells: its notation and what kinds it holds."""

    text: str
    bits: int

    @property
    def placement_uris(self) -> frozenset[str]:
        """The placement URIs the type names."""
        return frozenset(uri for uri, bit in _URI_BITS.items() if self.bits & bit)

    @property
    def plain(self) -> bool:
        """Whether it holds only tensors and structs (no federated, function, sequence or
        placement type)."""
        return not self.bits & (_FEDERATED | _FUNCTION | _SEQUENCE | _PLACEMENT)


class ByBytes:
    """A small cache of what is worked out from a type proto, keyed by its serialization
    (protos are not hashable; serializing is ~20x faster than walking a wide type in Python).

    Cleared when full rather than ordered: the few distinct types of one computation fit, and
    a process that checks many computations only works some out again."""

    #: Entries kept: each key may be megabytes (the serialized type of a wide struct).
    SIZE = 64

    def __init__(self, compute: Callable[[computation_pb2.Type], Any]):
        self._compute = compute
        self._entries: dict[bytes, Any] = {}

    def __call__(self, proto: computation_pb2.Type) -> Any:
        key = proto.SerializeToString()  # Type has no map fields: equal protos, equal bytes
        try:
            return self._entries[key]
        except KeyError:
            pass
        value = self._compute(proto)
        if len(self._entries) >= self.SIZE:
            self._entries.clear()
        self._entries[key] = value
        return value


def type_notation(pb: computation_pb2.Type) -> str:
    """The compact notation of `pb`, e.g. `(<x={float32}@CLIENTS> -> float32@SERVER)`.

    Raises:
      ValueError: `pb` is not a type federated-language can read (see the module docstring).
    """
    return _notation(pb)[0]


#: The `TypeSummary` of a type proto (raises `ValueError` as `type_notation` does), cached by
#: the proto's bytes: a computation repeats its wide types at many nodes.
summary: Callable[[computation_pb2.Type], TypeSummary] = ByBytes(
    lambda pb: TypeSummary(*_walk(pb)))

#: Structs wider than this are summarized once per distinct proto (`summary`), also when they
#: occur inside other types: a wide struct is walked once, not once per type that holds it.
_WIDE = 64


def notation(pb: computation_pb2.Type) -> str:
    """`type_notation`, cached (see `summary`)."""
    return summary(pb).text


def _notation(pb: computation_pb2.Type) -> tuple[str, int]:
    """(the notation of `pb`, the bits of what it holds), through the cache for wide structs."""
    if pb.WhichOneof("type") == "struct" and len(pb.struct.element) > _WIDE:
        found = summary(pb)
        return found.text, found.bits
    return _walk(pb)


def _walk(pb: computation_pb2.Type) -> tuple[str, int]:
    """(the notation of `pb`, the bits (`_FEDERATED`, ...) of what it holds)."""
    kind = pb.WhichOneof("type")
    if kind == "tensor":
        tensor = pb.tensor
        return _tensor(tensor.dtype, tuple(tensor.dims), tensor.unknown_rank), 0
    if kind == "struct":
        return _struct(pb.struct)
    if kind == "federated":
        return _federated(pb.federated)
    if kind == "function":
        function = pb.function
        parameter, held = (_notation(function.parameter) if function.HasField("parameter")
                           else ("", 0))
        result, result_held = _notation(function.result)
        return f"({parameter} -> {result})", held | result_held | _FUNCTION
    if kind == "sequence":
        element, held = _notation(pb.sequence.element)
        if held & (_FEDERATED | _FUNCTION | _SEQUENCE):
            raise ValueError(f"a sequence of {element} holds a federated, function or "
                             "sequence type")
        return element + "*", held | _SEQUENCE
    if kind == "placement":
        return "placement", _PLACEMENT
    raise ValueError("type proto has no kind set" if kind is None
                     else f"unsupported type kind {kind!r}")


def _struct(struct: computation_pb2.StructType) -> tuple[str, int]:
    parts: list[str] = []
    seen: set[str] = set()
    held = 0
    reserved = _reserved_names()
    for element in struct.element:
        text, element_held = _notation(element.value)
        held |= element_held
        name = element.name
        if name:
            if name in seen or name in reserved:
                raise ValueError(f"struct element name {name!r} is "
                                 f"{'repeated' if name in seen else 'reserved'}")
            seen.add(name)
            text = f"{name}={text}"
        parts.append(text)
    return "<" + ",".join(parts) + ">", held


def _federated(federated: computation_pb2.FederatedType) -> tuple[str, int]:
    placement = federated.placement
    if placement.WhichOneof("placement") != "value":
        raise ValueError("federated type without a placement URI (labels are not supported)")
    uri = placement.value.uri
    where = _placement_name(uri)
    member, held = _notation(federated.member)
    if held & (_FEDERATED | _FUNCTION):
        raise ValueError(f"federated type whose member {member} holds a federated or "
                         "function type")
    text = f"{member}@{where}" if federated.all_equal else f"{{{member}}}@{where}"
    return text, held | _FEDERATED | _URI_BITS.get(uri, 0)


@functools.lru_cache(maxsize=4096)
def _tensor(dtype: int, dims: tuple[int, ...], unknown_rank: bool) -> str:
    """A tensor type's notation; cached, since wide structs repeat a few tensor types."""
    from federated_language.types import dtype_utils  # noqa: PLC0415 - numpy
    import numpy as np  # noqa: PLC0415

    try:
        name = np.dtype(dtype_utils.from_proto(dtype)).name
    except NotImplementedError as e:
        raise ValueError(str(e)) from None
    if unknown_rank:
        return f"{name!r}(shape=None)"
    if not dims:
        return name
    return f"{name}[{','.join(str(d) if d >= 0 else '?' for d in dims)}]"


@functools.lru_cache(maxsize=64)
def _placement_name(uri: str) -> str:
    from federated_language.types import placements  # noqa: PLC0415

    return str(placements.uri_to_placement_literal(uri))  # raises ValueError


@functools.lru_cache(maxsize=1)
def _reserved_names() -> frozenset[str]:
    """Names a struct element may not have: federated-language's StructType attributes."""
    import federated_language as fl  # noqa: PLC0415
    from federated_language.common_libs import structure  # noqa: PLC0415

    return frozenset(dir(fl.StructType)) | {"_asdict", *structure.Struct.__slots__}
