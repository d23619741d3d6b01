"""Plain, hand-editable JSON for values and for argument skeletons (`tffexec template`).

Why a module of its own: the lossless `tffexec-value/1` envelope (jsonfmt) is what tools exchange;
people fill in and read the *plain* form that follows the parameter type (numbers and nested lists
for tensors, objects for named structs, lists for unnamed ones, one list entry per client for
`{T}@CLIENTS`, the bare member for SERVER and all-equal values, a list of elements for a sequence).
jsonfmt reads that form; this module writes it, and lays it out so a person can edit it: objects
one key per line, innermost lists of numbers on one line.
"""
from __future__ import annotations

import json

import federated_language as fl
import numpy as np

from tffexec.errors import ArgumentError
from tffexec.formats import jsonfmt
from tffexec.formats import types as tt
from tffexec.formats.normalize import normalize

#: The size given to dimensions of unknown length (`float32[?,3]`) in a template.
UNKNOWN_DIM = 1


def to_plain(value: object, type_spec: fl.Type) -> object:
    """The plain JSON form (Python lists/dicts/scalars) of a value of `type_spec`."""
    return _plain(normalize(value, type_spec, "value"), type_spec)


def _plain(value: object, t: fl.Type) -> object:
    if isinstance(t, fl.TensorType):
        return jsonfmt._leaves_to_json(np.asarray(value))  # noqa: SLF001 - same encoding rules
    if isinstance(t, fl.StructType):
        items = list(t.items())
        members = [_plain(v, et) for (_, et), v in zip(items, value)]
        if items and all(name for name, _ in items):
            return {name: m for (name, _), m in zip(items, members)}
        if any(name for name, _ in items):  # partly named: unnamed elements keyed by index
            return {(name or str(i)): m for i, ((name, _), m) in enumerate(zip(items, members))}
        return members
    if isinstance(t, fl.FederatedType):
        if t.all_equal:
            return _plain(value, t.member)
        return [_plain(m, t.member) for m in value]
    if isinstance(t, fl.SequenceType):
        return [_plain(e, t.element) for e in value.elements()]
    raise ArgumentError(f"values of type {tt.type_str(t)} have no plain JSON form")


def skeleton(type_spec: fl.Type, clients: int = 1) -> object:
    """Plain JSON of zeros of the right shapes for `type_spec`, with `clients` clients.

    Dimensions of unknown length get `UNKNOWN_DIM` entries and a sequence gets one element, so the
    skeleton loads back as a value of the type (and runs) before anyone edits it.
    """
    if isinstance(type_spec, fl.TensorType):
        dtype = tt.value_dtype(type_spec)
        shape = type_spec.shape
        dims = () if shape is None else tuple(UNKNOWN_DIM if d is None else d for d in shape)
        if tt.is_string(dtype):
            return np.full(dims, "", dtype=object).tolist()
        if dtype.kind == "c":
            return np.zeros(dims + (2,)).tolist()  # [re, im] pairs
        if dtype.kind == "b":
            return np.zeros(dims, dtype=bool).tolist()
        return np.zeros(dims, dtype=float if tt.is_floating(dtype) else int).tolist()
    if isinstance(type_spec, fl.StructType):
        items = list(type_spec.items())
        members = [skeleton(et, clients) for _, et in items]
        if items and any(name for name, _ in items):
            return {(name or str(i)): m for i, ((name, _), m) in enumerate(zip(items, members))}
        return members
    if isinstance(type_spec, fl.FederatedType):
        member = skeleton(type_spec.member, clients)
        if type_spec.all_equal:
            return member
        return [member] + [json.loads(json.dumps(member)) for _ in range(clients - 1)]
    if isinstance(type_spec, fl.SequenceType):
        return [skeleton(type_spec.element, clients)]
    raise ArgumentError(f"cannot write a skeleton for a value of type {tt.type_str(type_spec)} "
                        "(functions cannot be given as JSON)")


def dumps(obj: object) -> str:
    """JSON text for people: one object key per line, innermost lists on one line."""
    parts: list[str] = []
    _dump(obj, 0, parts)
    return "".join(parts) + "\n"


def _is_flat(obj: object) -> bool:
    return not isinstance(obj, (list, dict)) or (
        isinstance(obj, list) and all(not isinstance(x, (dict, list)) or _is_pair(x) for x in obj))


def _is_pair(x: object) -> bool:  # complex numbers [re, im] and {"base64": ...} stay inline
    return (isinstance(x, list) and len(x) == 2 and all(not isinstance(v, (list, dict)) for v in x)
            ) or (isinstance(x, dict) and list(x) == ["base64"])


def _dump(obj: object, indent: int, parts: list[str]) -> None:
    pad = " " * (indent + 1)
    if _is_flat(obj) or _is_pair(obj):
        parts.append(json.dumps(obj, ensure_ascii=False, allow_nan=False))
        return
    if isinstance(obj, dict):
        if not obj:
            parts.append("{}")
            return
        parts.append("{\n")
        for i, (key, value) in enumerate(obj.items()):
            parts.append(f"{pad}{json.dumps(key, ensure_ascii=False)}: ")
            _dump(value, indent + 1, parts)
            parts.append(",\n" if i < len(obj) - 1 else "\n")
        parts.append(" " * indent + "}")
        return
    parts.append("[\n")
    for i, value in enumerate(obj):
        parts.append(pad)
        _dump(value, indent + 1, parts)
        parts.append(",\n" if i < len(obj) - 1 else "\n")
    parts.append(" " * indent + "]")
