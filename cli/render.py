"""What `inspect` prints: the summary lines, and the AST as a tree (nested dicts, Rich, JSON).

The tree is a view for people and belongs to the CLI; the library's analysis
(`tffexec.checks.analysis`) only counts and checks."""
from __future__ import annotations

from typing import Any

from rich.text import Text
from rich.tree import Tree

from tffexec.checks import analysis as analysis_lib
from tffexec.checks import ast_walk

_MAX_TYPE_CHARS = 160
_KEY_WIDTH = 12


def counts(items: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in items.items()) or "none"


def _row(key: str, value: str, style: str = "") -> Text:
    text = Text(f"{key:<{_KEY_WIDTH}} ", style="bold")
    text.append(value, style=style)
    return text


def summary_lines(name: str, result: analysis_lib.Analysis) -> list[Text]:
    """The `inspect` text summary, one `key value` line each."""
    lines = [
        _row("file", f"{name} ({result.size_bytes:,} bytes)"),
        _row("type", result.type_signature, "cyan"),
    ]
    if result.root_kind in ("lambda",) or result.parameter_type is not None:
        lines.append(_row("parameter", result.parameter_type or "none"))
    if result.result_type is not None:
        lines.append(_row("result", result.result_type))
    lines.append(_row("placements", ", ".join(p.upper() for p in result.placements) or "none"))
    lines.append(
        _row("nodes", f"{result.total_nodes} (max depth {result.max_depth}): {counts(result.node_counts)}")
    )
    lines.append(_row("intrinsics", counts(result.intrinsics)))
    graphs = result.graphs
    tf_text = f"{len(graphs)} graph" + ("" if len(graphs) == 1 else "s")
    if graphs:
        keys = len(result.cache_keys)
        tf_text += f", {result.graph_bytes:,} bytes, {keys} cache key" + ("" if keys == 1 else "s")
    lines.append(_row("tensorflow", tf_text))
    if graphs:
        lines.append(_row("ops", counts(result.op_counts)))
    if result.problems:
        lines.append(_row("problems", f"{len(result.problems)} (see `tffexec validate`)", "red"))
        for problem in result.problems:
            lines.append(_row("", str(problem), "red"))
    return lines


def _label(entry: dict[str, Any]) -> Text:
    if entry.get("truncated"):
        hidden = entry["hidden_nodes"]
        return Text(f"… ({hidden} more node{'' if hidden == 1 else 's'})", style="dim")
    text = Text()
    text.append(entry["field"], style="bold")
    text.append(": ")
    text.append(entry["label"])
    type_str = entry["type"]
    if type_str is not None:
        if len(type_str) > _MAX_TYPE_CHARS:
            type_str = type_str[: _MAX_TYPE_CHARS - 1] + "…"
        text.append("  : " + type_str, style="dim cyan")
    return text


def ast_tree(tree: dict[str, Any]) -> Tree:
    """A rich Tree of `tree(...)`'s nested dicts (built without recursion)."""
    root = Tree(_label(tree))
    stack = [(tree, root)]
    while stack:
        entry, node = stack.pop()
        for child in entry.get("children", ()):
            child_node = node.add(_label(child))
            stack.append((child, child_node))
    return root


def tree_json(tree: dict[str, Any]) -> str:
    """`json.dumps(tree)` for `tree(...)`, without recursion (trees can be deeper than
    the json module's recursion limit allows)."""
    import json

    parts: list[str] = []
    stack: list[tuple[bool, Any]] = [(False, tree)]  # (is literal text, item)
    while stack:
        is_text, item = stack.pop()
        if is_text:
            parts.append(item)
            continue
        scalars = {k: v for k, v in item.items() if k != "children"}
        head = json.dumps(scalars, ensure_ascii=False)
        if "children" not in item:
            parts.append(head)
            continue
        parts.append(head[:-1] + (", " if scalars else "") + '"children": [')
        stack.append((True, "]}"))
        kids = item["children"]
        for i in reversed(range(len(kids))):
            stack.append((False, kids[i]))
            if i:
                stack.append((True, ", "))
    return "".join(parts)


def json_document(document: dict[str, Any], tree: dict[str, Any] | None) -> str:
    """The `inspect --format json` text: `document` indented, plus `tree` on one line if given."""
    import json

    text = json.dumps(document, indent=2)
    if tree is None:
        return text
    return text[: text.rindex("}")].rstrip() + ',\n  "tree": ' + tree_json(tree) + "\n}"


def describe(comp) -> str:
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
        return _describe_graph(comp)
    if kind == "data":
        which = comp.data.WhichOneof("data")
        detail = comp.data.uri if which == "uri" else comp.data.content.type_url if which else ""
        return f"data {detail}".rstrip()
    if kind is None:
        return "(empty node)"
    return kind


def _describe_graph(comp) -> str:
    info = analysis_lib.graph_info(comp, ast_walk.ROOT_PATH)
    if info.error:
        return f"tensorflow ({info.error})"
    parts = [_plural(sum(info.ops.values()), "op"), f"{info.size_bytes:,} bytes"]
    if info.functions:
        parts.insert(1, _plural(info.functions, "function"))
    if info.cache_key:
        parts.append(f"cache key {info.cache_key}")
    return f"tensorflow ({', '.join(parts)})"


def node_type_string(comp) -> str | None:
    """The node's type in TFF notation, None if it has none, `<invalid type>` if unreadable."""
    if not comp.HasField("type"):
        return None
    try:
        return analysis_lib.type_string(comp.type)
    except Exception:  # noqa: BLE001 - shown, not raised: `analyze` reports invalid root types
        return "<invalid type>"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def tree(comp, *, max_depth: int = 6) -> dict[str, Any]:
    """The AST as nested dicts, cut below `max_depth` (the root has depth 0).

    Each node is `{"field", "path", "label", "type", "children"}`: `field` is its place in the
    parent (`result`, `local[0](x)`, ...; `<root>` for the root), `label` is `describe(node)` and
    `type` its type in TFF notation (or None). A node whose children lie deeper than `max_depth`
    gets a single child `{"truncated": true, "hidden_nodes": n}` instead of them.
    """
    root = _tree_entry(comp, ast_walk.ROOT_PATH, ast_walk.ROOT_PATH)
    stack = [(comp, root, 0)]
    while stack:
        node, entry, depth = stack.pop()
        kids = ast_walk.children(node)
        if not kids:
            continue
        if depth >= max_depth:
            hidden = sum(1 for _, child in kids for _ in ast_walk.walk(child))
            entry["children"].append({"truncated": True, "hidden_nodes": hidden})
            continue
        for segment, child in kids:
            child_entry = _tree_entry(child, segment.split(".", 1)[1],
                                      ast_walk.join_path(entry["path"], segment))
            entry["children"].append(child_entry)
            stack.append((child, child_entry, depth + 1))
    return root


def _tree_entry(comp, field: str, path: str) -> dict[str, Any]:
    return {
        "field": field,
        "path": path,
        "label": describe(comp),
        "type": node_type_string(comp),
        "children": [],
    }
