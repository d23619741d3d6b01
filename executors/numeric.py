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
"""
from __future__ import annotations

from typing import Callable, Sequence

import federated_language
import numpy as np
from federated_language.common_libs import structure

from tffexec import errors


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


def _stack_reduce(ufunc, t, leaves: Sequence[np.ndarray]) -> np.ndarray:
    """Folds `ufunc` over the client leaves one client after another, in the leaf's dtype.

    An explicit left fold, as TFF's aggregate does: `ufunc.reduce` over a stacked axis sums
    0-d leaves pairwise, which changes float results in the last bits once there are 8 clients.
    """
    dtype = _dtype(t)
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.array(leaves[0], dtype=dtype)  # a copy: the fold writes into it
        for leaf in leaves[1:]:
            ufunc(total, np.asarray(leaf, dtype=dtype), out=total)
        return total


def sum_values(values: Sequence, type_spec):
    """Elementwise sum of client values in client order, in the member dtype."""
    if not values:
        return zeros(type_spec)
    return map_structure(lambda t, *leaves: _stack_reduce(np.add, t, leaves), type_spec, *values)


def mean_values(values: Sequence, type_spec):
    """Unweighted mean: the sum divided by the number of clients (NaN for zero clients)."""
    count = len(values)

    def leaf(t, *leaves):
        dtype = _dtype(t)
        if dtype.kind not in "fc":
            raise errors.ComputationError(f"federated_mean needs floating-point values, found {t}")
        if count == 0:
            return np.full(_shape(t) or (), np.nan, dtype=dtype)
        total = _stack_reduce(np.add, t, leaves)
        with np.errstate(all="ignore"):
            return np.asarray(total / dtype.type(count), dtype=dtype)

    return map_structure(leaf, type_spec, *values) if count else map_structure(leaf, type_spec)


def weighted_mean_values(values: Sequence, weights: Sequence, type_spec, weight_type):
    """Sum of value * weight divided by the sum of weights (TFF's lowering, with its casts)."""
    weight_dtype = _dtype(weight_type)
    weight_leaves = [np.asarray(w, dtype=weight_dtype) for w in weights]
    with np.errstate(over="ignore", invalid="ignore"):
        weight_total = (_stack_reduce(np.add, weight_type, weight_leaves) if weights
                        else weight_dtype.type(0))

    def leaf(t, *leaves):
        dtype = _dtype(t)
        if not leaves:
            return np.full(_shape(t) or (), np.nan, dtype=dtype)
        with np.errstate(all="ignore"):
            products = [np.asarray(v * np.asarray(w).astype(dtype), dtype=dtype)
                        for v, w in zip(leaves, weight_leaves)]
            total = _stack_reduce(np.add, t, products)
            return np.asarray(total / np.asarray(weight_total).astype(dtype), dtype=dtype)

    return map_structure(leaf, type_spec, *values)


def _identity(t, for_min: bool) -> np.ndarray:
    dtype = _dtype(t)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
    elif dtype.kind == "f":
        info = np.finfo(dtype)
    else:
        raise errors.ComputationError(f"federated_min/max need integer or float values, found {t}")
    return np.full(_shape(t) or (), info.max if for_min else info.min, dtype=dtype)


def min_values(values: Sequence, type_spec):
    if not values:
        return map_structure(lambda t: _identity(t, True), type_spec)
    return map_structure(lambda t, *leaves: _stack_reduce(np.minimum, t, leaves), type_spec, *values)


def max_values(values: Sequence, type_spec):
    if not values:
        return map_structure(lambda t: _identity(t, False), type_spec)
    return map_structure(lambda t, *leaves: _stack_reduce(np.maximum, t, leaves), type_spec, *values)


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
        total_weight = _stack_reduce(np.add, weight_type, weights)

    def leaf(t, *leaves):
        dtype = _dtype(t)
        with np.errstate(all="ignore"):
            parts = [np.where(np.asarray(w) == 0, dtype.type(0),
                              np.asarray(m, dtype=dtype) * np.asarray(w).astype(dtype))
                     for m, w in zip(leaves, weights)]
            total = _stack_reduce(np.add, t, parts)
            return np.asarray(total / np.asarray(total_weight).astype(dtype), dtype=dtype)

    return map_structure(leaf, type_spec, *means)
