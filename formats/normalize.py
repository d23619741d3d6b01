"""Turn loose Python input into the canonical value representation, checking it against a type.

Why one function does both: every value entering tffexec (a Python call, a JSON or npz file, a
decoded proto) must be checked against the parameter type before anything runs, and the check
is where the conversion information is (the type's dtypes and shapes). A mismatch raises
`ArgumentError` naming the path inside the value (`arg.model[1].w`), the expected type in TFF
notation and what was found.

Accepted loose input, by type:
  tensor    numpy arrays/scalars, Python bool/int/float/complex, nested lists/tuples; for `str`
            tensors also `str` (encoded UTF-8) and `bytes`. Ints must be in range; floats given
            for ints must be finite and integral; bools are only accepted for bool tensors.
  struct    `Struct`, a dict/Mapping or namedtuple with exactly the type's element names (an
            unnamed element's key is its index, "1"), or a list/tuple with one entry per element.
  {T}@CLIENTS  a list/tuple with one member per client, or columns (`ClientColumns`, an array
            with a leading client axis, a struct of such arrays); kept as `ClientColumns` when
            the members share dtype and shape per leaf (see formats/columns.py).
  T@SERVER, T@CLIENTS (all_equal)  the member value itself.
  sequence  a `SequenceValue`, a list of elements, or a `tf.data.Dataset`.
  function  a `computation_pb2.Computation`.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import NoReturn, Sequence

import federated_language as fl
import numpy as np
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec.errors import ArgumentError
from tffexec.formats import columns as columns_lib
from tffexec.formats import types as tt
from tffexec.formats.diagnostics import child, describe, item
from tffexec.formats.sequences import SequenceValue


def normalize(value: object, type_spec: fl.Type, path: str = "arg") -> object:
    """The canonical representation of `value` as a value of `type_spec` (see module doc)."""
    return normalize_counting(value, type_spec, path)[0]


def normalize_counting(value: object, type_spec: fl.Type, path: str = "arg"
                       ) -> tuple[object, int | None]:
    """`normalize`, and the client count `infer_clients` finds in the result.

    Why both at once: the client count is checked while normalizing anyway (inconsistent counts
    are an error), so a caller that needs the count (`Runner.prepare`) need not walk the value
    again to get it.
    """
    out = _norm(value, type_spec, path)
    return out, infer_clients(out, type_spec, path)


def _fail(path: str, t: fl.Type, value: object, detail: str = "") -> NoReturn:
    extra = f" ({detail})" if detail else ""
    found = describe(value)
    raise ArgumentError(f"expected {tt.type_str(t)}, found {found}{extra}", path=path)


def _norm(value: object, t: fl.Type, path: str) -> object:
    if isinstance(t, fl.TensorType):
        return _tensor(value, t, path)
    if isinstance(t, fl.StructType):
        return _struct(value, t, path)
    if isinstance(t, fl.FederatedType):
        return _federated(value, t, path)
    if isinstance(t, fl.SequenceType):
        return _sequence(value, t, path)
    if isinstance(t, fl.FunctionType):
        return _function(value, t, path)
    raise ArgumentError(f"values of type {tt.type_str(t)} are not supported", path=path)


# ---------------------------------------------------------------------------------- tensors

def _tensor(value: object, t: fl.TensorType, path: str) -> np.ndarray:
    if value is None or isinstance(value, (structure.Struct, Mapping, SequenceValue)):
        _fail(path, t, value)
    if tt.is_string(t.dtype):
        arr = _string_array(value, t, path)
    else:
        arr = _numeric_array(value, t, path)
    if t.shape is not None and (arr.ndim != len(t.shape) or any(
            d is not None and d != a for d, a in zip(t.shape, arr.shape))):
        if isinstance(value, np.ndarray):
            _fail(path, t, value)
        _fail(path, t, value, f"shape [{','.join(str(d) for d in arr.shape)}]")
    return arr


def _nested(value: object, t: fl.TensorType, path: str) -> tuple[tuple[int, ...], list]:
    """Shape and flat leaves of nested lists/tuples; ragged nesting is an error."""
    shape: list[int] = []
    level = [value]
    while level:
        level = [x.tolist() if isinstance(x, np.ndarray) else x for x in level]
        nested = [isinstance(x, (list, tuple)) for x in level]
        if not any(nested):
            break
        if not all(nested) or len({len(x) for x in level}) != 1:
            raise ArgumentError(f"expected {tt.type_str(t)}, found ragged nested lists "
                                f"(sizes differ at depth {len(shape) + 1})", path=path)
        shape.append(len(level[0]))
        level = [y for x in level for y in x]
    if not level and t.shape is not None and len(shape) < len(t.shape):
        # An empty list says nothing about the inner dims: take them from the type.
        shape += [d or 0 for d in t.shape[len(shape):]]
    return tuple(shape), level


def _string_array(value: object, t: fl.TensorType, path: str) -> np.ndarray:
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype.kind not in "OSU":
            _fail(path, t, arr)
        shape, leaves = arr.shape, arr.reshape(-1).tolist()
    elif isinstance(value, (str, bytes, bytearray, list, tuple)):
        shape, leaves = _nested(value, t, path)
    else:
        _fail(path, t, value)
    flat = np.empty(len(leaves), dtype=object)
    for i, leaf in enumerate(leaves):
        if isinstance(leaf, str):
            flat[i] = leaf.encode("utf-8")
        elif isinstance(leaf, (bytes, bytearray)):
            flat[i] = bytes(leaf)
        else:
            _fail(path, t, leaf, "a string element")
    return flat.reshape(shape)


def _numeric_array(value: object, t: fl.TensorType, path: str) -> np.ndarray:
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind != "O":
        arr = np.asarray(value)
    elif isinstance(value, (bool, int, float, complex, list, tuple, np.ndarray)):
        shape, leaves = _nested(value.tolist() if isinstance(value, np.ndarray) else value,
                                t, path)
        arr = _from_leaves(leaves, shape, t, path)
    else:
        _fail(path, t, value)
    return _cast(arr, t, path)


def _from_leaves(leaves: list, shape: tuple, t: fl.TensorType, path: str) -> np.ndarray:
    """Python/numpy scalars -> an array of their natural kind (ints kept exact)."""
    if not leaves:
        return np.zeros(shape, t.dtype)
    kinds = set()
    for leaf in leaves:
        if isinstance(leaf, (bool, np.bool_)):
            kinds.add("b")
        elif isinstance(leaf, (int, np.integer)):
            kinds.add("i")
        elif isinstance(leaf, (float, np.floating)) or (
                isinstance(leaf, np.generic) and tt.is_floating(leaf.dtype)):
            kinds.add("f")
        elif isinstance(leaf, (complex, np.complexfloating)):
            kinds.add("c")
        else:
            _fail(path, t, leaf, "as an element")
    if "b" in kinds and kinds != {"b"}:
        _fail(path, t, leaves[0], "bools mixed with numbers")
    if kinds == {"b"}:
        return np.asarray(leaves, np.bool_).reshape(shape)
    if kinds == {"i"} and t.dtype.kind in "iu":
        info = np.iinfo(t.dtype)
        for leaf in leaves:
            if not info.min <= int(leaf) <= info.max:
                digits = str(int(leaf))  # a JSON integer may have thousands of digits
                if len(digits) > 40:
                    digits = f"{digits[:20]}...({len(digits):,} digits)"
                raise ArgumentError(f"expected {tt.type_str(t)}, found {digits} (out of range "
                                    f"for {t.dtype.name})", path=path)
        return np.asarray([int(x) for x in leaves], t.dtype).reshape(shape)
    natural = np.complex128 if "c" in kinds else np.float64
    try:
        return np.asarray([natural(x) for x in leaves], natural).reshape(shape)
    except OverflowError:
        raise ArgumentError(f"expected {tt.type_str(t)}, found an integer too large for a float",
                            path=path) from None


def _cast(arr: np.ndarray, t: fl.TensorType, path: str) -> np.ndarray:
    """Cast to the type's dtype, refusing every lossy or surprising conversion."""
    target = t.dtype
    if arr.dtype == target:
        return arr
    src = "f" if tt.is_floating(arr.dtype) else arr.dtype.kind
    if src not in "biufc" or (src == "b") != (target.kind == "b"):
        _fail(path, t, arr)
    if target.kind in "iu":
        if src == "c":
            _fail(path, t, arr)
        if src == "f":
            wide = arr.astype(np.float64)
            if not np.all(np.isfinite(wide)):
                raise ArgumentError(f"expected {tt.type_str(t)}, found NaN or infinity where "
                                    "integers are expected", path=path)
            if not np.all(wide == np.floor(wide)):
                _fail(path, t, arr, "not whole numbers")
            info = np.iinfo(target)
            if wide.size and (wide.min() < info.min or wide.max() >= float(info.max) + 1):
                _fail(path, t, arr, f"out of range for {target.name}")
        elif arr.size:
            info = np.iinfo(target)
            if int(arr.min()) < info.min or int(arr.max()) > info.max:
                _fail(path, t, arr, f"out of range for {target.name}")
        return arr.astype(target)
    if tt.is_floating(target) and src == "c":
        _fail(path, t, arr)
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(target)
    if src in "iuf" and tt.is_floating(target):
        overflow = np.isinf(out.astype(np.float64)) & ~np.isinf(arr.astype(np.float64))
        if np.any(overflow):
            _fail(path, t, arr, f"out of range for {target.name}")
    return out


# ---------------------------------------------------------------------------------- structures

def _struct(value: object, t: fl.StructType, path: str) -> structure.Struct:
    items = list(t.items())
    names = [n for n, _ in items]
    if isinstance(value, structure.Struct):
        elements = structure.to_elements(value)
        if len(elements) != len(items):
            _fail(path, t, value, f"{len(items)} elements expected")
        for i, ((got, _), want) in enumerate(zip(elements, names)):
            if got is not None and want is not None and got != want:
                raise ArgumentError(f"expected {tt.type_str(t)}, found element {i} named "
                                    f"{got!r} instead of {want!r}", path=path)
        values = [v for _, v in elements]
    elif isinstance(value, tuple) and hasattr(value, "_asdict"):  # namedtuple
        return _struct(dict(value._asdict()), t, path)
    elif isinstance(value, Mapping):
        # Keys are element names; an unnamed element's key is its index ("1" or 1).
        keys = [n if n is not None else str(i) for i, n in enumerate(names)]
        given = {str(k) if isinstance(k, int) and not isinstance(k, bool) else k: v
                 for k, v in value.items()}
        for key in given:
            if key not in keys:
                raise ArgumentError(f"unexpected element {key!r}; expected {tt.type_str(t)}",
                                    path=child(path, str(key), 0))
        for i, (key, (n, et)) in enumerate(zip(keys, items)):
            if key not in given:
                raise ArgumentError(f"missing; expected {tt.type_str(et)}", path=child(path, n, i))
        values = [given[k] for k in keys]
    elif isinstance(value, (list, tuple)):
        if len(value) != len(items):
            _fail(path, t, value, f"{len(items)} elements expected")
        values = list(value)
    else:
        _fail(path, t, value)
    return structure.Struct([(n, _norm(v, et, child(path, n, i)))
                             for i, ((n, et), v) in enumerate(zip(items, values))])


def _federated(value: object, t: fl.FederatedType, path: str) -> object:
    if t.all_equal:
        return _norm(value, t.member, path)
    columns = _as_columns(value, t.member, path)
    if columns is not None:
        return columns
    if isinstance(value, np.ndarray) and value.ndim >= 1:
        value = list(value)
    if not isinstance(value, (list, tuple)):
        _fail(path, t, value, "a list with one value per client is expected")
    if _already_tensors(value, t.member):
        return columns_lib.stack_members(value, t.member) or list(value)
    members = [_norm(v, t.member, item(path, i)) for i, v in enumerate(value)]
    # Stacked once here, so that no later step (embedding, every call of a prepared run) does
    # per-client work; ragged members keep the list.
    return columns_lib.stack_members(members, t.member) or members


def _as_columns(value: object, member: fl.Type, path: str) -> columns_lib.ClientColumns | None:
    """`value` as client columns when it is given as columns: `ClientColumns`, a numpy array
    with a leading client axis for a tensor member, or a struct (dict, `Struct`, namedtuple) of
    such arrays for a struct member; None for a per-client list.

    Each column is checked (and converted) as one tensor of the member leaf's type with an extra
    leading dimension: no per-client work. An array that does not fit is split into members
    instead, so that the error names the client.
    """
    if isinstance(value, columns_lib.ClientColumns):
        types = columns_lib.leaf_types(member)
        if types is not None and len(types) == len(value.leaves) and all(
                columns_lib.fits_column(c, lt) for c, lt in zip(value.leaves, types)):
            return value
        value = columns_lib.pack(value.leaves, value.member_type)
    elif isinstance(value, np.ndarray):
        if not isinstance(member, fl.TensorType) or value.ndim < 1 or value.dtype.kind == "O":
            return None
    elif not isinstance(member, fl.StructType) or not (
            isinstance(value, (structure.Struct, Mapping))
            or (isinstance(value, tuple) and hasattr(value, "_asdict"))):
        return None
    column_type = _column_type(member)
    if column_type is None:
        return None
    try:
        converted = _norm(value, column_type, path)
    except ArgumentError:
        if isinstance(value, np.ndarray):
            return None  # checked client by client, for an error naming the client
        raise
    leaves: list = []
    columns_lib.flatten(converted, column_type, leaves)
    if len({np.shape(leaf)[0] for leaf in leaves}) != 1:
        counts = ", ".join(str(np.shape(leaf)[0]) for leaf in leaves)
        raise ArgumentError(f"client columns of different lengths ({counts}): every array of a "
                            f"{{{tt.type_str(member)}}}@CLIENTS value needs the same number of "
                            "clients on its first axis", path=path)
    return columns_lib.ClientColumns(member, leaves)


@functools.lru_cache(maxsize=256)
def _column_type(member: fl.Type) -> fl.Type | None:
    """The type of `member`'s columns: each tensor leaf with a leading client dimension of any
    size; None when a leaf is not a tensor (or has an unknown rank)."""
    if isinstance(member, fl.TensorType):
        if member.shape is None:
            return None
        return fl.TensorType(member.dtype, [None, *member.shape])
    if isinstance(member, fl.StructType):
        elements = [(n, _column_type(et)) for n, et in member.items()]
        if not elements or any(et is None for _, et in elements):
            return None
        return fl.StructType(elements)
    return None


def _already_tensors(values: Sequence, member: fl.Type) -> bool:
    """Whether every client value is already a numpy array of the member's dtype and shape.

    The common case for many clients (values decoded by tffexec's loaders, or numpy from the
    Python API): checking it costs a fraction of a microsecond per client, normalising each value
    several microseconds.
    """
    if not isinstance(member, fl.TensorType) or tt.is_string(member.dtype):
        return False
    dtype = np.dtype(member.dtype)
    shape = member.shape
    if shape is None or any(d is None for d in shape):
        return False
    shape = tuple(shape)
    return all((type(v) is np.ndarray or isinstance(v, np.generic)) and v.dtype == dtype
               and v.shape == shape for v in values)


def _sequence(value: object, t: fl.SequenceType, path: str) -> SequenceValue:
    if type(value).__module__.startswith("tensorflow") and hasattr(value, "element_spec"):
        value = SequenceValue.from_dataset(value)
    if isinstance(value, SequenceValue):
        if not t.element.is_assignable_from(value.element_type):
            _fail(path, t, value)
        if value.has_graph_def or not value.is_materialized:
            return value
        value = value.elements()
    if not isinstance(value, (list, tuple)):
        _fail(path, t, value, "a list of elements is expected")
    return SequenceValue(t.element, elements=[_norm(v, t.element, item(path, i))
                                              for i, v in enumerate(value)])


def _function(value: object, t: fl.FunctionType, path: str) -> computation_pb2.Computation:
    if not isinstance(value, computation_pb2.Computation):
        _fail(path, t, value, "a serialized computation is expected")
    if value.HasField("type"):
        actual = tt.type_from_proto(value.type)
        if not t.is_assignable_from(actual):
            raise ArgumentError(f"expected {tt.type_str(t)}, found a computation of type "
                                f"{tt.type_str(actual)}", path=path)
    return value


# ---------------------------------------------------------------------------------- clients

def infer_clients(value: object, type_spec: fl.Type, path: str = "arg") -> int | None:
    """Number of CLIENTS members in `value` ({T}@CLIENTS list lengths), None if it has none.

    Conflicting counts raise `ArgumentError` naming both places and both numbers.
    """
    found: list[tuple[str, int]] = []
    _collect(value, type_spec, path, found)
    for p, n in found[1:]:
        if n != found[0][1]:
            raise ArgumentError(f"inconsistent client counts: {found[0][0]} has {found[0][1]} "
                                f"clients, {p} has {n}")
    return found[0][1] if found else None


def _collect(value: object, t: fl.Type, path: str, found: list) -> None:
    if isinstance(t, fl.FederatedType):
        if not t.all_equal and t.placement == fl.CLIENTS and hasattr(value, "__len__"):
            found.append((path, len(value)))
    elif isinstance(t, fl.StructType):
        for i, (n, et) in enumerate(t.items()):
            if isinstance(value, Mapping):
                if n in value:
                    _collect(value[n], et, child(path, n, i), found)
            elif isinstance(value, (structure.Struct, list, tuple)) and i < len(value):
                _collect(value[i], et, child(path, n, i), found)
