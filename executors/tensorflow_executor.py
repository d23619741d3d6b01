"""The leaf executor: runs `tensorflow` computations and holds plain values.

Its representation of a value is tffexec's Python representation itself (numpy arrays, `Struct`s,
`SequenceValue`s; see `tffexec.formats`), so materialising is free. Functions are `GraphFunction`s,
imported once per distinct graph and reused for every call and every client.
"""
from __future__ import annotations

import contextlib
import hashlib
import threading
from typing import Any, ContextManager, Optional

import federated_language
import numpy as np
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec.executors import base
from tffexec.executors import tf_function
from tffexec import tf_runtime
from tffexec.formats import arrays
from tffexec.formats import normalize
from tffexec.checks import op_check
from tffexec import policy as policy_lib
from tffexec.formats import sequences


class LeafFunction:
    """A `tensorflow` computation embedded in the leaf, with its function type."""

    __slots__ = ("graph_function", "type_signature")

    def __init__(self, graph_function: tf_function.GraphFunction, type_signature):
        self.graph_function = graph_function
        self.type_signature = type_signature


class TensorFlowExecutor(base.SyncExecutor):
    """Leaf of every stack: TensorFlow is the external runtime that does the tensor math."""

    def __init__(self, *, seed: int | None = None, policy=None, device: str | None = None):
        self._seed = seed
        self._device = device  # "cpu", "gpu" or "gpu:N": where imported graphs are placed
        self._tf_device_name: Optional[str] = None  # TensorFlow's name for it, checked once
        # Which ops may run and how long sequences may be: graphs are checked before they are
        # imported, dataset graphs in values before they become datasets (see op_check).
        self._policy = policy if policy is not None else policy_lib.DEFAULT
        self._lock = threading.Lock()
        # id(proto) -> (proto, function): protos stay alive, so ids are not reused.
        self._by_identity: dict[int, tuple[Any, LeafFunction]] = {}
        # digest of the serialized computation -> GraphFunction (shared by equal graphs).
        self._by_content: dict[bytes, tf_function.GraphFunction] = {}

    # -- embedding ------------------------------------------------------------------------
    def value(self, value: Any, type_spec=None) -> base.ExecValue:
        if isinstance(value, computation_pb2.Computation):
            return self._computation(value)
        if isinstance(value, base.ExecValue):
            raise errors.InternalError("an executor value was embedded as a plain value")
        if type_spec is None:
            raise errors.InternalError("the leaf executor needs a type for plain values")
        if not isinstance(value, (np.ndarray, structure.Struct, sequences.SequenceValue)):
            # Loose Python values (from federated-language's context or the Python API) are
            # converted to the type's dtypes here; values from tffexec's loaders already are.
            value = normalize.normalize(value, type_spec, path="value")
        # Sequences are read under this stack's policy; their dataset graphs are checked now,
        # before anything can turn them into datasets.
        op_check.check_value(value, type_spec, self._policy, path="value")
        return base.ExecValue(value, type_spec, self)

    def _computation(self, comp: computation_pb2.Computation) -> base.ExecValue:
        kind = comp.WhichOneof("computation")
        if kind == "tensorflow":
            # Seen before (every round embeds the same protos): no type parsing, no hashing.
            hit = self._by_identity.get(id(comp))
            if hit is not None and hit[0] is comp:
                return base.ExecValue(hit[1], hit[1].type_signature, self)
            type_spec = federated_language.Type.from_proto(comp.type)
            return base.ExecValue(self._function(comp, type_spec), type_spec, self)
        type_spec = federated_language.Type.from_proto(comp.type)
        if kind == "literal":
            return base.ExecValue(arrays.array_from_proto(comp.literal.value), type_spec, self)
        if kind in ("data", "xla"):
            raise errors.ComputationError(
                f"`{kind}` computations are not supported yet (node kind {kind!r})")
        raise errors.ComputationError(
            f"the TensorFlow executor cannot evaluate a {kind!r} node; it must be resolved above it")

    def leaf_function(self, comp: computation_pb2.Computation, type_spec) -> LeafFunction:
        """The `tensorflow` computation `comp` of `type_spec` as this leaf imports it (checked
        and imported once per graph content), for layers that compile it into larger functions."""
        return self._function(comp, type_spec)

    def _function(self, comp: computation_pb2.Computation, type_spec) -> LeafFunction:
        hit = self._by_identity.get(id(comp))
        if hit is not None and hit[0] is comp:
            return hit[1]
        with self._lock:
            digest = hashlib.sha256(comp.tensorflow.SerializeToString(deterministic=True)).digest()
            graph_function = self._by_content.get(digest)
            if graph_function is None:
                graph_function = tf_function.GraphFunction(comp.tensorflow, seed=self._seed,
                                                           policy=self._policy)
                self._by_content[digest] = graph_function
            function = LeafFunction(graph_function, type_spec)
            self._by_identity[id(comp)] = (comp, function)
        return function

    # -- composition ----------------------------------------------------------------------
    def call(self, function: base.ExecValue, argument: Optional[base.ExecValue] = None):
        fn = function.rep
        if not isinstance(fn, LeafFunction):
            raise errors.ComputationError(
                f"cannot call a value of type {function.type_signature}: it is not a function")
        fn_type = fn.type_signature
        flat_args = []
        if fn_type.parameter is not None:
            if argument is None:
                raise errors.ComputationError(f"function {fn_type} called without its argument")
            flat_args = [self._to_tf(v) for v in
                         tf_function.flatten(argument.rep, fn_type.parameter)]
        if self._device is None:
            outputs = fn.graph_function(flat_args)
        else:
            with tf_runtime.tensorflow().device(self._tf_device()):
                outputs = fn.graph_function(flat_args)
        kinds = iter(kind for kind, _ in fn.graph_function.result_leaves)
        result = tf_function.pack(
            outputs, fn_type.result, lambda tensor, t: self._from_tf(tensor, t, next(kinds)))
        return base.ExecValue(result, fn_type.result, self)

    def struct(self, elements):
        rep = structure.Struct([(name, v.rep) for name, v in elements])
        return base.ExecValue(rep, base.struct_type(elements), self)

    def selection(self, source: base.ExecValue, index: int):
        if not isinstance(source.rep, structure.Struct):
            raise errors.ComputationError(f"cannot select [{index}] from {source.type_signature}")
        if not 0 <= index < len(source.rep):
            raise errors.ComputationError(
                f"selection [{index}] out of range for {source.type_signature}")
        return base.ExecValue(source.rep[index], source.element_type(index), self)

    def materialize(self, value: base.ExecValue):
        rep = value.rep
        if isinstance(rep, LeafFunction):
            raise errors.ComputationError("a TensorFlow function cannot be returned as a result")
        return rep

    def _tf_device(self) -> str:
        """The TensorFlow device of `--device` (checked once: exit 7 when there is no GPU)."""
        name = self._tf_device_name
        if name is None:
            name = self._tf_device_name = tf_runtime.check_device(self._device)
        return name

    def device_scope(self) -> ContextManager:
        """Where this leaf's TensorFlow work runs (for calls made on its behalf, e.g. batched
        ones): `--device`, or TensorFlow's choice when none was given."""
        if self._device is None:
            return contextlib.nullcontext()
        return tf_runtime.tensorflow().device(self._tf_device())

    # -- conversions at the TensorFlow boundary -------------------------------------------------
    def _to_tf(self, value):
        if isinstance(value, sequences.SequenceValue):
            # Bounded when it becomes a dataset or element tensors (`GraphFunction`): an
            # infinite or over-long sequence never reaches a graph.
            return self._bound(value)
        return value

    def bound_sequence(self, sequence: sequences.SequenceValue) -> sequences.SequenceValue:
        """`sequence` read under this stack's policy (see `_bound`)."""
        return self._bound(sequence)

    def _bound(self, sequence: sequences.SequenceValue) -> sequences.SequenceValue:
        """The sequence, read under this stack's policy; its graph is checked before first use."""
        return sequence.bind_policy(self._policy, op_check.check_dataset_graph)

    def _from_tf(self, tensor, type_spec, kind: str):
        if kind == "variant":
            tf = tf_runtime.tensorflow()
            graph = tf.raw_ops.DatasetToGraphV2(input_dataset=tensor)
            return self._bound(sequences.SequenceValue(type_spec.element, graph_def=graph.numpy()))
        if kind == "graph_def":
            # Bytes a graph computed: checked like any dataset graph before they are read.
            return self._bound(sequences.SequenceValue(type_spec.element,
                                                       graph_def=tensor.numpy()))
        return tf_function.to_numpy(tensor, type_spec.dtype)
