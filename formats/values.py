"""executor.proto `Value` <-> the Python value representation, guided by TFF types.

Reading accepts everything TFF has sent: 0.87's `Array` tensors (typed lists or raw content),
<= 0.82's `Any(TensorProto)` tensors, struct values with or without names (the C++ runtime drops
them; the type hint restores them), federated values with or without their member type, clients
values that the C++ runtime returns as per-client lists even where the type says all_equal, and
literal computations (decoded to arrays, as TFF's Python did). Writing produces exactly what
TFF's Python API writes (names, federated type with placement/all_equal/member), so files
compare byte-for-byte with TFF's.

`normalize`, `infer_clients` and `values_equal` live in their own modules and are re-exported
here because callers think of them as "value" operations.
"""
from __future__ import annotations

import functools

import federated_language as fl
import numpy as np
from federated_language.common_libs import structure
from federated_language.types import placements

from tffexec.errors import ArgumentError
from tffexec.formats import arrays
from tffexec.formats import types as tt
from tffexec.formats.columns import ClientColumns
from tffexec.formats.compare import value_differences, values_equal  # noqa: F401 - re-export
from tffexec.formats.diagnostics import child, item
from tffexec.formats.normalize import infer_clients, normalize  # noqa: F401 - re-export
from tffexec.formats.protos import executor_pb2
from tffexec.formats.sequences import SequenceValue

TENSOR_PROTO_URL = "type.googleapis.com/tensorflow.TensorProto"

__all__ = ["value_from_proto", "value_to_proto", "columnar_clients", "normalize", "infer_clients",
           "values_equal", "value_differences", "SequenceValue"]


def value_from_proto(pb: executor_pb2.Value, type_hint: fl.Type | None = None,
                     path: str = "value") -> tuple[object, fl.Type]:
    """Decode a `Value`; returns (python value, its type).

    Without a hint the type comes from the proto (arrays' dtype/shape, struct names, the
    federated type, the sequence element type, the computation's type). With a hint the value
    is checked against it and the hint's names/member types are used; the returned type is the
    hint, except that an all_equal CLIENTS value read where `{T}@CLIENTS` was expected keeps its
    more specific `T@CLIENTS` type (it cannot be expanded without a client count).
    """
    kind = pb.WhichOneof("value")
    if kind == "array":
        return _tensor(_decode(arrays.array_from_proto, pb.array, path), type_hint, path)
    if kind == "tensor":
        if not pb.tensor.type_url.endswith("tensorflow.TensorProto"):
            raise ArgumentError(f"tensor Any holds {pb.tensor.type_url!r}, expected a "
                                "tensorflow.TensorProto", path=path)
        return _tensor(_decode(arrays.tensor_proto_to_array, pb.tensor.value, path), type_hint,
                       path)
    if kind == "struct":
        return _struct(pb.struct, type_hint, path)
    if kind == "federated":
        return _federated(pb.federated, type_hint, path)
    if kind == "sequence":
        return _sequence(pb.sequence, type_hint, path)
    if kind == "computation":
        return _computation(pb.computation, type_hint, path)
    raise ArgumentError("empty Value message (no tensor, struct, federated, sequence or "
                        "computation set)", path=path)


def _decode(fn, arg, path: str):
    try:
        return fn(arg)
    except (MemoryError, OverflowError) as e:  # a declared size no machine can hold
        raise ArgumentError(f"tensor too large to decode ({type(e).__name__})",
                            path=path) from None
    except ArgumentError as e:
        if e.path is None:
            e.path = path
            e.args = (e.one_line(),)
        raise


def _mismatch(hint: fl.Type, found: str, path: str) -> ArgumentError:
    return ArgumentError(f"expected {tt.type_str(hint)}, found {found}", path=path)


@functools.lru_cache(maxsize=4096)
def _tensor_type(dtype, shape: tuple) -> fl.TensorType:
    """The type of an array (cached: building a TensorType costs ~50 us, and a wide struct
    asks for the same few types a million times)."""
    return fl.TensorType(tt.STRING_DTYPE if tt.is_string(dtype) else dtype, shape)


def _tensor(arr, hint, path):
    actual = _tensor_type(arr.dtype, arr.shape)
    if hint is None:
        return arr, actual
    if not hint.is_assignable_from(actual):
        raise _mismatch(hint, tt.type_str(actual), path)
    return arr, hint


def _struct(spb, hint, path):
    elements = list(spb.element)
    if hint is not None:
        if not isinstance(hint, fl.StructType):
            raise _mismatch(hint, f"a struct of {len(elements)} elements", path)
        if len(hint) != len(elements):
            raise _mismatch(hint, f"a struct of {len(elements)} elements", path)
    names, values, types = [], [], []
    hint_items = list(hint.items()) if hint is not None else [(None, None)] * len(elements)
    for i, (e, (hname, htype)) in enumerate(zip(elements, hint_items)):
        if e.name and hname and e.name != hname:
            raise _mismatch(hint, f"element {i} named {e.name!r} instead of {hname!r}", path)
        name = hname if hint is not None else (e.name or None)
        v, t = value_from_proto(e.value, htype, child(path, name, i))
        names.append(name)
        values.append(v)
        types.append(t)
    return (structure.Struct(list(zip(names, values))),
            fl.StructType(list(zip(names, types))))


def columnar_clients(fpb, hint: fl.Type | None, path: str = "value", contents=None,
                     items=None) -> tuple[ClientColumns, fl.Type] | None:
    """A federated value decoded straight into client columns if all its members are numeric
    scalars of one dtype (`_scalar_members`) or numeric arrays of one dtype and shape in raw
    content (`_raw_members`); None otherwise, or when it is not a per-client value.
    `contents`: the members' raw contents already gathered from the file's bytes
    (`wire_columns.member_contents`), when they could be; `items`: their typed lists found
    there (`wire_columns.member_items`), which may also be of one small fixed shape."""
    return _federated(fpb, hint, path, columns_only=True, contents=contents, items=items)


def _federated(fpb, hint, path, columns_only: bool = False, contents=None, items=None):
    if hint is not None and not isinstance(hint, fl.FederatedType):
        raise _mismatch(hint, "a federated value", path)
    has_type = fpb.HasField("type") and fpb.type.placement.WhichOneof("placement") == "value"
    if has_type:
        try:
            placement = placements.uri_to_placement_literal(fpb.type.placement.value.uri)
        except ValueError:
            raise ArgumentError(f"unknown placement {fpb.type.placement.value.uri!r}",
                                path=path) from None
        all_equal = fpb.type.all_equal
        proto_member = (tt.type_from_proto(fpb.type.member) if fpb.type.HasField("member")
                        else None)
    elif hint is not None:
        placement, all_equal, proto_member = hint.placement, hint.all_equal, None
    else:
        raise ArgumentError("federated value without its type and no type to go by", path=path)
    if hint is not None and hint.placement != placement:
        raise _mismatch(hint, f"a value placed at {placement}", path)
    members = fpb.value
    if all_equal and len(members) != 1:
        raise ArgumentError(f"all_equal federated value has {len(members)} members "
                            "(exactly one expected)", path=path)
    member_hint = hint.member if hint is not None else proto_member
    if hint is not None and proto_member is not None and not hint.member.is_assignable_from(
            proto_member):
        raise _mismatch(hint, f"members of type {tt.type_str(proto_member)}", path)
    fast = None
    if len(members) > 1 and not all_equal:
        fast = (_scalar_members(members, member_hint, path, items)
                or _raw_members(members, member_hint, path, contents))
    if fast is not None and not (hint is not None and hint.all_equal):
        return fast[0], fl.FederatedType(member_hint or fast[1], placement, False)
    if columns_only:
        return None
    decoded = [value_from_proto(m, member_hint, path if all_equal else item(path, i))
               for i, m in enumerate(members)]
    member_type = member_hint or (decoded[0][1] if decoded else None)
    if member_type is None:
        raise ArgumentError("federated value with no members and no member type", path=path)
    if hint is not None and hint.all_equal and not all_equal:
        # The C++ runtime answers every CLIENTS value as a per-client list; TFF's Python side
        # collapses it to one value using the type. Do the same.
        if not decoded:
            raise ArgumentError(f"expected {tt.type_str(hint)}, found no members", path=path)
        return decoded[0][0], hint
    if all_equal:
        return decoded[0][0], fl.FederatedType(member_type, placement, True)
    return [v for v, _ in decoded], fl.FederatedType(member_type, placement, False)


def _scalar_members(members, hint, path: str, records=None) -> tuple[list, fl.Type] | None:
    """(member values, member type) decoded at once when all members are numeric scalars of
    one dtype in typed lists (how TFF writes a `{T}@CLIENTS` of scalars): one pass, one numpy
    array, one type check, instead of one full decode per client. None when any member
    differs: the general path then decodes (and reports on) each member.
    `records`: the members' lists already found equal in layout in the file's bytes
    (`wire_columns.ListRecords`): no pass over the members, and a fixed shape is allowed.
    """
    first = members[0]
    if first.WhichOneof("value") != "array":
        return None
    dtype_enum = first.array.dtype
    field = first.array.WhichOneof("kind")
    if field is None or field == "string_list":
        return None
    if records is not None:
        shape = (len(members), *first.array.shape.dim)
        try:
            decoded = _decode(arrays.items_to_array,
                              (records.items, dtype_enum, field, shape), path)
        except ArgumentError:
            return None  # the general path names the member at fault
        _, member_type = _tensor(decoded[0, ...], hint, item(path, 0))
        return ClientColumns(member_type, [decoded]), member_type
    if first.array.shape.dim:
        return None
    items = []
    append = items.append
    for m in members:
        a = m.array  # an empty default for another kind: then no list value below
        if a.dtype != dtype_enum or a.shape.ByteSize() or a.content:
            return None
        listed = getattr(a, field).value
        if len(listed) != 1:
            return None
        append(listed[0])
    try:
        decoded = _decode(arrays.array_from_proto, _one_array(first.array, field, items), path)
    except ArgumentError:
        return None  # the general path names the member at fault
    _, member_type = _tensor(decoded[0, ...], hint, item(path, 0))
    return ClientColumns(member_type, [decoded]), member_type


def _raw_members(members, hint, path: str, contents=None
                 ) -> tuple[ClientColumns, fl.Type] | None:
    """(client columns, member type) when all members are numeric `Array`s of one dtype and one
    shape in raw `content` (how TFF 0.87 writes every non-scalar tensor): their bytes are copied
    into one preallocated buffer and decoded as one [clients, *shape] array. None when any
    member differs: the general path then decodes (and reports on) each member.

    The caller has checked the declared sizes (all members are as large as the first, which
    `loading` checks against the value limit before calling).
    """
    first = members[0].array if members[0].WhichOneof("value") == "array" else None
    if first is None or not first.HasField("content") or first.WhichOneof("kind") is not None \
            or first.shape.unknown_rank:
        return None
    dtype_enum, shape, size = first.dtype, first.shape, len(first.content)
    dims = list(shape.dim)
    count = len(members)
    if contents is not None:  # gathered from the bytes: every member checked there
        members, buffer = (), np.ascontiguousarray(contents).reshape(-1)
    else:
        buffer = bytearray(size * count)
    offset = 0
    for m in members:
        a = m.array  # an empty default for another kind: its dtype or content differ below
        content = a.content
        if len(content) != size or a.dtype != dtype_enum or a.shape != shape or \
                a.WhichOneof("kind") is not None:
            return None
        buffer[offset:offset + size] = content
        offset += size
    try:
        dtype = tt.dtype_from_enum(dtype_enum)
        if tt.is_string(dtype):
            return None
        column = _decode(arrays.raw_to_array, (buffer, dtype, (count, *dims)), path)
        _, member_type = _tensor(column[0], hint, item(path, 0))
    except ArgumentError:
        return None  # the general path names the member at fault
    return ClientColumns(member_type, [column]), member_type


def _one_array(template, field: str, items: list):
    """An `Array` like `template` (a scalar) whose typed list holds `items`, shaped [len]."""
    from federated_language.proto import array_pb2  # noqa: PLC0415

    pb = array_pb2.Array(dtype=template.dtype)
    pb.shape.dim.append(len(items))
    getattr(pb, field).value.extend(items)
    return pb


def _sequence(spb, hint, path):
    if hint is not None and not isinstance(hint, fl.SequenceType):
        raise _mismatch(hint, "a sequence", path)
    if spb.WhichOneof("value") == "zipped_saved_model":
        raise ArgumentError("sequence in the zipped SavedModel form (TFF < 0.20) is not "
                            "supported", path=path)
    if spb.HasField("element_type"):
        element = tt.type_from_proto(spb.element_type)
    elif hint is not None:
        element = hint.element
    else:
        raise ArgumentError("sequence without element type and no type to go by", path=path)
    if hint is not None and not hint.element.is_assignable_from(element):
        raise _mismatch(hint, f"a sequence of {tt.type_str(element)}", path)
    return SequenceValue(element, graph_def=spb.serialized_graph_def), fl.SequenceType(element)


def _computation(comp, hint, path):
    if comp.WhichOneof("computation") == "literal":
        return _tensor(_decode(arrays.array_from_proto, comp.literal.value, path), hint, path)
    actual = tt.type_from_proto(comp.type) if comp.HasField("type") else hint
    if actual is None:
        raise ArgumentError("computation value without a type", path=path)
    if hint is not None and not hint.is_assignable_from(actual):
        raise _mismatch(hint, f"a computation of type {tt.type_str(actual)}", path)
    return comp, hint or actual


def value_to_proto(value: object, type_spec: fl.Type, *, legacy_tensors: bool = False,
                   path: str = "value") -> executor_pb2.Value:
    """Encode a value of `type_spec` (checked and normalized first) as TFF's Python writes it.

    `legacy_tensors=True` writes tensors in TFF <= 0.82's `Any(TensorProto)` form instead of
    `Array`, for answering old clients in the form they used.
    """
    pb = executor_pb2.Value()
    _fill(pb, normalize(value, type_spec, path), type_spec, legacy_tensors)
    return pb


def _fill(pb: executor_pb2.Value, v, t, legacy: bool) -> None:
    """Write `v` into `pb` in place (no per-level copies of large nested values)."""
    if isinstance(t, fl.TensorType):
        if legacy:
            pb.tensor.type_url = TENSOR_PROTO_URL
            pb.tensor.value = arrays.array_to_tensor_proto(v).SerializeToString()
        else:
            pb.array.CopyFrom(arrays.array_to_proto(v))
    elif isinstance(t, fl.StructType):
        pb.struct.SetInParent()
        for (n, et), x in zip(t.items(), v):
            _fill(pb.struct.element.add(name=n or "").value, x, et, legacy)
    elif isinstance(t, fl.FederatedType):
        pb.federated.type.CopyFrom(t.to_proto().federated)
        for m in ([v] if t.all_equal else v):
            _fill(pb.federated.value.add(), m, t.member, legacy)
    elif isinstance(t, fl.SequenceType):
        pb.sequence.element_type.CopyFrom(v.element_type.to_proto())
        pb.sequence.serialized_graph_def = v.graph_def()
    elif isinstance(t, fl.FunctionType):
        pb.computation.CopyFrom(v)
    else:
        raise ArgumentError(f"values of type {tt.type_str(t)} cannot be serialized")
