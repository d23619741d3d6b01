"""Re-emits a serialized client graph op by op while tracing, its resource variables as tensors.

Why. `tf.vectorized_map` (pfor) rewrites every op of a function to work on a whole client axis,
but it cannot rewrite resource variables: a Keras client graph keeps its model weights, optimizer
slots and metrics in `VarHandleOp` variables that it reads (`ReadVariableOp`) and writes
(`AssignVariableOp`, `AssignAddVariableOp`) in order. A variable that lives only during one call
is a sequence of values, so this module walks the graph (the top level and every function it
calls) in dependency order and emits each op into the graph being traced, holding each
variable's current value as a Python-side tensor (`Slot`): a read is the current value, an assign
a new value. What comes out is a pure function of the client's inputs that pfor can vectorise.

Order. Data and control edges decide the walk's order. Inside functions TensorFlow's automatic
control dependencies order every pair of ops on one resource; at the top level,
`GraphFunction.prepared_graph_def` makes every node that does not feed the initialize op wait for
it, as TFF's runtime does, and only the nodes the results need are emitted (TF1 semantics).

What is interpreted: variables (`VarHandleOp`, reads, assigns, `VarIsInitializedOp`), function
calls (inlined with their arguments bound), `If`/`StatelessIf` (a `tf.cond` whose branches are
interpreted, variables passed in and their final values passed out), and a `ReduceDataset` over
the sequence parameter with take/repeat/options/map stages (a Python loop over the client's
element tensors, unrolled: the reduce function is called once per element, in order, as
`ReduceDataset` calls it). Every other op is emitted as written. Anything else that holds state
(stateful random ops, tables, queues, other resource ops, a dataset built in the graph, `While`
or other functional ops) raises `Unsupported`, and the caller keeps the per-client path. No state
survives a trace: slots live in the interpreter's Python frames only.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

import numpy as np

from tffexec import tf_runtime

_CALL_OPS = frozenset({"StatefulPartitionedCall", "PartitionedCall"})
_IF_OPS = frozenset({"If", "StatelessIf"})
_MAP_OPS = frozenset({"MapDataset", "ParallelMapDataset", "ParallelMapDatasetV2"})
#: Stateful ops that are safe to emit as written (no state beyond the op itself).
_STATEFUL_OK = frozenset({"Assert", "NoOp"})
#: TF1 control flow: dead tensors and frames that a re-emitted (and vectorised) graph must not
#: carry; such graphs keep the per-client path.
_TF1_CONTROL_FLOW = frozenset({"Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond",
                               "RefSwitch", "RefMerge", "RefEnter", "RefExit",
                               "RefNextIteration", "ControlTrigger"})
_RESOURCE = 20  # DT_RESOURCE
_VARIANT = 21  # DT_VARIANT
_BAD_NAME = re.compile(r"[^A-Za-z0-9_.\-/]")


class Unsupported(Exception):
    """The graph holds something this interpreter does not turn into a pure function."""


@dataclasses.dataclass(eq=False)
class Slot:
    """One resource variable during one trace: its dtype and current value (None: unset)."""

    dtype: int
    value: Any = None


@dataclasses.dataclass(eq=False)
class Elements:
    """A dataset as the client's elements: each item is the element's component tensors (tf.nest
    order); `endless`: repeated forever (only a following take may use it)."""

    items: list
    endless: bool = False


@dataclasses.dataclass
class _Body:
    """One scope, ready to walk: its nodes in dependency order, each node's data inputs as
    (producer, output index), and for a function its argument names and results."""

    order: list
    inputs: dict
    args: list
    results: list


def _is_tensor(value) -> bool:
    """Whether an interpreted value is a tensor (not a variable's slot or a dataset)."""
    return not isinstance(value, (Slot, Elements))


def _op_def(op: str):
    from tensorflow.python.framework import op_def_registry  # noqa: PLC0415 - TF loads lazily

    return op_def_registry.get(op)


def _output_count(arg, node) -> int:
    if arg.number_attr:
        return node.attr[arg.number_attr].i
    if arg.type_list_attr:
        return len(node.attr[arg.type_list_attr].list.type)
    return 1


def _order(nodes: list, edges: dict) -> list:
    """The nodes in an order where every node comes after its data and control inputs (ties in
    the file's order), without recursion (Keras graphs have long chains)."""
    by_name = {node.name: node for node in nodes}
    done: set = set()
    order = []
    for root in nodes:
        if root.name in done:
            continue
        stack = [(root.name, iter(edges[root.name]))]
        entered = {root.name}
        while stack:
            name, pending = stack[-1]
            step = next((p for p in pending if p in by_name and p not in done), None)
            if step is None:
                stack.pop()
                done.add(name)
                order.append(by_name[name])
            elif step in entered:
                raise Unsupported(f"a cycle through {step}")
            else:
                entered.add(step)
                stack.append((step, iter(edges[step])))
    return order


def _body(nodes, resolve: Callable[[str], tuple[str, int]], args: list, results: list) -> _Body:
    """A scope's nodes as a body; `resolve` maps a data reference to (producer, output index)."""
    inputs, edges = {}, {}
    for node in nodes:
        data, deps = [], []
        for reference in node.input:
            if reference.startswith("^"):
                deps.append(reference[1:])
                continue
            source = resolve(reference)
            data.append(source)
            deps.append(source[0])
        inputs[node.name], edges[node.name] = data, deps
    return _Body(_order(list(nodes), edges), inputs, args, results)


def graph_body(graph_def) -> _Body:
    """The top-level graph as a body (references are `node:index`)."""
    def resolve(reference: str) -> tuple[str, int]:
        name, _, index = reference.partition(":")
        return name, int(index or 0)

    return _body(graph_def.node, resolve, [], [])


def function_body(function, signatures: dict) -> _Body:
    """A library function as a body: `node:output_arg:index` references mapped to flat output
    indices (from the op's definition, or the called function's signature)."""
    flat = {arg.name: (arg.name, 0) for arg in function.signature.input_arg}
    for node in function.node_def:
        op_def = signatures.get(node.op) or _op_def(node.op)
        if op_def is None:
            raise Unsupported(f"unknown op {node.op}")
        index = 0
        for arg in op_def.output_arg:
            for k in range(_output_count(arg, node)):
                flat[f"{node.name}:{arg.name}:{k}"] = (node.name, index)
                index += 1

    def resolve(reference: str) -> tuple[str, int]:
        if reference not in flat:
            raise Unsupported(f"unresolved reference {reference}")
        return flat[reference]

    results = [resolve(function.ret[arg.name]) for arg in function.signature.output_arg]
    return _body(function.node_def, resolve, [a.name for a in function.signature.input_arg],
                 results)


class Interpreter:
    """Emits a GraphDef's ops into the graph being traced (see the module's docstring).

    Build one per GraphDef; `run` may be called in several traces (bodies are parsed once).
    """

    def __init__(self, graph_def):
        self._graph_def = graph_def
        self._functions = {f.signature.name: f for f in graph_def.library.function}
        self._signatures = {name: f.signature for name, f in self._functions.items()}
        self._bodies: dict[str, _Body] = {}
        self._graph = graph_body(graph_def)
        self._handlers: dict[str, Callable] = {
            "VarHandleOp": self._var_handle, "ReadVariableOp": self._read,
            "AssignVariableOp": self._assign, "AssignAddVariableOp": self._assign_add,
            "AssignSubVariableOp": self._assign_sub, "VarIsInitializedOp": self._is_initialized,
            "DestroyResourceOp": lambda node, inputs: [], "NoOp": lambda node, inputs: [],
            "Identity": self._identity, "IdentityN": self._identity,
            "ReduceDataset": self._reduce, "TakeDataset": self._take,
            "RepeatDataset": self._repeat, "OptionsDataset": self._options,
        }
        for op in _CALL_OPS:
            self._handlers[op] = self._call_op
        for op in _IF_OPS:
            self._handlers[op] = self._if
        for op in _MAP_OPS:
            self._handlers[op] = self._map

    # -- entry point ---------------------------------------------------------------------------
    def run(self, feeds: dict[str, Any], fetches: list[str]) -> list:
        """The fetched tensors of the top-level graph, its placeholders bound to `feeds` (node
        name -> tensor, or `Elements` for a sequence parameter); only needed nodes are emitted."""
        wanted = [(name.split(":")[0], int(name.split(":")[1]) if ":" in name else 0)
                  for name in fetches]
        needed = self._ancestors({name for name, _ in wanted})
        env: dict[str, list] = {name: [value] for name, value in feeds.items()}
        for node in self._graph.order:
            if node.name in needed and node.name not in env:
                if node.op == "Placeholder":
                    raise Unsupported(f"placeholder {node.name} is not fed")
                env[node.name] = self._emit(node, self._inputs(self._graph, node, env))
        outputs = [self._output(env, name, index) for name, index in wanted]
        if any(not _is_tensor(o) for o in outputs):
            raise Unsupported("a result is a resource or a dataset")
        return outputs

    def _ancestors(self, names: set) -> set:
        by_name = {node.name: node for node in self._graph_def.node}
        seen, stack = set(), list(names)
        while stack:
            name = stack.pop()
            if name in seen or name not in by_name:
                continue
            seen.add(name)
            stack.extend(r[1:] if r.startswith("^") else r.split(":")[0]
                         for r in by_name[name].input)
        return seen

    # -- walking -------------------------------------------------------------------------------
    @staticmethod
    def _output(env: dict, name: str, index: int):
        outputs = env.get(name)
        if outputs is None or index >= len(outputs):
            raise Unsupported(f"output {index} of {name} was not produced")
        return outputs[index]

    def _inputs(self, body: _Body, node, env: dict) -> list:
        return [self._output(env, name, index) for name, index in body.inputs[node.name]]

    def call(self, name: str, arguments: list) -> list:
        """Function `name` of the library, inlined with `arguments` bound; its results."""
        body = self._bodies.get(name)
        if body is None:
            function = self._functions.get(name)
            if function is None:
                raise Unsupported(f"function {name} is not in the library")
            if function.signature.attr:
                raise Unsupported(f"function {name} is polymorphic")
            body = self._bodies[name] = function_body(function, self._signatures)
        if len(arguments) != len(body.args):
            raise Unsupported(f"function {name} called with {len(arguments)} arguments")
        env: dict[str, list] = {arg: [value] for arg, value in zip(body.args, arguments)}
        for node in body.order:
            env[node.name] = self._emit(node, self._inputs(body, node, env))
        return [self._output(env, name, index) for name, index in body.results]

    def _emit(self, node, inputs: list) -> list:
        handler = self._handlers.get(node.op)
        if handler is not None:
            return handler(node, inputs)
        if node.op in self._functions:
            return self.call(node.op, inputs)
        return self._plain(node, inputs)

    def _plain(self, node, inputs: list) -> list:
        """An op emitted as written (attributes travel as protos)."""
        op_def = _op_def(node.op)
        if op_def is None:
            raise Unsupported(f"unknown op {node.op}")
        if node.op in _TF1_CONTROL_FLOW:
            raise Unsupported(f"TF1 control flow ({node.op})")
        if op_def.is_stateful and node.op not in _STATEFUL_OK:
            raise Unsupported(f"stateful op {node.op}")
        if any(not _is_tensor(x) for x in inputs):
            raise Unsupported(f"{node.op} takes a variable or a dataset")
        if any(arg.type in (_RESOURCE, _VARIANT)
               for arg in list(op_def.input_arg) + list(op_def.output_arg)) \
                and not node.op.startswith("TensorList"):
            raise Unsupported(f"{node.op} works on resources or datasets")
        attrs = {}
        for key, value in node.attr.items():
            if key.startswith("_"):
                continue
            if value.WhichOneof("value") == "func" or (
                    value.WhichOneof("value") == "list" and value.list.func):
                raise Unsupported(f"{node.op} calls a function")
            attrs[key] = value
        tf = tf_runtime.tensorflow()
        graph = tf.compat.v1.get_default_graph()
        name = _BAD_NAME.sub("_", node.name) or node.op
        return list(graph.create_op(node.op, inputs, name=name, attrs=attrs).outputs)

    # -- variables -----------------------------------------------------------------------------
    @staticmethod
    def _slot(value) -> Slot:
        if not isinstance(value, Slot):
            raise Unsupported("a variable op on something other than a graph's own variable")
        return value

    def _var_handle(self, node, inputs):
        return [Slot(node.attr["dtype"].type)]

    def _read(self, node, inputs):
        slot = self._slot(inputs[0])
        if slot.value is None:
            raise Unsupported("a variable is read before it is assigned")
        return [slot.value]

    @staticmethod
    def _set(slot: Slot, value) -> None:
        if not _is_tensor(value) or value.dtype.as_datatype_enum != slot.dtype:
            raise Unsupported("a variable is assigned a value of another dtype")
        slot.value = value

    def _assign(self, node, inputs):
        self._set(self._slot(inputs[0]), inputs[1])
        return []

    def _assign_add(self, node, inputs):
        slot = self._slot(inputs[0])
        self._set(slot, tf_runtime.tensorflow().raw_ops.AddV2(x=self._read(node, inputs)[0],
                                                               y=inputs[1]))
        return []

    def _assign_sub(self, node, inputs):
        slot = self._slot(inputs[0])
        self._set(slot, tf_runtime.tensorflow().raw_ops.Sub(x=self._read(node, inputs)[0],
                                                            y=inputs[1]))
        return []

    def _is_initialized(self, node, inputs):
        return [tf_runtime.tensorflow().constant(self._slot(inputs[0]).value is not None)]

    @staticmethod
    def _identity(node, inputs):
        return list(inputs)

    # -- calls and conditionals ----------------------------------------------------------------
    def _call_op(self, node, inputs):
        return self.call(node.attr["f"].func.name, inputs)

    def _if(self, node, inputs):
        """`If`/`StatelessIf` as `tf.cond`; variables go in as values and come out updated."""
        tf = tf_runtime.tensorflow()
        predicate, arguments = inputs[0], inputs[1:]
        then_name = node.attr["then_branch"].func.name
        else_name = node.attr["else_branch"].func.name
        if not _is_tensor(predicate) or any(isinstance(a, Elements) for a in arguments):
            raise Unsupported("a conditional over a dataset")
        known = tf.get_static_value(predicate)
        if known is not None and np.size(known) == 1:
            return self.call(then_name if bool(known) else else_name, arguments)
        if predicate.shape.rank != 0:
            raise Unsupported("a conditional on a non-scalar predicate")
        if predicate.dtype != tf.bool:
            predicate = tf.not_equal(predicate, tf.zeros_like(predicate))
        slots = list({id(a): a for a in arguments if isinstance(a, Slot)}.values())
        if any(s.value is None for s in slots):
            raise Unsupported("a conditional over an unassigned variable")
        count = []

        def branch(name: str):
            def run():
                local = {id(s): Slot(s.dtype, s.value) for s in slots}
                bound = [local[id(a)] if isinstance(a, Slot) else a for a in arguments]
                outputs = self.call(name, bound)
                if any(not _is_tensor(o) for o in outputs):
                    raise Unsupported("a conditional returns a variable or a dataset")
                count.append(len(outputs))
                return list(outputs) + [local[id(s)].value for s in slots]
            return run

        results = tf.cond(predicate, branch(then_name), branch(else_name))
        results = list(results) if isinstance(results, (list, tuple)) else [results]
        outputs = count[0] if count else 0
        for slot, value in zip(slots, results[outputs:]):
            slot.value = value
        return results[:outputs]

    # -- datasets (the sequence parameter only) ------------------------------------------------
    @staticmethod
    def _elements(value) -> Elements:
        if not isinstance(value, Elements):
            raise Unsupported("a dataset that is not the sequence parameter")
        return value

    @staticmethod
    def _count(value) -> int:
        known = tf_runtime.tensorflow().get_static_value(value)
        if known is None:
            raise Unsupported("a dataset stage with a count computed at run time")
        return int(known)

    def _take(self, node, inputs):
        source, count = self._elements(inputs[0]), self._count(inputs[1])
        if source.endless:
            if count < 0 or not source.items:
                raise Unsupported("an endless dataset")
            return [Elements([source.items[i % len(source.items)] for i in range(count)])]
        return [Elements(list(source.items) if count < 0 else source.items[:count])]

    def _repeat(self, node, inputs):
        source, count = self._elements(inputs[0]), self._count(inputs[1])
        if source.endless:
            return [source]
        if count < 0:
            return [Elements(list(source.items), endless=True)]
        return [Elements(list(source.items) * count)]

    def _options(self, node, inputs):
        return [self._elements(inputs[0])]

    def _map(self, node, inputs):
        source = self._elements(inputs[0])
        if source.endless:
            raise Unsupported("a map over an endless dataset")
        captured = inputs[1:1 + len(node.attr["Targuments"].list.type)]
        if any(not _is_tensor(c) for c in captured):
            raise Unsupported("a dataset map over a variable")
        function = node.attr["f"].func.name
        return [Elements([tuple(self.call(function, list(item) + list(captured)))
                          for item in source.items])]

    def _reduce(self, node, inputs):
        """The reduce function called once per element, in order, from the initial state."""
        source = self._elements(inputs[0])
        if source.endless:
            raise Unsupported("a reduction over an endless dataset")
        states = len(node.attr["Tstate"].list.type)
        state, captured = list(inputs[1:1 + states]), list(inputs[1 + states:])
        function = node.attr["f"].func.name
        for item in source.items:
            state = self.call(function, state + list(item) + captured)
            if len(state) != states:
                raise Unsupported("a reduce function that does not return its state")
        return state
