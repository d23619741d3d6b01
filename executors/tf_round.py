"""A whole federated round compiled into one TensorFlow function, clients along a leading axis.

Why. Once the clients of a training round train in one vectorised call (`tf_vectorised`), what
remains of a round's time is the executor stack's Python: every call walks the AST, embeds and
zips per-client values, reads each client's dataset into element lists and stacks them, and calls
a few small server graphs one by one (~30 ms of a 45 ms round of 100 MLP clients, against a
~5 ms round written directly in TensorFlow). A round called again with arguments of the same
structure can instead be evaluated ONCE symbolically, inside a `tf.function` trace, and then
called as that function: ONNX's "prepare once, run a tight loop" applied to the whole round.

The trace (`_Tracer`) evaluates the AST as the reference-resolving executor does, with symbolic
values: tensors for unplaced and SERVER values, and for CLIENTS values a nest whose tensor leaves
are `Leaf`s, either stacked along a leading client axis or one tensor equal for every client
(a broadcast). Intrinsics are lowered with the semantics of the federating executor:

- `federated_map` runs its function under `tf.vectorized_map` over the stacked leaves (the
  broadcast ones are loop invariants); TensorFlow computations are re-emitted by
  `tf_functional.Interpreter` (variables as tensors, dataset reductions as loops over the
  client's element tensors), so a client's training is the same ops as on the vectorised path;
- `federated_sum`, `federated_mean` and `federated_weighted_mean` add the clients IN CLIENT ORDER
  (a running sum along the client axis, `tf.math.cumsum`, whose CPU kernel adds one client after
  another), in the member dtype, with numpy's casts (`executors/numeric.py`);
- placement (`federated_value_at_*`, `federated_broadcast`, zips, `federated_apply`,
  `federated_eval_at_server`) only moves tensors around.

Anything else (other intrinsics, sequence results, stateful random ops, graphs the interpreter
refuses, clients whose datasets differ in structure, no clients) raises `Unsupported` while
tracing, and the round keeps running on the executor stack; so does a call whose TensorFlow
run fails (the stack then reports the error, naming the client). Results equal the stack's
within the vectorised path's floating-point reassociation.

When. A trace costs seconds (vectorising the clients' training), so a computation is compiled
only when it is called again with an argument of the same structure (`COMPILE_AFTER` calls on the
stack first; `TFFEXEC_COMPILE_AFTER=0` compiles on the first call, for tests); one-shot
`tffexec run` never pays it. `TFFEXEC_COMPILED_ROUNDS=0` turns the path off.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
from typing import Any, Optional

import federated_language as fl
import numpy as np
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec import tf_runtime
from tffexec.executors import activity
from tffexec.executors import round_intrinsics
from tffexec.executors import tensorflow_executor
from tffexec.executors import tf_batch
from tffexec.executors import tf_function
from tffexec.executors import tf_functional
from tffexec.executors import tf_vectorised
from tffexec.formats import arrays
from tffexec.formats import columns as columns_lib
from tffexec.executors.round_values import (Closure, ClientsMemo, Inputs, Intrinsic, Placed,
                                            Scope, Seq, Tup, Unsupported, binding_leaves,
                                            instantiate, leaves_of, pack, tensor_types)

_LOG = logging.getLogger("tffexec")

#: Environment switch: "0" keeps every round on the executor stack.
ENV_SWITCH = "TFFEXEC_COMPILED_ROUNDS"
#: Calls of a computation (same argument structure) on the stack before it is compiled.
COMPILE_AFTER = 1
#: Computations a stack remembers (with their compiled rounds) and counts the calls of.
REMEMBERED = 16
#: Argument structures a computation is compiled for; beyond them it runs on the stack.
MAX_STRUCTURES = 4
#: What tracing one more bucket function costs, in seconds of rounds on the stack: a round whose
#: clients hold datasets of several structures (one vectorised function to trace for each but
#: the one the stack traced) compiles once its calls on the stack have taken that long, the
#: ski-rental rule: all told, never more than twice the better of compiling at once and never
#: compiling. fedavg_mlp_unequal_c100 (7 structures, ~55 s to trace on 2 cores, 0.3 s a round
#: on the stack, 0.05 s compiled) compiles after ~48 s of rounds.
TRACE_SECONDS = 8.0
#: Structures not yet compiled that a computation remembers seeing (to compile one that recurs).
REMEMBERED_STRUCTURES = 64
#: Arguments a computation's round cannot take (read to flat arrays) before it is no longer
#: tried: reading them costs what the stack's own reading does, for nothing.
ARGUMENT_REFUSALS = 2


def enabled() -> bool:
    """Whether compiled rounds are on (`TFFEXEC_COMPILED_ROUNDS` is not "0")."""
    return os.environ.get(ENV_SWITCH, "1") != "0"


def compile_after() -> int:
    """Calls on the stack before a computation is compiled (`TFFEXEC_COMPILE_AFTER`)."""
    return int(os.environ.get("TFFEXEC_COMPILE_AFTER", COMPILE_AFTER))


# -- the trace -----------------------------------------------------------------------------------
class _Tracer:
    """Evaluates an AST into the graph being traced (see the module's docstring)."""

    def __init__(self, leaf: tensorflow_executor.TensorFlowExecutor, num_clients: int,
                 interpreters: dict, bucket_functions: dict):
        self.leaf = leaf
        self.num_clients = num_clients
        self.interpreters = interpreters
        self.bucket_functions = bucket_functions  # see `round_intrinsics._map_bucket`
        self.paths: collections.Counter = collections.Counter()  # replayed per call


    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self, comp, scope: Optional[Scope]):
        kind = comp.WhichOneof("computation")
        if kind == "reference":
            if scope is None:
                raise Unsupported(f"reference to unbound name {comp.reference.name!r}")
            return scope.lookup(comp.reference.name)
        if kind == "lambda":
            return Closure(comp, scope)
        if kind == "block":
            frame = Scope({}, scope)
            for local in comp.block.local:
                value = self.evaluate(local.value, frame)
                if local.name in frame.bindings:
                    frame = Scope({}, frame)
                frame.bindings[local.name] = value
            return self.evaluate(comp.block.result, frame)
        if kind == "call":
            function = self.evaluate(comp.call.function, scope)
            argument = (self.evaluate(comp.call.argument, scope)
                        if comp.call.HasField("argument") else None)
            return self.call(function, argument)
        if kind == "struct":
            return Tup([(e.name or None, self.evaluate(e.value, scope))
                        for e in comp.struct.element])
        if kind == "selection":
            source = self.evaluate(comp.selection.source, scope)
            if not isinstance(source, Tup) or not 0 <= comp.selection.index < len(source.items):
                raise Unsupported("a selection from something other than a struct")
            return source.items[comp.selection.index][1]
        if kind == "tensorflow":
            return comp
        if kind == "intrinsic":
            return Intrinsic(comp.intrinsic.uri, fl.Type.from_proto(comp.type))
        if kind == "literal":
            return tf_runtime.tensorflow().constant(arrays.array_from_proto(comp.literal.value))
        raise Unsupported(f"a {kind!r} node")

    def call(self, function, argument):
        if isinstance(function, Closure):
            lam = getattr(function.comp, "lambda")
            if lam.parameter_name:
                if argument is None:
                    raise Unsupported("a lambda called without its argument")
                scope = Scope({lam.parameter_name: argument}, function.scope)
            else:
                scope = function.scope
            return self.evaluate(lam.result, scope)
        if isinstance(function, computation_pb2.Computation):
            return self.run_graph(function, argument)
        if isinstance(function, Intrinsic):
            handler = round_intrinsics.RULES.get(function.uri)
            if handler is None:
                raise Unsupported(f"intrinsic {function.uri}")
            return handler(self, argument, function.type_spec)
        raise Unsupported("a call of something that is not a function")

    def run_graph(self, comp, argument):
        """A `tensorflow` computation re-emitted in the trace, its argument bound."""
        type_spec = fl.Type.from_proto(comp.type)
        graph_function = self.leaf.leaf_function(comp, type_spec).graph_function
        if any(kind != "tensor" for kind, _ in graph_function.result_leaves) or any(
                kind not in ("tensor", "variant") for kind, _ in graph_function.parameter_leaves):
            raise Unsupported("a graph with dataset results or string-graph parameters")
        interpreter = self.interpreters.get(graph_function)
        if interpreter is None:
            interpreter = self.interpreters[graph_function] = tf_functional.Interpreter(
                graph_function.prepared_graph_def())
        tensors, elements = [], []
        if type_spec.parameter is not None:
            for leaf in binding_leaves(argument, type_spec.parameter):
                (elements if isinstance(leaf, Seq) else tensors).append(leaf)
        tf = tf_runtime.tensorflow()
        feeds = tf_vectorised.client_feeds(
            graph_function, [round_intrinsics.tensor(tf, t) for t in tensors],
            [s.items for s in elements])
        try:
            outputs = interpreter.run(feeds, [name for _, name in graph_function.result_leaves])
        except tf_functional.Unsupported as e:
            raise Unsupported(str(e)) from None
        return pack(iter(outputs), type_spec.result)



# -- the compiled round --------------------------------------------------------------------------
class CompiledRound:
    """One computation traced for one argument structure: `__call__(inputs)` -> the result in
    tffexec's Python representation (ClientColumns for CLIENTS results)."""

    def __init__(self, function, result_type, flags: list, paths: dict, num_clients: int):
        self._function = function
        self._result_type = result_type
        self._flags = flags
        self._paths = paths
        self._num_clients = num_clients

    def __call__(self, leaf: tensorflow_executor.TensorFlowExecutor, inputs: Inputs,
                 memo: Optional[ClientsMemo] = None):
        tf = tf_runtime.tensorflow()
        with leaf.device_scope():
            tensors = [t if t is not None else tf.constant(a)
                       for a, t in zip(inputs.arrays, inputs.tensors)]
            if memo is not None and any(t is None for t in inputs.tensors):
                memo.remember_tensors(inputs, tensors)
            outputs = tf_function.call_flat(self._function, tensors)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for path, clients in self._paths.items():
            activity.count_path(path, clients)
        return _result(iter(outputs), iter(self._flags), self._result_type,
                       self._num_clients)


def _numpy(tensor, tensor_type) -> np.ndarray:
    return tf_function.to_numpy(tensor, np.dtype(tensor_type.dtype))


def _result(outputs, flags, type_spec, clients: int):
    """The traced result as Python values (`flags`: per CLIENTS result leaf in order, whether
    its output is stacked along the client axis)."""
    if isinstance(type_spec, fl.FederatedType):
        if type_spec.placement is fl.CLIENTS and not type_spec.all_equal:
            leaves = []
            for (_, tensor_type) in tensor_types(type_spec.member):
                stacked = next(flags)
                array = _numpy(next(outputs), tensor_type)
                leaves.append(array if stacked else np.repeat(array[None], clients, axis=0))
            return columns_lib.ClientColumns(type_spec.member, leaves)
        return _result(outputs, flags, type_spec.member, clients)
    if isinstance(type_spec, fl.StructType):
        return structure.Struct([(name, _result(outputs, flags, t, clients))
                                 for name, t in type_spec.items()])
    return _numpy(next(outputs), type_spec)


def _outputs(value, type_spec, flags: list) -> list:
    """The result's tensors in binding order; `flags` collects, per CLIENTS result leaf in
    order, whether it is stacked."""
    if isinstance(type_spec, fl.FederatedType):
        if not isinstance(value, Placed):
            raise Unsupported("a federated result that is not placed")
        member = value.member
        if type_spec.placement is fl.CLIENTS and not type_spec.all_equal:
            leaves = leaves_of(member, [])
            if len(leaves) != len(list(tensor_types(type_spec.member))):
                raise Unsupported("a CLIENTS result with sequences")
            flags.extend(leaf.stacked for leaf in leaves)
            return [leaf.tensor for leaf in leaves]
        if value.clients:  # all-equal at clients: its one value
            leaves = leaves_of(member, [])
            if any(leaf.stacked for leaf in leaves):
                raise Unsupported("an all-equal CLIENTS result computed per client")
            return [leaf.tensor for leaf in leaves]
        return _outputs(member, type_spec.member, flags)
    if isinstance(type_spec, fl.StructType):
        if not isinstance(value, Tup) or len(value.items) != len(type_spec):
            raise Unsupported("a result that does not fit the result type")
        out = []
        for (_, item), (_, t) in zip(value.items, type_spec.items()):
            out.extend(_outputs(item, t, flags))
        return out
    if not isinstance(type_spec, fl.TensorType) or isinstance(value, (Tup, Seq, Placed)):
        raise Unsupported(f"a result of type {type_spec}")
    return [value]


def _has_clients(type_spec) -> bool:
    if isinstance(type_spec, fl.FederatedType):
        return type_spec.placement is fl.CLIENTS
    if isinstance(type_spec, fl.StructType):
        return any(_has_clients(t) for _, t in type_spec.items())
    return False


@dataclasses.dataclass(eq=False)
class _Seen:
    """What a stack knows of one computation: its calls, its rounds compiled per argument
    structure (False: refused), whether it is no longer tried."""

    comp: Any
    calls: int = 0
    compiled: dict = dataclasses.field(default_factory=dict)
    arguments_refused: int = 0
    refused: bool = False
    stack_seconds: float = 0.0  # time its calls took on the stack (`ran_on_stack`)
    structures: dict = dataclasses.field(default_factory=dict)  # key -> calls seen, uncompiled


class Rounds:
    """The compiled rounds of one stack (its leaf, its client count), per computation object
    and argument structure; computations are compiled on a repeated call (`compile_after`)."""

    def __init__(self, leaf: tensorflow_executor.TensorFlowExecutor, num_clients: int):
        self.leaf = leaf
        self.num_clients = num_clients
        self._seen: collections.OrderedDict = collections.OrderedDict()
        self._interpreters: dict = {}
        self._bucket_functions: dict = {}
        self._memo = ClientsMemo()
        self._lock = threading.Lock()
        self.compiled = 0  # rounds traced (observable by tests and benchmarks)
        self.calls = 0  # calls answered by a compiled round

    def call(self, comp: computation_pb2.Computation, function_type, argument) -> Optional[Any]:
        """The result of `comp(argument)` from its compiled round; None when the stack must run
        it (not compiled yet, refused, an argument of another structure, a failed run)."""
        if self.num_clients < 1 or not isinstance(function_type, fl.FunctionType) or \
                function_type.parameter is None or not _has_clients(function_type.parameter):
            return None
        with self._lock:
            seen = self._seen.get(id(comp))
            if seen is None or seen.comp is not comp:
                seen = self._seen[id(comp)] = _Seen(comp)
            self._seen.move_to_end(id(comp))
            while len(self._seen) > REMEMBERED:
                self._seen.popitem(last=False)
            seen.calls += 1
            if seen.calls <= compile_after() or seen.refused:
                return None  # a first call (nothing is read for it), or a refused computation
        inputs = Inputs(self.leaf, self.num_clients, self._memo)
        try:
            template = inputs.add(argument, function_type.parameter)
        except (Unsupported, errors.TffexecError) as e:
            _LOG.debug("compiled rounds: this argument runs on the stack: %s", e)
            with self._lock:
                seen.arguments_refused += 1
                if seen.arguments_refused >= ARGUMENT_REFUSALS:  # e.g. datasets that differ
                    seen.refused = True
                    _LOG.info("compiled rounds: a computation stays on the stack: %s", e)
            return None
        if compile_after() and seen.stack_seconds < TRACE_SECONDS * (inputs.traced_buckets - 1):
            return None  # datasets of several structures: traced once rounds repay the traces
        key = tuple(inputs.key)
        with self._lock:
            compiled = seen.compiled.get(key)
            if compiled is None:
                # The first structure compiles at once; a later one only when it comes back
                # (rounds over changing participants bring a new structure almost every call,
                # and each trace holds memory and seconds).
                seen.structures[key] = seen.structures.pop(key, 0) + 1
                while len(seen.structures) > REMEMBERED_STRUCTURES:
                    del seen.structures[next(iter(seen.structures))]  # the oldest first
                if len(seen.compiled) >= MAX_STRUCTURES or (
                        seen.compiled and seen.structures[key] < 2):
                    return None
                compiled = seen.compiled[key] = (
                    self._compile(comp, function_type, inputs, template) or False)
                if compiled is False:
                    seen.refused = True  # not lowered: not tried again for other structures
        if not compiled:
            return None
        try:
            result = compiled(self.leaf, inputs, self._memo)
        except Exception as e:  # noqa: BLE001 - a TensorFlow error, or an input it refuses
            # The stack runs the call again and reports any error itself, naming the client.
            _LOG.debug("compiled rounds: a call goes to the stack: %s: %s", type(e).__name__,
                       (str(e).strip().splitlines() or [""])[0][:200])
            return None
        self.calls += 1
        return result

    def ran_on_stack(self, comp: computation_pb2.Computation, seconds: float) -> None:
        """Records that a call of `comp` ran on the stack for `seconds` (see `TRACE_SECONDS`)."""
        with self._lock:
            seen = self._seen.get(id(comp))
            if seen is not None and seen.comp is comp:
                seen.stack_seconds += seconds

    def _compile(self, comp, function_type, inputs: Inputs,
                 template) -> Optional[CompiledRound]:
        tf = tf_runtime.tensorflow()
        tracer = _Tracer(self.leaf, self.num_clients, self._interpreters,
                         self._bucket_functions)
        specs = [tf.TensorSpec((None,) + a.shape[1:] if dynamic else a.shape,
                               tf.as_dtype(a.dtype))
                 for a, dynamic in zip(inputs.arrays, inputs.dynamic)]
        holder: dict = {}

        def round_(*tensors):
            argument = instantiate(template, list(tensors))
            result = tracer.call(tracer.evaluate(comp, None), argument)
            flags: list = []
            outputs = _outputs(result, function_type.result, flags)
            holder["flags"] = flags
            return [round_intrinsics.tensor(tf, t) for t in outputs]

        try:
            tf_batch.quiet_pfor()
            with self.leaf.device_scope():
                function = tf.function(round_, input_signature=specs,
                                       autograph=False).get_concrete_function()
        except Unsupported as e:
            _LOG.info("compiled rounds: a computation stays on the stack: %s", e)
            return None
        except Exception as e:  # noqa: BLE001 - tracing and pfor refuse in several ways
            first_line = (str(e).strip().splitlines() or [""])[0][:200]
            _LOG.info("compiled rounds: a computation stays on the stack: %s: %s",
                      type(e).__name__, first_line)
            return None
        self.compiled += 1
        _LOG.info("compiled rounds: a round of %d clients runs as one TensorFlow function",
                  self.num_clients)
        return CompiledRound(function, function_type.result, holder["flags"],
                             dict(tracer.paths), self.num_clients)

