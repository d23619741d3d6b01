"""The compiled round's symbolic values and its argument as flat arrays (see `tf_round`).

While a round is traced (`tf_round`), a struct is a `Tup`, a sequence a `Seq` of its elements'
component tensors, a federated value `Placed`; a CLIENTS member's tensors are `Leaf`s, stacked
along a leading client axis or equal for every client. `Inputs` turns a call's argument into
the flat arrays the compiled function takes (clients stacked, datasets as element arrays), the
structure key a compiled function is kept under, and the template of the symbolic parameter.
"""
from __future__ import annotations

import dataclasses
import weakref
from typing import Any, Optional

import federated_language as fl
import numpy as np
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec.executors import tensorflow_executor
from tffexec.executors import tf_loop_feed
from tffexec.executors import tf_vectorised
from tffexec.formats import columns as columns_lib
from tffexec.formats import sequences

#: Elements per client dataset up to which reductions are unrolled (as `tf_vectorised`).
MAX_ELEMENTS = tf_vectorised.MAX_ELEMENTS
#: Dataset structures among one CLIENTS value's clients up to which a round compiles (each
#: bucket is one more vectorised function to trace).
MAX_BUCKETS = tf_vectorised.MAX_TRACES


class Unsupported(Exception):
    """The computation (or this argument) holds something the compiled round does not lower."""


# -- symbolic values -------------------------------------------------------------------------------
@dataclasses.dataclass
class Tup:
    """A struct: (name or None, value) pairs."""

    items: list


@dataclasses.dataclass
class Seq:
    """A sequence as its elements: per element, its component tensors in tf.nest order (for a
    CLIENTS sequence, `Leaf`s)."""

    items: list


@dataclasses.dataclass
class Leaf:
    """One tensor of a CLIENTS value: stacked along a leading client axis, or equal for all."""

    tensor: Any
    stacked: bool


@dataclasses.dataclass
class Bucketed:
    """A CLIENTS member whose clients differ in structure (datasets of other lengths): per
    bucket of clients of one structure, their indices (int32, in client order) and their member,
    its leaves stacked over the bucket's clients. Only zips and maps take it; a map's results
    are stitched back into one stacked value in client order."""

    buckets: list


@dataclasses.dataclass
class Placed:
    """A federated value: its member (SERVER, or a nest of `Leaf`s at CLIENTS)."""

    clients: bool
    member: Any


@dataclasses.dataclass
class Closure:
    comp: Any
    scope: Optional["Scope"]


@dataclasses.dataclass
class Intrinsic:
    uri: str
    type_spec: Any


class Scope:
    __slots__ = ("bindings", "parent")

    def __init__(self, bindings: dict, parent: Optional["Scope"]):
        self.bindings, self.parent = bindings, parent

    def lookup(self, name: str):
        scope = self
        while scope is not None:
            if name in scope.bindings:
                return scope.bindings[name]
            scope = scope.parent
        raise Unsupported(f"reference to unbound name {name!r}")


def leaves_of(value, out: list) -> list:
    """The tensor leaves of a symbolic nest (sequence components included), in order."""
    if isinstance(value, Tup):
        for _, item in value.items:
            leaves_of(item, out)
    elif isinstance(value, Seq):
        for element in value.items:
            out.extend(element)
    elif isinstance(value, Bucketed):
        raise Unsupported("clients of several structures where a stacked value is needed")
    elif isinstance(value, (Placed, Closure, Intrinsic, computation_pb2.Computation)):
        raise Unsupported("a function or federated value inside a client value")
    else:
        out.append(value)
    return out


def rebuild(template, leaves) -> Any:
    """`template` with its leaves replaced, in order, by `leaves` (an iterator)."""
    if isinstance(template, Tup):
        return Tup([(name, rebuild(item, leaves)) for name, item in template.items])
    if isinstance(template, Seq):
        return Seq([tuple(next(leaves) for _ in element) for element in template.items])
    return next(leaves)


# -- the argument --------------------------------------------------------------------------------
@dataclasses.dataclass
class _Slot:
    """Where a parameter leaf sits in the flat inputs; `clients`: one of a CLIENTS member
    (`stacked`: along the client axis, else equal for every client)."""

    index: int
    clients: bool = False
    stacked: bool = False


class Inputs:
    """The argument as flat arrays in binding order (CLIENTS members stacked along a leading
    client axis, sequences as their elements' components), the structure they have (the cache
    key) and a template of the symbolic parameter (`Tup`/`Seq`/`Placed` over `_Slot`s)."""

    def __init__(self, leaf: tensorflow_executor.TensorFlowExecutor, num_clients: int,
                 memo: Optional["ClientsMemo"] = None):
        self._leaf = leaf
        self.num_clients = num_clients
        self.arrays: list = []
        self.tensors: list = []  # per array: its tensor when one is at hand (`ClientsMemo`)
        self.dynamic: list = []  # per array: whether its leading axis is left unknown
        self.key: list = []
        self._memo = memo
        self._clients_seen = 0
        #: The most bucket functions one CLIENTS value needs traced (its clients' dataset
        #: structures up to batch sizes; 1 when all are alike).
        self.traced_buckets = 1

    def add(self, value, type_spec):
        """Adds `value` of `type_spec`; its template."""
        if isinstance(type_spec, fl.FederatedType):
            if type_spec.placement is fl.CLIENTS and not type_spec.all_equal:
                self.key.append("clients")
                return Placed(True, self._clients(value, type_spec.member))
            self.key.append("placed")
            member = self.add(value, type_spec.member)
            if type_spec.placement is fl.CLIENTS:  # all equal: one member for every client
                member = rebuild(member, iter(_Slot(s.index, True, False)
                                               for s in leaves_of(member, [])))
            return Placed(type_spec.placement is fl.CLIENTS, member)
        if isinstance(type_spec, fl.StructType):
            elements = (structure.to_elements(value) if isinstance(value, structure.Struct)
                        else list(enumerate(value)) if isinstance(value, (list, tuple)) else None)
            if elements is None or len(elements) != len(type_spec):
                raise Unsupported("an argument struct that does not fit its type")
            return Tup([(name, self.add(item, item_type)) for (_, item), (name, item_type)
                        in zip(elements, type_spec.items())])
        if isinstance(type_spec, fl.SequenceType):
            items = [tuple(self._array(np.asarray(c), component=True) for c in element)
                     for element in self._elements(value, type_spec)]
            self.key.append(("sequence", len(items)))
            return Seq(items)
        if not isinstance(type_spec, fl.TensorType):
            raise Unsupported(f"an argument of type {type_spec}")
        dtype = np.dtype(type_spec.dtype)
        return self._array(np.asarray(value) if dtype.kind in "OSU"
                           else np.asarray(value, dtype=dtype))

    def _array(self, array: np.ndarray, clients: bool = False, dynamic: bool = False,
               component: bool = False) -> _Slot:
        """Adds one flat array; `dynamic`: its leading axis (a bucket's clients) is left unknown
        to the compiled function, which then serves any split of the clients into buckets;
        `component`: one component of a dataset element (its key says so: see `traced`)."""
        if array.dtype.kind in "OSU" and clients:
            raise Unsupported("string tensors at clients")
        self.arrays.append(array)
        self.tensors.append(None)
        self.dynamic.append(dynamic)
        self.key.append((array.dtype.str, (None,) + array.shape[1:] if dynamic else array.shape)
                        + (("component",) if component else ()))
        return _Slot(len(self.arrays) - 1, clients, clients)

    def _elements(self, value, type_spec) -> list:
        if not isinstance(value, sequences.SequenceValue):
            raise Unsupported("a sequence that is not a dataset value")
        sequence = self._leaf.bound_sequence(value)
        if not tf_loop_feed.loopable(sequence):
            raise Unsupported("a dataset whose elements vary between iterations")
        elements = sequence.elements()
        if len(elements) > MAX_ELEMENTS:
            raise Unsupported(f"a dataset of over {MAX_ELEMENTS} elements")
        return [tf_loop_feed.element_leaves(e, type_spec.element) for e in elements]

    def _clients(self, value, member_type):
        if isinstance(value, columns_lib.ClientColumns):
            if len(value) != self.num_clients:
                raise Unsupported("client columns of another count")
            types = list(tensor_types(member_type))
            if len(types) != len(value.leaves):
                raise Unsupported("client columns that do not fit the member type")
            slots = iter([self._array(np.asarray(a, dtype=np.dtype(t.dtype)), clients=True)
                          for a, (_, t) in zip(value.leaves, types)])
            return _template(member_type, slots)
        if not isinstance(value, (list, tuple)) or len(value) != self.num_clients or not value:
            raise Unsupported("a CLIENTS value that is not one member per client")
        position, self._clients_seen = self._clients_seen, self._clients_seen + 1
        # Only datasets are remembered: a `SequenceValue` never changes, an array may be
        # written in place between two calls.
        memo = self._memo if all(isinstance(m, sequences.SequenceValue) for m in value) else None
        hit = memo.get(position, value) if memo is not None else None
        base = len(self.arrays)
        if hit is not None:
            key, arrays, tensors, dynamic, local = hit
            for array, flag in zip(arrays, dynamic):
                self._array(array, clients=True, dynamic=flag)
            self.tensors[base:] = tensors
            self.key.append(key)  # after the arrays' own entries, as when they are read
            self.traced_buckets = max(self.traced_buckets, len({traced(k) for k in key[1]}))
            return _offset(local, base)
        per_client, templates = [], []
        for member in value:
            inputs = Inputs(self._leaf, self.num_clients)
            templates.append(inputs.add(member, member_type))
            per_client.append(inputs)
        if any(isinstance(s, Placed) for s in walk(templates[0])):
            raise Unsupported("a federated value inside a CLIENTS member")
        groups: dict = {}
        for index, inputs in enumerate(per_client):
            groups.setdefault(tuple(inputs.key), []).append(index)
        traced_count = len({traced(k) for k in groups})
        if traced_count > MAX_BUCKETS:
            raise Unsupported(f"clients of over {MAX_BUCKETS} dataset structures")
        self.traced_buckets = max(self.traced_buckets, traced_count)
        buckets = []
        for structure_key in sorted(groups, key=repr):
            members = groups[structure_key]
            bucketed = len(groups) > 1
            indices = (self._array(np.asarray(members, np.int32), dynamic=True)
                       if bucketed else None)
            start = len(self.arrays) - base
            group = [per_client[i] for i in members]
            for index in range(len(group[0].arrays)):
                self._array(np.stack([p.arrays[index] for p in group]), clients=True,
                            dynamic=bucketed)
            member = rebuild(templates[members[0]], iter(
                _Slot(start + s.index, True, True) for s in leaves_of(templates[members[0]], [])))
            buckets.append((None if indices is None else _Slot(indices.index - base), member))
        local = buckets[0][1] if len(buckets) == 1 else BucketedSlots(buckets)
        key = ("member", tuple(sorted(groups, key=repr)))
        self.key.append(key)
        if memo is not None:
            memo.put(position, value, (key, self.arrays[base:], self.tensors[base:],
                                       self.dynamic[base:], local))
        return _offset(local, base)


def traced(key: tuple) -> tuple:
    """A client's structure key without its elements' batch sizes: buckets that differ only
    there (a short last batch of another size) share one traced function (`round_intrinsics`)."""
    return tuple((entry[0], (None,) + tuple(entry[1][1:])) + entry[2:]
                 if isinstance(entry, tuple) and entry[-1:] == ("component",) and entry[1]
                 else entry for entry in key)


@dataclasses.dataclass
class BucketedSlots:
    """The template of a `Bucketed` member: per bucket, the slot of its indices and its member."""

    buckets: list


def _offset(template, base: int):
    """`template` with every slot moved `base` places on (slots of a memo entry, or of the
    bucket members, are counted from the first array of their CLIENTS value)."""
    if isinstance(template, Tup):
        return Tup([(name, _offset(item, base)) for name, item in template.items])
    if isinstance(template, Seq):
        return Seq([tuple(_offset(c, base) for c in element) for element in template.items])
    if isinstance(template, BucketedSlots):
        return BucketedSlots([(_offset(i, base), _offset(m, base)) for i, m in template.buckets])
    return _Slot(template.index + base, template.clients, template.stacked)


class ClientsMemo:
    """The stacked arrays (and their tensors, once converted) of the CLIENTS values of the last
    argument, per position in the argument: a round called again with the same client objects
    (the same datasets, by identity, weakly held) does not read and stack them again."""

    def __init__(self):
        self._entries: dict = {}

    def get(self, position: int, members) -> Optional[tuple]:
        entry = self._entries.get(position)
        if entry is None or len(entry[0]) != len(members) or any(
                ref() is not member for ref, member in zip(entry[0], members)):
            return None
        return entry[1]

    def put(self, position: int, members, value: tuple) -> None:
        try:
            refs = [weakref.ref(member) for member in members]
        except TypeError:  # members that cannot be weakly held are read every call
            return
        self._entries[position] = (refs, value)

    def remember_tensors(self, inputs: "Inputs", tensors: list) -> None:
        """Keeps the tensors made for the stacked arrays of `inputs` beside them."""
        for refs, value in self._entries.values():
            arrays, kept = value[1], value[2]
            for i, array in enumerate(arrays):
                if kept[i] is None:
                    for j, mine in enumerate(inputs.arrays):
                        if mine is array:
                            kept[i] = tensors[j]
                            break


def _template(type_spec, slots):
    if isinstance(type_spec, fl.StructType):
        return Tup([(name, _template(t, slots)) for name, t in type_spec.items()])
    return next(slots)


def walk(template):
    yield template
    if isinstance(template, Tup):
        for _, item in template.items:
            yield from walk(item)
    elif isinstance(template, Placed):
        yield from walk(template.member)


def instantiate(template, tensors: list):
    """The symbolic parameter: `template` with each slot's tensor (a `Leaf` at CLIENTS)."""
    if isinstance(template, Tup):
        return Tup([(name, instantiate(item, tensors)) for name, item in template.items])
    if isinstance(template, Seq):
        return Seq([tuple(instantiate(c, tensors) for c in element)
                    for element in template.items])
    if isinstance(template, Placed):
        return Placed(template.clients, instantiate(template.member, tensors))
    if isinstance(template, BucketedSlots):
        return Bucketed([(tensors[i.index], instantiate(m, tensors)) for i, m in template.buckets])
    tensor = tensors[template.index]
    return Leaf(tensor, template.stacked) if template.clients else tensor


def binding_leaves(value, type_spec, *, placed_leaves: bool = False) -> list:
    """A graph's argument as its leaves in binding order, each sequence as one `Seq`;
    `placed_leaves`: its tensors may be CLIENTS `Leaf`s (else plain tensors only)."""
    if isinstance(type_spec, fl.StructType):
        if not isinstance(value, Tup) or len(value.items) != len(type_spec):
            raise Unsupported("a graph argument that does not fit its parameter")
        return [leaf for (_, item), (_, t) in zip(value.items, type_spec.items())
                for leaf in binding_leaves(item, t, placed_leaves=placed_leaves)]
    if isinstance(type_spec, fl.SequenceType) != isinstance(value, Seq) or isinstance(
            value, (Tup, Placed, Bucketed)) or (isinstance(value, Leaf) and not placed_leaves):
        raise Unsupported("a graph argument that does not fit its parameter")
    return [value]


def pack(outputs, type_spec):
    """The flat `outputs` (an iterator) packed into `type_spec`'s structure as `Tup`s."""
    if isinstance(type_spec, fl.StructType):
        return Tup([(name, pack(outputs, t)) for name, t in type_spec.items()])
    return next(outputs)


def tensor_types(type_spec, path=()):
    """(path, TensorType) of every leaf of a struct of tensors; `Unsupported` otherwise."""
    if isinstance(type_spec, fl.StructType):
        for index, (_, t) in enumerate(type_spec.items()):
            yield from tensor_types(t, path + (index,))
    elif isinstance(type_spec, fl.TensorType):
        yield path, type_spec
    else:
        raise Unsupported(f"an aggregation of {type_spec}")
