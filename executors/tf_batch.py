"""One TensorFlow call for all clients: vectorised maps and in-order folds of `tensorflow`
computations over a `Batch` of client values.

A `GraphFunction` called once per client costs a few hundred microseconds per call in TensorFlow's
function-call machinery; the same graph imported inside `tf.vectorized_map` (pfor: every op
rewritten to work on the whole client axis) and compiled once with `tf.function` runs all clients
in one call, with bit-identical results. An aggregate's `accumulate` becomes one `tf.foldl` over
the client axis: still client after client, in order, but inside one call.

What is batched: graphs whose parameters and results are tensors, without variables, tables,
random or other stateful ops (their per-call state and per-client independence are the
per-client path's business), without an initialize op. TFF's session-token placeholder, when a
graph has one, is fed one constant token for the whole batch. Anything pfor cannot
vectorise is refused when the function is first traced; the refusal is remembered (keyed by the
function, which the leaf imports once per distinct graph, and the shapes of the batch) and the
caller takes the per-client path. A TensorFlow error at run time also sends that call to the
per-client path, which reruns it client by client and reports the failing client's index.

Second form. A map pfor refuses is traced once more before it goes per client: an op pfor has
no rule for (e.g. `L2Loss`, in a DP aggregator's clipping) runs client after client in a loop
inside the same call (`fallback_to_while_loop`: the op's own kernel on each client's slice, so
the results are those of the per-client path), and a graph with an `If`/`StatelessIf` is
re-emitted op by op (`tf_functional.Interpreter`: each `If` becomes a `tf.cond` of traced
branches, which pfor can vectorise; an imported graph's branch functions it cannot), e.g. a
robust aggregator's per-client clipping.

Quiet fallback. pfor logs every op it cannot convert at ERROR level (tens of lines for one
`tf.while_loop`), though the per-client path then gives the right answer: those records are
dropped, and the fallback is said in one line on the `tffexec` logger (shown under `-v`).
"""
from __future__ import annotations

import logging
import os
import re
import threading
from typing import Optional

import numpy as np

from tffexec import tf_runtime
from tffexec.executors import base
from tffexec.executors import batch as batch_lib
from tffexec.executors import tensorflow_executor
from tffexec.executors import tf_call_config
from tffexec.executors import tf_function
from tffexec.executors import tf_functional

_LOG = logging.getLogger("tffexec")
_PFOR_SOURCE = os.path.join("parallel_for", "pfor.py")
_OP_TYPE = re.compile(r'^op: "([A-Za-z0-9_]+)"', re.MULTILINE)
_pfor_quieted = False


class _FailedOp(threading.local):
    """The type of the op pfor last failed on, in this thread (None: not known)."""

    type: Optional[str] = None


_pfor_failed_op = _FailedOp()


class _DropPforRecords(logging.Filter):
    """Drops the log records of TensorFlow's pfor converter (see "Quiet fallback"), keeping the
    type of the op it could not convert for the `-v` line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.pathname.endswith(_PFOR_SOURCE):
            return True
        message = record.getMessage()
        if message.startswith("Got error while pfor was converting op"):
            found = _OP_TYPE.search(message)  # the op is printed as its NodeDef text
            _pfor_failed_op.type = found.group(1) if found else None
        return False


def _quiet_pfor() -> None:
    """Installs the filter on TensorFlow's logger, once per process."""
    global _pfor_quieted
    if not _pfor_quieted:
        logging.getLogger("tensorflow").addFilter(_DropPforRecords())
        _pfor_quieted = True


#: For other vectorising paths (`tf_vectorised`): pfor's records dropped, as here.
quiet_pfor = _quiet_pfor


def _report_refusal(key: tuple, error: BaseException) -> None:
    """One `-v` line saying which batched form was refused and why (its first line)."""
    lines = str(error).strip().splitlines()
    reason = f"{type(error).__name__}: {lines[0][:200] if lines else ''}"
    op_type, _pfor_failed_op.type = _pfor_failed_op.type, None
    if key[0] == "map":
        what = ("a federated_map's function runs client by client: pfor cannot vectorise "
                + (f"its {op_type} op" if op_type else "it"))
    elif key[-1]:
        what = "an aggregate's accumulate runs without XLA: XLA cannot compile it"
    else:
        what = "an aggregate's accumulate runs client by client: it cannot be folded in one call"
    _LOG.info("batching: %s (%s)", what, reason)


def _graph_for_batching(tf, graph_function):
    """The graph with its parameter placeholders turned into identities of fresh input names.

    `import_graph_def(input_map=...)` would still import the replaced Placeholder nodes, and XLA
    (used for folds) cannot compile a Placeholder; an Identity of an input that only the
    input map provides can. Returns the GraphDef, the input-map keys for the parameters (in
    binding order) and extra inputs (TFF's session token, fed one constant for the batch).
    """
    graph_def = graph_function.prepared_graph_def()
    by_name = {node.name: node for node in graph_def.node}
    keys = []
    for index, (_, tensor_name) in enumerate(graph_function.parameter_leaves):
        node_name, _, output = tensor_name.partition(":")
        node = by_name.get(node_name)
        if node is not None and node.op == "Placeholder" and output in ("", "0"):
            _as_identity(node, f"tffexec_in_{index}")
            keys.append(f"tffexec_in_{index}:0")
        else:
            keys.append(tensor_name)
    extra = {}
    token = graph_function.session_token_name
    token_node = by_name.get(token.split(":")[0]) if token else None
    if token_node is not None:
        if token_node.op == "Placeholder":
            _as_identity(token_node, "tffexec_token")
            extra["tffexec_token:0"] = "tffexec-batch"
        else:
            extra[token] = "tffexec-batch"
    return graph_def, keys, extra


def _has_conditional(graph_function) -> bool:
    """Whether the graph (or a function it calls) holds an `If`/`StatelessIf`."""
    return any(node.op in ("If", "StatelessIf")
               for node in tf_call_config.graph_nodes(graph_function.graph_def))


def _interpreted_client(tf, graph_function, mask: list, results: list):
    """One client's results with the graph re-emitted by `tf_functional` (each `If` a `tf.cond`
    pfor can vectorise); `Unsupported` (a stateful op, a parameter that is not a placeholder)
    refuses the map like any pfor refusal."""
    interpreter = tf_functional.Interpreter(graph_function.prepared_graph_def())
    names = []
    for _, tensor_name in graph_function.parameter_leaves:
        node_name, _, output = tensor_name.partition(":")
        if output not in ("", "0"):
            raise tf_functional.Unsupported(f"parameter {tensor_name} is not a placeholder")
        names.append(node_name)
    token = graph_function.session_token_name

    def one_client(stacked_slices, shared):
        slices, constants = iter(stacked_slices), iter(shared)
        feeds = {name: next(slices) if s else next(constants) for name, s in zip(names, mask)}
        if token:
            feeds[token.split(":")[0]] = tf.constant("tffexec-batch")
        return interpreter.run(feeds, results)

    return one_client


def _as_identity(node, input_name: str) -> None:
    dtype = node.attr["dtype"].type
    node.op = "Identity"
    node.attr.clear()
    node.attr["T"].type = dtype
    del node.input[:]
    node.input.append(input_name)


def _spec(tf, array: np.ndarray, stacked: bool):
    shape = array.shape[1:] if stacked else array.shape
    return tf.TensorSpec(([None] if stacked else []) + list(shape), tf.as_dtype(array.dtype))


class BatchedFunctions:
    """Compiled batched versions of graph functions, and the refusals, for one stack's leaf.

    `leaf` is the stack's TensorFlow executor (handed over by the stack builder): the functions
    batched are its functions, and batched calls run on its device.
    """

    def __init__(self, leaf: tensorflow_executor.TensorFlowExecutor):
        self.leaf = leaf
        self._compiled: dict = {}
        self._refused: set = set()
        self._conditional: dict = {}  # graph function -> whether it holds an If (see map)
        self._lock = threading.Lock()
        self.calls = 0  # batched TensorFlow calls made (observable by tests and benchmarks)
        self.traces = 0  # batched functions traced (a call that traced says little of its cost)
        self.jit = True  # compile folds with XLA where it can

    def function_of(self, value: base.ExecValue) -> Optional[tensorflow_executor.LeafFunction]:
        """The leaf's function under the layers wrapping `value`, or None (e.g. a lambda)."""
        while isinstance(value, base.ExecValue):
            if value.owner is self.leaf:
                rep = value.rep
                return rep if isinstance(rep, tensorflow_executor.LeafFunction) else None
            value = value.rep
        return None

    # -- maps ----------------------------------------------------------------------------------------
    def map(self, function, batch: batch_lib.Batch, result_type) -> Optional[batch_lib.Batch]:
        """`function` applied to every client's value of `batch`, as a Batch of `result_type`.

        None when the function cannot be batched: the caller runs it per client.
        """
        graph_function = function.graph_function
        if batch.count == 0 or not graph_function.batchable:
            return None
        result_types = batch_lib.leaf_types(result_type)
        if result_types is None:
            return None
        if not any(batch.stacked):
            # Every client has the same input, and the graph is stateless: one call, one shared
            # result.
            outputs = self._run(graph_function, list(batch.leaves))
            if outputs is None:
                return None
            leaves = [tf_function.to_numpy(o, np.dtype(t.dtype)) for o, t in
                      zip(outputs, result_types)]
            return batch_lib.Batch(result_type, batch.count, leaves, [False] * len(leaves))
        key = ("map", graph_function, tuple(batch.stacked),
               tuple((a.dtype.str, a.shape[1:] if s else a.shape)
                     for a, s in zip(batch.leaves, batch.stacked)))
        compiled = self._get(key, lambda: self._build_map(graph_function, batch), report=False)
        second_form = compiled is None
        if second_form:  # said under -v if it is refused too
            conditional = self._conditional.get(graph_function)
            if conditional is None:
                conditional = self._conditional[graph_function] = _has_conditional(graph_function)
            key += ("interpreted" if conditional else "looped",)
            compiled = self._get(key, lambda: self._build_map(
                graph_function, batch, interpreted=conditional, loop=True))
        if compiled is None:
            return None
        stacked = [a for a, s in zip(batch.leaves, batch.stacked) if s]
        shared = [a for a, s in zip(batch.leaves, batch.stacked) if not s]
        # A second form that fails is not tried again (a looped op whose per-client outputs
        # differ in shape fails on every call); the per-client path names a failing client.
        outputs = self._invoke(key, compiled, stacked, shared, refuse_any_error=second_form)
        if outputs is None:
            return None
        leaves = [tf_function.to_numpy(o, np.dtype(t.dtype)) for o, t in zip(outputs, result_types)]
        return batch_lib.Batch(result_type, batch.count, leaves, [True] * len(leaves))

    def _build_map(self, graph_function, batch, interpreted: bool = False, loop: bool = False):
        """The batched map: the graph imported (or, `interpreted`, re-emitted by `tf_functional`)
        inside `tf.vectorized_map`; with `loop`, an op pfor has no rule for runs client after
        client in a loop inside the same call (the same kernel on each client's slice)."""
        tf = tf_runtime.tensorflow()
        _quiet_pfor()
        results = [name for _, name in graph_function.result_leaves]
        mask = list(batch.stacked)
        signature = [[_spec(tf, a, True) for a, s in zip(batch.leaves, mask) if s],
                     [_spec(tf, a, False) for a, s in zip(batch.leaves, mask) if not s]]
        if interpreted:
            one_client = _interpreted_client(tf, graph_function, mask, results)
        else:
            graph_def, parameters, extra = _graph_for_batching(tf, graph_function)

            def one_client(stacked_slices, shared):
                slices, constants = iter(stacked_slices), iter(shared)
                inputs = {name: next(slices) if s else tf.identity(next(constants))
                          for name, s in zip(parameters, mask)}
                inputs.update({name: tf.constant(v) for name, v in extra.items()})
                return tf.graph_util.import_graph_def(graph_def, input_map=inputs,
                                                      return_elements=results, name="client")

        @tf.function(input_signature=signature, autograph=False)
        def all_clients(stacked, shared):
            return tf.vectorized_map(lambda xs: one_client(xs, shared), stacked,
                                     fallback_to_while_loop=loop)

        return all_clients.get_concrete_function()

    # -- folds ---------------------------------------------------------------------------------------
    def fold(self, function, zero_leaves: list, batch: batch_lib.Batch) -> Optional[list]:
        """The in-order fold of `function` (accumulate: <acc, member> -> acc) over the clients,
        starting from `zero_leaves`, in one TensorFlow call; the accumulator's leaves, or None."""
        graph_function = function.graph_function
        if batch.count == 0 or not any(batch.stacked) or not graph_function.batchable:
            return None
        if len(graph_function.parameter_leaves) != len(zero_leaves) + len(batch.leaves) or \
                len(graph_function.result_leaves) != len(zero_leaves):
            return None
        key = ("fold", graph_function, tuple(batch.stacked),
               tuple((a.dtype.str, a.shape) for a in zero_leaves),
               tuple((a.dtype.str, a.shape[1:] if s else a.shape)
                     for a, s in zip(batch.leaves, batch.stacked)))
        stacked = [a for a, s in zip(batch.leaves, batch.stacked) if s]
        shared = [a for a, s in zip(batch.leaves, batch.stacked) if not s]
        # XLA first: a compiled while loop costs about a microsecond per client where TensorFlow's
        # executor takes tens. Graphs XLA cannot compile are remembered and run without it.
        outputs = None
        for jit in ((True, False) if self.jit else (False,)):
            variant = key + (jit,)
            compiled = self._get(variant, lambda: self._build_fold(graph_function, zero_leaves,
                                                                   batch, jit))
            if compiled is None:
                continue
            outputs = self._invoke(variant, compiled, list(zero_leaves), stacked, shared,
                                   refuse_any_error=jit)
            if outputs is not None:
                break
        if outputs is None:
            return None
        return [tf_function.to_numpy(o, z.dtype) for o, z in zip(outputs, zero_leaves)]

    def _build_fold(self, graph_function, zero_leaves, batch, jit: bool):
        tf = tf_runtime.tensorflow()
        graph_def, parameters, extra = _graph_for_batching(tf, graph_function)
        results = [name for _, name in graph_function.result_leaves]
        k = len(zero_leaves)
        mask = list(batch.stacked)
        signature = [[_spec(tf, np.asarray(z), False) for z in zero_leaves],
                     [_spec(tf, a, True) for a, s in zip(batch.leaves, mask) if s],
                     [_spec(tf, a, False) for a, s in zip(batch.leaves, mask) if not s]]

        @tf.function(input_signature=signature, autograph=False, jit_compile=jit)
        def folded(zero, stacked, shared):
            def step(accumulator, slices):
                # import_graph_def maps inputs only to tensors of the loop body's own graph:
                # identities capture the accumulator and the shared tensors into it.
                slices_it = iter(slices)
                constants = iter([tf.identity(t) for t in shared])
                inputs = dict(zip(parameters[:k], [tf.identity(a) for a in accumulator]))
                for name, s in zip(parameters[k:], mask):
                    inputs[name] = next(slices_it) if s else next(constants)
                inputs.update({name: tf.constant(v) for name, v in extra.items()})
                outputs = tf.graph_util.import_graph_def(graph_def, input_map=inputs,
                                                         return_elements=results, name="client")
                return [tf.ensure_shape(tf.cast(o, a.dtype) if o.dtype != a.dtype else o, a.shape)
                        for o, a in zip(outputs, accumulator)]

            return tf.foldl(step, stacked, initializer=list(zero))

        return folded.get_concrete_function()

    # -- plumbing ------------------------------------------------------------------------------------
    def _get(self, key, build, report: bool = True):
        """The compiled function for `key`, traced once; None if tracing refused it (remembered,
        and said under -v when `report`)."""
        if key in self._refused:
            return None
        compiled = self._compiled.get(key)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(key)
                if compiled is None and key not in self._refused:
                    try:
                        self.traces += 1
                        compiled = self._compiled[key] = build()
                    except Exception as e:  # noqa: BLE001 - pfor/tracing refuse in several ways
                        self._refused.add(key)
                        if report:
                            _report_refusal(key, e)
                        else:
                            _pfor_failed_op.type = None  # this refusal's op, not the next's
                        return None
        return compiled

    def _invoke(self, key, compiled, *args, refuse_any_error: bool = False):
        tf = tf_runtime.tensorflow()
        try:
            with self.leaf.device_scope():
                # The concrete function's flat entry point: binding Python arguments to the
                # signature costs more than the call itself for small batches.
                flat = [tf.convert_to_tensor(x) for group in args for x in group]
                outputs = tf_function.call_flat(compiled, flat)
        except tf.errors.OpError:
            if not refuse_any_error:
                return None  # a data-dependent failure: the per-client path names the client
            with self._lock:  # XLA could not compile it: do not try again
                self._refused.add(key)
                self._compiled.pop(key, None)
            return None
        except Exception:  # noqa: BLE001 - pfor refuses at trace time in several ways
            with self._lock:
                self._refused.add(key)
                self._compiled.pop(key, None)
            return None
        self.calls += 1
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

    def _run(self, graph_function, flat_args):
        try:
            with self.leaf.device_scope():
                return graph_function(flat_args)
        except Exception:  # noqa: BLE001 - the per-client path reports the real error
            return None
