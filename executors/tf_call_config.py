"""Switches off per-call re-optimisation inside imported graphs, once per graph.

tffexec turns Grappler's meta-optimizer off for the whole process (`tf_runtime`), but that
setting only reaches the functions TensorFlow instantiates with the eager context's
configuration. Every function-call op in a serialized graph (`StatefulPartitionedCall`,
`PartitionedCall`, and any other op whose op definition has a `config_proto` attribute) carries
its own `ConfigProto`, and TensorFlow instantiates the called function with THAT configuration:
in the graphs Keras and `tff.learning` produce it is a `ConfigProto` without rewrite options, so
Grappler ran again inside every call op, and in a `ReduceDataset` loop (which instantiates its
reduce function afresh on every execution) on every client call. Profiled on a `tff.learning`
round this was ~45 % of the CPU. TFF's own compiler sets the same switch in these attributes.

`disable_grappler_in_calls` parses each such attribute, sets
`graph_options.rewrite_options.disable_meta_optimizer` and writes it back, keeping every other
field (devices, soft placement, thread settings) as it was. It changes no op, so results are
bit-identical.

Datasets built inside a graph and reduced there are finalised by `ReduceDataset` on every
execution: with tf.data's default options that is a graph rewrite of the input pipeline (its
static optimisations) and an autotuning model, each call. `freeze_dataset_options` puts an
`OptionsDataset` with those switched off (`sequences.call_options`) in front of every `ReduceDataset`
whose input is built in the same graph; argument datasets get the same options where tffexec
builds them (`formats.sequences`).
"""
from __future__ import annotations

import functools
from typing import Iterable, Iterator

from tffexec.formats import sequences

#: The attribute that carries a call op's session configuration.
CONFIG_ATTR = "config_proto"
_REDUCE_OPS = frozenset({"ReduceDataset"})
_OPTIONS_SUFFIX = "/tffexec_options"


def graph_nodes(graph_def) -> Iterator:
    """Every node of the graph and of every function in its library."""
    yield from graph_def.node
    for function in graph_def.library.function:
        yield from function.node_def


@functools.lru_cache(maxsize=None)
def _has_config_attr(op: str) -> bool:
    """Whether TensorFlow's definition of `op` has a `config_proto` string attribute."""
    from tensorflow.python.framework import op_def_registry  # noqa: PLC0415 - TF loads lazily

    op_def = op_def_registry.get(op)
    return op_def is not None and any(
        a.name == CONFIG_ATTR and a.type == "string" for a in op_def.attr)


@functools.lru_cache(maxsize=64)
def _without_grappler(serialized: bytes) -> bytes:
    """`serialized` (a ConfigProto, possibly empty) with the meta-optimizer disabled."""
    from tensorflow.core.protobuf import config_pb2  # noqa: PLC0415

    config = config_pb2.ConfigProto.FromString(serialized)
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    return config.SerializeToString(deterministic=True)


def disable_grappler_in_calls(graph_def) -> int:
    """Sets Grappler off in the `config_proto` of every call op (graph and library), in place.

    Returns the number of nodes rewritten. Nodes that lack the attribute but whose op has it get
    it explicitly (an absent attribute would otherwise be filled with an empty configuration,
    i.e. Grappler on).
    """
    changed = 0
    for node in graph_nodes(graph_def):
        if CONFIG_ATTR in node.attr or _has_config_attr(node.op):
            before = node.attr[CONFIG_ATTR].s
            after = _without_grappler(before)
            if after != before:
                node.attr[CONFIG_ATTR].s = after
                changed += 1
    return changed


@functools.lru_cache(maxsize=1)
def dataset_options_proto() -> bytes:
    """The serialized `sequences.call_options()` (the options argument datasets get too)."""
    return sequences.call_options()._to_proto().SerializeToString(  # noqa: SLF001
        deterministic=True)


def freeze_dataset_options(graph_def) -> int:
    """Puts `OptionsDataset(sequences.call_options())` in front of every `ReduceDataset` whose input
    dataset is made by a node of the same graph or function body, in place.

    Inputs that arrive as a parameter (a placeholder or function argument) are left alone: their
    datasets were built by tffexec with these options already. Returns the number inserted.
    """
    inserted = _freeze_in(graph_def.node, graph_def.node, in_function=False)
    for function in graph_def.library.function:
        inserted += _freeze_in(function.node_def, function.node_def, in_function=True)
    return inserted


def _freeze_in(nodes: Iterable, container, in_function: bool) -> int:
    by_name = {node.name: node for node in nodes}
    added = []
    for node in list(by_name.values()):
        if node.op not in _REDUCE_OPS or not node.input:
            continue
        source = node.input[0]
        producer = by_name.get(source.split(":")[0])
        if producer is None or "output_types" not in producer.attr \
                or "output_shapes" not in producer.attr or producer.op == "OptionsDataset":
            continue
        options = _options_node(node.name + _OPTIONS_SUFFIX, source, producer, node.device)
        if options.name in by_name:
            continue
        added.append(options)
        node.input[0] = options.name + (":handle:0" if in_function else "")
    container.extend(added)
    return len(added)


def _options_node(name: str, source: str, producer, device: str):
    from tensorflow.core.framework import node_def_pb2  # noqa: PLC0415

    options = node_def_pb2.NodeDef(name=name, op="OptionsDataset", input=[source], device=device)
    options.attr["serialized_options"].s = dataset_options_proto()
    options.attr["output_types"].CopyFrom(producer.attr["output_types"])
    options.attr["output_shapes"].CopyFrom(producer.attr["output_shapes"])
    options.attr["metadata"].s = b""
    return options
