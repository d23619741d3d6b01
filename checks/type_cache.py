"""Types and type notations from their protos, each worked out once per distinct proto.

Why: one intrinsic's type appears several times in an AST (the intrinsic node, the call's
function, often the enclosing lambda), and the static checks read each of them. For a type of
10^5 or 10^6 struct elements every conversion costs seconds, so:

- the notation (`notation`) is written from the proto (`formats.type_notation`, linear) and
  cached by the proto's bytes;
- a conversion that is needed (`type_of`) uses tffexec's builder (`formats.types`), which
  skips federated-language's per-element re-checking, and is cached by the proto's bytes.
"""
from __future__ import annotations

from typing import Any, Callable

from federated_language.proto import computation_pb2

from tffexec.formats import type_notation
from tffexec.formats.type_notation import ByBytes


def _convert(proto: computation_pb2.Type) -> Any:
    from tffexec.formats import types  # noqa: PLC0415 - numpy, ml_dtypes

    return types.type_from_proto(proto)


#: The `federated_language.Type` of a proto (raises `ArgumentError` for an invalid one).
type_of: Callable[[computation_pb2.Type], Any] = ByBytes(_convert)

#: The compact notation of a proto (raises `ValueError` for an invalid one).
notation: Callable[[computation_pb2.Type], str] = type_notation.notation



def placement_uris(type_proto: computation_pb2.Type) -> frozenset[str]:
    """The placement URIs a type proto names, known ones or not (every node's type is read)."""
    try:
        return type_notation.summary(type_proto).placement_uris  # cached; valid types only
    except (ValueError, RecursionError):
        pass
    found: set[str] = set()
    stack = [type_proto]
    while stack:
        t = stack.pop()
        which = t.WhichOneof("type")
        if which == "federated":
            spec = t.federated.placement
            if spec.WhichOneof("placement") == "value":
                found.add(spec.value.uri)
            stack.append(t.federated.member)
        elif which == "function":
            if t.function.HasField("parameter"):
                stack.append(t.function.parameter)
            stack.append(t.function.result)
        elif which == "struct":
            stack.extend(element.value for element in t.struct.element)
        elif which == "sequence":
            stack.append(t.sequence.element)
    return frozenset(found)


#: A struct of tensors (and such structs) wider than this is replaced by a stand-in in
#: `compact_type_of`; and types whose notation is shorter than `_COMPACT_CHARS` are never rewritten.
_WIDE = 64
_COMPACT_CHARS = 1 << 14


def compact_type_of(proto: computation_pb2.Type) -> Any | None:
    """The type of `proto` with every wide struct of tensors replaced by a stand-in tensor type
    (one per distinct struct), or None when `proto` is small enough to convert as it is.

    Why: federated-language builds a federated or sequence type holding a struct of 10^6
    elements in tens of seconds. An intrinsic's type check only asks whether the same struct
    appears where its definition has the same type parameter; stand-ins answer that, since equal
    stand-ins mean byte-equal structs. A check that passes on the compact type passes on the real
    one; a check that fails must be repeated on the real type for its exact reason.
    """
    try:
        if len(type_notation.notation(proto)) < _COMPACT_CHARS:  # cached: no walk, no ByteSize
            return None
    except (ValueError, RecursionError):
        return None
    return type_of(_with_stand_ins(proto, {})[0])


def _with_stand_ins(pb: computation_pb2.Type,
                    table: dict[bytes, int]) -> tuple[computation_pb2.Type, bool]:
    """(`pb` with its wide structs of tensors replaced, whether `pb` holds only tensors)."""
    kind = pb.WhichOneof("type")
    if kind == "tensor":
        return pb, True
    out = computation_pb2.Type()
    if kind == "struct" and len(pb.struct.element) > _WIDE and _plain(pb):
        index = table.setdefault(pb.SerializeToString(), len(table))
        out.tensor.dtype = 18  # DT_COMPLEX128, shaped as no definition is: [7919, index]
        out.tensor.dims.extend([7919, index])
        return out, True
    if kind == "struct":
        elements = [(e.name, *_with_stand_ins(e.value, table)) for e in pb.struct.element]
        plain = all(element_plain for _, _, element_plain in elements)
        for name, value, _ in elements:
            out.struct.element.add(name=name, value=value)
        if not elements:
            out.struct.SetInParent()
        return out, plain
    if kind == "federated":
        out.federated.placement.CopyFrom(pb.federated.placement)
        out.federated.all_equal = pb.federated.all_equal
        out.federated.member.CopyFrom(_with_stand_ins(pb.federated.member, table)[0])
    elif kind == "sequence":
        out.sequence.element.CopyFrom(_with_stand_ins(pb.sequence.element, table)[0])
    elif kind == "function":
        if pb.function.HasField("parameter"):
            out.function.parameter.CopyFrom(_with_stand_ins(pb.function.parameter, table)[0])
        out.function.result.CopyFrom(_with_stand_ins(pb.function.result, table)[0])
    else:
        return pb, False
    return out, False


def _plain(pb: computation_pb2.Type) -> bool:
    """Whether a (valid) type holds only tensors and structs; from the cached walk."""
    try:
        return type_notation.summary(pb).plain
    except (ValueError, RecursionError):
        return False
