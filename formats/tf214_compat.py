"""Makes TensorFlow graphs written by today's TensorFlow importable by TF 2.14 (TFF 0.87's).

Why: a computation authored with `tffexec.tensorflow` on TF 2.21 is meant to run in TFF 0.87
too. TF 2.14 accepts the newer GraphDef producer number, but refuses an op it does not
register and an attribute its op definition does not declare (e.g. `MatMul` `grad_a`, added
after 2.14). `formats/data/tf214_ops.json.gz` is TF 2.14's op registry (op name -> attr names),
dumped once in TFF 0.87's environment by `examples/authoring/dump_tf214_ops.py`.

At save time every node of the graph and of its function library is checked against it:
- an attr TF 2.14 does not know is removed when it holds the default that today's TensorFlow
  declares for it (TF 2.14 behaves as if it were absent, which is what the default means), or
  when it is only a hint (`HINT_ATTRS`: gradient/debug hints that change no result);
- attrs whose names start with `_` are kept (TensorFlow ignores unknown internal attrs);
- any other unknown attr, and any op TF 2.14 does not register (and the library does not
  define), is refused with one `CompatibilityError` naming them all.

Works on `tf_graph_pb2` messages; TensorFlow is imported only to read today's op defaults.
"""
from __future__ import annotations

import functools
import gzip
import json
import pathlib
from typing import Iterable

from tffexec.errors import ArgumentError
from tffexec.formats.protos import tf_graph_pb2

_DATA = pathlib.Path(__file__).with_name("data") / "tf214_ops.json.gz"

#: Attrs newer than TF 2.14 that only hint (gradient bookkeeping, debugging names): dropping
#: them changes no value a graph computes, whatever they hold.
HINT_ATTRS = frozenset({
    ("MatMul", "grad_a"), ("MatMul", "grad_b"),
    ("BatchMatMul", "grad_x"), ("BatchMatMul", "grad_y"),
    ("BatchMatMulV2", "grad_x"), ("BatchMatMulV2", "grad_y"),
    ("BatchMatMulV3", "grad_x"), ("BatchMatMulV3", "grad_y"),
    ("*", "debug_name"),
})


class CompatibilityError(ArgumentError):
    """A graph uses ops or attributes TF 2.14 (TFF 0.87) cannot import."""


@functools.lru_cache(maxsize=1)
def tf214_ops() -> dict[str, dict[str, str | None]]:
    """TF 2.14's ops: name -> {attr name: hex of the serialized default AttrValue, or None}."""
    return json.loads(gzip.decompress(_DATA.read_bytes()))["ops"]


@functools.lru_cache(maxsize=None)
def _current_default(op: str, attr: str) -> bytes | None:
    """The serialized default today's TensorFlow declares for `op`'s `attr` (None: none)."""
    from tffexec import tf_runtime  # noqa: PLC0415 - TensorFlow only when a graph needs it

    tf_runtime.tensorflow()
    from tensorflow.python.framework import op_def_registry  # noqa: PLC0415

    op_def = op_def_registry.get(op)
    for declared in op_def.attr if op_def is not None else ():
        if declared.name == attr and declared.HasField("default_value"):
            return declared.default_value.SerializeToString(deterministic=True)
    return None


def _holds_default(op: str, attr: str, value: tf_graph_pb2.AttrValue) -> bool:
    default = _current_default(op, attr)
    if default is None:
        return False
    return tf_graph_pb2.AttrValue.FromString(default) == value


def _is_hint(op: str, attr: str) -> bool:
    return (op, attr) in HINT_ATTRS or ("*", attr) in HINT_ATTRS


def _fix_nodes(nodes: Iterable[tf_graph_pb2.NodeDef], functions: set[str], where: str,
               stripped: list[str], refused: list[str]) -> None:
    known = tf214_ops()
    for node in nodes:
        if node.op in functions:
            continue
        attrs = known.get(node.op)
        if attrs is None:
            refused.append(f"op {node.op} ({where}node {node.name}) does not exist in TF 2.14")
            continue
        for name in sorted(node.attr):
            if name in attrs or name.startswith("_"):
                continue
            if _is_hint(node.op, name) or _holds_default(node.op, name, node.attr[name]):
                stripped.append(f"{node.op}.{name}")
                del node.attr[name]
            else:
                refused.append(f"attr {node.op}.{name} ({where}node {node.name}) is unknown to "
                               "TF 2.14 and does not hold its default")


def make_compatible(graph_def_bytes: bytes, label: str) -> tuple[bytes, list[str]]:
    """TF 2.14-importable bytes of a serialized GraphDef, and the `Op.attr`s that were stripped.

    Unchanged graphs keep their exact bytes. Raises `CompatibilityError` naming `label` and
    every op/attr TF 2.14 cannot take.
    """
    graph = tf_graph_pb2.GraphDef.FromString(graph_def_bytes)
    functions = {f.signature.name for f in graph.library.function}
    stripped: list[str] = []
    refused: list[str] = []
    _fix_nodes(graph.node, functions, "", stripped, refused)
    for function in graph.library.function:
        _fix_nodes(function.node_def, functions, f"function {function.signature.name}, ",
                   stripped, refused)
    if refused:
        raise CompatibilityError(f"{label}: not loadable by TFF 0.87 (TensorFlow 2.14): "
                                 + "; ".join(refused))
    if not stripped:
        return graph_def_bytes, []
    return graph.SerializeToString(deterministic=True), sorted(set(stripped))
