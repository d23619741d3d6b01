"""Rich renderings of analysis results for standard output."""
from __future__ import annotations

from typing import Any

from rich.text import Text
from rich.tree import Tree

from tffexec.formats import analysis as analysis_lib

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
    """A rich Tree of `analysis.tree(...)`'s nested dicts (built without recursion)."""
    root = Tree(_label(tree))
    stack = [(tree, root)]
    while stack:
        entry, node = stack.pop()
        for child in entry.get("children", ()):
            child_node = node.add(_label(child))
            stack.append((child, child_node))
    return root


def tree_json(tree: dict[str, Any]) -> str:
    """`json.dumps(tree)` for `analysis.tree(...)`, without recursion (trees can be deeper than
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
