"""Read the TensorFlow graphs inside `tensorflow` computation nodes without importing TensorFlow.

A `Computation.tensorflow.graph_def` is a `google.protobuf.Any` whose `value` is a serialized
`tensorflow.GraphDef`. This module parses it with the minimal messages in
`tffexec.formats.protos.tf_graph_pb2` (TensorFlow's field numbers, a private package name), which
is enough to list op types, node names and sizes for `inspect`, `validate` and op policies.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Iterator

from google.protobuf import any_pb2
from google.protobuf import message as message_lib

from tffexec import errors
from tffexec.formats.protos import tf_graph_pb2

GRAPH_DEF_TYPE_NAME = "tensorflow.GraphDef"
GRAPH_DEF_TYPE_URL = "type.googleapis.com/" + GRAPH_DEF_TYPE_NAME


@dataclasses.dataclass(frozen=True)
class OpUse:
    """One node of a graph: its op type and where it sits.

    `function` is None for a node of the top-level graph, else the name of the library function
    that holds it; `node` is the node's own name (unique within its graph or function).
    """

    op: str
    node: str
    function: str | None = None

    @property
    def qualified_name(self) -> str:
        """`node` for top-level nodes, `function/node` for nodes of library functions."""
        return f"{self.function}/{self.node}" if self.function is not None else self.node


def parse_graph_def(graph_def: any_pb2.Any, *, path: str | None = None) -> tf_graph_pb2.GraphDef:
    """Parses the `graph_def` Any of a `TensorFlow` computation node.

    Args:
      graph_def: the `Computation.tensorflow.graph_def` field.
      path: the AST path of the node, used in error messages.

    Returns:
      The parsed `tf_graph_pb2.GraphDef` (a subset of TensorFlow's message).

    Raises:
      tffexec.errors.ComputationError: the Any is empty, packs another message type, or its bytes
        do not parse as a GraphDef.
    """
    type_url = graph_def.type_url
    if not type_url and not graph_def.value:
        raise errors.ComputationError("tensorflow node has no graph_def", path=path)
    if type_url.rsplit("/", 1)[-1] != GRAPH_DEF_TYPE_NAME:
        raise errors.ComputationError(
            f"tensorflow node's graph_def packs {type_url!r}, expected {GRAPH_DEF_TYPE_URL!r}",
            path=path,
        )
    parsed = tf_graph_pb2.GraphDef()
    try:
        parsed.ParseFromString(graph_def.value)
    except message_lib.DecodeError as e:
        raise errors.ComputationError(
            f"tensorflow node's graph_def does not parse as a GraphDef ({e})", path=path
        ) from None
    return parsed


def iter_ops(graph_def: tf_graph_pb2.GraphDef) -> Iterator[OpUse]:
    """Yields every node of the graph, then every node of each function in its library."""
    for node in graph_def.node:
        yield OpUse(op=node.op, node=node.name)
    for function in graph_def.library.function:
        name = function.signature.name
        for node in function.node_def:
            yield OpUse(op=node.op, node=node.name, function=name)


def op_counts(graph_def: tf_graph_pb2.GraphDef) -> collections.Counter[str]:
    """Counts op types over the graph and its function library."""
    return collections.Counter(use.op for use in iter_ops(graph_def))


def function_names(graph_def: tf_graph_pb2.GraphDef) -> list[str]:
    """Names of the functions in the graph's library, in file order."""
    return [function.signature.name for function in graph_def.library.function]
