"""`{T}@CLIENTS` values held as columns: one array per tensor leaf, leading axis = clients.

Why: a million clients as a million Python objects cost seconds to create, check and stack
again, at every step (decode, normalise, embed, batch); as columns they cost one array per leaf.
The loaders decode straight into columns (a stacked npz array is used as it is, pb members are
copied into one preallocated column per leaf), the Python API takes arrays with a client axis,
and the batched executors take the columns without looking at a single member
(`executors/batch.py`). Values whose members are not all tensors of one shape per leaf (ragged
data, sequences, strings of mixed forms) keep the per-client list.

`ClientColumns` is a read-only `Sequence` of the members, built lazily, so every consumer that
iterates, indexes or takes `len` of a per-client list keeps working; `members()` is the list.
The tensor-leaf helpers (`leaf_types`, `flatten`, `pack`) live here, below the executors, so
that formats and executors walk a member type the same way.
"""
from __future__ import annotations

import collections.abc
from typing import Iterator, Optional, Sequence

import federated_language as fl
import numpy as np
from federated_language.common_libs import structure


def leaf_types(type_spec) -> Optional[list]:
    """The tensor types of `type_spec`'s leaves in binding order; None if a leaf is not a tensor."""
    out: list = []
    stack = [type_spec]
    while stack:
        t = stack.pop()
        if isinstance(t, fl.StructType):
            stack.extend(reversed([member for _, member in t.items()]))
        elif isinstance(t, fl.TensorType):
            out.append(t)
        else:
            return None
    return out


def flatten(value, type_spec, out: list) -> bool:
    """Appends the leaves of one plain value of `type_spec` to `out`; False if its structure
    does not follow the type (a leaf is then not a tensor, or a struct is not a `Struct`)."""
    if isinstance(type_spec, fl.StructType):
        if not isinstance(value, structure.Struct):
            return False
        elements = structure.to_elements(value)
        if len(elements) != len(type_spec):
            return False
        return all(flatten(v, t, out) for (_, v), (_, t) in zip(elements, type_spec.items()))
    out.append(value)
    return True


def pack(leaves: Sequence, type_spec):
    """The plain value of `type_spec` with these leaves (the inverse of `flatten`)."""
    iterator = iter(leaves)

    def build(t):
        if isinstance(t, fl.StructType):
            return structure.Struct([(name, build(member)) for name, member in t.items()])
        return next(iterator)

    return build(type_spec)


def fits_column(column, tensor_type) -> bool:
    """Whether `column` is a numpy array of clients of `tensor_type` (dtype and shape)."""
    if not isinstance(column, np.ndarray) or column.ndim < 1 or \
            column.dtype != np.dtype(tensor_type.dtype):
        return False
    shape = tensor_type.shape
    if shape is None:
        return True
    return len(shape) == column.ndim - 1 and all(
        d is None or d == a for d, a in zip(shape, column.shape[1:]))


class ClientColumns(collections.abc.Sequence):
    """The members of a `{T}@CLIENTS` value, one stacked array per tensor leaf of `member_type`.

    Attributes:
      member_type: the type of one client's value (its leaves are tensors).
      leaves: per leaf in binding order, an array of shape [clients, *leaf_shape].

    Indexing gives one member (an array view, 0-d for a scalar leaf, or a `Struct` of them), slicing
    gives the columns of those clients (views, no copy); nothing per client is built until a
    member is asked for.
    """

    __slots__ = ("member_type", "leaves")

    #: Members built from columns in this process (by indexing or iterating): the columnar
    #: path builds none, which tests and benchmarks check with this counter.
    members_built = 0

    def __init__(self, member_type, leaves: list):
        if not leaves or any(np.ndim(leaf) < 1 for leaf in leaves) or \
                len({leaf.shape[0] for leaf in leaves}) != 1:
            raise ValueError("client columns need at least one leaf, all with the same number "
                             "of clients on their first axis")
        self.member_type = member_type
        self.leaves = list(leaves)

    def __len__(self) -> int:
        return self.leaves[0].shape[0]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ClientColumns(self.member_type, [leaf[index] for leaf in self.leaves])
        # `leaf[i, ...]`: an array (0-d for a scalar leaf), as the decoders give one member.
        ClientColumns.members_built += 1
        return pack([leaf[index, ...] for leaf in self.leaves], self.member_type)

    def __iter__(self) -> Iterator:
        if len(self.leaves) == 1 and isinstance(self.member_type, fl.TensorType):
            return self._members_of(self.leaves[0])
        return (self[i] for i in range(len(self)))

    @staticmethod
    def _members_of(leaf: np.ndarray) -> Iterator:
        for i in range(leaf.shape[0]):
            ClientColumns.members_built += 1
            yield leaf[i, ...]

    def members(self) -> list:
        """The per-client list (what the value is without columns)."""
        return list(self)

    def take(self, clients: Sequence[int]) -> "ClientColumns":
        """The columns of these clients, in this order (one gather per leaf, no member)."""
        index = np.asarray(clients, dtype=np.intp)
        return ClientColumns(self.member_type, [leaf[index] for leaf in self.leaves])

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns (object columns count their strings' lengths)."""
        total = 0
        for leaf in self.leaves:
            if leaf.dtype.kind == "O":
                total += sum(len(x) if isinstance(x, (bytes, str)) else 8 for x in leaf.flat)
            else:
                total += leaf.nbytes
        return total

    def __repr__(self) -> str:
        return f"ClientColumns({len(self)} clients of {self.member_type})"

    __hash__ = None  # a sequence of arrays: not hashable, as the list it stands for

    def __reduce__(self):
        return (ClientColumns, (self.member_type, self.leaves))


def stack_members(values: Sequence, member_type) -> Optional[ClientColumns]:
    """The columns of per-client values that all have the member type's leaves as numpy arrays
    of one dtype and one shape per leaf (already checked members); None otherwise (ragged,
    not tensors, no clients)."""
    types = leaf_types(member_type)
    if not types or not values:
        return None
    if isinstance(member_type, fl.TensorType):
        first = values[0]
        if not isinstance(first, (np.ndarray, np.generic)):
            return None
        dtype, shape = first.dtype, np.shape(first)
        if not all((type(v) is np.ndarray or isinstance(v, np.generic)) and v.dtype == dtype
                   and v.shape == shape for v in values):
            return None
        column = np.stack(values)
        return ClientColumns(member_type, [column]) if fits_column(column, member_type) else None
    per_leaf: list[list] = [[] for _ in types]
    for value in values:
        flat: list = []
        if not flatten(value, member_type, flat) or len(flat) != len(types):
            return None
        for column, leaf in zip(per_leaf, flat):
            column.append(leaf)
    leaves = []
    for column, t in zip(per_leaf, types):
        first = column[0]
        if not isinstance(first, (np.ndarray, np.generic)) or not all(
                isinstance(v, (np.ndarray, np.generic)) and v.dtype == first.dtype
                and v.shape == first.shape for v in column):
            return None
        stacked = np.stack(column)
        if not fits_column(stacked, t):
            return None
        leaves.append(stacked)
    return ClientColumns(member_type, leaves)


def as_lists(value, type_spec):
    """`value` with every `ClientColumns` inside it (as its type says) turned into the
    per-client list: the result form of the Python API unless columns are asked for."""
    if isinstance(value, ClientColumns):
        return value.members()
    if isinstance(type_spec, fl.StructType) and isinstance(value, structure.Struct):
        elements = structure.to_elements(value)
        if any(isinstance(t, (fl.StructType, fl.FederatedType)) for _, t in type_spec.items()):
            return structure.Struct([(n, as_lists(v, t)) for (n, v), (_, t) in
                                     zip(elements, type_spec.items())])
    return value
