"""Client columns read straight from a pb file's bytes, for members laid out at a fixed stride.

Why: TFF writes a `{T}@CLIENTS` of tensors as N members that differ only in their raw
`content` bytes; read through protobuf's Python objects that costs several microseconds per
member (seconds for a million). In the canonical encoding those members are N records of equal
length at the end of the file, so their contents are one strided numpy view of the bytes.

Sound, not heuristic: the bytes before the records must be exactly the value's `federated`
header holding only the type that protobuf parsed, and every record's bytes up to its content
must equal the canonical encoding of member 0 (same field tag, length, dtype, shape and content
length). Anything else (another layout, non-canonical encoding, unknown fields) returns None and
the member-by-member decoder runs.
"""
from __future__ import annotations

import numpy as np

from tffexec.formats.protos import executor_pb2

_FEDERATED = executor_pb2.Value.DESCRIPTOR.fields_by_name["federated"].number
_FEDERATED_DESCRIPTOR = executor_pb2.Value.DESCRIPTOR.fields_by_name["federated"].message_type
_TYPE = _FEDERATED_DESCRIPTOR.fields_by_name["type"].number
_MEMBERS = _FEDERATED_DESCRIPTOR.fields_by_name["value"].number
_LENGTH_DELIMITED = 2


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


def member_contents(data: bytes, pb: executor_pb2.Value) -> np.ndarray | None:
    """[members, content bytes] (uint8) of a parsed `{T}@CLIENTS` value `pb` whose members
    are `Array`s in raw content laid out canonically in `data`; None otherwise."""
    members = pb.federated.value
    count = len(members)
    first = members[0]
    size = len(first.array.content)
    record = _field(_MEMBERS, first.SerializeToString(deterministic=True))
    stride = len(record)
    header = record[:stride - size]
    if not record.endswith(first.array.content) or count * stride > len(data):
        return None
    body = _field(_TYPE, pb.federated.type.SerializeToString(deterministic=True)) \
        if pb.federated.HasField("type") else b""
    body_length = len(body) + count * stride
    expected_prefix = _varint(_FEDERATED << 3 | _LENGTH_DELIMITED) + _varint(body_length) + body
    if len(expected_prefix) + count * stride != len(data) or \
            data[:len(expected_prefix)] != expected_prefix:
        return None
    rows = np.frombuffer(data, np.uint8, count * stride, len(expected_prefix)).reshape(
        count, stride)
    if not (rows[:, :len(header)] == np.frombuffer(header, np.uint8)).all():
        return None
    return rows[:, len(header):]
