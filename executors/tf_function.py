"""Turns one serialized `tensorflow` computation into a callable TensorFlow function.

The recipe (see tff-runtime-facts.md §7) is TFF's eager one, kept because TF 2.21 still imports
TFF 0.87's GraphDefs unchanged: import the GraphDef once inside `tf.compat.v1.wrap_function`, then
`prune` it to a concrete function from the parameter tensors to the result tensors. Each graph is
imported ONCE per `GraphFunction`; calls reuse the compiled function.

Statelessness. Every call starts from fresh resources, as in TFF's runtime (see `tf_resources`,
which reads from TensorFlow's op registry which ops create resources and plans how each call gets
new ones): hash tables and resource variables are rewritten to TensorFlow's anonymous forms, so a
graph is imported once and its compiled function serves all callers, concurrently too; a graph
with other named resources (queues, accumulators, ref variables, a resource inside a library
function) runs each call on its own freshly imported instance. Shared names are also made unique
per import, so two imports never meet in TensorFlow's process-wide resource manager. Variables are
initialised at the start of each call because `initialize_op` runs before every fetch (we add it
as a control dependency to every node that does not feed it, as TFF's eager executor did).

Untrusted graphs. The graph's ops are checked against the stack's `Policy` (`op_check`) before
TensorFlow sees the GraphDef; a parameter that feeds a graph-from-string op (`DatasetFromGraph`)
has its value checked as a dataset graph on every call, before the graph runs.
"""
from __future__ import annotations

import itertools
import threading
import uuid
import zlib
from typing import Any, Callable, Optional

import federated_language
import numpy as np
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec import policy as policy_lib
from tffexec import tf_runtime
from tffexec.checks import op_check
from tffexec.executors import activity
from tffexec.executors import tf_call_config
from tffexec.executors import tf_import
from tffexec.executors import tf_library
from tffexec.executors import tf_loop_feed
from tffexec.executors import tf_loops
from tffexec.executors import tf_queues
from tffexec.executors import tf_resources
from tffexec.executors import tf_tensor_memo
from tffexec.formats import sequences

# Attributes of the random ops that `--seed` fills in.
_SEEDED_RANDOM_ATTRS = ("seed", "seed2")
_instance_counter = itertools.count()


def _flatten_binding(binding: computation_pb2.TensorFlow.Binding, out: list) -> None:
    """Appends (kind, name) for every leaf of a binding, in TFF's flattening order."""
    kind = binding.WhichOneof("binding")
    if kind == "struct":
        for element in binding.struct.element:
            _flatten_binding(element, out)
    elif kind == "tensor":
        out.append(("tensor", binding.tensor.tensor_name))
    elif kind == "sequence":
        which = binding.sequence.WhichOneof("binding")
        if which == "variant_tensor_name":
            out.append(("variant", binding.sequence.variant_tensor_name))
        elif which == "graph_def_tensor_name":
            out.append(("graph_def", binding.sequence.graph_def_tensor_name))
        else:
            raise errors.ComputationError("sequence binding names no tensor")
    elif kind is None:
        return
    else:  # pragma: no cover - the proto has no other kinds
        raise errors.ComputationError(f"unknown binding kind {kind!r}")


def _stateful_ops(graph_def) -> set[str]:
    """The ops of the graph (library functions included) that TensorFlow declares stateful."""
    from tensorflow.python.framework import op_def_registry  # noqa: PLC0415 - TF loads lazily

    found = set()
    for node in tf_call_config.graph_nodes(graph_def):
        op_def = op_def_registry.get(node.op)
        if op_def is None or op_def.is_stateful:
            found.add(node.op)
    return found


def _node_name(tensor_name: str) -> str:
    name = tensor_name.split(":")[0]
    return name[1:] if name.startswith("^") else name


class GraphFunction:
    """A `tensorflow` computation made callable: `fn(flat_args) -> flat_results`.

    Arguments and results are flat lists in binding order; the TensorFlow executor packs them
    into the computation's types. Sequences cross this boundary as `tf.data.Dataset`s.
    """

    def __init__(self, proto: computation_pb2.TensorFlow, seed: int | None = None,
                 policy: policy_lib.Policy | None = None):
        # The policy check comes first, on tffexec's own GraphDef parser: nothing of an
        # untrusted graph reaches TensorFlow before it passes.
        self._policy = policy if policy is not None else policy_lib.DEFAULT
        self._string_graph_params = op_check.admit_tensorflow(proto, self._policy)
        tf = tf_runtime.tensorflow()
        self._proto = proto
        self._seed = seed
        self.parameter_leaves: list = []
        self.result_leaves: list = []
        if proto.HasField("parameter"):
            _flatten_binding(proto.parameter, self.parameter_leaves)
        _flatten_binding(proto.result, self.result_leaves)
        #: The path a client's call of this graph counts under (`activity.PATHS`).
        self.path = (activity.TF_DATA if any(kind != "tensor" for kind, _ in self.parameter_leaves)
                     else activity.PER_CLIENT)
        try:
            graph_def = tf.compat.v1.GraphDef.FromString(proto.graph_def.value)
        except Exception as e:  # noqa: BLE001 - protobuf raises several kinds
            raise errors.ComputationError(f"graph_def is not a TensorFlow GraphDef: {e}") from None
        self._graph_def = self._optimised_once(graph_def)
        self._resources = tf_resources.plan(graph_def)
        self._queue_wait = (self._policy.max_queue_wait
                            if tf_queues.has_dequeue(self._all_nodes(graph_def)) else 0)
        # The GraphDef each form (as written, looped) imports, up to what differs per instance:
        # made once (`_base_graph_def`), so a graph with a fresh instance per call re-imports only.
        self._bases: dict[bool, Any] = {}
        self._base_lock = threading.Lock()
        self._shared: Callable | None = None
        # Sequence parameters reduced in the graph run as a tensor loop (see `tf_loops`).
        self._loops = (tf_loops.plan(graph_def, self.parameter_leaves, self.result_leaves)
                       if tf_loops.enabled() else None)
        self._looped: Callable | None = None
        self._batchable: bool | None = None  # computed on first use (see `batchable`)
        self._feeds_token = False  # whether instances feed the session token (`_build_instance`)
        self._build_lock = threading.Lock()
        if self._resources.stateless:
            if self._loops is not None:
                self._looped = self._build_looped_once()
            if self._loops is None:  # the graph as written is built when a call first needs it
                self._shared = self._build_instance()

    @property
    def graph_def(self):
        """The GraphDef every instance is imported from (read it; never change it): what
        static checks such as `client_order` inspect."""
        return self._graph_def

    @property
    def session_token_name(self) -> str:
        """The tensor TFF's session token feeds ("" when the graph has none)."""
        return self._proto.session_token_tensor_name

    @property
    def feeds_session_token(self) -> bool:
        """Whether calls feed the session token (a result depends on it; see `_needs_token`)."""
        return self._feeds_token

    @property
    def batchable(self) -> bool:
        """Whether the graph can run for all clients at once with per-client semantics intact
        (see `tf_batch`): tensors in and out, no resources, no initialize op, no graph-string
        parameter to check per call, no stateful op (random ops included)."""
        if self._batchable is None:
            self._batchable = (
                self._shared is not None
                and not self._proto.initialize_op
                and not self._string_graph_params
                and all(kind == "tensor" for kind, _ in self.parameter_leaves)
                and all(kind == "tensor" for kind, _ in self.result_leaves)
                and not _stateful_ops(self._graph_def))
        return self._batchable

    _all_nodes = staticmethod(tf_call_config.graph_nodes)

    @staticmethod
    def _optimised_once(graph_def):
        """The GraphDef as every instance imports it, whatever the call: Grappler off inside
        its call ops and tf.data's per-execution rewrites off before its reductions (see
        `tf_call_config`). Done here, once per graph, so no instance or call repeats it."""
        tf_call_config.disable_grappler_in_calls(graph_def)
        tf_call_config.freeze_dataset_options(graph_def)
        return graph_def

    def prepared_graph_def(self, looped: bool = False):
        """A copy of the GraphDef as one instance imports it: `_base_graph_def` with shared names
        unique to this instance (TensorFlow's resource manager is process-wide), the resources
        `tf_resources` plans anonymous made so, and library function names unique to this
        instance when their bodies hold such names (`tf_resources.library_per_instance`);
        `looped`: with its tensor loops (see `tf_loops`)."""
        tf = tf_runtime.tensorflow()
        graph_def = tf.compat.v1.GraphDef()
        graph_def.CopyFrom(self._base_graph_def(looped))
        suffix = f"_tffexec{next(_instance_counter)}_{uuid.uuid4().hex[:8]}"
        for node in self._all_nodes(graph_def):
            if "shared_name" in node.attr:
                base = node.attr["shared_name"].s.decode() or node.name
                node.attr["shared_name"].s = (base + suffix).encode()
        tf_resources.make_anonymous(graph_def, self._resources.anonymous)  # after the suffix
        if self._resources.library_per_instance:
            tf_library.make_unique(graph_def)  # this instance's shared names are in the bodies
        return graph_def

    def _base_graph_def(self, looped: bool):
        """The GraphDef of one form, as every instance of it starts: tensor loops rewritten
        (Grappler off in the loop's call op too), seeds, the init dependency, and library
        function names unique per content (TensorFlow's function library is process-wide: see
        `tf_library`) unless they must be unique per instance. Made once per form, as none of it
        depends on the instance; callers copy it, it is never changed."""
        base = self._bases.get(looped)
        if base is not None:
            return base
        with self._base_lock:
            base = self._bases.get(looped)
            if base is None:
                base = self._bases[looped] = self._make_base(looped)
        return base

    def _make_base(self, looped: bool):
        tf = tf_runtime.tensorflow()
        graph_def = tf.compat.v1.GraphDef()
        graph_def.CopyFrom(self._graph_def)
        if looped:
            tf_loops.rewrite(graph_def, self._loops)
            tf_call_config.disable_grappler_in_calls(graph_def)  # the loop's call op too
        for node in self._all_nodes(graph_def):
            if self._seed is not None and all(a in node.attr for a in _SEEDED_RANDOM_ATTRS):
                if node.attr["seed"].i == 0 and node.attr["seed2"].i == 0:
                    derived = zlib.crc32(f"{self._seed}/{node.name}".encode()) % (2**31 - 1) + 1
                    node.attr["seed"].i = self._seed % (2**31 - 1) + 1
                    node.attr["seed2"].i = derived
        init = self._proto.initialize_op
        if init:
            self._add_init_dependencies(graph_def, _node_name(init))
        if not self._resources.library_per_instance:
            tf_library.rename(graph_def, tf_library.content_names(graph_def))
        return graph_def

    @staticmethod
    def _add_init_dependencies(graph_def, init_name: str) -> None:
        """Makes every node that does not feed the init op wait for it (TFF's eager recipe)."""
        by_name = {n.name: n for n in graph_def.node}
        if init_name not in by_name:
            raise errors.ComputationError(f"initialize_op {init_name!r} is not a node of the graph")
        ancestors = tf_import.needed_nodes(graph_def, [], [init_name])
        for node in graph_def.node:
            if node.name not in ancestors:
                node.input.append("^" + init_name)

    def _build_instance(self, looped: bool = False) -> Callable:
        tf = tf_runtime.tensorflow()
        graph_def = self.prepared_graph_def(looped)

        def import_graph():
            tf.graph_util.import_graph_def(graph_def, name="")

        self._feeds_token = self._needs_token(graph_def)
        try:
            looped = self._build_looped(graph_def)
            if looped is not None:
                return looped
            wrapped = tf.compat.v1.wrap_function(import_graph, signature=[])
            graph = wrapped.graph
            feeds = [graph.as_graph_element(name) for _, name in self.parameter_leaves]
            if self._feeds_token:
                feeds.append(graph.as_graph_element(self._proto.session_token_tensor_name))
            fetches = [graph.as_graph_element(name) for _, name in self.result_leaves]
            fetches.extend(graph.as_graph_element(name) for name in self._resources.handles)
            return wrapped.prune(feeds=feeds, fetches=fetches)
        except (KeyError, ValueError, TypeError) as e:
            raise errors.ComputationError(
                f"the TensorFlow graph does not match its bindings: {e}") from None
        except tf.errors.OpError as e:
            raise errors.ComputationError(f"TensorFlow could not import the graph: {e.message}") from None

    def _build_looped(self, graph_def) -> Callable | None:
        """A graph with TF1 loops, pruned on its GraphDef (`tf_import`: TensorFlow's `prune`
        copies loops in an order that depends on object ids); None for other graphs."""
        feeds = [name for _, name in self.parameter_leaves]
        if self._feeds_token:
            feeds.append(self._proto.session_token_tensor_name)
        return tf_import.import_pruned(graph_def, feeds, [name for _, name in self.result_leaves])

    def _needs_token(self, graph_def) -> bool:
        """Whether calls feed TFF's session token: only when a result (or a resource handle
        fetched) depends on it. Only custom ops read it, and a graph that does not need it would
        otherwise get a new string tensor on every call."""
        token = self._proto.session_token_tensor_name
        if not token or tf_import.node_name(token) not in {n.name for n in graph_def.node}:
            return False
        fetches = [name for _, name in self.result_leaves] + list(self._resources.handles)
        feeds = [name for _, name in self.parameter_leaves]
        return tf_import.node_name(token) in tf_import.needed_nodes(graph_def, feeds, fetches)

    def _build_looped_once(self) -> Callable | None:
        """The shared looped instance; None (and no loops from now on) when TensorFlow refuses
        the rewritten graph, which then runs as written."""
        try:
            return self._build_instance(looped=True)
        except errors.ComputationError:
            self._loops = None
            return None

    def _instance(self, looped: bool) -> Callable:
        """The compiled function for one call: the shared one, or a fresh import when the graph's
        resources cannot be made per-call otherwise (see `tf_resources`)."""
        if looped:
            return self._looped if self._looped is not None else self._build_instance(looped=True)
        if self._shared is None and self._resources.stateless:
            with self._build_lock:
                if self._shared is None:
                    self._shared = self._build_instance()
        return self._shared if self._shared is not None else self._build_instance()

    def __call__(self, flat_args: list) -> list:
        tf = tf_runtime.tensorflow()
        inputs = []
        if len(flat_args) != len(self.parameter_leaves):
            # A binding that does not match the function type (found by fuzzing): TensorFlow
            # would fail with a signature error far from the cause.
            raise errors.ComputationError(
                f"the graph's parameter binding names {len(self.parameter_leaves)} tensors but "
                f"the function type has {len(flat_args)} parameter leaves")
        for index in self._string_graph_params:
            if index < len(flat_args) and self.parameter_leaves[index][0] == "tensor":
                self._check_graph_string(flat_args[index], index)
        looped = self._loops is not None and tf_loop_feed.feeds_loops(self._loops, flat_args)
        for index, ((kind, _), value) in enumerate(zip(self.parameter_leaves, flat_args)):
            if looped and index in self._loops.parameters:
                inputs.append(tf_loop_feed.element_lists(value, self._loops.parameters[index]))
                continue
            if isinstance(value, sequences.SequenceValue):
                value = value.bounded_dataset()
            if kind == "variant":
                inputs.append(tf.data.experimental.to_variant(value))
            elif kind == "graph_def":
                variant = tf.data.experimental.to_variant(value)
                inputs.append(tf.raw_ops.DatasetToGraphV2(input_dataset=variant))
            else:
                inputs.append(tf_tensor_memo.tensor_of(value))
        instance = self._instance(looped)
        if activity.in_client_call():
            activity.count_path(activity.TENSOR_LOOP if looped else self.path)
        try:
            if self._feeds_token:
                inputs.append(tf.constant(uuid.uuid4().hex))
            if self._queue_wait:
                outputs = tf_queues.call_bounded(lambda: call_flat(instance, inputs),
                                                 self._queue_wait)
            else:
                outputs = call_flat(instance, inputs)
        except tf.errors.OpError as e:
            if sequences.LIMIT_MARKER in e.message:
                raise self._policy.sequence_too_long() from None
            raise errors.ExecutionError(f"TensorFlow failed: {_error_cause(e.message)}") from None
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        outputs = list(outputs)
        results = len(self.result_leaves)
        tf_resources.destroy(tf, outputs[results:])
        return outputs[:results]

    def _check_graph_string(self, value, index: int) -> None:
        """A string parameter that becomes a graph inside this one: check it as a dataset graph."""
        array = np.asarray(value, dtype=object)
        for item in array.reshape(-1):
            data = item.encode() if isinstance(item, str) else bytes(item)
            op_check.check_dataset_graph(
                data, self._policy, path=f"string parameter {index} fed to DatasetFromGraph")


def _error_cause(message: str) -> str:
    """The line of a TensorFlow error message that says what went wrong.

    Graph execution errors begin with "Graph execution error:" and a "Detected at node ..."
    traceback (indented lines) of where the op was defined; the cause (e.g. a failed `tf.Assert`'s
    data) is the first unindented line after them.
    """
    lines = message.splitlines()
    for line in lines:
        if not line.strip() or line[0].isspace():
            continue
        if line.startswith(("Graph execution error", "Detected at node", "<stack traces")):
            continue
        return line.strip()
    return lines[0].strip() if lines else message


def call_flat(function, inputs: list):
    """Calls a pruned function with flat tensors.

    A pruned function has no structured signature, so its public `__call__` first fails to bind
    the arguments structurally and formats an error message (which prints every tensor) before
    falling back to the flat path; that costs more than the call itself. We go to the flat path
    directly where this TensorFlow version offers it.
    """
    call_flat = getattr(function, "_call_flat", None)
    if call_flat is not None:
        return call_flat(inputs, function.captured_inputs)
    return function(*inputs)


def pack(flat: list, type_spec, convert: Callable[[Any, Any], Any]):
    """Packs a flat list of leaves into the structure of `type_spec` (a struct or a leaf)."""
    iterator = iter(flat)

    def build(t):
        if isinstance(t, federated_language.StructType):
            return structure.Struct([(name, build(member)) for name, member in t.items()])
        return convert(next(iterator), t)

    return build(type_spec)


def flatten(value, type_spec, seen: Optional[dict] = None) -> list:
    """The leaves of a value in binding order.

    `seen` (id -> (struct, type, leaves)), when given, keeps each struct's leaves so that a
    struct met again (a model broadcast to every client of a map) is flattened once; the caller
    keeps the values alive while the dict lives, so an id cannot be reused meanwhile."""
    if isinstance(type_spec, federated_language.StructType):
        if seen is not None:
            hit = seen.get(id(value))
            if hit is not None and hit[0] is value and hit[1] is type_spec:
                return hit[2]
        out = []
        for (_, member_type), element in zip(type_spec.items(), structure.iter_elements(value)):
            out.extend(flatten(element[1], member_type, seen))
        if seen is not None:
            seen[id(value)] = (value, type_spec, out)
        return out
    return [value]


def to_numpy(tensor, dtype) -> np.ndarray:
    """An eager tensor as a numpy array of the expected dtype (strings as object arrays)."""
    raw = tensor.numpy()
    if isinstance(raw, bytes) or (isinstance(raw, np.ndarray) and raw.dtype.kind in "OSU"):
        return np.asarray(raw, dtype=object)
    array = np.asarray(raw, dtype=dtype)
    if array.dtype == raw.dtype:  # the tensor's own values: fed to the next graph as the tensor
        tf_tensor_memo.remember(array, tensor)
    return array
