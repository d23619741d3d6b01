"""Intrinsic arithmetic on plain values, in numpy, with TFF's dtype rules.

Sums, means, min/max, generic ops and bound checks never need TensorFlow: values are numpy arrays
in `Struct`s (tffexec's Python representation), and these functions walk the type alongside.
Rules follow TFF 0.87's lowering (tff-runtime-facts.md §4):
- sums keep the member dtype (int32 wraps around as TensorFlow's does) and fold in client order;
- means divide in the value's dtype; over zero clients they are NaN;
- weighted means multiply each tensor by the weight cast to that tensor's dtype, then divide the
  sum by the summed weight cast the same way;
- min/max start from the dtype's identity (its max for min, its min for max);
- generic_divide follows TensorFlow's `truediv`: integers divide into float64 (float32 for 8/16-bit).

Columnar twins. Each reduction over clients has two forms side by side: `*_values` over a list of
client values, and `*_columns` over a `Batch` (the clients as one array per tensor leaf, see
`executors/batch.py`), which must give the same bits: sums fold the clients in order (numpy's
pairwise summation is avoided), means divide that sum, weighted means sum the per-client products
in order. A `Reduction` pairs them; the federating executor's `reduce_clients` picks the form.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import federated_language
import numpy as np
from federated_language.common_libs import structure

from tffexec import errors
from tffexec.executors import batch as batch_lib


def map_structure(fn: Callable, type_spec, *values):
    """Applies `fn(tensor_type, *leaves)` to every tensor leaf of values sharing `type_spec`."""
    if isinstance(type_spec, federated_language.StructType):
        elements = []
        for i, (name, member) in enumerate(type_spec.items()):
            elements.append((name, map_structure(fn, member, *(v[i] for v in values))))
        return structure.Struct(elements)
    if isinstance(type_spec, federated_language.TensorType):
        return fn(type_spec, *values)
    raise errors.ComputationError(f"arithmetic is defined on tensors and structs, not on {type_spec}")


def _dtype(tensor_type) -> np.dtype:
    return np.dtype(tensor_type.dtype)


def _shape(tensor_type) -> tuple:
    shape = tensor_type.shape
    if shape is None or any(d is None for d in shape):
        return None
    return tuple(shape)


def zeros(type_spec):
    """The zero of a type (generic_zero, and sums over zero clients)."""

    def leaf(t):
        shape = _shape(t)
        if shape is None:
            raise errors.ExecutionError(f"cannot make a zero of {t}: its shape is not fully known")
        if _dtype(t).kind in "OSU":
            return np.full(shape, b"", dtype=object)
        return np.zeros(shape, dtype=_dtype(t))

    return map_structure(leaf, type_spec)


def fold_leaves(ufunc, t, leaves: Sequence[np.ndarray]) -> np.ndarray:
    """Folds `ufunc` over the client leaves (of tensor type `t`) one client after another, in
    the leaf's dtype: the per-client form of every reduction here.

    An explicit left fold, as TFF's aggregate does: `ufunc.reduce` over a stacked axis sums
    0-d leaves pairwise, which changes float results in the last bits once there are 8 clients.
    """
    dtype = _dtype(t)
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.array(leaves[0], dtype=dtype)  # a copy: the fold writes into it
        for leaf in leaves[1:]:
            ufunc(total, np.asarray(leaf, dtype=dtype), out=total)
        return total


def _in_order_sum(column: np.ndarray, dtype) -> np.ndarray:
    """The columnar twin of `fold_leaves(np.add, ...)`: adds the clients one after another.

    numpy reduces a 1-D axis (or one that collapses to it) by pairwise summation, which rounds
    differently; `accumulate` is defined as the running fold. Narrow leaves are accumulated
    along a contiguous client axis (the transpose: each element's additions in the same order,
    but one long inner loop per element instead of one short loop per client, ~50x faster at
    10^5 clients of float32[16]). Wide leaves are reduced along the outer axis, which numpy
    does row after row.
    """
    column = np.asarray(column, dtype=dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        if column.ndim == 1:
            return np.array(np.add.accumulate(column, axis=0, dtype=dtype)[-1])
        if column[0].size <= 64:
            by_element = np.ascontiguousarray(column.reshape(column.shape[0], -1).T)
            totals = np.add.accumulate(by_element, axis=1, dtype=dtype)[:, -1]
            return np.array(totals.reshape(column.shape[1:]))
        return np.add.reduce(column, axis=0, dtype=dtype)


def _map_columns(fn: Callable, batch: batch_lib.Batch, type_spec):
    """`fn(tensor_type, column)` for every leaf of the batch, packed into `type_spec`."""
    types = batch_lib.leaf_types(type_spec)
    return batch_lib.pack([fn(t, batch.column(i)) for i, t in enumerate(types)], type_spec)


def sum_values(values: Sequence, type_spec):
    """Elementwise sum of client values in client order, in the member dtype."""
    if not values:
        return zeros(type_spec)
    return map_structure(lambda t, *leaves: fold_leaves(np.add, t, leaves), type_spec, *values)


def sum_columns(batch: batch_lib.Batch, type_spec):
    """`sum_values` along the client axis of a batch."""
    return _map_columns(lambda t, c: _in_order_sum(c, _dtype(t)), batch, type_spec)


def mean_values(values: Sequence, type_spec):
    """Unweighted mean: the sum divided by the number of clients (NaN for zero clients)."""
    count = len(values)

    def leaf(t, *leaves):
        dtype = _dtype(t)
        if dtype.kind not in "fc":
            raise errors.ComputationError(f"federated_mean needs floating-point values, found {t}")
        if count == 0:
            return np.full(_shape(t) or (), np.nan, dtype=dtype)
        total = fold_leaves(np.add, t, leaves)
        with np.errstate(all="ignore"):
            return np.asarray(total / dtype.type(count), dtype=dtype)

    return map_structure(leaf, type_spec, *values) if count else map_structure(leaf, type_spec)


def mean_columns(batch: batch_lib.Batch, type_spec):
    """`mean_values` along the client axis of a (non-empty) batch."""

    def leaf(t, c):
        dtype = _dtype(t)
        if dtype.kind not in "fc":
            raise errors.ComputationError(f"federated_mean needs floating-point values, found {t}")
        with np.errstate(all="ignore"):
            return np.asarray(_in_order_sum(c, dtype) / dtype.type(batch.count), dtype=dtype)

    return _map_columns(leaf, batch, type_spec)


def weighted_mean_values(values: Sequence, weights: Sequence, type_spec, weight_type):
    """Sum of value * weight divided by the sum of weights (TFF's lowering, with its casts)."""
    weight_dtype = _dtype(weight_type)
    weight_leaves = [np.asarray(w, dtype=weight_dtype) for w in weights]
    with np.errstate(over="ignore", invalid="ignore"):
        weight_total = (fold_leaves(np.add, weight_type, weight_leaves) if weights
                        else weight_dtype.type(0))

    def leaf(t, *leaves):
        dtype = _dtype(t)
        if not leaves:
            return np.full(_shape(t) or (), np.nan, dtype=dtype)
        with np.errstate(all="ignore"):
            products = [np.asarray(v * np.asarray(w).astype(dtype), dtype=dtype)
                        for v, w in zip(leaves, weight_leaves)]
            total = fold_leaves(np.add, t, products)
            return np.asarray(total / np.asarray(weight_total).astype(dtype), dtype=dtype)

    return map_structure(leaf, type_spec, *values)


def weighted_mean_columns(values: batch_lib.Batch, weights: batch_lib.Batch, type_spec,
                          weight_type):
    """`weighted_mean_values` along the client axis of two (non-empty) batches."""
    weight_dtype = _dtype(weight_type)
    w = np.asarray(weights.column(0), dtype=weight_dtype)
    weight_total = _in_order_sum(w, weight_dtype)

    def leaf(t, c):
        dtype = _dtype(t)
        scale = w.astype(dtype).reshape((values.count,) + (1,) * (c.ndim - 1))
        with np.errstate(all="ignore"):
            products = np.asarray(c * scale, dtype=dtype)
            return np.asarray(_in_order_sum(products, dtype) / weight_total.astype(dtype),
                              dtype=dtype)

    return _map_columns(leaf, values, type_spec)


def _identity(t, for_min: bool) -> np.ndarray:
    dtype = _dtype(t)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
    elif dtype.kind == "f":
        info = np.finfo(dtype)
    else:
        raise errors.ComputationError(f"federated_min/max need integer or float values, found {t}")
    return np.full(_shape(t) or (), info.max if for_min else info.min, dtype=dtype)


def _extremum(ufunc, for_min: bool) -> tuple[Callable, Callable]:
    """federated_min (`np.minimum`) or federated_max (`np.maximum`) in both forms: over client
    values, and along the client axis of a (non-empty) batch."""

    def over_values(values: Sequence, type_spec):
        if not values:
            return map_structure(lambda t: _identity(t, for_min), type_spec)
        return map_structure(lambda t, *leaves: fold_leaves(ufunc, t, leaves), type_spec, *values)

    def over_columns(batch: batch_lib.Batch, type_spec):
        return _map_columns(lambda t, c: ufunc(ufunc.reduce(c, axis=0), _identity(t, for_min)),
                            batch, type_spec)

    return over_values, over_columns


min_values, min_columns = _extremum(np.minimum, for_min=True)
max_values, max_columns = _extremum(np.maximum, for_min=False)


def check_bounds(values: Sequence, bound, type_spec, bound_type, *, intrinsic: str,
                 first_client: int = 0) -> None:
    """Secure sums: every client's every coordinate must lie in [0, bound].

    `values[i]` is client `first_client + i`'s value (errors name the global client index).
    """
    for client, value in enumerate(values, start=first_client):
        def leaf(t, v, b):
            v = np.asarray(v)
            b = np.asarray(b)
            bad = (v < 0) | (v > b)
            if np.any(bad):
                where = tuple(int(i) for i in np.argwhere(bad)[0]) if v.ndim else ()
                found = v[where] if v.ndim else v
                raise errors.ExecutionError(
                    f"{intrinsic}: client {client} has value {found} at {list(where)} outside "
                    f"[0, {b if b.ndim == 0 else b[where]}]")
            return v

        bounds = broadcast_bound(bound, type_spec, bound_type)
        map_structure(leaf, type_spec, value, bounds)


def check_bounds_columns(batch: batch_lib.Batch, bound, type_spec, bound_type, *, intrinsic: str,
                         first_client: int = 0) -> None:
    """`check_bounds` along the client axis: finds the first client outside [0, bound] and
    reports it exactly as `check_bounds` does."""
    flat_bounds: list = []
    map_structure(lambda t, b: flat_bounds.append(b), type_spec,
                  broadcast_bound(bound, type_spec, bound_type))
    first_bad = None
    for index, b in enumerate(flat_bounds):
        column = batch.column(index)
        bad = ((column < 0) | (column > np.asarray(b))).reshape(batch.count, -1).any(axis=1)
        if np.any(bad):
            client = int(np.argmax(bad))
            first_bad = client if first_bad is None else min(first_bad, client)
    if first_bad is not None:
        check_bounds([batch.member(first_bad)], bound, type_spec, bound_type,
                     intrinsic=intrinsic, first_client=first_client + first_bad)


def broadcast_bound(bound, type_spec, bound_type):
    """A scalar bound applies to every tensor; a struct of bounds matches the value's structure."""
    if isinstance(bound_type, federated_language.StructType):
        return bound
    return map_structure(lambda t: np.asarray(bound), type_spec)


def modular_sum(values: Sequence, modulus, type_spec, modulus_type):
    """secure_modular_sum: the plain sum, then modulo the modulus (per tensor)."""
    total = sum_values(values, type_spec)
    moduli = broadcast_bound(modulus, type_spec, modulus_type)
    return map_structure(
        lambda t, s, m: np.asarray(np.mod(s, np.asarray(m).astype(_dtype(t))), dtype=_dtype(t)),
        type_spec, total, moduli)


class Reduction(NamedTuple):
    """A reduction over clients in its two forms, which give the same bits.

    `per_client(*value_lists, *args)` takes one list of client values per reduced operand;
    `columnar(*batches, *args)` takes one `Batch` per operand, or is None (no columnar form:
    the members are always used).
    """

    per_client: Callable
    columnar: Optional[Callable]


SUM = Reduction(sum_values, sum_columns)
MEAN = Reduction(mean_values, mean_columns)
WEIGHTED_MEAN = Reduction(weighted_mean_values, weighted_mean_columns)
MIN = Reduction(min_values, min_columns)
MAX = Reduction(max_values, max_columns)
MODULAR_SUM = Reduction(modular_sum, None)


def bounded_sum(bound, bound_type, *, intrinsic: str, first_client: int) -> Reduction:
    """The secure sums: every client value is checked against [0, bound], then summed."""

    def per_client(values, type_spec):
        check_bounds(values, bound, type_spec, bound_type, intrinsic=intrinsic,
                     first_client=first_client)
        return sum_values(values, type_spec)

    def columnar(batch, type_spec):
        check_bounds_columns(batch, bound, type_spec, bound_type, intrinsic=intrinsic,
                             first_client=first_client)
        return sum_columns(batch, type_spec)

    return Reduction(per_client, columnar)


def _binary(op: Callable, result_dtype: Callable[[np.dtype, np.dtype], np.dtype]):
    def apply(a, b, type_a, type_b, result_type):
        def leaf(t, x, y):
            x = np.asarray(x)
            y = np.asarray(y)
            dtype = result_dtype(x.dtype, y.dtype)
            with np.errstate(all="ignore"):
                return np.asarray(op(x, y, dtype), dtype=dtype)

        if isinstance(type_a, federated_language.StructType) and not isinstance(
                type_b, federated_language.StructType):
            b = map_structure(lambda t: b, type_a)
        if isinstance(type_b, federated_language.StructType) and not isinstance(
                type_a, federated_language.StructType):
            a = map_structure(lambda t: a, type_b)
        shape_type = type_a if isinstance(type_a, federated_language.StructType) else type_b
        return map_structure(leaf, shape_type, a, b)

    return apply


def _same_dtype(x: np.dtype, y: np.dtype) -> np.dtype:
    return np.result_type(x, y)


def _truediv_dtype(x: np.dtype, y: np.dtype) -> np.dtype:
    dtype = np.result_type(x, y)
    if dtype.kind in "iu":
        return np.dtype(np.float32) if dtype.itemsize <= 2 else np.dtype(np.float64)
    return dtype


generic_plus = _binary(lambda x, y, d: x.astype(d) + y.astype(d), _same_dtype)
generic_multiply = _binary(lambda x, y, d: x.astype(d) * y.astype(d), _same_dtype)
generic_divide = _binary(lambda x, y, d: x.astype(d) / y.astype(d), _truediv_dtype)
#: The binary generic intrinsics by URI (generic_zero is `zeros`).
GENERIC_OPS = {"generic_plus": generic_plus, "generic_multiply": generic_multiply,
               "generic_divide": generic_divide}


# -- combining partial results (the composing stack) ---------------------------------------------
def mean_from_sum(total, type_spec, count: int):
    """federated_mean from the sum over `count` clients (partial sums merged by a composed stack)."""

    def leaf(t, s):
        dtype = _dtype(t)
        if dtype.kind not in "fc":
            raise errors.ComputationError(f"federated_mean needs floating-point values, found {t}")
        with np.errstate(all="ignore"):
            return np.asarray(np.asarray(s, dtype=dtype) / dtype.type(count), dtype=dtype)

    return map_structure(leaf, type_spec, total)


def combine_weighted_means(means: Sequence, weight_totals: Sequence, type_spec, weight_type):
    """The weighted mean over all clients from each child's weighted mean and summed weight.

    sum_i(mean_i * W_i) / sum_i(W_i), in the value's dtype; a child whose weights sum to zero
    contributes nothing (its own mean is NaN).
    """
    weight_dtype = _dtype(weight_type)
    weights = [np.asarray(w, dtype=weight_dtype) for w in weight_totals]
    with np.errstate(over="ignore", invalid="ignore"):
        total_weight = fold_leaves(np.add, weight_type, weights)

    def leaf(t, *leaves):
        dtype = _dtype(t)
        with np.errstate(all="ignore"):
            parts = [np.where(np.asarray(w) == 0, dtype.type(0),
                              np.asarray(m, dtype=dtype) * np.asarray(w).astype(dtype))
                     for m, w in zip(leaves, weights)]
            total = fold_leaves(np.add, t, parts)
            return np.asarray(total / np.asarray(total_weight).astype(dtype), dtype=dtype)

    return map_structure(leaf, type_spec, *means)
