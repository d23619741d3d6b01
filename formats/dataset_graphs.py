"""The elements of simple serialized datasets, read with numpy instead of a tf.data pipeline.

Why: TFF sends each client's dataset as a `DatasetToGraphV2` graph. Building a dataset from it in
TensorFlow and pulling its elements costs ~20 ms per client, which is most of a vectorised
training round of 100 clients (the clients' math is one call of a few milliseconds). The graphs
TFF writes for data made with `from_tensor_slices(...)` and `batch(...)` are a handful of nodes
whose meaning is plain slicing and stacking of the graph's own constants: here they are read as
exactly those numpy operations, giving the elements bit for bit as tf.data yields them.

What is read (`read_elements`): a graph without a function library whose dataset is built from
`TensorSliceDataset`/`TensorDataset` over constants, through `BatchDatasetV2`, `TakeDataset`,
`SkipDataset`, `RepeatDataset` (finite counts), `ConcatenateDataset`, `PrefetchDataset` and
`OptionsDataset`. Anything else (a map, filter, shuffle, a file reader, a component whose dtype
or shape does not fit the element type) returns None and the caller takes TensorFlow's path,
which gives its own answers and errors. The element limit is applied before any stage
materialises more than it allows.
"""
from __future__ import annotations

import os
from typing import Callable, Optional

import federated_language as fl
import numpy as np
from federated_language.common_libs import structure
from google.protobuf.message import DecodeError

from tffexec.errors import ArgumentError
from tffexec.formats import arrays
from tffexec.formats import types as tt
from tffexec.formats.protos import tf_graph_pb2

#: Stages that pass their input's elements through unchanged.
_PASS_THROUGH = frozenset({"PrefetchDataset", "OptionsDataset", "Identity"})

Element = tuple  # the components of one element, in tf.nest order

#: Environment switch: "0" reads every dataset graph with TensorFlow (to compare the two).
ENV_SWITCH = "TFFEXEC_STATIC_DATASETS"


def enabled() -> bool:
    """Whether dataset graphs are read with numpy where they can be."""
    return os.environ.get(ENV_SWITCH, "1") != "0"


class _NotStatic(Exception):
    """The graph holds something this reader does not reproduce: TensorFlow reads it."""


def read_elements(graph_def: bytes, element_type: fl.Type, limit: int,
                  too_long: Callable[[int], Exception]) -> Optional[list]:
    """The sequence's element values (as `SequenceValue.elements()` gives them), or None when
    the graph is not one this module reads.

    Raises:
      what `too_long(count)` makes (the policy's `PolicyError`): the dataset has more than
      `limit` elements.
    """
    leaf_types = _leaf_types(element_type)
    if leaf_types is None:
        return None
    try:
        graph = tf_graph_pb2.GraphDef.FromString(graph_def)
        if graph.library.function:
            return None
        reader = _Reader(graph, limit, too_long)
        elements = reader.dataset(reader.output())
        return [_to_value(_fit(e, leaf_types), element_type) for e in elements]
    except (_NotStatic, ArgumentError, DecodeError, ValueError, TypeError, IndexError):
        return None  # TensorFlow's path reads it, or says what is wrong with it


class _Reader:
    """Evaluates the dataset nodes of one graph, each at most once."""

    def __init__(self, graph, limit: int, too_long: Callable[[int], Exception]):
        self.nodes = {node.name: node for node in graph.node}
        self.limit = limit
        self.too_long = too_long
        self._memo: dict[str, list] = {}

    def output(self) -> str:
        sinks = [n for n in self.nodes.values() if n.op == "_Retval"]
        if len(sinks) != 1 or len(sinks[0].input) != 1:
            raise _NotStatic()
        return sinks[0].input[0]

    def node(self, ref: str):
        name, _, port = ref.partition(":")
        if ref.startswith("^") or port not in ("", "0") or name not in self.nodes:
            raise _NotStatic()
        return self.nodes[name]

    def constant(self, ref: str) -> np.ndarray:
        node = self.node(ref)
        if node.op != "Const":
            raise _NotStatic()
        return arrays.tensor_proto_to_array(node.attr["value"].tensor)

    def count(self, ref: str) -> int:
        value = self.constant(ref)
        if value.shape != () or value.dtype.kind not in "iu":
            raise _NotStatic()
        return int(value)

    def dataset(self, ref: str) -> list:
        node = self.node(ref)
        if node.name not in self._memo:
            elements = self._evaluate(node)
            if len(elements) > self.limit:
                raise self.too_long(len(elements))
            self._memo[node.name] = elements
        return self._memo[node.name]

    def _data_inputs(self, node) -> list[str]:
        return [i for i in node.input if not i.startswith("^")]

    def _evaluate(self, node) -> list:
        inputs = self._data_inputs(node)
        op = node.op
        if op == "TensorSliceDataset":
            components = [self.constant(i) for i in inputs]
            if not components or any(c.ndim == 0 for c in components) or \
                    len({c.shape[0] for c in components}) != 1:
                raise _NotStatic()
            rows = components[0].shape[0]
            if rows > self.limit:
                raise self.too_long(rows)
            return [tuple(c[i] for c in components) for i in range(rows)]
        if op == "TensorDataset":
            return [tuple(self.constant(i) for i in inputs)]
        if op in _PASS_THROUGH:
            return self.dataset(inputs[0])
        if op == "BatchDatasetV2":
            return self._batch(self.dataset(inputs[0]), self.count(inputs[1]),
                               bool(self.constant(inputs[2])))
        if op == "TakeDataset":
            count = self.count(inputs[1])
            source = self.dataset(inputs[0])
            return source if count < 0 else source[:count]
        if op == "SkipDataset":
            count = self.count(inputs[1])
            return [] if count < 0 else self.dataset(inputs[0])[count:]
        if op == "RepeatDataset":
            count, source = self.count(inputs[1]), self.dataset(inputs[0])
            if count < 0 and source:
                raise _NotStatic()  # infinite: TensorFlow's path refuses it with its message
            total = len(source) * max(count, 0)
            if total > self.limit:
                raise self.too_long(total)
            return source * max(count, 0)
        if op == "ConcatenateDataset":
            return self.dataset(inputs[0]) + self.dataset(inputs[1])
        raise _NotStatic()

    @staticmethod
    def _batch(source: list, size: int, drop_remainder: bool) -> list:
        if size < 1:
            raise _NotStatic()
        out = []
        for start in range(0, len(source), size):
            run = source[start:start + size]
            if len(run) < size and drop_remainder:
                break
            shapes = {tuple(np.shape(c) for c in e) for e in run}
            if len(shapes) != 1:
                raise _NotStatic()  # tf.data refuses components of different shapes
            out.append(tuple(np.stack(column) for column in zip(*run)))
        return out


def nest_members(element_type) -> Optional[list]:
    """A struct's (index, type) members in tf.nest order (named structs by sorted name, as
    datasets order dicts), or None for a tensor: the order of a dataset's components."""
    if not isinstance(element_type, fl.StructType):
        return None
    members = list(enumerate(element_type.items()))
    if members and all(name is not None for _, (name, _) in members):
        members.sort(key=lambda member: member[1][0])
    return [(i, member_type) for i, (_, member_type) in members]


def _leaf_types(t: fl.Type) -> Optional[list]:
    """The element type's tensor leaves in tf.nest order; None for element types this reader
    does not produce (strings, mixed named and unnamed members, non-tensors)."""
    if isinstance(t, fl.TensorType):
        return None if tt.is_string(t.dtype) else [t]
    if not isinstance(t, fl.StructType) or len({n is None for n, _ in t.items()}) > 1:
        return None
    out: list = []
    for _, member in nest_members(t):
        leaves = _leaf_types(member)
        if leaves is None:
            return None
        out.extend(leaves)
    return out


def _fit(element: Element, leaf_types: list) -> list:
    """The element's components, checked against the type's leaves (dtype, known dims)."""
    if len(element) != len(leaf_types):
        raise _NotStatic()
    out = []
    for component, t in zip(element, leaf_types):
        if component.dtype != np.dtype(t.dtype):
            raise _NotStatic()
        if t.shape is not None and (len(t.shape) != component.ndim or any(
                d is not None and d != a for d, a in zip(t.shape, component.shape))):
            raise _NotStatic()
        out.append(component)
    return out


def _to_value(leaves: list, t: fl.Type):
    """The element value from its leaves in tf.nest order (the inverse of `_leaf_types`): fresh
    arrays of the type's value dtype, as `SequenceValue.elements()` gives them."""
    return _build(t, iter(leaves))


def _build(t: fl.Type, leaves):
    if isinstance(t, fl.TensorType):
        return np.array(next(leaves), dtype=tt.value_dtype(t))
    built = {i: _build(member, leaves) for i, member in nest_members(t)}
    return structure.Struct([(name, built[i]) for i, (name, _) in enumerate(t.items())])
