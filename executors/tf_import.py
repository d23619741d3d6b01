"""Imports a graph that holds TF1 loops as a function, without TensorFlow's `prune`.

`tf_function` normally imports a GraphDef inside `wrap_function` and then `prune`s it to the
parameter and result tensors. `prune` copies the needed ops into a new graph with
`lift_to_graph`, which orders them by a topological sort; a graph with TF1 control flow (the
`Enter`/`Merge`/`NextIteration` cycles that TFF's native compiler leaves in `native_comp.pb`)
has no topological order, and `lift_to_graph` then starts the copy at an op taken from a Python
`set` of `Operation`s (ordered by object ids). When that op reads a shape from inside the loop,
its input is a temporary placeholder with no static value and TensorFlow refuses the op ("Received
a shape scalar with unknown static value ..."): whether a run worked depended on the process's
memory layout (visibly on `PYTHONHASHSEED`).

For such graphs we prune on the GraphDef instead, deterministically: keep the nodes the results
reach (through data and control inputs, stopping at the parameter placeholders), in their
original order, with control inputs on a parameter placeholder dropped (as `prune` does: a fed
placeholder never runs), and import that GraphDef once inside a `wrap_function` whose
signature is the placeholders' own dtypes and shapes, mapping each placeholder to the
function's argument.
TensorFlow's importer handles cycles itself (it is how the graph was built), so nothing depends
on set order.
"""
from __future__ import annotations

from typing import Callable

from tffexec import tf_runtime

_LOOP_OPS = frozenset({"NextIteration", "RefNextIteration"})
_PLACEHOLDERS = frozenset({"Placeholder", "PlaceholderV2"})


def node_name(tensor_name: str) -> str:
    """The node of a tensor name (`x:0` -> `x`, `^x` -> `x`)."""
    name = tensor_name.split(":")[0]
    return name[1:] if name.startswith("^") else name


def has_loops(graph_def) -> bool:
    """Whether the top-level graph holds TF1 loop cycles."""
    return any(node.op in _LOOP_OPS for node in graph_def.node)


def needed_nodes(graph_def, feeds: list[str], fetches: list[str]) -> set[str]:
    """Names of the nodes that the fetches reach through inputs, stopping at the feeds' nodes."""
    by_name = {node.name: node for node in graph_def.node}
    stop = {node_name(feed) for feed in feeds}
    keep: set[str] = set()
    stack = [node_name(fetch) for fetch in fetches]
    while stack:
        name = stack.pop()
        if name in keep:
            continue
        keep.add(name)
        node = by_name.get(name)
        if node is not None and name not in stop:
            stack.extend(node_name(i) for i in node.input)
    return keep


def import_pruned(graph_def, feeds: list[str], fetches: list[str]) -> Callable | None:
    """A concrete function from the feed tensors to the fetch tensors, or None when the graph
    has no loops or a feed is not a placeholder output (the caller then uses `prune`)."""
    if not has_loops(graph_def):
        return None
    tf = tf_runtime.tensorflow()
    by_name = {node.name: node for node in graph_def.node}
    specs = []
    for feed in feeds:
        node = by_name.get(node_name(feed))
        if node is None or node.op not in _PLACEHOLDERS or feed.split(":")[-1] not in ("0", feed):
            return None
        shape = tf.TensorShape(node.attr["shape"].shape) if "shape" in node.attr else None
        specs.append(tf.TensorSpec(shape, tf.dtypes.as_dtype(node.attr["dtype"].type)))
    keep = needed_nodes(graph_def, feeds, fetches)
    pruned = tf.compat.v1.GraphDef()
    pruned.versions.CopyFrom(graph_def.versions)
    pruned.library.CopyFrom(graph_def.library)
    pruned.node.extend(node for node in graph_def.node if node.name in keep)
    fed = {node_name(feed) for feed in feeds}
    for node in pruned.node:  # a fed placeholder never runs: an order on it is met already
        kept = [i for i in node.input if not (i.startswith("^") and i[1:] in fed)]
        if len(kept) != len(node.input):
            del node.input[:]
            node.input.extend(kept)

    def import_graph(*args):
        return tf.graph_util.import_graph_def(
            pruned, input_map={node_name(f) + ":0": a for f, a in zip(feeds, args)},
            return_elements=list(fetches), name="")

    return tf.compat.v1.wrap_function(import_graph, signature=specs)
