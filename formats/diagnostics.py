"""Paths inside values and short descriptions of what was found, for one-line error messages.

Every check in tffexec.formats reports *where* in a value it failed, in one notation:
`arg.model[1].w` — `.name` for a named struct element, `[i]` for an unnamed element, a client
of a `{T}@CLIENTS` value or an element of a sequence. npz keys use `/` instead (see npzfmt).
"""
from __future__ import annotations

import numpy as np
from federated_language.common_libs import structure

from tffexec.formats import types as tt
from tffexec.formats.columns import ClientColumns
from tffexec.formats.sequences import SequenceValue


def child(path: str, name: str | None, index: int) -> str:
    """Path of a struct element: `.name` when it has a name, `[index]` otherwise."""
    return f"{path}.{name}" if name else f"{path}[{index}]"


def item(path: str, index: int) -> str:
    """Path of a client's member or a sequence element."""
    return f"{path}[{index}]"


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: object) -> str:
    """What a value is, in a few words, for "expected X, found Y" messages."""
    if value is None:
        return "nothing (null/None)"
    if isinstance(value, np.ndarray):
        dims = ",".join(str(d) for d in value.shape)
        kind = "string" if value.dtype.kind in "OSU" else value.dtype.name
        return f"an array {kind}[{dims}]" if value.ndim else f"a {kind} scalar array"
    if isinstance(value, np.generic):
        return f"a numpy {value.dtype.name} {_short(repr(value.item()))}"
    if isinstance(value, bool):
        return f"a bool {value}"
    if isinstance(value, (int, float, complex)):
        return f"a {type(value).__name__} {_short(repr(value))}"
    if isinstance(value, (str, bytes)):
        return f"a {type(value).__name__} {_short(repr(value))}"
    if isinstance(value, structure.Struct):
        names = [n if n else "_" for n, _ in structure.iter_elements(value)]
        return f"a struct with {len(names)} elements ({', '.join(names[:8])})"
    if isinstance(value, dict):
        keys = [str(k) for k in value]
        return f"an object with keys {_short(', '.join(keys), 60) or '(none)'}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, SequenceValue):
        return f"a sequence of {tt.type_str(value.element_type)}"
    if isinstance(value, ClientColumns):
        return f"client columns of {len(value)} clients"
    return f"a {type(value).__module__}.{type(value).__qualname__}"
