"""Columnar client values: the members of a `{T}@CLIENTS` value as one array per tensor leaf.

A per-client loop over 1 000 clients costs 1 000 TensorFlow calls and 1 000 sets of Python
objects; holding the clients' values as columns lets a map run as one vectorised TensorFlow call
and an aggregation as one numpy reduction. A `Batch` keeps, for each tensor leaf of the member
type (in binding order), either a *stacked* array (leading axis = clients) or a *shared* array
(one value that every client has: a broadcast, or a constant zipped with client data), so an
all-equal value never has to be copied once per client.

Only values whose members are tensors of one dtype and one shape per leaf form a batch; sequences,
ragged shapes and loose Python values keep the per-client form. Conversions happen at the edges:
`from_members` when an argument is embedded, `members` when a result is returned (or when some
intrinsic needs the per-client form).

Reductions along the client axis sit beside their per-client twins in `numeric`, so that "the
same bits" can be reviewed in one file.
"""
from __future__ import annotations

from typing import Optional, Sequence

import federated_language
import numpy as np

from tffexec.formats import columns as columns_lib


leaf_types = columns_lib.leaf_types
_flatten = columns_lib.flatten
pack = columns_lib.pack


def leaves_of(value, type_spec) -> Optional[list]:
    """The tensor leaves of one plain value in binding order, or None if it has other leaves."""
    types = leaf_types(type_spec)
    flat: list = []
    if types is None or not _flatten(value, type_spec, flat):
        return None
    if len(flat) != len(types) or not all(_fits(v, t) for v, t in zip(flat, types)):
        return None
    return flat


def _fits(array, tensor_type) -> bool:
    if not isinstance(array, (np.ndarray, np.generic)) or \
            array.dtype != np.dtype(tensor_type.dtype):
        return False
    shape = tensor_type.shape
    if shape is None:
        return True
    return len(shape) == array.ndim and all(d is None or d == a for d, a in zip(shape, array.shape))


class Batch:
    """The members of a CLIENTS value, one column per tensor leaf of `member_type`.

    Attributes:
      member_type: the type of one client's value.
      count: the number of clients.
      leaves: per leaf, an array of shape [count, *leaf_shape] (stacked) or leaf_shape (shared).
      stacked: per leaf, whether it is stacked.
    """

    __slots__ = ("member_type", "count", "leaves", "stacked")

    def __init__(self, member_type, count: int, leaves: list, stacked: list):
        self.member_type = member_type
        self.count = count
        self.leaves = leaves
        self.stacked = stacked

    # -- building ----------------------------------------------------------------------------------
    @classmethod
    def from_members(cls, values: Sequence, member_type) -> Optional["Batch"]:
        """Stacks plain client values, or returns None if they do not share dtype and shape."""
        types = leaf_types(member_type)
        if types is None or not values:
            return None
        if isinstance(values, columns_lib.ClientColumns):
            # Columns from the loaders or the API: one check per leaf, nothing per client.
            if len(values.leaves) != len(types) or not all(
                    columns_lib.fits_column(c, t) for c, t in zip(values.leaves, types)):
                return None
            return cls(member_type, len(values), list(values.leaves), [True] * len(types))
        if isinstance(member_type, federated_language.TensorType):
            # One tensor per client (the common case): one check per client, one stack.
            dtype = np.dtype(member_type.dtype)
            first = values[0]
            if not all((type(v) is np.ndarray or isinstance(v, np.generic)) and v.dtype == dtype
                       for v in values) or \
                    not _fits(first, member_type) or \
                    not all(v.shape == first.shape for v in values):
                return None
            return cls(member_type, len(values), [np.stack(values)], [True])
        columns: list[list] = [[] for _ in types]
        for value in values:
            flat: list = []
            if not _flatten(value, member_type, flat) or len(flat) != len(types):
                return None
            for column, leaf, t in zip(columns, flat, types):
                if not _fits(leaf, t):
                    return None
                column.append(leaf)
        leaves = []
        for column in columns:
            first = column[0].shape
            if any(leaf.shape != first for leaf in column):
                return None  # ragged: keep the per-client form
            leaves.append(np.stack(column))
        return cls(member_type, len(values), leaves, [True] * len(leaves))

    @classmethod
    def shared(cls, value, member_type, count: int) -> Optional["Batch"]:
        """Every client has `value` (an all-equal value); nothing is copied."""
        types = leaf_types(member_type)
        flat: list = []
        if types is None or count == 0 or not _flatten(value, member_type, flat):
            return None
        if len(flat) != len(types) or not all(_fits(v, t) for v, t in zip(flat, types)):
            return None
        return cls(member_type, count, flat, [False] * len(flat))

    @classmethod
    def zip(cls, batches: list[tuple[Optional[str], "Batch"]], member_type) -> "Batch":
        """The batch of a struct whose elements are the given batches (federated_zip)."""
        leaves, stacked = [], []
        for _, b in batches:
            leaves.extend(b.leaves)
            stacked.extend(b.stacked)
        return cls(member_type, batches[0][1].count, leaves, stacked)

    def slice(self, start: int, stop: int) -> "Batch":
        """Clients start..stop-1 (views, no copy)."""
        return Batch(self.member_type, stop - start,
                     [leaf[start:stop] if s else leaf for leaf, s in zip(self.leaves, self.stacked)],
                     list(self.stacked))

    @classmethod
    def concat(cls, parts: list["Batch"]) -> "Batch":
        """The clients of several batches of one type, in order (shared leaves must agree)."""
        first = parts[0]
        if len(parts) == 1:
            return first
        leaves = []
        for index, stacked in enumerate(first.stacked):
            if stacked:
                leaves.append(np.concatenate([p.leaves[index] for p in parts]))
            else:
                leaves.append(first.leaves[index])
        return cls(first.member_type, sum(p.count for p in parts), leaves, list(first.stacked))

    def element(self, index: int) -> "Batch":
        """The batch of element `index` of a struct member type."""
        start = 0
        items = list(self.member_type.items())
        for _, t in items[:index]:
            start += len(leaf_types(t))
        element_type = items[index][1]
        end = start + len(leaf_types(element_type))
        return Batch(element_type, self.count, self.leaves[start:end], self.stacked[start:end])

    # -- reading -----------------------------------------------------------------------------------
    def column(self, index: int) -> np.ndarray:
        """Leaf `index` with the client axis (a read-only broadcast view for a shared leaf)."""
        leaf = self.leaves[index]
        if self.stacked[index]:
            return leaf
        return np.broadcast_to(leaf, (self.count,) + leaf.shape)

    def member(self, client: int):
        return pack([leaf[client] if s else leaf for leaf, s in zip(self.leaves, self.stacked)],
                     self.member_type)

    def members(self) -> list:
        return [self.member(i) for i in range(self.count)]

    def to_columns(self):
        """The clients as `ClientColumns` (a shared leaf as a read-only broadcast view), or the
        per-client list when the member type has no tensor leaf to hold them."""
        if not self.leaves:
            return self.members()
        return columns_lib.ClientColumns(self.member_type,
                                         [self.column(i) for i in range(len(self.leaves))])
