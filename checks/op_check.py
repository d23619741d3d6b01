"""Checks TensorFlow graphs against a `Policy` before anything imports or runs them.

Works on the minimal GraphDef messages of `tf_graph_pb2`, so it never imports TensorFlow:
`validate` reports the same findings as `run` refuses, in milliseconds.

What a graph may hold (unless `Policy.trust`):
  * nodes whose op is on the allowlist (`allowlist.ALLOWED_OPS` plus `Policy.allowed_ops`) or
    is a function of the graph's own library (whose body is checked in turn);
  * a function library without names of TensorFlow's primitive ops: no function named like one
    (`Add`, `ReadFile`), no such name in its `gradient` mapping, and so no node whose op could
    mean either (`shadowing_findings`; only `--trust` admits them);
  * function attributes (`f` of a `PartitionedCall`, the branches of `If`, a dataset's map
    function, ...) naming a library function or an allowed op: TensorFlow instantiates a
    primitive op named as a function, so `PartitionedCall(f=WriteFile)` is a use of WriteFile;
  * per-op rules, for ops that are pure except in one mode:
      - `PrintV2` only to standard error or the log (its `output_stream` can name a file);
      - `CacheDataset`/`CacheDatasetV2` only with a constant empty file name (an in-memory
        cache; a file name makes it read and write files);
      - `Const`, `ParseTensor`, `DeserializeSparse`, `DeserializeManySparse` never of dtype
        variant (a variant decoded from bytes could carry a dataset graph past the check);
  * graph-from-string ops (`DatasetFromGraph`) only in a computation's top-level graph and only
    when their string input is directly a parameter placeholder of the computation. The value fed
    there is then checked as a dataset graph when the computation is called (a sequence
    parameter's bytes come from a dataset that was itself checked; a string-tensor parameter is
    checked by `tf_function` before the call). Anywhere else (in a function body, fed by any
    other node, inside a dataset graph) it is refused, because the graph it would build has
    never been checked.
An op named by `--allow-op` is exempt from its per-op rule as well.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import threading
from typing import Iterable, Iterator

import federated_language as fl
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2
from google.protobuf import message as message_lib

from tffexec import errors
from tffexec import policy as policy_lib
from tffexec.checks import allowlist
from tffexec.checks import ast_walk
from tffexec.checks import graphs
from tffexec.checks import tf_ops
from tffexec.formats import limits
from tffexec.formats import sequences
from tffexec.formats import types
from tffexec.formats.diagnostics import child, item
from tffexec.formats.protos import tf_graph_pb2

DT_VARIANT = 21
PRINT_STREAMS = frozenset({"stderr", "log(info)", "log(warning)", "log(error)"})
_VARIANT_ATTRS = {"Const": "dtype", "ParseTensor": "out_type", "DeserializeSparse": "dtype",
                  "DeserializeManySparse": "dtype"}
_CACHE_OPS = frozenset({"CacheDataset", "CacheDatasetV2"})

COMPUTATION_GRAPH = "computation graph"
DATASET_GRAPH = "dataset graph"


@dataclasses.dataclass(frozen=True)
class Finding:
    """One op a policy refuses: which op, which node, and why."""

    op: str
    node: str
    function: str | None
    reason: str
    graph: str = COMPUTATION_GRAPH

    def describe(self) -> str:
        where = f"node {self.node!r}"
        if self.function is not None:
            where += f" of function {self.function!r}"
        return (f"forbidden TensorFlow op {self.op!r} ({where} in the {self.graph}): "
                f"{self.reason}")


def allows(policy: policy_lib.Policy, op: str) -> bool:
    """Whether `op` may run under `policy`: trusted, explicitly allowed, or on the allowlist."""
    return policy.trust or op in policy.allowed_ops or op in allowlist.ALLOWED_OPS


def _not_allowed(op: str) -> str:
    return (f"not on the allowlist of pure computation ops (it can reach files, the network or "
            f"other processes); pass --allow-op {op} or --trust to run it anyway")


def _producer(tensor_name: str) -> str:
    """The node name of an input (`x`, `x:1`, `^x`, and `fn:output:0` inside functions)."""
    name = tensor_name[1:] if tensor_name.startswith("^") else tensor_name
    return name.split(":", 1)[0]


def _func_names(attr: tf_graph_pb2.AttrValue) -> Iterator[str]:
    """Function names an attribute refers to, including those nested in a function's attrs."""
    stack = [attr]
    while stack:
        value = stack.pop()
        kind = value.WhichOneof("value")
        funcs = []
        if kind == "func":
            funcs = [value.func]
        elif kind == "list":
            funcs = list(value.list.func)
        for func in funcs:
            if func.name:
                yield func.name
            stack.extend(func.attr.values())


def _is_empty_string_const(node: tf_graph_pb2.NodeDef | None) -> bool:
    if node is None or node.op != "Const" or "value" not in node.attr:
        return False
    tensor = node.attr["value"].tensor
    return list(tensor.string_val) in ([], [b""]) and not tensor.tensor_content


def _scope_findings(nodes: Iterable[tf_graph_pb2.NodeDef], function: str | None,
                    library: frozenset[str], policy: policy_lib.Policy, graph: str,
                    bound: frozenset[str]) -> Iterator[Finding]:
    nodes = list(nodes)
    by_name = {node.name: node for node in nodes}
    for node in nodes:
        op = node.op

        def finding(reason: str, op: str = op) -> Finding:
            return Finding(op, node.name, function, reason, graph)

        explicit = op in policy.allowed_ops
        if op in library:
            pass
        elif op in allowlist.GRAPH_FROM_STRING_OPS and not explicit:
            source = by_name.get(_producer(node.input[0])) if node.input else None
            fed_by_parameter = (function is None and graph == COMPUTATION_GRAPH
                                and source is not None and source.op == "Placeholder"
                                and source.name in bound)
            if not fed_by_parameter:
                yield finding("builds a graph from a runtime string that does not come directly "
                              "from a parameter of the computation, so it cannot be checked; "
                              f"pass --allow-op {op} or --trust to run it anyway")
        elif not allows(policy, op):
            yield finding(_not_allowed(op))
        elif not explicit:
            yield from (finding(reason) for reason in _rule_violations(node, by_name))
        for attr_name, attr in node.attr.items():
            for name in _func_names(attr):
                if name not in library and not allows(policy, name):
                    yield finding(f"called as a function through attribute {attr_name!r}; "
                                  + _not_allowed(name), op=name)


def _rule_violations(node: tf_graph_pb2.NodeDef, by_name) -> Iterator[str]:
    op = node.op
    if op == "PrintV2":
        stream = node.attr["output_stream"].s.decode("utf-8", "replace") \
            if "output_stream" in node.attr else "stderr"
        if stream not in PRINT_STREAMS:
            yield (f"prints to {stream!r}; only {', '.join(sorted(PRINT_STREAMS))} are allowed "
                   f"(pass --allow-op {op} to allow any stream)")
    elif op in _CACHE_OPS:
        filename = by_name.get(_producer(node.input[1])) if len(node.input) > 1 else None
        if not _is_empty_string_const(filename):
            yield ("caches to a file (its filename is not a constant empty string); only "
                   f"in-memory caches are allowed (pass --allow-op {op} to allow it)")
    attr = _VARIANT_ATTRS.get(op)
    if attr is not None:
        dtypes = [node.attr[attr].type] if attr in node.attr else []
        if op == "Const" and "value" in node.attr:
            dtypes.append(node.attr["value"].tensor.dtype)
        if DT_VARIANT in dtypes:
            yield ("decodes a variant tensor from bytes, which can smuggle a dataset graph "
                   f"past the check (pass --allow-op {op} to allow it)")


@dataclasses.dataclass(frozen=True)
class LibraryFinding(Finding):
    """A function library entry (a function or a gradient mapping) named like a primitive op."""

    def describe(self) -> str:
        return f"{self.node} {self.op!r} in the {self.graph}: {self.reason}"


def shadowing_findings(graph_def: tf_graph_pb2.GraphDef, *,
                       graph: str = COMPUTATION_GRAPH) -> list[Finding]:
    """Library functions and gradient mappings that shadow TensorFlow's primitive ops, and the
    nodes that call them.

    A library function named like a registered op (`Add`, `ReadFile`) makes a node of that op
    ambiguous: it runs the function the checker admitted by its body, or the primitive op it
    never checked, depending on TensorFlow's lookup order. The library's `gradient` mapping
    (function_name -> gradient_func) names functions too: a name there that is a primitive op
    would have TensorFlow instantiate the op where a checked function was expected. Both are
    refused whatever the allowlist says (only `--trust` admits them), so the checker never
    depends on which of the two TensorFlow picks.
    """
    library = set(graphs.function_names(graph_def))
    if not library and not graph_def.library.gradient:
        return []
    shadowing = {name for name in library if tf_ops.is_registered(name)}
    found: list[Finding] = [LibraryFinding(
        name, "library function", None, "named like TensorFlow's primitive op of that name, "
        "which it would shadow; rename the function (or pass --trust)", graph)
        for name in sorted(shadowing)]
    for entry in graph_def.library.gradient:
        for role, name in (("function", entry.function_name), ("gradient", entry.gradient_func)):
            if tf_ops.is_registered(name):
                shadowing.add(name)
                found.append(LibraryFinding(
                    name, "gradient mapping entry", None,
                    f"names TensorFlow's primitive op {name!r} as the {role} of "
                    f"{entry.function_name!r} -> {entry.gradient_func!r}; only functions of "
                    "the graph's own library may appear there (or pass --trust)", graph))
    found.extend(
        Finding(use.op, use.node, use.function,
                f"names the library function {use.op!r}, which shadows TensorFlow's primitive "
                "op of that name, so it is unclear which one would run (or pass --trust)", graph)
        for use in graphs.iter_ops(graph_def) if use.op in shadowing)
    return found


def graph_findings(graph_def: tf_graph_pb2.GraphDef, policy: policy_lib.Policy, *,
                   graph: str = COMPUTATION_GRAPH,
                   bound: frozenset[str] = frozenset()) -> list[Finding]:
    """Every op of `graph_def` (and its function library) that `policy` refuses.

    Args:
      graph_def: the parsed graph.
      policy: the policy; a trusting policy finds nothing.
      graph: `COMPUTATION_GRAPH` or `DATASET_GRAPH`, for messages and the DatasetFromGraph rule.
      bound: names of the Placeholder nodes bound to the computation's parameters.
    """
    if policy.trust:
        return []
    found = list(_oversized_constants(graph_def, policy, graph))
    library = frozenset(graphs.function_names(graph_def))
    found.extend(shadowing_findings(graph_def, graph=graph))
    found.extend(_scope_findings(graph_def.node, None, library, policy, graph, bound))
    for function in graph_def.library.function:
        found.extend(_scope_findings(function.node_def, function.signature.name, library,
                                     policy, graph, bound))
    return found


def _oversized_constants(graph_def: tf_graph_pb2.GraphDef, policy: policy_lib.Policy,
                         graph: str) -> Iterator[Finding]:
    """`Const` nodes that TensorFlow would expand on import past `--max-value-bytes`: a tensor
    that lists one value fills its whole declared shape, so a few bytes of graph can ask for
    terabytes before any op of ours runs."""
    for node, function, size in limits.graph_const_bytes(graph_def):
        if size > policy.max_value_bytes:
            yield Finding("Const", node, function,
                          f"declares a tensor of {size:,} bytes, which TensorFlow expands on "
                          f"import; more than the limit of {policy.max_value_bytes:,} "
                          "(--max-value-bytes)", graph)


def parameter_nodes(tensorflow: computation_pb2.TensorFlow) -> dict[str, int]:
    """Node name -> flat leaf index of every tensor/sequence the parameter binding names."""
    names: dict[str, int] = {}
    if not tensorflow.HasField("parameter"):
        return names
    stack = [tensorflow.parameter]
    leaves: list[str] = []
    while stack:  # depth-first, children in order: TFF's flattening order
        binding = stack.pop()
        kind = binding.WhichOneof("binding")
        if kind == "struct":
            stack.extend(reversed(binding.struct.element))
        elif kind == "tensor":
            leaves.append(binding.tensor.tensor_name)
        elif kind == "sequence":
            which = binding.sequence.WhichOneof("binding")
            leaves.append(getattr(binding.sequence, which) if which else "")
    for index, tensor_name in enumerate(leaves):
        names.setdefault(_producer(tensor_name), index)
    return names


def graph_string_parameters(tensorflow: computation_pb2.TensorFlow,
                            graph_def: tf_graph_pb2.GraphDef) -> frozenset[int]:
    """Flat parameter leaves that feed a graph-from-string op: their values must be checked."""
    bound = parameter_nodes(tensorflow)
    fed = set()
    for node in graph_def.node:
        if node.op in allowlist.GRAPH_FROM_STRING_OPS and node.input:
            index = bound.get(_producer(node.input[0]))
            if index is not None:
                fed.add(index)
    return frozenset(fed)


def tensorflow_findings(tensorflow: computation_pb2.TensorFlow, policy: policy_lib.Policy, *,
                        path: str | None = None) -> list[Finding]:
    """The findings for one `tensorflow` computation node (parses its graph without TF)."""
    if policy.trust:
        return []
    graph_def = graphs.parse_graph_def(tensorflow.graph_def, path=path)
    return graph_findings(graph_def, policy, bound=frozenset(parameter_nodes(tensorflow)))


def check_tensorflow(tensorflow: computation_pb2.TensorFlow, policy: policy_lib.Policy, *,
                     path: str | None = None) -> None:
    """Raises `PolicyError` for the first finding of a `tensorflow` node."""
    admit_tensorflow(tensorflow, policy, path=path)


# Verdicts on `tensorflow` nodes admitted under a policy: (digest of the node, policy) -> the
# parameter leaves that feed a graph-from-string op. Why: `Runner.prepare` checks every graph of
# a computation (with `analysis.analyze`, which parses it once for everything it reports), and the
# leaf executor checks each graph again before TensorFlow sees it, so that no path around
# `prepare` reaches TensorFlow unchecked. Remembering the verdict lets the second check skip the
# parse. The key is the node's whole serialized content (graph and bindings) and the policy's
# value, the two things a verdict depends on, so a hit is the same check with the same answer.
_ADMITTED_MAX = 4096
_admitted: collections.OrderedDict[tuple[bytes, policy_lib.Policy], frozenset[int]] = \
    collections.OrderedDict()
_admitted_lock = threading.Lock()


def _digest(tensorflow: computation_pb2.TensorFlow) -> bytes:
    return hashlib.sha256(tensorflow.SerializeToString(deterministic=True)).digest()


def _remember(key: tuple[bytes, policy_lib.Policy], string_parameters: frozenset[int]) -> None:
    with _admitted_lock:
        _admitted[key] = string_parameters
        _admitted.move_to_end(key)
        while len(_admitted) > _ADMITTED_MAX:
            _admitted.popitem(last=False)


def tensorflow_verdict(tensorflow: computation_pb2.TensorFlow, graph_def: tf_graph_pb2.GraphDef,
                       policy: policy_lib.Policy) -> list[Finding]:
    """The findings for one `tensorflow` node whose graph the caller has parsed already.

    A node with none is remembered as admitted under `policy`, so `admit_tensorflow` (the leaf
    executor's check) does not parse it again.
    """
    if policy.trust:
        return []
    found = graph_findings(graph_def, policy, bound=frozenset(parameter_nodes(tensorflow)))
    if not found:
        _remember((_digest(tensorflow), policy), graph_string_parameters(tensorflow, graph_def))
    return found


def admit_tensorflow(tensorflow: computation_pb2.TensorFlow, policy: policy_lib.Policy, *,
                     path: str | None = None) -> frozenset[int]:
    """Checks one `tensorflow` node before TensorFlow may see it; returns the flat parameter
    leaves that feed a graph-from-string op (their values must be checked on every call).

    A node admitted before under an equal policy is not parsed again (see `tensorflow_verdict`).

    Raises:
      tffexec.errors.PolicyError: the graph holds an op the policy refuses.
      tffexec.errors.ComputationError: the graph does not parse.
    """
    if policy.trust:
        return frozenset()
    key = (_digest(tensorflow), policy)
    with _admitted_lock:
        known = _admitted.get(key)
    if known is not None:
        return known
    graph_def = graphs.parse_graph_def(tensorflow.graph_def, path=path)
    found = tensorflow_verdict(tensorflow, graph_def, policy)
    if found:
        raise errors.PolicyError(found[0].describe(), path=path)
    return graph_string_parameters(tensorflow, graph_def)


def computation_findings(comp: computation_pb2.Computation, policy: policy_lib.Policy
                         ) -> list[tuple[str, Finding]]:
    """(AST path, finding) for every refused op in every graph of the computation.

    Graphs that do not parse are skipped here; `analysis.analyze` reports them.
    """
    out = []
    if policy.trust:
        return out
    for node in ast_walk.walk(comp):
        if node.kind == "tensorflow":
            try:
                found = tensorflow_findings(node.comp.tensorflow, policy, path=node.path)
            except errors.ComputationError:
                continue
            out.extend((node.path, f) for f in found)
    return out


def check_computation(comp: computation_pb2.Computation, policy: policy_lib.Policy, *,
                      size_bytes: int | None = None) -> None:
    """Enforces the computation size limit and the op policy on every graph, before running.

    Raises:
      tffexec.errors.PolicyError: too large, or a graph holds an op the policy refuses (the
        message names the op, the node and the AST path of the graph).
    """
    policy.check_computation_bytes(comp.ByteSize() if size_bytes is None else size_bytes)
    found = computation_findings(comp, policy)
    if found:
        path, finding = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise errors.PolicyError(finding.describe() + more, path=path)


def dataset_graph_findings(graph_bytes: bytes, policy: policy_lib.Policy) -> list[Finding]:
    """Findings for a serialized dataset graph (a `Value.Sequence.serialized_graph_def`).

    Raises:
      tffexec.errors.ArgumentError: the bytes are not a GraphDef.
    """
    if policy.trust:
        return []
    graph_def = tf_graph_pb2.GraphDef()
    try:
        graph_def.ParseFromString(graph_bytes)
    except (message_lib.DecodeError, RuntimeWarning, ValueError):
        raise errors.ArgumentError("sequence dataset graph is not a TensorFlow GraphDef") from None
    return graph_findings(graph_def, policy, graph=DATASET_GRAPH)


def check_dataset_graph(graph_bytes: bytes, policy: policy_lib.Policy, *,
                        path: str | None = None) -> None:
    """Raises `PolicyError` (naming `path`, the place in the value) for a refused dataset op."""
    found = dataset_graph_findings(graph_bytes, policy)
    if found:
        raise errors.PolicyError(found[0].describe(), path=path)


def value_findings(value, type_spec, policy: policy_lib.Policy, *, path: str = "arg"
                   ) -> list[tuple[str, Finding]]:
    """(path in the value, finding) for every dataset graph inside a value that has one."""
    out = []
    if policy.trust:
        return out
    for seq_path, seq in iter_sequences(value, type_spec, path):
        if seq.has_graph_def:
            out.extend((seq_path, f) for f in dataset_graph_findings(seq.graph_def(), policy))
    return out


def check_value(value, type_spec, policy: policy_lib.Policy, *, path: str = "arg") -> None:
    """Checks every dataset graph in an argument value now, and binds `policy` to its sequences.

    Raises:
      tffexec.errors.PolicyError: a dataset graph holds a refused op (names its place in the
        value, the op and the node).
    """
    for seq_path, seq in iter_sequences(value, type_spec, path):
        check_sequence(seq, policy, path=seq_path)


def check_sequence(seq, policy: policy_lib.Policy, *, path: str | None = None) -> None:
    """Binds `policy` to one sequence and checks its dataset graph now, once per policy (a
    sequence checked under an equal policy before is not parsed again), marking it checked."""
    seq.bind_policy(policy, check_dataset_graph)
    if not seq.is_checked:
        check_dataset_graph(seq.graph_def(), policy, path=path)
        seq.mark_checked()


def guard_value(value, type_spec, policy: policy_lib.Policy, *, path: str = "value") -> None:
    """Binds `policy` and this checker to every sequence in a value, without parsing anything:
    a dataset graph is checked when (if ever) it becomes a dataset. For values that may only be
    passed along (`convert` pb -> pb) or read (`compare`, expected results)."""
    for _, seq in iter_sequences(value, type_spec, path):
        seq.bind_policy(policy, check_dataset_graph)


def iter_sequences(value, type_spec, path: str = "arg"):
    """(path, SequenceValue) of every sequence in a value of `type_spec`, in order.

    Values are in tffexec's representation: `Struct`s for structs, a list per client for
    `{T}@CLIENTS`, the member itself for all-equal and SERVER values.
    """
    if not _has_sequence(type_spec):
        return
    stack = [(value, type_spec, path)]
    while stack:
        v, t, p = stack.pop()
        if isinstance(v, sequences.SequenceValue):
            yield p, v
        elif isinstance(t, fl.StructType) and isinstance(v, structure.Struct):
            elements = structure.to_elements(v)
            for i in reversed(range(min(len(elements), len(t)))):
                stack.append((elements[i][1], t[i], child(p, elements[i][0], i)))
        elif isinstance(t, fl.FederatedType):
            if isinstance(v, (list, tuple)) and not t.all_equal:
                for i in reversed(range(len(v))):
                    stack.append((v[i], t.member, item(p, i)))
            else:
                stack.append((v, t.member, p))


def _has_sequence(type_spec) -> bool:
    return types.contains(type_spec, fl.SequenceType)
