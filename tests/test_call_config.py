"""Graphs run without per-call re-optimisation (`executors/tf_call_config.py`, issue 16 §1).

- Every op with a `config_proto` in a prepared graph (top level and every library function,
  nested calls included) has Grappler's meta-optimizer off, and the rest of its ConfigProto is
  what the graph carried.
- The rewrite changes no result: a `tff.learning` Keras round and the iterate FedAvg case give
  bit-identical values with and without it.
- A dataset built and reduced inside a graph gets an `OptionsDataset` with tf.data's static
  rewrites and autotuning off in front of its `ReduceDataset`, and still reduces to the same
  value; argument datasets carry the same options.
"""
from __future__ import annotations

import pathlib

import federated_language as fl
import numpy as np
import pytest

from tffexec import runner as runner_lib
from tffexec import tensorflow as tff_tf
from tffexec.executors import tf_call_config
from tffexec.executors import tf_function
from tffexec.formats import loading
from tffexec.formats import sequences
from tffexec.formats import values

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
KERAS_ROUND = EXAMPLES / "conformance" / "learn_keras_fedavg_next"


def _tensorflow_protos(comp) -> list:
    """Every `tensorflow` computation inside `comp` (depth first)."""
    found = []

    def walk(message) -> None:
        if hasattr(message, "WhichOneof") and type(message).__name__ == "Computation" \
                and message.WhichOneof("computation") == "tensorflow":
            found.append(message.tensorflow)
            return
        for field, value in message.ListFields():
            if field.type != field.TYPE_MESSAGE:
                continue
            for item in (value if field.is_repeated else [value]):
                walk(item)

    walk(comp)
    return found


def _config(node):
    from tensorflow.core.protobuf import config_pb2  # noqa: PLC0415

    return config_pb2.ConfigProto.FromString(node.attr[tf_call_config.CONFIG_ATTR].s)


def test_every_call_op_of_a_keras_round_has_grappler_off_keeping_its_other_settings():
    import tensorflow as tf  # noqa: PLC0415

    comp = loading.load_computation(KERAS_ROUND / "comp.pb")
    in_library = top_level = 0
    for proto in _tensorflow_protos(comp):
        original = tf.compat.v1.GraphDef.FromString(proto.graph_def.value)
        before = {node.name: _config(node) for node in tf_call_config.graph_nodes(original)
                  if tf_call_config.CONFIG_ATTR in node.attr}
        prepared = tf_function.GraphFunction(proto).prepared_graph_def()
        for node in prepared.node:
            if tf_call_config.CONFIG_ATTR in node.attr:
                top_level += 1
                assert _config(node).graph_options.rewrite_options.disable_meta_optimizer
        for function in prepared.library.function:
            for node in function.node_def:
                if tf_call_config.CONFIG_ATTR not in node.attr:
                    continue
                in_library += 1
                config = _config(node)
                assert config.graph_options.rewrite_options.disable_meta_optimizer, node.name
                config.graph_options.rewrite_options.disable_meta_optimizer = False
                if not config.graph_options.rewrite_options.ListFields():
                    config.graph_options.ClearField("rewrite_options")
                if not config.graph_options.ListFields():
                    config.ClearField("graph_options")
                # Everything else is what the graph carried (same node name in the same body).
                original_config = before[node.name]
                assert original_config.device_count == config.device_count
                assert original_config.allow_soft_placement == config.allow_soft_placement
    assert in_library > 0 and top_level > 0  # the Keras graph nests calls in library functions


def test_call_ops_without_a_config_get_one_with_grappler_off():
    import tensorflow as tf  # noqa: PLC0415

    @tf.function
    def inner(v):
        return v * 2

    @tf.function
    def outer(v):
        return inner(v) + 1

    comp = tff_tf.tensorflow_computation(lambda x: outer(x), np.int32)
    graph_def = tf.compat.v1.GraphDef.FromString(comp.tensorflow.graph_def.value)
    calls = [n for n in tf_call_config.graph_nodes(graph_def)
             if n.op in ("PartitionedCall", "StatefulPartitionedCall")]
    assert len(calls) >= 2  # the top-level call and the nested one in `outer`'s body
    for node in calls:
        node.attr[tf_call_config.CONFIG_ATTR].s = b""
    assert tf_call_config.disable_grappler_in_calls(graph_def) == len(calls)
    for node in calls:
        assert _config(node).graph_options.rewrite_options.disable_meta_optimizer
    assert tf_call_config.disable_grappler_in_calls(graph_def) == 0  # idempotent


def _run_values(case: pathlib.Path, form: str, monkeypatch, rewrite: bool) -> bytes:
    """The case's result, serialized, with the per-graph rewrites on or off."""
    if not rewrite:
        monkeypatch.setattr(tf_function.GraphFunction, "_optimised_once",
                            staticmethod(lambda graph_def: graph_def))
        monkeypatch.setattr(sequences, "for_calls", lambda dataset: dataset)
    comp = loading.load_computation(case / form)
    result_type = fl.Type.from_proto(comp.type).result
    arg = loading.load_value(case / "arg.pb", fl.Type.from_proto(comp.type).parameter)
    with runner_lib.Runner() as runner:
        result = runner.run(comp, arg)
    monkeypatch.undo()
    return values.value_to_proto(result, result_type).SerializeToString(deterministic=True)


@pytest.mark.parametrize("form", ["comp.pb"])
def test_keras_round_results_are_bit_identical_with_and_without_the_rewrite(form, monkeypatch):
    without = _run_values(KERAS_ROUND, form, monkeypatch, rewrite=False)
    with_rewrite = _run_values(KERAS_ROUND, form, monkeypatch, rewrite=True)
    assert with_rewrite == without


@pytest.mark.parametrize("in_library", [False, True], ids=["top_level", "library_function"])
def test_dataset_reduced_inside_a_graph_runs_with_frozen_options_and_same_value(in_library):
    import tensorflow as tf  # noqa: PLC0415

    @tf.function
    def square(v):
        return v * v

    def body(x):
        dataset = tf.data.Dataset.range(x).map(lambda v: v + 1)
        return dataset.reduce(tf.constant(0, tf.int64), lambda s, v: s + square(v))

    comp = tff_tf.tensorflow_computation(tf.function(body) if in_library else body, np.int64)
    function = tf_function.GraphFunction(comp.tensorflow)
    prepared = function.prepared_graph_def()
    bodies = [f.node_def for f in prepared.library.function] if in_library else [prepared.node]
    nodes = [n for body_nodes in bodies for n in body_nodes]
    options = [n for n in nodes if n.op == "OptionsDataset"]
    assert len(options) == 1
    reduce_node = next(n for n in nodes if n.op == "ReduceDataset")
    assert reduce_node.input[0].split(":")[0] == options[0].name
    frozen = tf.data.Options()
    frozen._from_proto(  # noqa: SLF001 - the public API has no parser
        tf.data.Options()._to_proto().FromString(  # noqa: SLF001
            options[0].attr["serialized_options"].s))
    assert frozen.experimental_optimization.apply_default_optimizations is False
    assert frozen.autotune.enabled is False
    (result,) = function([tf.constant(4, tf.int64)])
    assert int(result) == sum(v * v for v in range(1, 5))


def test_argument_datasets_are_fed_without_static_rewrites_or_autotuning():
    sequence = sequences.SequenceValue(fl.TensorType(np.int32), elements=[1, 2, 3])
    options = sequence.bounded_dataset().options()
    assert options.experimental_optimization.apply_default_optimizations is False
    assert options.autotune.enabled is False
    assert [int(x) for x in sequence.bounded_dataset()] == [1, 2, 3]


# -- the path each client graph took (`activity.PATHS`) -----------------------------------------
CONFORMANCE = EXAMPLES / "conformance"


def _paths_of(case: str, **config) -> dict[str, int]:
    from tffexec.executors import activity  # noqa: PLC0415
    from tffexec.factories import config as config_lib  # noqa: PLC0415

    comp = loading.load_computation(CONFORMANCE / case / "comp.pb")
    arg = loading.load_value(CONFORMANCE / case / "arg.pb",
                             fl.Type.from_proto(comp.type).parameter)
    before = activity.path_counts()
    with runner_lib.Runner(config_lib.StackConfig(**config)) as runner:
        runner.run(comp, arg)
    return activity.paths_since(before)


@pytest.mark.parametrize("config, expected", [
    ({"batch": True}, {"batched bucket": 10}),
    ({"batch": False}, {"per client": 10}),
    ({"batch": False, "kind": "threaded", "threads": 2}, {"per client": 10}),
])
def test_graph_only_client_maps_count_as_batched_or_per_client(config, expected):
    assert _paths_of("scale_map_mean_10", **config) == expected


def test_clients_that_reduce_their_dataset_count_as_tensor_loops_or_tf_data(monkeypatch):
    assert _paths_of("seq_tf_reduce_then_sum", batch=True) == {"tensor loop": 5}
    monkeypatch.setenv("TFFEXEC_TENSOR_LOOPS", "0")  # tensor loops off (tests/test_tensor_loops)
    assert _paths_of("seq_tf_reduce_then_sum", batch=True) == {"tf.data": 5}


def test_verbose_run_and_benchmark_json_show_the_client_paths(runner):
    import json  # noqa: PLC0415

    from tffexec.cli.main import cli  # noqa: PLC0415

    case = CONFORMANCE / "scale_map_mean_10"
    result = runner.invoke(cli, ["run", str(case / "comp.pb"), str(case / "arg.pb"),
                                 "-v", "--no-batch"])
    assert result.exit_code == 0, result.output
    assert "client graph paths: per client 10" in result.stderr
    result = runner.invoke(cli, ["benchmark", str(case / "comp.pb"), str(case / "arg.pb"),
                                 "--runs", "2", "--warmup", "0", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["client_paths"] == {"batched bucket": 20}
