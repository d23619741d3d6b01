"""Client columns read straight from a pb file's bytes, for members of one canonical layout.

Why: TFF writes a `{T}@CLIENTS` of tensors as N members that differ only in their numbers;
read through protobuf's Python objects that costs several microseconds per member (seconds
for a million). In the canonical encoding those members are N records at the end of the file
that differ only in their payload (and, for varint lists, in the length bytes that follow from
the payload's length), so numpy can check and decode all of them at once.

Sound, not heuristic: the bytes before the records must be exactly the value's `federated`
header holding only the type that protobuf parsed, and every record's bytes outside its payload
must equal the canonical encoding of a member with member 0's dtype and shape (same field tags,
lengths, dtype, shape). Anything else (another layout, non-canonical encoding, unknown fields)
returns None and the member-by-member decoder runs.
"""
from __future__ import annotations

import numpy as np
from google.protobuf import descriptor

from tffexec.errors import ArgumentError
from tffexec.formats.protos import executor_pb2

_FEDERATED = executor_pb2.Value.DESCRIPTOR.fields_by_name["federated"].number
_FEDERATED_DESCRIPTOR = executor_pb2.Value.DESCRIPTOR.fields_by_name["federated"].message_type
_TYPE = _FEDERATED_DESCRIPTOR.fields_by_name["type"].number
_MEMBERS = _FEDERATED_DESCRIPTOR.fields_by_name["value"].number
_ARRAY = executor_pb2.Value.DESCRIPTOR.fields_by_name["array"].number
_LENGTH_DELIMITED = 2
_FD = descriptor.FieldDescriptor
#: Packed fixed-width list item types -> their little-endian numpy dtype.
_FIXED = {_FD.TYPE_FLOAT: np.dtype("<f4"), _FD.TYPE_DOUBLE: np.dtype("<f8")}
_VARINT = (_FD.TYPE_INT32, _FD.TYPE_INT64, _FD.TYPE_UINT32, _FD.TYPE_UINT64, _FD.TYPE_BOOL)
_MAX_VARINT = 10


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """The canonical encoding of a length-delimited field."""
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _records_start(data: bytes, pb: executor_pb2.Value) -> int | None:
    """Offset in `data` of the first member record when `data` is exactly the `federated`
    field, its canonical length and the canonical encoding of the parsed type (without unknown
    fields) followed by member records; None otherwise."""
    body = b""
    if pb.federated.HasField("type"):
        federated_type = type(pb.federated.type)()
        federated_type.CopyFrom(pb.federated.type)
        federated_type.DiscardUnknownFields()
        body = _field(_TYPE, federated_type.SerializeToString(deterministic=True))
    tag = _varint(_FEDERATED << 3 | _LENGTH_DELIMITED)
    for length_bytes in range(1, _MAX_VARINT + 1):
        length = len(data) - len(tag) - length_bytes
        prefix = tag + _varint(length) + body
        if len(prefix) == len(tag) + length_bytes + len(body):
            return len(prefix) if data[:len(prefix)] == prefix else None
    return None


def _strided_rows(data: bytes, start: int, count: int, header: bytes) -> np.ndarray | None:
    """[count, payload bytes] view of `count` equal-length records from `start` to the end of
    `data`, each `header` + payload; None when they do not tile the bytes or a header differs."""
    if (len(data) - start) % count:
        return None
    stride = (len(data) - start) // count
    if stride < len(header):
        return None
    rows = np.frombuffer(data, np.uint8, count * stride, start).reshape(count, stride)
    if not (rows[:, :len(header)] == np.frombuffer(header, np.uint8)).all():
        return None
    return rows[:, len(header):]


def member_contents(data: bytes, pb: executor_pb2.Value) -> np.ndarray | None:
    """[members, content bytes] (uint8) of a parsed `{T}@CLIENTS` value `pb` whose members
    are `Array`s in raw content laid out canonically in `data`; None otherwise."""
    members = pb.federated.value
    first = type(members[0])()
    first.CopyFrom(members[0])
    first.DiscardUnknownFields()
    size = len(first.array.content)
    record = _field(_MEMBERS, first.SerializeToString(deterministic=True))
    start = _records_start(data, pb)
    if start is None or not record.endswith(first.array.content) or \
            len(record) * len(members) != len(data) - start:
        return None
    return _strided_rows(data, start, len(members), record[:len(record) - size])


class ListRecords:
    """Members in typed lists found laid out canonically in a file's bytes (`member_items`),
    decoded only when `items` is called: the caller checks the decoded size first. Finding
    them allocates a few numbers per member, less than the bytes they were read from."""

    def __init__(self, decode) -> None:
        self._decode = decode

    def items(self) -> np.ndarray:
        """The list items of all members, member after member, as the list field holds them
        (int32, int64, uint32, uint64, bool, float32 or float64)."""
        return self._decode()


def member_items(data: bytes, pb: executor_pb2.Value) -> ListRecords | None:
    """The members of a parsed `{T}@CLIENTS` value `pb` whose members are `Array`s holding one
    typed numeric list each, of member 0's dtype, shape and length, laid out canonically in
    `data`; None otherwise (the per-member decoder then runs)."""
    members = pb.federated.value
    first = members[0].array
    kind = first.WhichOneof("kind")
    if kind is None or first.HasField("content"):
        return None
    list_field = first.DESCRIPTOR.fields_by_name[kind]
    item_type = list_field.message_type.fields_by_name["value"].type
    per_member = len(getattr(first, kind).value)
    start = _records_start(data, pb)
    if start is None or not per_member or (item_type not in _FIXED and item_type not in _VARINT):
        return None
    array = type(first)(dtype=first.dtype)
    if first.HasField("shape"):
        array.shape.dim.extend(first.shape.dim)
        array.shape.unknown_rank = first.shape.unknown_rank
    fixed = array.SerializeToString(deterministic=True)

    def template(payload_size: int) -> bytes:
        """Bytes of a member record before a payload of `payload_size` bytes."""
        payload = bytes(payload_size)
        record = _field(_MEMBERS, _field(_ARRAY, fixed + _field(list_field.number,
                                                                _field(1, payload))))
        return record[:len(record) - payload_size]

    if item_type in _FIXED:
        item_dtype = _FIXED[item_type]
        rows = _strided_rows(data, start, len(members),
                             template(per_member * item_dtype.itemsize))
        if rows is None or rows.shape[1] != per_member * item_dtype.itemsize:
            return None
        return ListRecords(lambda: np.ascontiguousarray(rows).view(item_dtype).reshape(-1)
                           .astype(item_dtype.newbyteorder("=")))
    return _varint_records(data, start, len(members), per_member, template, item_type)


def _varint_records(data: bytes, start: int, count: int, per_member: int, template,
                    item_type: int) -> ListRecords | None:
    """Member records whose payloads are `per_member` varints each.

    A varint's bytes are all >= 0x80 but its last; so are no bytes of a record's template
    (tags and one-byte lengths) but its dimension varints. Each record therefore holds the
    same number of bytes < 0x80 (the template's and one per item), which finds the record
    starts in one pass; each record is then compared with the template of its payload length.
    """
    body = np.frombuffer(data, np.uint8, len(data) - start, start)
    if not body.size or body[-1] >= 0x80:
        return None
    shortest = template(per_member)
    width, ends_per_record = len(shortest), int((np.frombuffer(shortest, np.uint8) < 0x80).sum())
    per_record = ends_per_record + per_member
    starts = _every_nth_end(body, per_record, count)
    if starts is None or starts[0] or (body[starts[1:] - 1] >= 0x80).any():
        return None  # bytes before the first record, or a payload running into the next one
    payload = np.diff(starts, append=body.size) - width
    if payload.min() < per_member or payload.max() > per_member * _MAX_VARINT:
        return None
    sizes = np.flatnonzero(np.bincount(payload))
    templates = np.zeros((int(sizes[-1]) + 1, width), np.uint8)
    for size in sizes.tolist():
        expected = template(size)
        if len(expected) != width or \
                int((np.frombuffer(expected, np.uint8) < 0x80).sum()) != ends_per_record:
            return None
        templates[size] = np.frombuffer(expected, np.uint8)
    for column in range(width):
        if not np.array_equal(body[starts + column], templates[:, column][payload]):
            return None

    def decode() -> np.ndarray:
        raw = np.zeros((count, per_member), np.uint64)
        position = starts + width
        last = body.size - 1
        for item in range(per_member):
            active = np.ones(count, bool)
            for shift in range(_MAX_VARINT):
                byte = body[np.minimum(position, last)]
                bits = (byte & 0x7F).astype(np.uint64) << np.uint64(7 * shift)
                raw[:, item] |= np.where(active, bits, np.uint64(0))
                position = position + active
                active &= byte >= 0x80
            if active.any():  # protobuf refused it when parsing: not reached
                raise ArgumentError("Array: a varint longer than 10 bytes")
        return _as_items(raw.reshape(-1), item_type)

    return ListRecords(decode)


def _every_nth_end(body: np.ndarray, per_record: int, count: int) -> np.ndarray | None:
    """Offsets of the bytes < 0x80 numbered 0, n, 2n, ... (record starts), found a chunk at a
    time (no index of every byte); None unless there are exactly `count` * n of them."""
    starts = np.empty(count, np.int64)
    found = seen = 0
    chunk = 1 << 20
    for offset in range(0, body.size, chunk):
        ends = np.flatnonzero(body[offset:offset + chunk] < 0x80)
        first = (-seen) % per_record
        picked = ends[first::per_record] + offset
        if found + picked.size > count:
            return None
        starts[found:found + picked.size] = picked
        found += picked.size
        seen += ends.size
    if found != count or seen != count * per_record:
        return None
    return starts


def _as_items(raw: np.ndarray, item_type: int) -> np.ndarray:
    """Varints (uint64) as protobuf reads them into a list of `item_type` (32-bit fields keep
    the low 32 bits, bools are nonzero)."""
    if item_type == _FD.TYPE_BOOL:
        return raw != 0
    if item_type == _FD.TYPE_INT64:
        return raw.view(np.int64)
    if item_type == _FD.TYPE_UINT64:
        return raw
    low = (raw & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return low.view(np.int32) if item_type == _FD.TYPE_INT32 else low
