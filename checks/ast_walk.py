"""The AST walker that static analysis, the op checker and `inspect --tree` share.

Why a module of its own: `analysis` and `op_check` both walk a computation's AST, and `analysis`
also applies `op_check` to each graph; with the walker in one of them the two imported each
other. Here it depends on nothing but the proto.

The AST is walked with an explicit stack (computations nest deeply; Python's recursion limit is
not a budget to spend on them). Nodes are named by *AST paths*: the root is `<root>`; a child's
path appends `<kind of the parent>.<field>` to the parent's path, with the index and the name of
repeated elements, e.g. `lambda.result.block.local[2](x).call.argument`.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

from federated_language.proto import computation_pb2

ROOT_PATH = "<root>"


def join_path(parent: str, segment: str) -> str:
    """The AST path of a child: `segment` appended to `parent` (`<root>` is left out)."""
    return segment if parent == ROOT_PATH else f"{parent}.{segment}"


def children(comp: computation_pb2.Computation) -> list[tuple[str, computation_pb2.Computation]]:
    """The direct sub-computations of `comp` with their path segments, in field order.

    Absent optional children (a no-argument call's `argument`) are left out; required ones that
    are missing are reported by `analysis.analyze`, not here.
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
