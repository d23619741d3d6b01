"""Static analysis of a serialized `Computation`: what it contains and whether tffexec can run it.

Everything here reads the proto only; nothing is executed and TensorFlow is not imported, so
`tffexec inspect` and `tffexec validate` stay fast.

`analyze` is an interpreter over the AST in the style of the reference-resolving executor: one
walk (`ast_walk`, an explicit stack), and per node kind one rule function from a table
(`_RULES`) that records what the node contributes to the summary and the problems it has. Nodes
are named by AST paths (see `ast_walk`).
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable

from federated_language.proto import computation_pb2
from google.protobuf import unknown_fields

from tffexec import errors
from tffexec import intrinsics
from tffexec.checks import graphs
from tffexec.checks import intrinsic_types
from tffexec.checks import op_check
from tffexec.checks import type_cache
from tffexec.checks.ast_walk import ROOT_PATH, Node, children, join_path, walk

__all__ = ["ROOT_PATH", "Node", "children", "join_path", "walk", "Problem", "GraphInfo",
           "Analysis", "analyze", "graph_info", "type_string", "SUPPORTED_INTRINSICS"]

#: Every `Computation.computation` oneof case of computation.proto, in field order.
NODE_KINDS = (
    "tensorflow",
    "intrinsic",
    "data",
    "lambda",
    "block",
    "reference",
    "call",
    "struct",
    "selection",
    "placement",
    "literal",
    "xla",
)
#: The kinds tffexec cannot run (`data` needs a data backend, `xla` a compiler it does not have).
UNSUPPORTED_NODE_KINDS = frozenset({"data", "xla"})
SUPPORTED_NODE_KINDS = frozenset(NODE_KINDS) - UNSUPPORTED_NODE_KINDS

#: The intrinsic URIs tffexec implements, from the one registry (`tffexec.intrinsics`).
SUPPORTED_INTRINSICS = intrinsics.SUPPORTED

CLIENTS = "clients"
SERVER = "server"
PLACEMENT_URIS = (CLIENTS, SERVER)


@dataclasses.dataclass(frozen=True)
class Problem:
    """Something that keeps tffexec from running the computation, found without running it."""

    path: str
    message: str
    #: True for a TensorFlow op the policy refuses (exit 5 when `run` meets it), False for a
    #: problem that makes the computation unusable (exit 3).
    refused: bool = False

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclasses.dataclass
class GraphInfo:
    """One `tensorflow` node: where it is and what its graph holds."""

    path: str
    size_bytes: int
    cache_key: int | None
    nodes: int = 0
    functions: int = 0
    ops: dict[str, int] = dataclasses.field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "path": self.path,
            "size_bytes": self.size_bytes,
            "cache_key": self.cache_key,
            "nodes": self.nodes,
            "functions": self.functions,
            "ops": dict(self.ops),
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclasses.dataclass
class Analysis:
    """What `analyze` found; `to_dict()` is the `inspect --format json` document's body."""

    type_signature: str
    parameter_type: str | None
    result_type: str | None
    root_kind: str | None
    size_bytes: int
    node_counts: dict[str, int]
    max_depth: int
    intrinsics: dict[str, int]
    placements: list[str]
    graphs: list[GraphInfo]
    problems: list[Problem]

    @property
    def total_nodes(self) -> int:
        return sum(self.node_counts.values())

    @property
    def graph_bytes(self) -> int:
        return sum(g.size_bytes for g in self.graphs)

    @property
    def op_counts(self) -> dict[str, int]:
        """Op types over all graphs (and their function libraries), most frequent first."""
        total: collections.Counter[str] = collections.Counter()
        for graph in self.graphs:
            total.update(graph.ops)
        return dict(_most_common(total))

    @property
    def cache_keys(self) -> list[int]:
        """Distinct non-zero cache keys, in AST order."""
        return list(dict.fromkeys(g.cache_key for g in self.graphs if g.cache_key))

    @property
    def uses_clients(self) -> bool:
        return CLIENTS in self.placements

    def to_dict(self) -> dict[str, Any]:
        return {
            "type_signature": self.type_signature,
            "parameter_type": self.parameter_type,
            "result_type": self.result_type,
            "root_kind": self.root_kind,
            "size_bytes": self.size_bytes,
            "nodes": {
                "total": self.total_nodes,
                "max_depth": self.max_depth,
                "by_kind": dict(self.node_counts),
            },
            "intrinsics": dict(self.intrinsics),
            "placements": list(self.placements),
            "tensorflow": {
                "graphs": len(self.graphs),
                "size_bytes": self.graph_bytes,
                "ops": self.op_counts,
                "cache_keys": self.cache_keys,
                "details": [g.to_dict() for g in self.graphs],
            },
            "problems": [{"path": p.path, "message": p.message} for p in self.problems],
        }


def _most_common(counter: collections.Counter[str]) -> list[tuple[str, int]]:
    # Ties broken by name so output is stable across runs.
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))


class _Scope:
    """Names visible at a point of the AST, as a chain of frames.

    A frame holds a dict name -> first position and a `limit`: a name is visible in the frame if
    its position is below the limit. Block locals share one dict and differ only in the limit
    (local i sees locals 0..i-1), so a block of n locals costs O(n), not O(n^2).
    """

    __slots__ = ("parent", "names", "limit")

    def __init__(self, parent: "_Scope | None", names: dict[str, int], limit: int):
        self.parent = parent
        self.names = names
        self.limit = limit

    def binds(self, name: str) -> bool:
        scope: _Scope | None = self
        while scope is not None:
            if scope.names.get(name, scope.limit) < scope.limit:
                return True
            scope = scope.parent
        return False


def type_string(type_proto: computation_pb2.Type, *, path: str | None = None) -> str:
    """The TFF notation of a Type proto, e.g. `(<x={float32}@CLIENTS> -> float32@SERVER)`.

    Written from the proto in linear time (`type_cache.notation`), so that a type of 10^6 struct
    elements costs seconds, not minutes.

    Raises:
      tffexec.errors.ComputationError: the proto is not a valid type.
    """
    try:
        return type_cache.notation(type_proto)
    except (ValueError, RecursionError) as e:
        raise errors.ComputationError(f"invalid type ({e})", path=path) from None


def graph_info(comp: computation_pb2.Computation, path: str, policy=None,
               problems: list[Problem] | None = None) -> GraphInfo:
    """Summary of one `tensorflow` node; with a `policy`, ops it refuses go to `problems`."""
    tf = comp.tensorflow
    info = GraphInfo(
        path=path,
        size_bytes=len(tf.graph_def.value),
        cache_key=tf.cache_key.id or None,
    )
    try:
        graph_def = graphs.parse_graph_def(tf.graph_def, path=path)
    except errors.ComputationError as e:
        info.error = e.message
        return info
    info.nodes = len(graph_def.node)
    info.functions = len(graph_def.library.function)
    info.ops = dict(_most_common(graphs.op_counts(graph_def)))
    if policy is not None and problems is not None:
        for finding in op_check.tensorflow_verdict(tf, graph_def, policy):
            problems.append(Problem(path, finding.describe(), refused=True))
    return info


@dataclasses.dataclass
class _Findings:
    """What one `analyze` pass collects, node by node (the rules write into it)."""

    policy: Any
    node_counts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    intrinsics: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    placements: set[str] = dataclasses.field(default_factory=set)
    graphs: list[GraphInfo] = dataclasses.field(default_factory=list)
    problems: list[Problem] = dataclasses.field(default_factory=list)
    max_depth: int = 0

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))


#: A rule: what one node of its kind adds to the findings (the node, its path, its scope).
Rule = Callable[[computation_pb2.Computation, str, "_Scope | None", _Findings], None]


def _unsupported(node: computation_pb2.Computation, path: str, scope, out: _Findings) -> None:
    out.problem(path, f"unsupported node kind {node.WhichOneof('computation')!r} (supported: "
                      f"{', '.join(sorted(SUPPORTED_NODE_KINDS))})")


def _intrinsic(node: computation_pb2.Computation, path: str, scope, out: _Findings) -> None:
    uri = node.intrinsic.uri
    out.intrinsics[uri] += 1
    if uri not in SUPPORTED_INTRINSICS:
        out.problem(path, f"unsupported intrinsic {uri!r}")
        return
    wrong_type = intrinsic_types.mismatch(uri, node.type)
    if wrong_type is not None:
        out.problem(path, wrong_type)


def _reference(node: computation_pb2.Computation, path: str, scope, out: _Findings) -> None:
    name = node.reference.name
    if scope is None or not scope.binds(name):
        out.problem(path, f"reference to unbound name {name!r}")


def _placement(node: computation_pb2.Computation, path: str, scope, out: _Findings) -> None:
    out.placements.add(node.placement.uri)


def _tensorflow(node: computation_pb2.Computation, path: str, scope, out: _Findings) -> None:
    info = graph_info(node, path, out.policy, out.problems)
    out.graphs.append(info)
    if info.error:
        out.problem(path, info.error)


def _lambda(node: computation_pb2.Computation, path: str, scope, out: _Findings) -> None:
    if not getattr(node, "lambda").HasField("result"):
        out.problem(path, "lambda has no result")
    out.problems.extend(Problem(path, m) for m in _result_type_problems(node, "lambda"))


def _block(node: computation_pb2.Computation, path: str, scope, out: _Findings) -> None:
    if not node.block.HasField("result"):
        out.problem(path, "block has no result")
    out.problems.extend(Problem(path, m) for m in _result_type_problems(node, "block"))


def _call(node: computation_pb2.Computation, path: str, scope, out: _Findings) -> None:
    if not node.call.HasField("function"):
        out.problem(path, "call has no function")
    else:
        out.problems.extend(Problem(path, m) for m in _call_type_problems(node))


def _selection(node: computation_pb2.Computation, path: str, scope, out: _Findings) -> None:
    _check_selection(node, path, out.problems)


#: Node kind -> its rule; kinds without one (struct, literal) have nothing of their own to check.
_RULES: dict[str, Rule] = {
    "data": _unsupported,
    "xla": _unsupported,
    "intrinsic": _intrinsic,
    "reference": _reference,
    "placement": _placement,
    "tensorflow": _tensorflow,
    "lambda": _lambda,
    "block": _block,
    "call": _call,
    "selection": _selection,
}


def _child_scopes(node: computation_pb2.Computation, kind: str, scope: _Scope | None,
                  count: int) -> list[_Scope | None]:
    """The scope each of the node's `count` children sees: a lambda binds its parameter for its
    result; block local i sees locals 0..i-1 and the result sees them all."""
    if kind == "lambda":
        name = getattr(node, "lambda").parameter_name
        return [_Scope(scope, {name: 0}, 1) if name else scope] * count
    if kind == "block":
        names: dict[str, int] = {}
        for i, local in enumerate(node.block.local):
            names.setdefault(local.name, i)
        n = len(node.block.local)
        return [_Scope(scope, names, min(i, n)) for i in range(count)]
    return [scope] * count


def _visit(node: computation_pb2.Computation, path: str, scope: _Scope | None,
           out: _Findings) -> str | None:
    """The checks every node gets, then its kind's rule; returns the kind (None: no kind)."""
    kind = node.WhichOneof("computation")
    out.node_counts[kind or "(empty)"] += 1
    if node.HasField("type"):
        out.placements.update(type_cache.placement_uris(node.type))
    if kind is None:
        out.problem(path, "node has no computation kind set")
        return None
    unknown = unknown_fields.UnknownFieldSet(node)
    if len(unknown):
        numbers = sorted({f.field_number for f in unknown})
        out.problem(path, f"node has fields unknown to computation.proto {numbers}")
    rule = _RULES.get(kind)
    if rule is not None:
        rule(node, path, scope, out)
    return kind


def analyze(comp: computation_pb2.Computation, *, size_bytes: int | None = None,
            policy=None) -> Analysis:
    """Walks the computation once and collects its summary and every problem found.

    Problems are what would stop tffexec from running it: unsupported node kinds (`data`,
    `xla`) and intrinsics, references to names not bound by an enclosing lambda or block,
    missing required fields, out-of-range selections, unknown placements, unreadable graphs,
    and, given a `policy`, TensorFlow ops it refuses (the findings `run` would refuse with).

    Args:
      comp: the parsed computation.
      size_bytes: the serialized size, if known (else computed with `ByteSize()`).
      policy: a `tffexec.policy.Policy` to check every graph's ops against.

    Raises:
      tffexec.errors.ComputationError: the root has no type or an invalid one, so this is not a
        computation at all (typically another message parsed as one).
    """
    if not comp.HasField("type") or comp.type.WhichOneof("type") is None:
        raise errors.ComputationError(
            "not a computation: it has no type signature (is it a Value file?)"
        )
    signature = type_string(comp.type, path=ROOT_PATH)
    parameter_type = result_type = None
    if comp.type.WhichOneof("type") == "function":
        function_type = comp.type.function
        if function_type.HasField("parameter"):
            parameter_type = type_string(function_type.parameter, path=ROOT_PATH)
        result_type = type_string(function_type.result, path=ROOT_PATH)

    out = _Findings(policy)
    stack: list[tuple[computation_pb2.Computation, str, int, _Scope | None]] = [
        (comp, ROOT_PATH, 0, None)
    ]
    while stack:
        node, path, depth, scope = stack.pop()
        out.max_depth = max(out.max_depth, depth)
        kind = _visit(node, path, scope, out)
        if kind is None:
            continue
        kids = children(node)
        scopes = _child_scopes(node, kind, scope, len(kids))
        for i in reversed(range(len(kids))):
            segment, child = kids[i]
            stack.append((child, join_path(path, segment), depth + 1, scopes[i]))

    return Analysis(
        type_signature=signature,
        parameter_type=parameter_type,
        result_type=result_type,
        root_kind=comp.WhichOneof("computation"),
        size_bytes=comp.ByteSize() if size_bytes is None else size_bytes,
        node_counts=dict(_most_common(out.node_counts)),
        max_depth=out.max_depth,
        intrinsics=dict(_most_common(out.intrinsics)),
        placements=sorted(out.placements),
        graphs=out.graphs,
        problems=_unknown_placement_problems(out.placements) + out.problems,
    )


def _types(*protos: computation_pb2.Type):
    """The federated-language types of `protos`, or None if any is missing or unreadable
    (missing and invalid types are reported elsewhere)."""
    out = []
    for proto in protos:
        if proto.WhichOneof("type") is None:
            return None
        try:
            out.append(type_cache.type_of(proto))
        except Exception:  # noqa: BLE001 - invalid types are reported where they are declared
            return None
    return out


def _call_type_problems(node: computation_pb2.Computation) -> list[str]:
    """A call must call a function, with an argument its parameter accepts, for its result."""
    call = node.call
    if _call_types_equal(node):
        return []
    types = _types(call.function.type)
    if types is None:
        return []
    (fn_type,) = types
    if call.function.type.WhichOneof("type") != "function":
        return [f"call of a non-function: the called value has type {fn_type}"]
    has_parameter = call.function.type.function.HasField("parameter")
    if has_parameter and not call.HasField("argument"):
        return [f"function of type {fn_type} is called without an argument"]
    if not has_parameter and call.HasField("argument"):
        return [f"function of type {fn_type} takes no argument but is called with one"]
    out = []
    if has_parameter:
        arg = _types(call.argument.type)
        if arg is not None and not fn_type.parameter.is_assignable_from(arg[0]):
            out.append(f"argument of type {arg[0]} does not match the parameter type "
                       f"{fn_type.parameter} of the called function")
    declared = _types(node.type)
    if declared is not None and not declared[0].is_assignable_from(fn_type.result):
        out.append(f"call is declared as {declared[0]} but the function returns {fn_type.result}")
    return out


def _call_types_equal(node: computation_pb2.Computation) -> bool:
    """Whether a call's argument and declared type are exactly its function's parameter and
    result types: the usual case, settled by comparing protos instead of converting types."""
    call = node.call
    if call.function.type.WhichOneof("type") != "function":
        return False
    function = call.function.type.function
    if function.HasField("parameter") != call.HasField("argument"):
        return False
    return ((not call.HasField("argument") or function.parameter == call.argument.type)
            and function.result == node.type)


def _result_type_problems(node: computation_pb2.Computation, kind: str) -> list[str]:
    """A lambda's or block's result has the type the node declares."""
    if kind == "lambda" and node.type.WhichOneof("type") == "function":
        if node.type.function.result == getattr(node, "lambda").result.type:
            return []  # the same proto: nothing to convert
    elif kind == "block" and node.type == node.block.result.type:
        return []
    if kind == "lambda":
        if node.type.WhichOneof("type") != "function":
            types = _types(node.type)
            return [f"lambda declared with the non-function type {types[0]}"] if types else []
        result = getattr(node, "lambda").result
        declared = _types(node.type.function.result)
    else:
        result = node.block.result
        declared = _types(node.type)
    found = _types(result.type)
    if declared is None or found is None or declared[0].is_assignable_from(found[0]):
        return []
    return [f"{kind} declares the result type {declared[0]} but its result has type {found[0]}"]


def _check_selection(node: computation_pb2.Computation, path: str, problems: list[Problem]) -> None:
    selection = node.selection
    if len(unknown_fields.UnknownFieldSet(selection)):
        problems.append(Problem(path, "selection by name (removed in TFF 0.19) is not supported"))
    if not selection.HasField("source"):
        problems.append(Problem(path, "selection has no source"))
        return
    if selection.index < 0:
        problems.append(Problem(path, f"selection index {selection.index} is negative"))
        return
    source_type = selection.source.type
    if source_type.WhichOneof("type") == "struct":
        size = len(source_type.struct.element)
        if selection.index >= size:
            problems.append(
                Problem(path, f"selection index {selection.index} out of range for a struct of {size}")
            )


def _unknown_placement_problems(placements: set[str]) -> list[Problem]:
    return [
        Problem(ROOT_PATH, f"unknown placement {uri!r} (known: {', '.join(PLACEMENT_URIS)})")
        for uri in sorted(placements)
        if uri not in PLACEMENT_URIS
    ]
