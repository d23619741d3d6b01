"""Per-client maps run on several threads by default; maps whose results depend on call order
do not.

What is observed: which threads report a map's progress (`activity` events come from the thread
that ran the clients), with real TensorFlow graphs run per client (`batch=False`, or graphs that
cannot be batched). The default stack uses one thread per core, `--threads 1` / TFFEXEC_THREADS=1
one thread; a graph with a stateful random op runs in client order on one thread whatever the
setting, so `--seed` gives the same values as with one thread; errors still name the first
failing client.
"""
from __future__ import annotations

import json
import threading

import federated_language as fl
import numpy as np
import pytest

from tffexec import errors
from tffexec import runner as runner_lib
from tffexec import tensorflow as tfc
from tffexec import tf_runtime
from tffexec.cli import main as cli_main
from tffexec.executors import activity
from tffexec.executors import client_order
from tffexec.executors import client_work
from tffexec.factories import config as config_lib
from tffexec.factories import stacks

F32 = fl.TensorType(np.float32)
MULTI_CORE = pytest.mark.skipif(tf_runtime.cores() < 2, reason="needs more than one core")
PER_CLIENT = config_lib.StackConfig(batch=False)  # the default stack, one call per client


def _map_sum(per_client) -> fl.framework.ConcreteComputation:
    @fl.federated_computation(fl.FederatedType(np.float32, fl.CLIENTS))
    def comp(x):
        return fl.federated_sum(fl.federated_map(per_client, x))

    return comp


def _map(per_client) -> fl.framework.ConcreteComputation:
    @fl.federated_computation(fl.FederatedType(np.float32, fl.CLIENTS))
    def comp(x):
        return fl.federated_map(per_client, x)

    return comp


@pytest.fixture(scope="module")
def matmul_map():
    import tensorflow as tf  # noqa: PLC0415 - the test builds a real graph

    def chain(x):
        m = tf.fill([32, 32], x)
        for _ in range(8):
            m = tf.matmul(m, tf.eye(32) * 0.5) + 1.0
        return tf.reduce_sum(m)

    return _map_sum(tfc.as_computation(tfc.tensorflow_computation(chain, F32)))


@pytest.fixture(scope="module")
def random_map():
    """Each client adds a draw of an UNSEEDED stateful random op: with --seed, one stream that
    the clients continue one after another."""
    import tensorflow as tf  # noqa: PLC0415

    add_noise = tfc.as_computation(tfc.tensorflow_computation(
        lambda x: x + tf.random.uniform([]), F32))
    return _map(add_noise)


def _map_threads(run) -> set[str]:
    """The names of the threads that reported progress of a federated_map while `run` ran."""
    names: set[str] = set()
    lock = threading.Lock()

    def listen(event: activity.Event) -> None:
        if event.task == "federated_map" and 0 < event.done:
            with lock:
                names.add(threading.current_thread().name)

    with activity.listen(listen):
        run()
    return names


def _write_case(tmp_path, comp, values) -> tuple[str, str]:
    comp_path, arg_path = tmp_path / "comp.pb", tmp_path / "arg.json"
    comp_path.write_bytes(comp.to_building_block().to_proto().SerializeToString())
    arg_path.write_text(json.dumps(values))
    return str(comp_path), str(arg_path)


# -- how many threads -----------------------------------------------------------------------------
def test_the_default_stack_has_one_client_thread_per_core(monkeypatch):
    monkeypatch.setattr(tf_runtime, "cores", lambda: 6)
    assert stacks.client_threads(config_lib.StackConfig()) == 6
    assert stacks.client_threads(config_lib.StackConfig(threads=1)) == 1
    assert stacks.client_threads(config_lib.StackConfig(kind="threaded", threads=3)) == 3
    # Batched calls keep every intra-op thread on the local stack.
    assert stacks.tf_thread_plan(config_lib.StackConfig()) == (None, None)


def test_a_ray_actor_runs_one_client_thread_per_cpu_it_reserves():
    assert stacks.client_threads(config_lib.StackConfig(kind="ray")) == 1
    shard = config_lib.shard_config(config_lib.StackConfig(kind="ray", worker_cpus=2.5))
    assert (shard.kind, shard.threads) == ("local", 2)
    shard = config_lib.shard_config(config_lib.StackConfig(kind="ray", threads=3))
    assert (shard.kind, shard.threads) == ("threaded", 3)


def test_the_local_stack_runs_batched_chunks_one_at_a_time_and_maps_on_threads():
    leaf = stacks.leaf_executor(config_lib.StackConfig())
    work = stacks.client_work(config_lib.StackConfig(threads=2), leaf)
    assert work.inner.threads == 2 and not work.parallel  # run_tasks: one chunk after another
    threaded = stacks.client_work(config_lib.StackConfig(kind="threaded", threads=2), leaf)
    assert threaded.parallel
    assert isinstance(stacks.client_work(config_lib.StackConfig(threads=1), leaf).inner,
                      client_work.SequentialClientWork)


# -- maps on threads --------------------------------------------------------------------------------
@MULTI_CORE
def test_the_default_stack_runs_an_unbatchable_map_on_several_threads(matmul_map):
    values = [float(i) for i in range(8)]
    with runner_lib.Runner(PER_CLIENT) as runner:
        threaded_sum = []
        names = _map_threads(lambda: threaded_sum.append(runner.run(matmul_map, values)))
    assert len(names) > 1, names
    one = runner_lib.run(matmul_map, values, stack=config_lib.StackConfig(batch=False, threads=1))
    assert threaded_sum[0] == one  # the sum still adds the clients in order


def test_threads_1_runs_the_map_on_one_thread(matmul_map):
    config = config_lib.StackConfig(batch=False, threads=1)
    with runner_lib.Runner(config) as runner:
        names = _map_threads(lambda: runner.run(matmul_map, [float(i) for i in range(8)]))
    assert len(names) == 1, names


@MULTI_CORE
@pytest.mark.parametrize("how", ["flag", "environment"])
def test_threads_1_on_the_command_line_keeps_one_thread(runner, tmp_path, matmul_map, monkeypatch,
                                                        how):
    comp, arg = _write_case(tmp_path, matmul_map, [float(i) for i in range(6)])
    command = ["run", comp, arg, "--no-batch", "--format", "json"]

    def invoke(extra):
        results = []
        names = _map_threads(lambda: results.append(runner.invoke(cli_main.cli, command + extra)))
        assert results[0].exit_code == 0, results[0].output
        return names, results[0].stdout

    default_names, default_out = invoke([])
    if how == "flag":
        one_names, one_out = invoke(["--threads", "1"])
    else:
        monkeypatch.setenv("TFFEXEC_THREADS", "1")
        one_names, one_out = invoke([])
    assert len(default_names) > 1 and len(one_names) == 1, (default_names, one_names)
    assert json.loads(one_out) == json.loads(default_out)


# -- order-dependent maps ---------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [True, False], ids=["batched", "no-batch"])
def test_a_stateful_random_map_runs_in_client_order_and_matches_one_thread_under_seed(
        random_map, batch):
    values = [float(i) for i in range(8)]
    threaded = config_lib.StackConfig(batch=batch, threads=4, clients_per_thread=1, seed=7)
    with runner_lib.Runner(threaded) as runner:
        results = []
        names = _map_threads(lambda: results.append(runner.run(random_map, values)))
    assert len(names) == 1, names
    one = runner_lib.run(random_map, values,
                         stack=config_lib.StackConfig(batch=batch, threads=1, seed=7))
    np.testing.assert_array_equal(np.asarray(results[0]), np.asarray(one))
    draws = np.asarray(one) - np.asarray(values, np.float32)
    assert len(set(draws.tolist())) == len(values)  # each client drew its own value


def _noise():
    import tensorflow as tf  # noqa: PLC0415

    return tfc.as_computation(tfc.tensorflow_computation(lambda x: x * tf.random.normal([]), F32))


def _lambda_calling(noise):
    """federated_map of a lambda whose body holds the random graph."""
    @fl.federated_computation(F32)
    def per_client(x):
        return noise(x)

    return _map(per_client)


def _lambda_capturing(noise):
    """A block binds the random graph to `f`; the mapped lambda calls it by name (as TFF's
    compiled forms do), so the graph is found through the closure's scope."""
    fw = fl.framework
    graph = noise.to_building_block()
    clients = fl.FederatedType(np.float32, fl.CLIENTS)
    per_client = fw.Lambda("y", F32, fw.Call(fw.Reference("f", graph.type_signature),
                                             fw.Reference("y", F32)))
    federated_map = fw.Intrinsic(fw.FEDERATED_MAP.uri,
                                 fl.FunctionType([per_client.type_signature, clients], clients))
    body = fw.Block([("f", graph)], fw.Call(federated_map, fw.Struct(
        [per_client, fw.Reference("x", clients)])))
    return fw.Lambda("x", clients, body).to_proto()


@pytest.mark.parametrize("build", [_lambda_calling, _lambda_capturing],
                         ids=["in-its-body", "captured"])
def test_a_lambda_that_calls_a_random_graph_also_runs_in_client_order(build):
    comp = build(_noise())
    values = [float(i + 1) for i in range(6)]
    threaded = config_lib.StackConfig(threads=3, clients_per_thread=1, seed=3)
    with runner_lib.Runner(threaded) as runner:
        results = []
        names = _map_threads(lambda: results.append(runner.run(comp, values)))
    assert len(names) == 1, names
    one = runner_lib.run(comp, values, stack=config_lib.StackConfig(threads=1, seed=3))
    np.testing.assert_array_equal(np.asarray(results[0]), np.asarray(one))


def test_order_dependent_ops_are_random_streams_and_prints():
    assert client_order.ops_reason(["Const", "RandomUniform", "AddV2"]) == "RandomUniform"
    assert client_order.ops_reason(["StatefulUniform"]) == "StatefulUniform"
    assert client_order.ops_reason(["Multinomial"]) == "Multinomial"
    assert client_order.ops_reason(["PrintV2"]) == "PrintV2"
    # Stateless random ops and fresh-per-call datasets (even shuffled) do not depend on order.
    assert client_order.ops_reason(["StatelessRandomUniformV2", "ShuffleDatasetV3",
                                    "ReduceDataset", "MatMul"]) is None


def test_verbose_says_the_client_threads_and_why_a_map_runs_in_order(runner, tmp_path,
                                                                      random_map):
    comp, arg = _write_case(tmp_path, random_map, [1.0, 2.0, 3.0])
    result = runner.invoke(cli_main.cli, ["-v", "run", comp, arg, "--threads", "2", "--seed",
                                          "1", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "client threads: 2 for per-client maps (local stack" in result.stderr
    assert ("a federated_map runs its clients in client order on one thread: its function "
            "holds a RandomUniform op") in result.stderr


def test_benchmark_json_says_the_client_threads(runner, tmp_path, matmul_map):
    comp, arg = _write_case(tmp_path, matmul_map, [1.0, 2.0])
    for extra, expected in (([], tf_runtime.cores()), (["--threads", "3"], 3)):
        result = runner.invoke(cli_main.cli, ["benchmark", comp, arg, "--runs", "1", "--warmup",
                                              "0", "--json", *extra])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["client_threads"] == expected


# -- errors ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fails_from_3():
    import tensorflow as tf  # noqa: PLC0415

    def check(x):
        with tf.control_dependencies([tf.debugging.assert_less(x, 3.0, message="too big")]):
            return tf.identity(x)

    return _map_sum(tfc.as_computation(tfc.tensorflow_computation(check, F32)))


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_a_failing_client_is_named_whatever_the_thread_count(fails_from_3, threads):
    # Clients 3 and 5 fail; on threads the later chunks run too, but the first is reported.
    values = [0.0, 1.0, 2.0, 7.0, 1.0, 9.0, 0.0, 0.0]
    config = config_lib.StackConfig(batch=False, threads=threads)
    with pytest.raises(errors.ExecutionError, match="client 3 in federated_map"):
        runner_lib.run(fails_from_3, values, stack=config)


def test_a_failing_client_is_exit_6_on_the_command_line(runner, tmp_path, fails_from_3):
    comp, arg = _write_case(tmp_path, fails_from_3, [0.0, 1.0, 2.0, 7.0, 1.0, 9.0])
    out = tmp_path / "out.json"
    result = runner.invoke(cli_main.cli, ["run", comp, arg, "--no-batch", "--threads", "3",
                                          "--output", str(out)])
    assert result.exit_code == 6, result.output
    assert "client 3 in federated_map" in result.output and "Traceback" not in result.output
    assert not out.exists()
