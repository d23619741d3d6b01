"""Client training as a tensor loop: `ReduceDataset` over a sequence parameter becomes a `While`.

Why. A `tff.learning` client graph reduces its dataset parameter with `ReduceDataset` (the
`for batch in dataset` loop of the client update). TensorFlow builds the tf.data pipeline and
instantiates the reduce function afresh on every execution of that op, which costs far more than
the model's math on small clients. tffexec holds the client's dataset as element tensors already
(`SequenceValue.elements()`), so where the graph only reduces the sequence it was given we feed
those elements as `TensorList`s and run the SAME reduce function in a functional `While` loop
compiled once with the graph.

What is rewritten (`plan` decides, `rewrite` applies, `tf_loop_feed` builds what calls feed):
- a `variant` parameter (a sequence passed as a dataset) every use of which is the dataset input
  of a `ReduceDataset`, directly or through function-call ops (each called function reached
  from one call site only, so its body may change) and dataset stages in the reduction's scope:
  `take`/`repeat` with constant counts (index arithmetic), `map` whose function has no stateful
  op (called on the element in the loop body), tf.data options (no effect on elements);
- the reduce function (and every function it reaches) has no stateful random op: a
  `ReduceDataset` re-creates its kernels on every execution, restarting a seeded random stream,
  while a loop body would continue it.
Anything else keeps tf.data. The parameter placeholder stays a `variant`: it carries a
`TensorList` of one `TensorList` per element component (in tf.nest order) instead of a dataset.

Semantics kept exactly: the loop calls the reduce function once per element, in order, with the
state, the element's components and the captured arguments, as `ReduceDataset` does; elements of
different shapes (a ragged last batch) are separate list items; the While kernel runs one
iteration at a time (not lowered to Switch/Merge, one parallel iteration), so the function's
variable reads and writes happen in the same order; Grappler is off inside the call
(`tf_call_config`), as for tf.data's instantiation of the reduce function.
`TFFEXEC_TENSOR_LOOPS=0` turns the rewrite off (to compare with the tf.data path).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any, Iterable

import numpy as np

from tffexec import tf_runtime

#: Environment switch: "0" keeps every graph on the tf.data path.
ENV_SWITCH = "TFFEXEC_TENSOR_LOOPS"

_CALL_OPS = frozenset({"StatefulPartitionedCall", "PartitionedCall"})
#: Dataset stages between the parameter and `ReduceDataset` that a loop reproduces.
_MAP_OPS = frozenset({"MapDataset", "ParallelMapDataset", "ParallelMapDatasetV2"})
_STAGES = frozenset({"TakeDataset", "RepeatDataset", "OptionsDataset"}) | _MAP_OPS
#: Random ops without "Random" in their name (stateful ones are refused in reduce functions).
_RANDOM_OPS = frozenset({"Multinomial", "TruncatedNormal", "ParameterizedTruncatedNormal"})
_RANDOM_PREFIXES = ("StatefulUniform", "StatefulStandardNormal", "StatefulTruncatedNormal", "Rng",
                    "NonDeterministic")


def enabled() -> bool:
    """Whether tensor loops are on (`TFFEXEC_TENSOR_LOOPS` is not "0")."""
    return os.environ.get(ENV_SWITCH, "1") != "0"


@dataclasses.dataclass(frozen=True)
class Reduce:
    """One `ReduceDataset` node to rewrite: `scope` is None (top-level graph) or a function.

    `source` is the reference to the dataset parameter in that scope; `stages` are the dataset
    stages between it and the reduction, source first, as (node, op, count reference, count).
    """

    scope: str | None
    node: str
    source: str = ""
    stages: tuple[tuple[str, str, str, int], ...] = ()


@dataclasses.dataclass(frozen=True)
class LoopPlan:
    """Which parameters are fed as element lists and which reductions become loops.

    `parameters` maps a parameter leaf index to the dtypes (TensorFlow enums) of its element
    components, as the reduce functions expect them.
    """

    parameters: dict[int, tuple[int, ...]]
    reduces: tuple[Reduce, ...]


# -- eligibility ---------------------------------------------------------------------------------
def _node_name(reference: str) -> str:
    name = reference.split(":")[0]
    return name[1:] if name.startswith("^") else name


def is_random_op(op: str, stateful: bool) -> bool:
    """Whether an op (stateful or not, per its op definition) draws random numbers from a stream."""
    return stateful and ("Random" in op or op in _RANDOM_OPS or op.startswith(_RANDOM_PREFIXES))


class _Library:
    """The graph's function library, indexed for the walk."""

    def __init__(self, graph_def):
        self.functions = {f.signature.name: f for f in graph_def.library.function}
        self.call_sites: dict[str, int] = {}
        bodies = [graph_def.node] + [f.node_def for f in graph_def.library.function]
        for nodes in bodies:
            for node in nodes:
                for name in self._callees(node):
                    self.call_sites[name] = self.call_sites.get(name, 0) + 1

    def _callees(self, node) -> Iterable[str]:
        if node.op in self.functions:
            yield node.op
        for value in node.attr.values():
            kind = value.WhichOneof("value")
            if kind == "func":
                yield value.func.name
            elif kind == "list":
                yield from (f.name for f in value.list.func)

    def reaches_random(self, name: str) -> bool:
        """Whether function `name`, or one it reaches, holds a stateful random op."""
        return self._reaches(name, is_random_op)

    def reaches_stateful(self, name: str) -> bool:
        """Whether function `name`, or one it reaches, holds a stateful op other than a call
        (a map function that has one could see its elements computed ahead, or in parallel)."""
        return self._reaches(name, lambda op, stateful: stateful and op not in _CALL_OPS
                             and op not in self.functions)

    def _reaches(self, name: str, test) -> bool:
        from tensorflow.python.framework import op_def_registry  # noqa: PLC0415 - lazy TF

        seen, stack = set(), [name]
        while stack:
            current = stack.pop()
            if current in seen or current not in self.functions:
                continue
            seen.add(current)
            for node in self.functions[current].node_def:
                op_def = op_def_registry.get(node.op)
                if op_def is not None and test(node.op, op_def.is_stateful):
                    return True
                stack.extend(self._callees(node))
        return False


def plan(graph_def, parameter_leaves: list, result_leaves: list) -> LoopPlan | None:
    """The loop plan of a graph, or None when no sequence parameter can be fed as a loop.

    `parameter_leaves`/`result_leaves` are `GraphFunction`'s (kind, tensor name) lists.
    """
    library = _Library(graph_def)
    fetched = {_node_name(name) for _, name in result_leaves}
    parameters: dict[int, tuple[int, ...]] = {}
    reduces: list[Reduce] = []
    for index, (kind, tensor) in enumerate(parameter_leaves):
        if kind != "variant" or _node_name(tensor) in fetched:
            continue
        found: list[tuple[Reduce, tuple[int, ...]]] = []
        if not _trace(graph_def.node, None, _node_name(tensor), library, found) or not found:
            continue
        dtypes = {d for _, d in found}
        if len(dtypes) != 1 or not next(iter(dtypes)):
            continue  # reductions that disagree on the element (or an empty element)
        parameters[index] = dtypes.pop()
        reduces.extend(r for r, _ in found)
    if not parameters:
        return None
    return LoopPlan(parameters, tuple(reduces))


def _uses(nodes, scope: str | None, source: str) -> Iterable[tuple[Any, int]]:
    """(node, input position) of every data use of `source` (a node or function argument)."""
    for node in nodes:
        for position, reference in enumerate(node.input):
            if reference.startswith("^"):
                continue
            parts = reference.split(":")
            if parts[0] != source:
                continue
            if scope is None and len(parts) > 1 and parts[-1] != "0":
                continue
            yield node, position


def _stage(nodes, node, position: int, take_follows: bool,
           library: _Library) -> tuple[str, str, str, int] | None:
    """A `TakeDataset`/`RepeatDataset` stage with a constant count, as (node, op, count
    reference, count), or an `OptionsDataset`; None for anything else (an endless repeat only
    when a take follows)."""
    if node.op not in _STAGES or position != 0:
        return None
    if node.op == "OptionsDataset":  # tf.data settings (`tf_call_config`): same elements
        return node.name, node.op, "", 0
    if node.op in _MAP_OPS:
        mapper = node.attr["f"].func.name
        if mapper not in library.functions or library.reaches_stateful(mapper):
            return None
        return node.name, node.op, "", 0
    count_node = next((n for n in nodes if n.name == _node_name(node.input[1])), None)
    if count_node is None or count_node.op != "Const":
        return None
    tf = tf_runtime.tensorflow()
    count = int(tf.make_ndarray(count_node.attr["value"].tensor))
    if node.op == "RepeatDataset" and count < 0 and not take_follows:
        return None
    return node.name, node.op, node.input[1], count


def _element_types(library: _Library, node, states_attr: str | None) -> tuple[int, ...]:
    """The element dtypes that the function of a reduce (after `states_attr`'s state) or map
    node takes (before its captured arguments)."""
    args = library.functions[node.attr["f"].func.name].signature.input_arg
    states = len(node.attr[states_attr].list.type) if states_attr else 0
    captured = len(node.attr["Targuments"].list.type)
    return tuple(a.type for a in args[states:len(args) - captured])


def _trace(nodes, scope: str | None, source: str, library: _Library,
           found: list, origin: str | None = None, stages: tuple = ()) -> bool:
    """Follows the dataset `source` through call ops and take/repeat stages; False when a use is
    not a loop candidate. Appends (Reduce, element dtypes) for every reduction reached."""
    if scope is not None:
        function = library.functions[scope]
        if any(reference.split(":")[0] == source for reference in function.ret.values()):
            return False
    for node, position in _uses(nodes, scope, source):
        if node.op in _STAGES:
            uses = list(_uses(nodes, scope, node.name))
            take_follows = bool(uses) and all(u.op == "TakeDataset" for u, _ in uses)
            stage = _stage(nodes, node, position, take_follows, library)
            if stage is None or not _trace(nodes, scope, node.name, library, found,
                                           origin or source, stages + (stage,)):
                return False
            continue
        if stages and node.op != "ReduceDataset":
            return False  # a stage's output only feeds reductions in its own scope
        if node.op == "ReduceDataset" and position == 0:
            reduce_fn = node.attr["f"].func.name
            if reduce_fn not in library.functions or library.reaches_random(reduce_fn):
                return False
            dtypes = _element_types(library, node, "Tstate")
            first_map = next((n for n in nodes for stage in stages
                              if stage[1] in _MAP_OPS and n.name == stage[0]), None)
            if first_map is not None:  # the parameter's elements are what the first map takes
                dtypes = _element_types(library, first_map, None)
            found.append((Reduce(scope, node.name, origin or source, stages), dtypes))
            continue
        callee = node.attr["f"].func.name if node.op in _CALL_OPS else (
            node.op if node.op in library.functions else None)
        if callee is None or callee not in library.functions or library.call_sites[callee] != 1:
            return False
        args = library.functions[callee].signature.input_arg
        if position >= len(args):
            return False
        if not _trace(library.functions[callee].node_def, callee, args[position].name, library,
                      found):
            return False
    return True


# -- the rewrite ---------------------------------------------------------------------------------
def rewrite(graph_def, loop_plan: LoopPlan) -> None:
    """Replaces each planned `ReduceDataset` (and its take/repeat stages) by a `While` over
    element lists, in place."""
    functions = {f.signature.name: f for f in graph_def.library.function}
    for reduce in loop_plan.reduces:
        function = functions[reduce.scope] if reduce.scope is not None else None
        nodes = function.node_def if function is not None else graph_def.node
        _rewrite_reduce(graph_def, function, nodes, reduce)
    for reduce in loop_plan.reduces:  # the stages now feed nothing
        function = functions[reduce.scope] if reduce.scope is not None else None
        nodes = function.node_def if function is not None else graph_def.node
        stage_nodes = {stage[0] for stage in reduce.stages}
        for index in reversed(range(len(nodes))):
            if nodes[index].name in stage_nodes:
                del nodes[index]


def _attr_types(node, name: str) -> list[int]:
    return list(node.attr[name].list.type)


class _Builder:
    """Adds nodes to one scope (the top-level graph or a function body), naming their outputs
    the way that scope references them."""

    def __init__(self, prefix: str, in_function: bool):
        self.prefix, self.in_function, self.nodes = prefix, in_function, []

    def add(self, name: str, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(_node(f"{self.prefix}/{name}", op, inputs, **attrs))
        return f"{self.prefix}/{name}:{output}:0" if self.in_function else f"{self.prefix}/{name}:0"

    def const(self, name: str, value, dtype: int) -> str:
        self.nodes.append(_const(f"{self.prefix}/{name}", value, dtype))
        return f"{self.prefix}/{name}:output:0" if self.in_function else f"{self.prefix}/{name}:0"


def _lengths(build: _Builder, first_list: str, stages) -> tuple[str, list[str]]:
    """(the number of iterations, the moduli that map an iteration to an element, outermost
    first): a repeat stage maps iteration i to i mod (its input's length)."""
    tf = tf_runtime.tensorflow()
    int32, int64 = tf.int32.as_datatype_enum, tf.int64.as_datatype_enum
    length = build.add("length32", "TensorListLength", [first_list], "length")
    length = build.add("length", "Cast", [length], "y", SrcT=_type(int32), DstT=_type(int64))
    moduli = []
    for k, (_, op, count_ref, count) in enumerate(stages):
        if op == "OptionsDataset" or op in _MAP_OPS:  # one element out per element in
            continue
        if op == "TakeDataset":
            if count >= 0:
                length = build.add(f"take_{k}", "Minimum", [length, count_ref], "z",
                                   T=_type(int64))
            continue
        moduli.append(length)
        if count >= 0:
            length = build.add(f"repeat_{k}", "Mul", [length, count_ref], "z", T=_type(int64))
        else:  # endless (a take follows): as long as int64 allows, or empty
            sign = build.add(f"repeat_{k}_sign", "Sign", [length], "y", T=_type(int64))
            most = build.const(f"repeat_{k}_most", np.int64(np.iinfo(np.int64).max), int64)
            length = build.add(f"repeat_{k}", "Mul", [sign, most], "z", T=_type(int64))
    return length, moduli[::-1]


def _rewrite_reduce(graph_def, function, nodes, reduce: Reduce) -> None:
    tf = tf_runtime.tensorflow()
    variant, int32 = tf.variant.as_datatype_enum, tf.int32.as_datatype_enum
    int64 = tf.int64.as_datatype_enum
    node = next(n for n in nodes if n.name == reduce.node)
    reduce_fn = node.attr["f"].func
    signature = next(f.signature for f in graph_def.library.function
                     if f.signature.name == reduce_fn.name)
    states, captured = _attr_types(node, "Tstate"), _attr_types(node, "Targuments")
    elements = [a.type for a in signature.input_arg[len(states):len(signature.input_arg)
                                                    - len(captured)]]
    data = [i for i in node.input if not i.startswith("^")]
    controls = [i for i in node.input if i.startswith("^")]
    state_in, captured_in = data[1:1 + len(states)], data[1 + len(states):]
    maps, sources = [], elements
    for stage in reduce.stages:  # each map: (function, element types in, captured types, out)
        if stage[1] in _MAP_OPS:
            mapper = next(n for n in nodes if n.name == stage[0])
            taken = [a.type for a in next(
                f.signature for f in graph_def.library.function
                if f.signature.name == mapper.attr["f"].func.name).input_arg]
            extra = _attr_types(mapper, "Targuments")
            maps.append((mapper.attr["f"].func, taken[:len(taken) - len(extra)], extra,
                         _attr_types(mapper, "output_types")))
            captured_in += list(mapper.input[1:1 + len(extra)])  # (then num_parallel_calls)
    if maps:
        sources = maps[0][1]
    build = _Builder(f"{reduce.node}/tffexec_loop", function is not None)
    unknown = build.const("unknown_shape", np.int32(-1), int32)
    lists = [build.add(f"list_{k}", "TensorListGetItem",
                       [reduce.source, build.const(f"component_{k}", np.int32(k), int32), unknown],
                       "item", element_dtype=_type(variant))
             for k in range(len(sources))]
    length, moduli = _lengths(build, lists[0], reduce.stages)
    zero = build.const("zero", np.int64(0), int64)
    all_captured = captured + [t for _, _, extra, _ in maps for t in extra]
    loop_types = (states + [int64, int64] + [int64] * len(moduli) + [variant] * len(sources)
                  + all_captured)
    cond, body = _loop_functions(graph_def, reduce, reduce_fn, states, sources, captured, maps,
                                 len(moduli))
    loop = _node(reduce.node, "While",
                 state_in + [zero, length] + moduli + lists + captured_in + controls,
                 T=_types(loop_types), parallel_iterations=_int(1),
                 _lower_using_switch_merge=_bool(False))
    loop.attr["cond"].func.name = cond
    loop.attr["body"].func.name = body
    loop.device = node.device
    position = list(nodes).index(node)
    del nodes[position]
    for offset, new in enumerate(build.nodes + [loop]):
        nodes.insert(position + offset, new)
    if function is not None:  # outputs were `name:components:k`; the loop's are `name:output:k`
        _rename_output(function, reduce.node, "components", "output")


def _loop_functions(graph_def, reduce: Reduce, reduce_fn, states, elements, captured, maps,
                    moduli: int):
    """Adds the loop's cond and body functions to the library; returns their names.

    `elements` are the parameter's element types, `captured` the reduce function's captured
    argument types; the loop also carries each map's captured arguments after them."""
    tf = tf_runtime.tensorflow()
    int32, int64 = tf.int32.as_datatype_enum, tf.int64.as_datatype_enum
    variant = tf.variant.as_datatype_enum
    suffix = hashlib.sha256(f"{reduce_fn.name}/{reduce.scope}/{reduce.node}/{reduce.stages}"
                            .encode()).hexdigest()[:12]
    all_captured = list(captured) + [t for _, _, extra, _ in maps for t in extra]
    arg_types = ([(f"state_{i}", t) for i, t in enumerate(states)]
                 + [("index", int64), ("length", int64)]
                 + [(f"modulus_{i}", int64) for i in range(moduli)]
                 + [(f"list_{i}", variant) for i in range(len(elements))]
                 + [(f"captured_{i}", t) for i, t in enumerate(all_captured)])

    cond = graph_def.library.function.add()
    cond.signature.name = f"tffexec_loop_cond_{suffix}"
    _signature(cond, arg_types, [("more", tf.bool.as_datatype_enum)])
    cond.node_def.append(_node("less", "Less", ["index", "length"], T=_type(int64)))
    cond.ret["more"] = "less:z:0"

    body = graph_def.library.function.add()
    body.signature.name = f"tffexec_loop_body_{suffix}"
    _signature(body, arg_types, [(f"out_{n}", t) for n, t in arg_types])
    body.node_def.append(_const("unknown_shape", np.int32(-1), int32))
    body.node_def.append(_const("one", np.int64(1), int64))
    position = "index"
    for i in range(moduli):  # outermost repeat first
        body.node_def.append(_node(f"wrap_{i}", "FloorMod", [position, f"modulus_{i}"],
                                   T=_type(int64)))
        position = f"wrap_{i}:z:0"
    body.node_def.append(_node("position", "Cast", [position], SrcT=_type(int64),
                               DstT=_type(int32)))
    items = []
    for k, dtype in enumerate(elements):
        body.node_def.append(_node(f"item_{k}", "TensorListGetItem",
                                   [f"list_{k}", "position:y:0", "unknown_shape:output:0"],
                                   element_dtype=_type(dtype)))
        items.append(f"item_{k}:item:0")
    item_types, offset = list(elements), len(captured)
    for m, (mapper, taken, extra, produced) in enumerate(maps):  # source first, per element
        mapped = _node(f"map_{m}", "StatefulPartitionedCall",
                       items + [f"captured_{offset + i}" for i in range(len(extra))],
                       Tin=_types(list(taken) + list(extra)), Tout=_types(produced))
        mapped.attr["f"].func.CopyFrom(mapper)
        body.node_def.append(mapped)
        items = [f"map_{m}:output:{i}" for i in range(len(produced))]
        item_types, offset = list(produced), offset + len(extra)
    call = _node("call", "StatefulPartitionedCall",
                 [f"state_{i}" for i in range(len(states))] + items
                 + [f"captured_{i}" for i in range(len(captured))],
                 Tin=_types(states + item_types + list(captured)), Tout=_types(states))
    call.attr["f"].func.CopyFrom(reduce_fn)
    body.node_def.append(call)
    body.node_def.append(_node("next", "AddV2", ["index", "one:output:0"], T=_type(int64)))
    for i in range(len(states)):
        body.ret[f"out_state_{i}"] = f"call:output:{i}"
    body.ret["out_index"] = "next:z:0"
    for n, _ in arg_types:
        if not n.startswith(("state_", "index")):
            body.ret[f"out_{n}"] = n
    body.signature.control_output.append("call")
    body.control_ret["call"] = "call"
    return cond.signature.name, body.signature.name


def _rename_output(function, node: str, old: str, new: str) -> None:
    prefix = f"{node}:{old}:"

    def fix(reference: str) -> str:
        if not reference.startswith(prefix):
            return reference
        return f"{node}:{new}:{reference[len(prefix):]}"

    for other in function.node_def:
        for i, reference in enumerate(other.input):
            other.input[i] = fix(reference)
    for key, reference in list(function.ret.items()):
        function.ret[key] = fix(reference)


# -- NodeDef / AttrValue builders ------------------------------------------------------------------
def _node(name: str, op: str, inputs: list[str], **attrs):
    tf = tf_runtime.tensorflow()
    node = tf.compat.v1.NodeDef(name=name, op=op, input=inputs)
    for key, value in attrs.items():
        node.attr[key].CopyFrom(value)
    return node


def _const(name: str, value: np.ndarray, dtype: int):
    tf = tf_runtime.tensorflow()
    return _node(name, "Const", [], dtype=_type(dtype),
                 value=tf.compat.v1.AttrValue(tensor=tf.make_tensor_proto(value)))


def _type(dtype: int):
    return tf_runtime.tensorflow().compat.v1.AttrValue(type=dtype)


def _types(dtypes: list[int]):
    tf = tf_runtime.tensorflow()
    return tf.compat.v1.AttrValue(list=tf.compat.v1.AttrValue.ListValue(type=dtypes))


def _int(value: int):
    return tf_runtime.tensorflow().compat.v1.AttrValue(i=value)


def _bool(value: bool):
    return tf_runtime.tensorflow().compat.v1.AttrValue(b=value)


def _signature(function, inputs: list[tuple[str, int]], outputs: list[tuple[str, int]]) -> None:
    for name, dtype in inputs:
        function.signature.input_arg.add(name=name, type=dtype)
    for name, dtype in outputs:
        function.signature.output_arg.add(name=name, type=dtype)
    function.signature.is_stateful = True
