"""Values as numpy `.npz` archives: one array per tensor leaf, keyed by its path.

Why npz: large tensor arguments (model weights, per-client data) round-trip exactly and load
fast, without JSON's text overhead, and any numpy user can write them.

Layout:
  * key = the leaf's path with `/` between parts, each part an element name or, for unnamed
    elements, its index (`model/0`, `data/x`); a top-level tensor that is not inside a struct
    uses the key `value`. Federated levels add no part.
  * a `{T}@CLIENTS` leaf is stacked along a new leading client axis when all clients' shapes
    agree, else stored per client as `path/#<client>` (`data/x/#0`, `data/x/#1`, ...). Stacked
    arrays are read as client columns (`formats/columns.py`), never split into members.
  * strings are stored as numpy unicode arrays (bytes that are not UTF-8: numpy `S` arrays);
    bfloat16 as float32 (exact), since numpy saves bfloat16 as opaque 2-byte records.
  * loading always uses `allow_pickle=False`; sequences and computations are not supported.
"""
from __future__ import annotations

import re
import zipfile
from typing import BinaryIO, Callable

import federated_language as fl
import numpy as np
from federated_language.common_libs import structure

from tffexec.errors import ArgumentError
from tffexec.formats import types as tt
from tffexec.formats.columns import ClientColumns
from tffexec.formats.diagnostics import child
from tffexec.formats.normalize import normalize

TOP_KEY = "value"


def _key(parts: list[str]) -> str:
    return "/".join(parts) if parts else TOP_KEY


def _unsupported(t: fl.Type, parts: list[str]) -> ArgumentError:
    what = "sequences" if isinstance(t, fl.SequenceType) else f"values of type {tt.type_str(t)}"
    return ArgumentError(f"{what} are not supported in npz (at key {_key(parts)!r}); use the pb "
                         "or json format")


def _leaves(t: fl.Type, parts: list[str], index: tuple = ()
            ) -> list[tuple[list[str], tuple, fl.TensorType]]:
    """(key parts, element indices, tensor type) of every tensor leaf below t, in order."""
    if isinstance(t, fl.TensorType):
        return [(parts, index, t)]
    if isinstance(t, fl.StructType):
        return [leaf for i, (n, et) in enumerate(t.items())
                for leaf in _leaves(et, parts + [n or str(i)], index + (i,))]
    if isinstance(t, fl.FederatedType):
        return _leaves(t.member, parts, index)
    raise _unsupported(t, parts)


def _assemble(t: fl.Type, parts: list[str], get: Callable[[list[str]], object]) -> object:
    """Rebuild a (non-federated) value of t from its leaves, `get(parts)` giving each leaf."""
    if isinstance(t, fl.TensorType):
        return get(parts)
    if isinstance(t, fl.StructType):
        return structure.Struct([(n, _assemble(et, parts + [n or str(i)], get))
                                 for i, (n, et) in enumerate(t.items())])
    raise _unsupported(t, parts)


# ---------------------------------------------------------------------------------- writing

def value_to_npz(value: object, type_spec: fl.Type, fileobj: BinaryIO) -> None:
    """Write `value` (normalized and checked against `type_spec` first) as an npz archive."""
    value = normalize(value, type_spec, "value")
    out: dict[str, np.ndarray] = {}
    _flatten(value, type_spec, [], out)
    np.savez(fileobj, **out)


def _flatten(v: object, t: fl.Type, parts: list[str], out: dict) -> None:
    if isinstance(t, fl.TensorType):
        out[_key(parts)] = _to_npz_array(v, parts)
    elif isinstance(t, fl.StructType):
        for i, ((n, et), x) in enumerate(zip(t.items(), v)):
            _flatten(x, et, parts + [n or str(i)], out)
    elif isinstance(t, fl.FederatedType) and t.all_equal:
        _flatten(v, t.member, parts, out)
    elif isinstance(t, fl.FederatedType) and isinstance(v, ClientColumns):
        for (suffix, _, _), column in zip(_leaves(t.member, []), v.leaves):
            out[_key(parts + suffix)] = _to_npz_array(column, parts + suffix)  # as stacked
    elif isinstance(t, fl.FederatedType):
        for suffix, index, lt in _leaves(t.member, []):
            per_client = [_pick(m, index) for m in v]
            key = _key(parts + suffix)
            if len({np.shape(x) for x in per_client}) <= 1:
                if per_client:
                    stacked = np.stack(per_client)
                else:
                    stacked = np.zeros((0,) + tuple(d or 0 for d in lt.shape or ()),
                                       tt.value_dtype(lt))
                out[key] = _to_npz_array(stacked, parts + suffix)
            else:
                for i, x in enumerate(per_client):
                    out[f"{key}/#{i}"] = _to_npz_array(x, parts + suffix)
    else:
        raise _unsupported(t, parts)


def _pick(v: object, index: tuple) -> object:
    """The leaf at element indices `index` inside a member value."""
    for i in index:
        v = v[i]
    return v


def _to_npz_array(arr: np.ndarray, parts: list[str]) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype == tt.BFLOAT16:
        return arr.astype(np.float32)
    if arr.dtype.kind != "O":
        return arr
    flat = arr.reshape(-1).tolist()
    if any(b.endswith(b"\x00") for b in flat):
        raise ArgumentError(f"string ending in a NUL byte cannot be stored in npz (key "
                            f"{_key(parts)!r}); use the pb or json format")
    try:
        text = [b.decode("utf-8") for b in flat]
        return np.array(text, dtype=str if text else "U1").reshape(arr.shape)
    except UnicodeDecodeError:
        return np.array(flat, dtype=bytes if flat else "S1").reshape(arr.shape)


# ---------------------------------------------------------------------------------- reading

def value_from_npz(fileobj: BinaryIO, type_spec: fl.Type, path: str = "arg") -> object:
    """Read an npz archive as a canonical value of `type_spec` (missing/extra keys are errors)."""
    try:
        archive = np.load(fileobj, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ArgumentError(f"not a readable npz archive ({_first_line(e)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ArgumentError("a single .npy array, not an npz archive of named arrays")
    with archive:
        reader = _Reader(archive)
        value = reader.build(type_spec, [], path)
        extra = sorted(set(archive.files) - reader.used)
        if extra:
            raise ArgumentError(f"unexpected key {extra[0]!r} in npz (not part of "
                                f"{tt.type_str(type_spec)})")
    return normalize(value, type_spec, path)


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


class _Reader:
    """Reads leaves by key and remembers which keys were used (to report extras)."""

    def __init__(self, archive):
        self.archive = archive
        self.files = set(archive.files)
        self.used: set[str] = set()

    def load(self, key: str, t: fl.TensorType) -> np.ndarray:
        self.used.add(key)
        try:
            arr = self.archive[key]
        except ValueError as e:  # object arrays: refused with allow_pickle=False
            raise ArgumentError(f"npz key {key!r}: {_first_line(e)}") from None
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise ArgumentError(f"npz key {key!r} is unreadable ({_first_line(e)})") from None
        if arr.dtype.kind == "V" and arr.dtype.itemsize == 2 and t.dtype == tt.BFLOAT16:
            arr = arr.view(tt.BFLOAT16)
        return arr

    def build(self, t: fl.Type, parts: list[str], path: str) -> object:
        if isinstance(t, fl.TensorType):
            key = _key(parts)
            if key not in self.files:
                raise ArgumentError(f"missing key {key!r} in npz (expected {tt.type_str(t)})",
                                    path=path)
            return self.load(key, t)
        if isinstance(t, fl.StructType):
            return structure.Struct([(n, self.build(et, parts + [n or str(i)], child(path, n, i)))
                                     for i, (n, et) in enumerate(t.items())])
        if isinstance(t, fl.FederatedType) and t.all_equal:
            return self.build(t.member, parts, path)
        if isinstance(t, fl.FederatedType):
            try:
                return self.clients(t, parts)
            except ArgumentError as e:
                e.path = e.path or path
                e.args = (e.one_line(),)
                raise
        raise _unsupported(t, parts)

    def clients(self, t: fl.FederatedType, parts: list[str]) -> ClientColumns | list:
        """The clients of a `{T}@CLIENTS` value: its stacked arrays used as they are (columns,
        not split into members) when every leaf is stacked, else a per-client list."""
        per_leaf: dict[tuple[str, ...], object] = {}
        counts: list[tuple[str, int]] = []
        all_stacked = True
        for suffix, _, lt in _leaves(t.member, []):
            key = _key(parts + suffix)
            if key in self.files:
                values = self.load(key, lt)
                if values.ndim == 0:
                    raise ArgumentError(f"npz key {key!r} is a scalar; a {{T}}@CLIENTS leaf "
                                        "needs a leading client axis")
            else:
                values = self.per_client(key, lt)
                all_stacked = False
            per_leaf[tuple(suffix)] = values
            counts.append((key, len(values)))
        for key, n in counts[1:]:
            if n != counts[0][1]:
                raise ArgumentError(f"inconsistent client counts in npz: {counts[0][0]!r} has "
                                    f"{counts[0][1]} clients, {key!r} has {n}")
        if all_stacked and per_leaf:
            return ClientColumns(t.member, list(per_leaf.values()))  # checked by normalize
        n = counts[0][1] if counts else 0
        return [_assemble(t.member, [], lambda s, i=i: per_leaf[tuple(s)][i]) for i in range(n)]

    def per_client(self, key: str, t: fl.TensorType) -> list:
        pattern = re.compile(re.escape(key) + r"/#(\d+)$")
        found = {int(m.group(1)): f for f in self.files if (m := pattern.match(f))}
        if not found:
            raise ArgumentError(f"missing key {key!r} in npz (expected {{{tt.type_str(t)}}}"
                                f"@CLIENTS stacked on a client axis, or {key + '/#0'!r}, ...)")
        for i in range(len(found)):
            if i not in found:
                raise ArgumentError(f"missing key {f'{key}/#{i}'!r} in npz (clients must be "
                                    f"numbered 0..{len(found) - 1})")
        return [self.load(found[i], t) for i in range(len(found))]
