"""Calls never share state: every call of a `tensorflow` computation starts from fresh resources.

The cases in examples/isolation/ were made by real TFF 0.87 (examples/make_isolation_cases.py):
a `federated_map` over 4 clients of a graph that reads a resource (hash table, variable, queue,
stack, tensor array, accumulator), then writes the client's value into it. TFF answers as if
every client's call had its own resources; a runtime that keeps resources between calls answers
with the previous client's value (the bug this file guards against: [-1, 7, 101, 202]).
"""
from __future__ import annotations

import concurrent.futures
import json
import pathlib

import numpy as np
import pytest

from tffexec import runner as runner_lib
from tffexec.cli import main as cli_main
from tffexec.executors import tf_function
from tffexec.executors import tf_resources
from tffexec.factories import config as config_lib
from tffexec.formats import loading
from tffexec import policy as policy_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
ISOLATION = REPO / "examples" / "isolation"
CASES = sorted(p.name for p in ISOLATION.iterdir() if (p / "comp.pb").is_file())

#: Ops outside the default allowlist that the queue and accumulator cases need.
EXTRA_OPS = ("FIFOQueueV2", "QueueSizeV2", "QueueEnqueueV2", "ResourceConditionalAccumulator",
             "ResourceAccumulatorNumAccumulated", "ResourceAccumulatorApplyGradient")
ALLOW = [arg for op in EXTRA_OPS for arg in ("--allow-op", op)]
POLICY = policy_lib.Policy(allowed_ops=frozenset(EXTRA_OPS))

STACKS = {
    "local": ["--no-batch"],
    "batched": [],
    "threaded": ["--stack", "threaded", "--threads", "4", "--clients-per-thread", "1"],
}


def _expected(case: str) -> list[int]:
    tagged = json.loads((ISOLATION / case / "expected.json").read_text())
    return [int(v["value"]) for v in tagged["value"]["federated"]["values"]]


def _client_tf(case: str):
    """The case's client computation (the one `tensorflow` computation the map applies)."""
    found = []

    def walk(message) -> None:
        if message.DESCRIPTOR.name == "Computation" and message.WhichOneof(
                "computation") == "tensorflow":
            found.append(message.tensorflow)
            return
        for field, value in message.ListFields():
            if field.message_type is not None:
                for item in (value if not hasattr(value, "DESCRIPTOR") else [value]):
                    walk(item)

    walk(loading.load_computation(ISOLATION / case / "comp.pb"))
    assert len(found) == 1, case
    return found[0]


def test_the_cases_cover_every_resource_family():
    ops = set()
    for case in CASES:
        ops.update(node.op for node in _graph_def(case).node)
        ops.update(n.op for f in _graph_def(case).library.function for n in f.node_def)
    for op in ("HashTableV2", "MutableHashTableV2", "MutableDenseHashTableV2",
               "MutableHashTableOfTensorsV2", "VarHandleOp", "VariableV2", "FIFOQueueV2",
               "StackV2", "TensorArrayV3", "ResourceConditionalAccumulator"):
        assert op in ops


def _graph_def(case: str):
    import tensorflow as tf  # noqa: PLC0415
    return tf.compat.v1.GraphDef.FromString(_client_tf(case).graph_def.value)


@pytest.mark.parametrize("stack", sorted(STACKS))
@pytest.mark.parametrize("case", CASES)
def test_every_client_call_starts_from_fresh_resources_as_in_tff(runner, case, stack):
    folder = ISOLATION / case
    result = runner.invoke(cli_main.cli, [
        "run", str(folder / "comp.pb"), str(folder / "arg.pb"), "--plain", "-q",
        *STACKS[stack], *ALLOW])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == _expected(case)


@pytest.mark.parametrize("op, creates, named", [
    ("VarHandleOp", True, True), ("VariableV2", True, True), ("HashTableV2", True, True),
    ("MutableDenseHashTableV2", True, True), ("FIFOQueueV2", True, True),
    ("ResourceConditionalAccumulator", True, True), ("MutexV2", True, True),
    ("StackV2", True, False), ("TensorArrayV3", True, False), ("TemporaryVariable", True, False),
    ("AnonymousMutableHashTable", True, False),
    # Stateful, or passing a resource on, but creating none:
    ("RandomUniform", False, False), ("Assign", False, False), ("ReadVariableOp", False, False),
    ("Identity", False, False), ("TensorArrayGradV3", False, False),
])
def test_resource_creating_ops_are_read_from_the_op_registry(op, creates, named):
    assert tf_resources.creates_resource(op) is creates
    assert tf_resources.creates_named_resource(op) is named


@pytest.mark.parametrize("case, per_call", [
    ("iso_mutable_hash_table", False), ("iso_mutable_hash_table_node_sharing", False),
    ("iso_hash_table", False), ("iso_mutable_dense_hash_table", False),
    ("iso_mutable_hash_table_of_tensors", False), ("iso_resource_variable", False),
    ("iso_stack", False), ("iso_tensor_array", False),
    ("iso_fifo_queue", True), ("iso_conditional_accumulator", True), ("iso_ref_variable", True),
    ("iso_table_in_library_function", True),
])
def test_tables_and_resource_variables_are_imported_once_others_per_call(case, per_call):
    assert tf_resources.plan(_graph_def(case)).per_call is per_call


@pytest.mark.parametrize("case, per_instance", [
    ("iso_table_in_library_function", True), ("iso_mutable_hash_table", False),
    ("iso_fifo_queue", False),
])
def test_library_functions_are_copied_per_instance_only_when_a_body_names_a_resource(
        case, per_instance):
    assert tf_resources.plan(_graph_def(case)).library_per_instance is per_instance


@pytest.mark.parametrize("case", ["iso_mutable_hash_table", "iso_resource_variable",
                                  "iso_fifo_queue", "iso_table_in_library_function"])
def test_many_concurrent_and_sequential_calls_of_one_graph_never_meet(case):
    function = tf_function.GraphFunction(_client_tf(case), policy=POLICY)
    fresh = {"iso_mutable_hash_table": -1, "iso_resource_variable": 0, "iso_fifo_queue": 0,
             "iso_table_in_library_function": -1}[case]

    def calls(start: int) -> list[int]:
        return [int(function([np.int64(start + i)])[0].numpy()) for i in range(10)]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(calls, range(0, 80, 10)))
    assert results == [[fresh] * 10] * 8


def test_a_prepared_computation_called_twice_starts_fresh_both_times():
    folder = ISOLATION / "iso_mutable_hash_table"
    with runner_lib.Runner(config_lib.StackConfig(batch=False)) as runner:
        prepared = runner.prepare(str(folder / "comp.pb"), _arg(folder))
        first = runner.call(prepared)
        second = runner.call(prepared)
    assert [int(v) for v in first] == [int(v) for v in second] == _expected(folder.name)


def _arg(folder: pathlib.Path):
    from tffexec import value_files  # noqa: PLC0415
    return value_files.load_value(folder / "arg.pb")
