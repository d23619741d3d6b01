"""The threaded and composing stacks: how they are built, what they share, how they fail.

The corpus conformance suite (test_run_conformance.py) and the intrinsic tests run on every stack;
this module checks what is specific to the stacks: the composition of levels and client blocks,
that a broadcast reaches each child once, that partial aggregates are merged with the
computation's merge, that errors name the global client index and never hang, that concurrent
runs through one factory overlap, and that stateful graphs stay correct under concurrent clients.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading
import time

import federated_language as fl
import numpy as np
import pytest
from click.testing import CliRunner

from tffexec import errors
from tffexec import runner as runner_lib
from tffexec.cli import main as cli_main
from tffexec.executors import activity
from tffexec.executors import base
from tffexec.executors import client_work
from tffexec.executors import composing_executor
from tffexec.executors import federating_executor
from tffexec.factories import config as config_lib
from tffexec.factories import stacks
from tffexec import tensorflow as tfc

C, S = fl.CLIENTS, fl.SERVER
I32, F32 = fl.TensorType(np.int32), fl.TensorType(np.float32)
REPO = pathlib.Path(__file__).resolve().parents[1]

STACKS = {
    "local": config_lib.StackConfig(),
    "threaded": config_lib.StackConfig(kind="threaded", threads=3, clients_per_thread=1),
    "fanout3": config_lib.StackConfig(max_fanout=3),
    "threaded-fanout2": config_lib.StackConfig(kind="threaded", threads=2, max_fanout=2),
}


def tf_fn(fn, parameter_type=None):
    return tfc.as_computation(tfc.tensorflow_computation(fn, parameter_type))


ADD_I32 = tf_fn(lambda a: a[0] + a[1], fl.StructType([np.int32, np.int32]))
MULTIPLY_I32 = tf_fn(lambda a: a[0] * a[1], fl.StructType([np.int32, np.int32]))
IDENTITY_I32 = tf_fn(lambda a: a, np.int32)


def _sum_of_doubled_broadcast():
    double = tf_fn(lambda a: a[0] * 2 + a[1], fl.StructType([np.int32, np.int32]))

    @fl.federated_computation(fl.FederatedType(np.int32, S), fl.FederatedType(np.int32, C))
    def comp(s, x):
        pairs = fl.federated_zip((fl.federated_broadcast(s), x))
        return fl.federated_sum(fl.federated_map(double, pairs))

    return comp


def _composing_executors(executor) -> list[composing_executor.ComposingExecutor]:
    """Every composing executor in a stack, top first."""
    found, todo = [], [executor]
    while todo:
        ex = todo.pop(0)
        inner = getattr(ex, "child", None)
        if isinstance(ex, composing_executor.ComposingExecutor):
            found.append(ex)
            todo.extend(c.executor for c in ex.children)
        elif inner is not None and not isinstance(ex, federating_executor.FederatingExecutor):
            todo.append(inner)
    return found


def _flat_stacks(executor) -> list[federating_executor.FederatingExecutor]:
    flats = []
    for composing in _composing_executors(executor):
        for child in composing.children:
            inner = child.executor.child
            if isinstance(inner, federating_executor.FederatingExecutor):
                flats.append(inner)
    return flats


# -- configuration ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fields, message", [
    ({"kind": "spark"}, "unknown stack kind"),
    ({"threads": 0}, "threads must be >= 1"),
    ({"clients_per_thread": 0}, "clients_per_thread must be >= 1"),
    ({"max_fanout": 1}, "max_fanout must be >= 2"),
    ({"device": "tpu"}, "device must be cpu, gpu or gpu:N"),
    ({"tf_threads": 0}, "tf_threads must be >= 1"),
])
def test_stack_config_rejects_bad_values(fields, message):
    with pytest.raises(ValueError, match=message):
        config_lib.StackConfig(**fields)


def test_threaded_stack_gives_each_client_thread_a_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(stacks.tf_runtime, "cores", lambda: 8)
    assert stacks.tf_thread_plan(config_lib.StackConfig()) == (None, None)
    assert stacks.tf_thread_plan(config_lib.StackConfig(kind="threaded", threads=2)) == (4, None)
    assert stacks.tf_thread_plan(config_lib.StackConfig(kind="threaded")) == (1, None)
    assert stacks.tf_thread_plan(config_lib.StackConfig(kind="threaded", threads=16)) == (1, None)
    assert stacks.tf_thread_plan(config_lib.StackConfig(tf_threads=3)) == (3, None)


def test_tf_threads_flag_sets_tensorflows_intra_op_pool_for_the_process():
    script = (
        "from tffexec import runner, tf_runtime\n"
        "from tffexec.factories import config\n"
        "import numpy as np\n"
        "from tffexec import tensorflow as tfc\n"
        "comp = tfc.tensorflow_computation(lambda x: x + 1, np.int32)\n"
        "with runner.Runner(config.StackConfig(tf_threads=1)) as r:\n"
        "    assert r.run(comp, 1) == 2\n"
        "tf = tf_runtime.tensorflow()\n"
        "print(tf.config.threading.get_intra_op_parallelism_threads())\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


# -- composition -----------------------------------------------------------------------------------
@pytest.mark.parametrize("clients, fanout, levels", [
    (3, 3, 0), (4, 3, 1), (9, 3, 1), (10, 3, 2), (27, 3, 2), (28, 3, 3), (1000, 10, 2)])
def test_depth_grows_with_the_log_of_clients_over_fanout(clients, fanout, levels):
    assert stacks.depth(clients, fanout) == levels
    stack = stacks.build_stack(config_lib.StackConfig(max_fanout=fanout), clients)
    try:
        composing = _composing_executors(stack)
        if levels == 0:
            assert composing == []
        else:
            assert all(len(c.children) <= fanout for c in composing)
            flats = _flat_stacks(stack)
            # Contiguous blocks of at most `fanout` clients, in client order.
            assert [f.first_client for f in flats] == list(range(0, clients, fanout))
            assert sum(f.num_clients for f in flats) == clients
            assert all(f.num_clients <= fanout for f in flats)
    finally:
        stack.close()


def test_a_flat_stack_numbers_its_clients_from_first_client_and_shares_its_unplaced_stack():
    """`flat_stack` is the one recipe of the local stack, the --max-fanout leaves and the Ray
    shards: a shard's clients carry their global index, and its unplaced stack is shared."""
    unplaced = stacks.unplaced_stack(config_lib.StackConfig())
    shard = stacks.flat_stack(unplaced, 3, client_work.SequentialClientWork(), first_client=6,
                              owns_child=False)
    proto = _fails_for_clients_from(5.0).to_building_block().to_proto()
    fn_type = fl.Type.from_proto(proto.type)
    try:
        with pytest.raises(errors.ExecutionError, match="client 8 in federated_map"):
            shard.materialize(shard.call(shard.value(proto, fn_type),
                                         shard.value([0.0, 1.0, 9.0], fn_type.parameter)))
        shard.close()
        # The shared unplaced stack outlives the flat stack that does not own it.
        assert unplaced.materialize(unplaced.value(np.int32(4), I32)) == 4
    finally:
        unplaced.close()


def test_the_in_process_builder_leaves_the_ray_stack_to_the_factory():
    with pytest.raises(errors.InternalError, match="ray_stack"):
        stacks.build_stack(config_lib.StackConfig(kind="ray"), 2)


def test_broadcast_reaches_each_child_once_not_each_client():
    comp = _sum_of_doubled_broadcast()
    with runner_lib.Runner(config_lib.StackConfig(max_fanout=3)) as runner:
        assert runner.run(comp, [5, list(range(30))]) == 30 * 10 + sum(range(30))
        stack = runner.factory.create_executor({C: 30})
        composing = _composing_executors(stack)
        # 30 clients / fanout 3: 10 flat stacks, grouped 3 at a time under 4 composing
        # executors, those under 2, those under the top one: 10 + 4 + 2 = 16 parent-child edges.
        assert len(_flat_stacks(stack)) == 10
        assert len(composing) == 7
        edges = sum(len(c.children) for c in composing)
        assert edges == 16
        assert sum(c.transfers["broadcast"] for c in composing) == edges  # not 30 per level
        assert composing[0].transfers["broadcast"] == len(composing[0].children)


def test_composed_aggregate_merges_partials_in_client_order_with_the_computations_merge():
    # accumulate adds, merge multiplies: a flat stack never merges (1+2+3+4 = 10), as TFF; two
    # blocks of two clients merge their partial sums: (1+2) * (3+4) = 21.
    @fl.federated_computation(fl.FederatedType(np.int32, C))
    def comp(x):
        return fl.federated_aggregate(x, np.int32(0), ADD_I32, MULTIPLY_I32, IDENTITY_I32)

    assert runner_lib.run(comp, [1, 2, 3, 4]) == 10
    assert runner_lib.run(comp, [1, 2, 3, 4], stack=config_lib.StackConfig(max_fanout=2)) == 21
    # Threaded, per client or batched, the fold stays one in-order pass (only maps run on threads).
    for batch in (False, True):
        threaded = config_lib.StackConfig(kind="threaded", threads=2, batch=batch)
        assert runner_lib.run(comp, [1, 2, 3, 4], stack=threaded) == 10


@pytest.mark.parametrize("stack", list(STACKS))
def test_results_agree_on_every_stack_for_many_clients(stack):
    comp = _sum_of_doubled_broadcast()
    values = list(range(100))
    assert runner_lib.run(comp, [3, values], stack=STACKS[stack]) == sum(6 + v for v in values)


# -- errors ----------------------------------------------------------------------------------------
def _fails_for_clients_from(threshold: float):
    import tensorflow as tf  # noqa: PLC0415 - the test builds a real failing graph

    def check(x):
        with tf.control_dependencies([tf.debugging.assert_less(x, threshold, message="too big")]):
            return tf.identity(x)

    return _sum_of_mapped(tf_fn(check, np.float32))


def _sum_of_mapped(function):
    """`federated_sum(federated_map(function, x))` over float32 clients."""
    @fl.federated_computation(fl.FederatedType(np.float32, C))
    def comp(x):
        return fl.federated_sum(fl.federated_map(function, x))

    return comp


@pytest.mark.parametrize("stack", list(STACKS))
def test_client_error_names_the_global_client_index_and_the_intrinsic(stack):
    comp = _fails_for_clients_from(7.0)
    with pytest.raises(errors.ExecutionError) as info:
        runner_lib.run(comp, [float(i) for i in range(12)], stack=STACKS[stack])
    message = str(info.value)
    assert "client 7 in federated_map" in message, message
    assert "\n" not in message


def test_client_error_is_exit_6_on_the_command_line(tmp_path):
    comp = _fails_for_clients_from(2.0)
    comp_path = tmp_path / "comp.pb"
    comp_path.write_bytes(comp.to_building_block().to_proto().SerializeToString())
    arg_path = tmp_path / "arg.json"
    arg_path.write_text("[0.0, 1.0, 2.0, 3.0]")
    out_path = tmp_path / "out.json"
    result = CliRunner().invoke(cli_main.cli, [
        "run", str(comp_path), str(arg_path), "--stack", "threaded", "--max-fanout", "2",
        "--output", str(out_path)])
    assert result.exit_code == 6, result.output
    assert "client 2 in federated_map" in result.output
    assert "Traceback" not in result.output
    assert not out_path.exists()


class _ExplodingExecutor(base.SyncExecutor):
    """A child whose calls fail for chosen clients: exercises the pool without TensorFlow."""

    def __init__(self, failing: set[int], exception: type[BaseException]):
        self.failing, self.exception = failing, exception

    def value(self, value, type_spec=None):
        return base.ExecValue(value, type_spec, self)

    def call(self, function, argument=None):
        if argument.rep in self.failing:
            raise self.exception(f"client value {argument.rep} failed")
        time.sleep(0.001)
        return base.ExecValue(argument.rep * 2, None, self)

    def struct(self, elements):
        raise NotImplementedError

    def selection(self, source, index):
        raise NotImplementedError

    def materialize(self, value):
        return value.rep


@pytest.mark.parametrize("exception", [errors.ExecutionError, RuntimeError, SystemExit])
def test_a_failing_worker_thread_reaches_the_caller_and_never_hangs(exception):
    executor = _ExplodingExecutor({5, 9}, exception)
    work = client_work.ThreadedClientWork(threads=4, clients_per_task=2)
    arguments = [executor.value(i) for i in range(40)]
    outcome = {}

    def run():
        try:
            work.map(executor, None, arguments, intrinsic="federated_map", first_client=100)
        except BaseException as e:  # noqa: BLE001 - the test inspects whatever arrives
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)
    work.close()
    assert not thread.is_alive(), "the client work hung"
    error = outcome["error"]
    assert isinstance(error, exception)
    if exception is errors.ExecutionError:
        assert "client 105 in federated_map" in str(error)  # the first failing client, globally


def test_threaded_map_keeps_client_order_and_reports_progress():
    executor = _ExplodingExecutor(set(), RuntimeError)
    work = client_work.ThreadedClientWork(threads=3, clients_per_task=4)
    events = []
    with activity.listen(events.append):
        results = work.map(executor, None, [executor.value(i) for i in range(25)],
                           intrinsic="federated_map")
    work.close()
    assert [r.rep for r in results] == [2 * i for i in range(25)]
    assert events[0].done == 0 and events[-1].done == events[-1].total == 25
    assert all(e.task == "federated_map" for e in events)


def test_device_gpu_without_a_gpu_is_exit_7():
    from tffexec import tf_runtime  # noqa: PLC0415

    if tf_runtime.tensorflow().config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    result = CliRunner().invoke(cli_main.cli, [
        "run", str(REPO / "examples/mean_of_clients/comp.pb"),
        str(REPO / "examples/mean_of_clients/arg.json"), "--device", "gpu"])
    assert result.exit_code == 7, result.output
    assert "no GPU" in result.output and "Traceback" not in result.output


def test_device_cpu_runs_and_gives_the_same_result():
    args = [str(REPO / "examples/mean_of_clients/comp.pb"),
            str(REPO / "examples/mean_of_clients/arg.json"), "--format", "json"]
    plain = CliRunner().invoke(cli_main.cli, ["run", *args])
    on_cpu = CliRunner().invoke(cli_main.cli, ["run", *args, "--device", "cpu:0"])
    assert plain.exit_code == on_cpu.exit_code == 0, on_cpu.output
    assert plain.stdout == on_cpu.stdout


# -- concurrency -----------------------------------------------------------------------------------
def _heavy_per_client():
    import tensorflow as tf  # noqa: PLC0415

    def chain(x):
        m = tf.fill([96, 96], x)
        w = tf.eye(96) * 0.5
        for _ in range(40):
            m = tf.matmul(m, w) + 1.0
        return tf.reduce_sum(m)

    return _sum_of_mapped(tf_fn(chain, np.float32))


@pytest.mark.parametrize("stack", ["local", "threaded"])
def test_concurrent_runs_through_one_runner_are_correct_and_overlap(stack):
    comp = _heavy_per_client()
    reference = {}
    with runner_lib.Runner(STACKS[stack]) as runner:
        for k in range(6):
            reference[k] = runner.run(comp, [float(k)] * 20)
        intervals, results, failures = {}, {}, []

        def one(k):
            try:
                start = time.perf_counter()
                results[k] = runner.run(comp, [float(k)] * 20)
                intervals[k] = (start, time.perf_counter())
            except BaseException as e:  # noqa: BLE001
                failures.append(e)

        threads = [threading.Thread(target=one, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not failures, failures
    assert results == reference  # independent: each run got its own argument's result
    # Some pair of runs was in flight at the same time: no global lock serialises whole runs.
    spans = sorted(intervals.values())
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))


def test_graph_with_a_variable_is_correct_when_many_clients_call_it_at_once():
    import tensorflow as tf  # noqa: PLC0415

    def stateful(x):
        v = tf.Variable(0.0)
        with tf.control_dependencies([v.assign_add(x)]):
            return v.read_value() * 2.0

    fn = tf_fn(stateful, np.float32)

    @fl.federated_computation(fl.FederatedType(np.float32, C))
    def comp(x):
        return fl.federated_map(fn, x)

    values = [float(i) for i in range(64)]
    config = config_lib.StackConfig(kind="threaded", threads=8, clients_per_thread=1)
    with runner_lib.Runner(config) as runner:
        for _ in range(3):
            assert [float(v) for v in runner.run(comp, values)] == [2 * v for v in values]


def test_graph_with_a_table_is_correct_when_many_clients_call_it_at_once():
    import tensorflow as tf  # noqa: PLC0415

    def lookup(key):
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant([0, 1, 2, 3], tf.int32),
                                                tf.constant([10, 11, 12, 13], tf.int32)), -1)
        return table.lookup(key)

    fn = tf_fn(lookup, np.int32)

    @fl.federated_computation(fl.FederatedType(np.int32, C))
    def comp(x):
        return fl.federated_map(fn, x)

    keys = [i % 5 for i in range(48)]
    config = config_lib.StackConfig(kind="threaded", threads=8, clients_per_thread=1)
    with runner_lib.Runner(config) as runner:
        assert [int(v) for v in runner.run(comp, keys)] == [10 + k if k < 4 else -1 for k in keys]


def test_closing_a_threaded_runner_stops_its_client_threads():
    before = {t.name for t in threading.enumerate()}
    comp = _sum_of_doubled_broadcast()
    with runner_lib.Runner(STACKS["threaded"]) as runner:
        runner.run(comp, [1, list(range(9))])
    time.sleep(0.2)
    leftover = {t.name for t in threading.enumerate() if t.name.startswith("tffexec-client")}
    assert not leftover - before


@pytest.mark.skipif(os.name != "posix", reason="uses the installed console script")
def test_stack_flags_on_the_installed_script_give_the_local_result():
    script = pathlib.Path(sys.executable).with_name("tffexec")
    args = [str(REPO / "examples/fedavg_round/comp.pb"), str(REPO / "examples/fedavg_round/arg.pb"),
            "--format", "json"]
    local = subprocess.run([str(script), "run", *args], capture_output=True, text=True, timeout=120)
    composed = subprocess.run([str(script), "run", *args, "--stack", "threaded", "--threads", "2",
                               "--max-fanout", "2", "--tf-threads", "1"],
                              capture_output=True, text=True, timeout=120)
    assert local.returncode == composed.returncode == 0, composed.stderr
    import json  # noqa: PLC0415

    from tffexec.formats import compare  # noqa: F401,PLC0415

    a, b = json.loads(local.stdout), json.loads(composed.stdout)
    assert a["type"] == b["type"]
    np.testing.assert_allclose(_floats(a["value"]), _floats(b["value"]), rtol=1e-5, atol=1e-6)


def _floats(node) -> list[float]:
    if isinstance(node, dict):
        return [x for key in sorted(node) for x in _floats(node[key])]
    if isinstance(node, list):
        return [x for item in node for x in _floats(item)]
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        return [float(node)]
    return []
