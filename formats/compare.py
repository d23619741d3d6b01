"""Compare two values of one type and say where they differ (for --expect, tests, validation).

Why not `==`: floats need a tolerance, NaN should equal NaN in an expected result, sequences
compare by elements (re-serialized dataset graphs differ byte-wise), and a user needs the path
of the first wrong leaf, not a bare False.
"""
from __future__ import annotations

import federated_language as fl
import numpy as np

from tffexec.formats import types as tt
from tffexec.formats.columns import ClientColumns
from tffexec.formats.diagnostics import child, describe, item
from tffexec.formats.sequences import SequenceValue


def values_equal(a: object, b: object, type_spec: fl.Type, rtol: float = 0.0,
                 atol: float = 0.0, path: str = "value") -> list[str]:
    """Paths where `a` and `b` differ (empty list = equal).

    Floats and complex numbers are equal within `rtol`/`atol` (numpy.isclose, NaN == NaN);
    ints, bools and strings must match exactly; shapes and client counts must match.
    """
    return [p for p, _ in value_differences(a, b, type_spec, rtol, atol, path)]


def value_differences(a: object, b: object, type_spec: fl.Type, rtol: float = 0.0,
                      atol: float = 0.0, path: str = "value") -> list[tuple[str, str]]:
    """Like `values_equal`, with a short explanation per path."""
    out: list[tuple[str, str]] = []
    _diff(a, b, type_spec, rtol, atol, path, out)
    return out


#: The forms of a `{T}@CLIENTS` value: a per-client list, or columns.
_CLIENTS = (list, tuple, ClientColumns)


def _diff(a, b, t, rtol, atol, path, out) -> None:
    if isinstance(t, fl.TensorType):
        _diff_tensor(a, b, t, rtol, atol, path, out)
    elif isinstance(t, fl.StructType):
        items = list(t.items())
        if not _sized(a, len(items)) or not _sized(b, len(items)):
            out.append((path, f"{describe(a)} vs {describe(b)}"))
            return
        for i, (n, et) in enumerate(items):
            _diff(a[i], b[i], et, rtol, atol, child(path, n, i), out)
    elif isinstance(t, fl.FederatedType):
        if t.all_equal:
            _diff(a, b, t.member, rtol, atol, path, out)
            return
        if not isinstance(a, _CLIENTS) or not isinstance(b, _CLIENTS):
            out.append((path, f"{describe(a)} vs {describe(b)}"))
        elif len(a) != len(b):
            out.append((path, f"{len(a)} clients vs {len(b)} clients"))
        else:
            for i, (x, y) in enumerate(zip(a, b)):
                _diff(x, y, t.member, rtol, atol, item(path, i), out)
    elif isinstance(t, fl.SequenceType):
        xs, ys = _elements(a), _elements(b)
        if xs is None or ys is None:
            out.append((path, f"{describe(a)} vs {describe(b)}"))
        elif len(xs) != len(ys):
            out.append((path, f"{len(xs)} elements vs {len(ys)} elements"))
        else:
            for i, (x, y) in enumerate(zip(xs, ys)):
                _diff(x, y, t.element, rtol, atol, item(path, i), out)
    elif a != b:
        out.append((path, "computations differ"))


def _sized(v, n: int) -> bool:
    try:
        return len(v) == n and not isinstance(v, (str, bytes, dict))
    except TypeError:
        return False


def _elements(v):
    if isinstance(v, SequenceValue):
        return v.elements()
    return list(v) if isinstance(v, (list, tuple)) else None


def _diff_tensor(a, b, t, rtol, atol, path, out) -> None:
    try:
        x, y = np.asarray(a), np.asarray(b)
    except Exception:  # noqa: BLE001 - anything unconvertible simply differs
        out.append((path, f"{describe(a)} vs {describe(b)}"))
        return
    if x.shape != y.shape:
        out.append((path, f"shape {list(x.shape)} vs {list(y.shape)}"))
        return
    if tt.is_string(t.dtype) or x.dtype.kind in "OSU" or y.dtype.kind in "OSU":
        flat_x, flat_y = x.reshape(-1), y.reshape(-1)
        differing = [i for i, (p, q) in enumerate(zip(flat_x, flat_y))
                     if _as_bytes(p) != _as_bytes(q)]
        if differing:
            first = differing[0]
            where = (f" at {[int(i) for i in np.unravel_index(first, x.shape)]}"
                     if x.ndim else "")
            out.append((path, f"{len(differing)} of {x.size} strings differ; first{where}: "
                              f"{_as_bytes(flat_x[first])!r} vs {_as_bytes(flat_y[first])!r}"))
        return
    inexact = tt.is_floating(t.dtype) or t.dtype.kind == "c"
    if not inexact:
        if not np.array_equal(x, y):
            out.append((path, _where(x != y, x, y)))
        return
    wide = np.complex128 if t.dtype.kind == "c" else np.float64
    xw, yw = x.astype(wide), y.astype(wide)
    close = np.isclose(xw, yw, rtol=rtol, atol=atol, equal_nan=True)
    if not np.all(close):
        out.append((path, _where(~close, xw, yw)))


def _where(mask: np.ndarray, x: np.ndarray, y: np.ndarray) -> str:
    if mask.size == 1:
        return f"{x.reshape(-1)[0].tolist()!r} vs {y.reshape(-1)[0].tolist()!r}"
    idx = tuple(int(i[0]) for i in np.nonzero(mask)) if mask.ndim else ()
    first = f" at {list(idx)}" if idx else ""
    return f"{int(np.count_nonzero(mask))} of {mask.size} differ; first{first}: {x[idx].tolist()!r} vs {y[idx].tolist()!r}"


def _as_bytes(v) -> bytes:
    return v.encode("utf-8") if isinstance(v, str) else bytes(v)
