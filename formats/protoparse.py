"""Diagnose protobuf bytes that do not parse or parse as the wrong message.

Why: protobuf's parser says only "Error parsing message" whether the bytes are truncated, of
another message type, or nested deeper than its recursion limit (100), and it silently accepts
bytes of a different message as long as the wire types happen to fit, keeping the rest as
unknown fields. tffexec must tell the user which of these it is, naming where.
"""
from __future__ import annotations

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf import unknown_fields as _unknown

#: protobuf's default recursion limit (C++ and upb alike): messages nested more than this many
#: levels below the top one do not parse.
RECURSION_LIMIT = 100


def _varint(data: memoryview, pos: int, end: int) -> tuple[int | None, int]:
    result = shift = 0
    while pos < end and shift < 70:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
    return None, pos


def message_depth(data: bytes, descriptor: _descriptor.Descriptor,
                  stop_at: int = RECURSION_LIMIT + 10) -> int:
    """Deepest message nesting in `data` read as `descriptor` (top level = 0; a parse fails
    beyond `RECURSION_LIMIT`).

    Follows the schema (only fields declared as messages are descended into), stops quietly at
    malformed bytes, and gives up once `stop_at` is reached; used only after a parse failed.
    """
    view = memoryview(data)
    deepest = 0
    stack = [(0, len(data), descriptor, 0)]
    while stack:
        pos, end, desc, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest >= stop_at:
            return deepest
        while pos < end:
            tag, pos = _varint(view, pos, end)
            if tag is None:
                break
            wire = tag & 7
            if wire == 0:
                value, pos = _varint(view, pos, end)
                if value is None:
                    break
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                length, pos = _varint(view, pos, end)
                if length is None or pos + length > end:
                    break
                field = desc.fields_by_number.get(tag >> 3)
                if field is not None and field.message_type is not None:
                    stack.append((pos, pos + length, field.message_type, depth + 1))
                pos += length
            else:
                break
    return deepest


def unknown_fields(msg: _message.Message, path: str = "") -> list[tuple[str, int]]:
    """(path, field number) of every unknown field in `msg` and the messages inside it.

    `google.protobuf.Any` payloads are opaque bytes here and are not inspected.
    """
    found = [(path or msg.DESCRIPTOR.name, f.field_number)
             for f in _unknown.UnknownFieldSet(msg)]
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        sub = f"{path}.{field.name}" if path else field.name
        for item_path, item in _message_items(field, value, sub):
            found.extend(unknown_fields(item, item_path))
    return found


def _message_items(field: _descriptor.FieldDescriptor, value, sub: str):
    """(path, message) of a message-typed field's value: a message, a repeated field, or a map
    (whose values may be messages; its keys are not)."""
    if isinstance(value, _message.Message):
        yield sub, value
    elif field.message_type.GetOptions().map_entry:
        for key in value:
            item = value[key]
            if isinstance(item, _message.Message):
                yield f"{sub}[{key!r}]", item
    else:  # repeated message field
        for i, v in enumerate(value):
            yield f"{sub}[{i}]", v


def messages_of_type(msg: _message.Message, full_name: str, path: str = ""):
    """Yield (path, message) for every message of type `full_name` inside `msg` (inclusive)."""
    if msg.DESCRIPTOR.full_name == full_name:
        yield path, msg
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        sub = f"{path}.{field.name}" if path else field.name
        for item_path, item in _message_items(field, value, sub):
            yield from messages_of_type(item, full_name, item_path)


def try_parse(cls: type[_message.Message], data: bytes) -> _message.Message | None:
    """The parsed message, or None when the bytes do not parse as `cls`."""
    msg = cls()
    try:
        msg.ParseFromString(data)
    except (_message.DecodeError, RuntimeWarning, ValueError):
        return None
    return msg
