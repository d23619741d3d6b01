"""Static analysis of a serialized `Computation`: what it contains and whether tffexec can run it.

Everything here reads the proto only; nothing is executed and TensorFlow is not imported, so
`tffexec inspect` and `tffexec validate` stay fast.

The AST is walked with an explicit stack (computations nest deeply; Python's recursion limit is
not a budget to spend on them). Nodes are named by *AST paths*: the root is `<root>`; a child's
path appends `<kind of the parent>.<field>` to the parent's path, with the index and the name of
repeated elements, e.g. `lambda.result.block.local[2](x).call.argument`.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any, Iterator

from federated_language.proto import computation_pb2
from google.protobuf import unknown_fields

from tffexec import errors
from tffexec import intrinsics
from tffexec.formats import graphs

ROOT_PATH = "<root>"

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
SUPPORTED_NODE_KINDS = frozenset(
    {
        "tensorflow",
        "intrinsic",
        "lambda",
        "block",
        "reference",
        "call",
        "struct",
        "selection",
        "placement",
        "literal",
    }
)
UNSUPPORTED_NODE_KINDS = frozenset(NODE_KINDS) - SUPPORTED_NODE_KINDS

#: The intrinsic URIs tffexec implements, from the one registry (`tffexec.intrinsics`).
SUPPORTED_INTRINSICS = intrinsics.SUPPORTED

CLIENTS = "clients"
SERVER = "server"
PLACEMENT_URIS = (CLIENTS, SERVER)


def join_path(parent: str, segment: str) -> str:
    """The AST path of a child: `segment` appended to `parent` (`<root>` is left out)."""
    return segment if parent == ROOT_PATH else f"{parent}.{segment}"


def children(comp: computation_pb2.Computation) -> list[tuple[str, computation_pb2.Computation]]:
    """The direct sub-computations of `comp` with their path segments, in field order.

    Absent optional children (a no-argument call's `argument`) are left out; required ones that
    are missing are reported by `analyze`, not here.
    """
    kind = comp.WhichOneof("computation")
    if kind == "lambda":
        node = getattr(comp, "lambda")
        return [("lambda.result", node.result)] if node.HasField("result") else []
    if kind == "block":
        out = [
            (f"block.local[{i}]({local.name})", local.value)
            for i, local in enumerate(comp.block.local)
        ]
        if comp.block.HasField("result"):
            out.append(("block.result", comp.block.result))
        return out
    if kind == "call":
        out = []
        if comp.call.HasField("function"):
            out.append(("call.function", comp.call.function))
        if comp.call.HasField("argument"):
            out.append(("call.argument", comp.call.argument))
        return out
    if kind == "struct":
        return [
            (f"struct.element[{i}]({el.name})" if el.name else f"struct.element[{i}]", el.value)
            for i, el in enumerate(comp.struct.element)
        ]
    if kind == "selection":
        return [("selection.source", comp.selection.source)] if comp.selection.HasField("source") else []
    return []


@dataclasses.dataclass(frozen=True)
class Node:
    """One AST node met by `walk`: the node, its path and its depth (the root has depth 0)."""

    comp: computation_pb2.Computation
    path: str
    depth: int

    @property
    def kind(self) -> str | None:
        return self.comp.WhichOneof("computation")


def walk(comp: computation_pb2.Computation) -> Iterator[Node]:
    """Yields every node of the AST in pre-order (parents first, children in field order)."""
    stack = [Node(comp, ROOT_PATH, 0)]
    while stack:
        node = stack.pop()
        yield node
        kids = children(node.comp)
        for segment, child in reversed(kids):
            stack.append(Node(child, join_path(node.path, segment), node.depth + 1))


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


def _type_string(type_proto: computation_pb2.Type | None) -> str | None:
    # Imported here: the types module pulls in numpy/ml_dtypes, and callers that only walk the AST
    # (or only need the proto) should not pay for it.
    from federated_language.types import computation_types

    if type_proto is None:
        return None
    return str(computation_types.Type.from_proto(type_proto))


def type_string(type_proto: computation_pb2.Type, *, path: str | None = None) -> str:
    """The TFF notation of a Type proto, e.g. `(<x={float32}@CLIENTS> -> float32@SERVER)`.

    Raises:
      tffexec.errors.ComputationError: the proto is not a valid type.
    """
    try:
        return _type_string(type_proto)
    except Exception as e:  # federated-language raises TypeError, ValueError, NotImplementedError
        raise errors.ComputationError(f"invalid type ({type(e).__name__}: {e})", path=path) from None


def _placements_in_type(type_proto: computation_pb2.Type, found: set[str]) -> None:
    stack = [type_proto]
    while stack:
        t = stack.pop()
        which = t.WhichOneof("type")
        if which == "federated":
            spec = t.federated.placement
            if spec.WhichOneof("placement") == "value":
                found.add(spec.value.uri)
            stack.append(t.federated.member)
        elif which == "function":
            if t.function.HasField("parameter"):
                stack.append(t.function.parameter)
            stack.append(t.function.result)
        elif which == "struct":
            stack.extend(el.value for el in t.struct.element)
        elif which == "sequence":
            stack.append(t.sequence.element)


def _graph_info(comp: computation_pb2.Computation, path: str, policy=None,
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
        from tffexec.formats import op_check  # noqa: PLC0415 - op_check imports this module

        for finding in op_check.tensorflow_verdict(tf, graph_def, policy):
            problems.append(Problem(path, finding.describe(), refused=True))
    return info


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
      policy: a `tffexec.formats.policy.Policy` to check every graph's ops against.

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

    node_counts: collections.Counter[str] = collections.Counter()
    intrinsics: collections.Counter[str] = collections.Counter()
    placements: set[str] = set()
    graph_infos: list[GraphInfo] = []
    problems: list[Problem] = []
    max_depth = 0

    stack: list[tuple[computation_pb2.Computation, str, int, _Scope | None]] = [
        (comp, ROOT_PATH, 0, None)
    ]
    while stack:
        node, path, depth, scope = stack.pop()
        max_depth = max(max_depth, depth)
        kind = node.WhichOneof("computation")
        node_counts[kind or "(empty)"] += 1
        if node.HasField("type"):
            _placements_in_type(node.type, placements)
        if kind is None:
            problems.append(Problem(path, "node has no computation kind set"))
            continue
        unknown = unknown_fields.UnknownFieldSet(node)
        if len(unknown):
            numbers = sorted({f.field_number for f in unknown})
            problems.append(Problem(path, f"node has fields unknown to computation.proto {numbers}"))

        child_scope = scope
        if kind in UNSUPPORTED_NODE_KINDS:
            problems.append(
                Problem(path, f"unsupported node kind {kind!r} (supported: "
                        f"{', '.join(sorted(SUPPORTED_NODE_KINDS))})")
            )
        elif kind == "intrinsic":
            uri = node.intrinsic.uri
            intrinsics[uri] += 1
            if uri not in SUPPORTED_INTRINSICS:
                problems.append(Problem(path, f"unsupported intrinsic {uri!r}"))
        elif kind == "reference":
            name = node.reference.name
            if scope is None or not scope.binds(name):
                problems.append(Problem(path, f"reference to unbound name {name!r}"))
        elif kind == "placement":
            placements.add(node.placement.uri)
        elif kind == "tensorflow":
            info = _graph_info(node, path, policy, problems)
            graph_infos.append(info)
            if info.error:
                problems.append(Problem(path, info.error))
        elif kind == "lambda":
            lam = getattr(node, "lambda")
            if not lam.HasField("result"):
                problems.append(Problem(path, "lambda has no result"))
            if lam.parameter_name:
                child_scope = _Scope(scope, {lam.parameter_name: 0}, 1)
        elif kind == "block":
            if not node.block.HasField("result"):
                problems.append(Problem(path, "block has no result"))
        elif kind == "call":
            if not node.call.HasField("function"):
                problems.append(Problem(path, "call has no function"))
            else:
                problems.extend(Problem(path, m) for m in _call_type_problems(node))
        elif kind == "selection":
            _check_selection(node, path, problems)
        if kind in ("lambda", "block"):
            problems.extend(Problem(path, m) for m in _result_type_problems(node, kind))

        kids = children(node)
        if kind == "block":
            names: dict[str, int] = {}
            for i, local in enumerate(node.block.local):
                names.setdefault(local.name, i)
            n = len(node.block.local)
            for i in reversed(range(len(kids))):
                segment, child = kids[i]
                stack.append((child, join_path(path, segment), depth + 1, _Scope(scope, names, min(i, n))))
        else:
            for segment, child in reversed(kids):
                stack.append((child, join_path(path, segment), depth + 1, child_scope))

    return Analysis(
        type_signature=signature,
        parameter_type=parameter_type,
        result_type=result_type,
        root_kind=comp.WhichOneof("computation"),
        size_bytes=comp.ByteSize() if size_bytes is None else size_bytes,
        node_counts=dict(_most_common(node_counts)),
        max_depth=max_depth,
        intrinsics=dict(_most_common(intrinsics)),
        placements=sorted(placements),
        graphs=graph_infos,
        problems=_unknown_placement_problems(placements) + problems,
    )


def _types(*protos: computation_pb2.Type):
    """The federated-language types of `protos`, or None if any is missing or unreadable
    (missing and invalid types are reported elsewhere)."""
    from federated_language.types import computation_types  # noqa: PLC0415

    out = []
    for proto in protos:
        if proto.WhichOneof("type") is None:
            return None
        try:
            out.append(computation_types.Type.from_proto(proto))
        except Exception:  # noqa: BLE001 - invalid types are reported where they are declared
            return None
    return out


def _call_type_problems(node: computation_pb2.Computation) -> list[str]:
    """A call must call a function, with an argument its parameter accepts, for its result."""
    call = node.call
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


def _result_type_problems(node: computation_pb2.Computation, kind: str) -> list[str]:
    """A lambda's or block's result has the type the node declares."""
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


def describe(comp: computation_pb2.Computation) -> str:
    """A one-line label for a node, as shown by `inspect --tree`."""
    kind = comp.WhichOneof("computation")
    if kind == "lambda":
        name = getattr(comp, "lambda").parameter_name
        return f"lambda {name}" if name else "lambda (no parameter)"
    if kind == "block":
        return f"block ({_plural(len(comp.block.local), 'local')})"
    if kind == "reference":
        return f"reference {comp.reference.name}"
    if kind == "call":
        return "call" if comp.call.HasField("argument") else "call (no argument)"
    if kind == "struct":
        return f"struct ({_plural(len(comp.struct.element), 'element')})"
    if kind == "selection":
        return f"selection [{comp.selection.index}]"
    if kind == "intrinsic":
        return f"intrinsic {comp.intrinsic.uri}"
    if kind == "placement":
        return f"placement {comp.placement.uri}"
    if kind == "tensorflow":
        info = _graph_info(comp, ROOT_PATH)
        if info.error:
            return f"tensorflow ({info.error})"
        parts = [_plural(sum(info.ops.values()), "op"), f"{info.size_bytes:,} bytes"]
        if info.functions:
            parts.insert(1, _plural(info.functions, "function"))
        if info.cache_key:
            parts.append(f"cache key {info.cache_key}")
        return f"tensorflow ({', '.join(parts)})"
    if kind == "data":
        which = comp.data.WhichOneof("data")
        detail = comp.data.uri if which == "uri" else comp.data.content.type_url if which else ""
        return f"data {detail}".rstrip()
    if kind is None:
        return "(empty node)"
    return kind


def node_type_string(comp: computation_pb2.Computation) -> str | None:
    """The node's type in TFF notation, None if it has none, `<invalid type>` if unreadable."""
    if not comp.HasField("type"):
        return None
    try:
        return _type_string(comp.type)
    except Exception:  # shown, not raised: `analyze` reports invalid types of the root
        return "<invalid type>"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def tree(comp: computation_pb2.Computation, *, max_depth: int = 6) -> dict[str, Any]:
    """The AST as nested dicts, cut below `max_depth` (the root has depth 0).

    Each node is `{"field", "path", "label", "type", "children"}`: `field` is its place in the
    parent (`result`, `local[0](x)`, ...; `<root>` for the root), `label` is `describe(node)` and
    `type` its type in TFF notation (or None). A node whose children lie deeper than `max_depth`
    gets a single child `{"truncated": true, "hidden_nodes": n}` instead of them.
    """
    root = _tree_entry(comp, ROOT_PATH, ROOT_PATH)
    stack = [(comp, root, 0)]
    while stack:
        node, entry, depth = stack.pop()
        kids = children(node)
        if not kids:
            continue
        if depth >= max_depth:
            hidden = sum(1 for _, child in kids for _ in walk(child))
            entry["children"].append({"truncated": True, "hidden_nodes": hidden})
            continue
        for segment, child in kids:
            child_entry = _tree_entry(child, segment.split(".", 1)[1], join_path(entry["path"], segment))
            entry["children"].append(child_entry)
            stack.append((child, child_entry, depth + 1))
    return root


def _tree_entry(comp: computation_pb2.Computation, field: str, path: str) -> dict[str, Any]:
    return {
        "field": field,
        "path": path,
        "label": describe(comp),
        "type": node_type_string(comp),
        "children": [],
    }
