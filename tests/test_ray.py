"""The Ray stack on a real local Ray: conformance, broadcast, release, failures, joining a cluster.

One Ray runtime serves the session (`ray_cluster`: 2 logical CPUs on loopback, dashboard off,
token auth off as tests on loopback need); one pool of 2 actors (`ray_runner`) serves most tests,
so TensorFlow is imported in actors only a few times. Failure drills kill a chosen actor of that
pool before its shard runs, and come last in the module. Joining an existing cluster starts its
own head with `ray start --head --block` and stops exactly that head (SIGTERM to the blocking
`ray start`, which stops its processes): a global `ray stop` would also stop the session's Ray.
Checks that Ray is never imported on the default path run in fresh interpreters.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import pathlib
import socket
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
from tffexec.factories import config as config_lib
from tffexec.factories import ray_stack
from tffexec import tensorflow as tfc
from tffexec_test_support import ray_head as start_ray_head

ray = pytest.importorskip("ray")

REPO = pathlib.Path(__file__).resolve().parents[1]
MEAN = REPO / "examples" / "mean_of_clients"
C, S = fl.CLIENTS, fl.SERVER
# 2 actors of half a CPU: the session's 2 CPUs also leave room for replacements of killed actors.
CONFIG = config_lib.StackConfig(kind="ray", workers=2, worker_cpus=0.5, clients_per_shard=3)


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "TFFEXEC_ADDRESS")}
    env.update(RAY_AUTH_MODE="disabled", **extra)
    return env


@pytest.fixture(scope="session")
def ray_cluster():
    saved = {k: os.environ.pop(k, None) for k in ("RAY_ADDRESS", "TFFEXEC_ADDRESS")}
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()
    for key, value in saved.items():
        if value is not None:
            os.environ[key] = value


@pytest.fixture(scope="module")
def ray_runner(ray_cluster):
    with runner_lib.Runner(CONFIG) as runner:
        yield runner


def tf_fn(fn, parameter_type):
    return tfc.as_computation(tfc.tensorflow_computation(fn, parameter_type))


def _broadcast_comp():
    """sum over clients of (2 * s + x_i), and each client's value: one broadcast per call."""
    double = tf_fn(lambda a: a[0] * 2 + a[1], fl.StructType([np.int32, np.int32]))

    @fl.federated_computation(fl.FederatedType(np.int32, S), fl.FederatedType(np.int32, C))
    def comp(s, x):
        pairs = fl.federated_zip((fl.federated_broadcast(s), x))
        values = fl.federated_map(double, pairs)
        return fl.federated_sum(values), values

    return comp


def _expected(s: int, xs: list[int]):
    values = [2 * s + x for x in xs]
    return sum(values), values


def _check(result, s, xs):
    total, values = _expected(s, xs)
    assert int(result[0]) == total
    assert [int(v) for v in result[1]] == values


def _pool(runner):
    return runner.factory.resources


# -- configuration and flags (no Ray needed) -------------------------------------------------------
@pytest.mark.parametrize("fields, message", [
    ({"workers": 2}, "workers only applies to the ray stack"),
    ({"kind": "threaded", "address": "127.0.0.1:1"}, "address only applies to the ray stack"),
    ({"kind": "ray", "workers": 0}, "workers must be >= 1"),
    ({"kind": "ray", "worker_cpus": 0}, "worker_cpus must be > 0"),
    ({"kind": "ray", "shard_retries": -1}, "shard_retries must be >= 0"),
    ({"kind": "ray", "max_fanout": 4}, "max_fanout does not apply to the ray stack"),
])
def test_ray_settings_are_checked_when_the_config_is_made(fields, message):
    with pytest.raises(ValueError, match=message):
        config_lib.StackConfig(**fields)


@pytest.mark.parametrize("args", [
    ["--workers", "2"],
    ["--stack", "threaded", "--address", "127.0.0.1:1"],
])
def test_ray_flags_without_the_ray_stack_are_usage_errors(args):
    result = CliRunner().invoke(
        cli_main.cli, ["run", str(MEAN / "comp.pb"), str(MEAN / "arg.json"), *args],
        env={"RAY_ADDRESS": None, "TFFEXEC_ADDRESS": None})
    assert result.exit_code == 2, result.output


def test_shards_are_contiguous_blocks_dealt_round_robin_to_the_actors():
    assert ray_stack.plan(10, 2, None) == [(0, 5, 0), (5, 5, 1)]
    assert ray_stack.plan(10, 2, 3) == [(0, 3, 0), (3, 3, 1), (6, 3, 0), (9, 1, 1)]
    assert ray_stack.plan(1, 4, None) == [(0, 1, 0)]
    assert ray_stack.plan(0, 2, None) == [(0, 0, 0)]


# -- Ray stays off the default path ----------------------------------------------------------------
def _python(script: str, env=None, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env or _clean_env())


def test_ray_is_not_imported_by_a_local_run_or_by_help():
    script = (
        "import sys\n"
        "from tffexec.cli import main\n"
        "for args in (['--help'], ['run', '--help'],\n"
        f"             ['run', {str(MEAN / 'comp.pb')!r}, {str(MEAN / 'arg.json')!r}, "
        "'--format', 'json']):\n"
        "    try:\n"
        "        main.cli.main(args, prog_name='tffexec')\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, (args, e.code)\n"
        "print('RAY-LOADED' if 'ray' in sys.modules else 'RAY-ABSENT', file=sys.stderr)\n")
    out = _python(script)
    assert out.returncode == 0, out.stderr
    assert "RAY-ABSENT" in out.stderr


def test_stack_ray_without_ray_installed_is_exit_7_saying_how_to_install_it():
    script = (
        "import sys\n"
        "sys.modules['ray'] = None  # what `import ray` sees when Ray is not installed\n"
        "from tffexec.cli import main\n"
        f"main.cli.main(['run', {str(MEAN / 'comp.pb')!r}, {str(MEAN / 'arg.json')!r}, "
        "'--stack', 'ray'], prog_name='tffexec')\n")
    out = _python(script)
    assert out.returncode == 7, out.stderr
    assert "pip install 'tffexec[ray]'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


# -- conformance -----------------------------------------------------------------------------------
def _conformance_module():
    """test_run_conformance.py's check, reused as is (one comparison for every stack)."""
    path = pathlib.Path(__file__).with_name("test_run_conformance.py")
    spec = importlib.util.spec_from_file_location("_tffexec_conformance_for_ray", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_CONFORMANCE = _conformance_module()


def test_case_returns_tffs_result_on_ray(ray_runner, case_form):
    _CONFORMANCE.test_case_returns_tffs_result(ray_runner, case_form)


# -- what travels, what stays ----------------------------------------------------------------------
def test_a_broadcast_goes_into_the_object_store_once_per_call(ray_runner):
    comp, xs = _broadcast_comp(), list(range(12))  # 4 shards of 3 clients on 2 actors
    pool = _pool(ray_runner)
    before = pool.puts
    _check(ray_runner.run(comp, [5, xs]), 5, xs)
    assert pool.puts - before == 1
    for s in (1, 2, 3):
        _check(ray_runner.run(comp, [s, xs]), s, xs)
    assert pool.puts - before == 4


def _wide_map_mean_comp(width: int):
    """mean over clients of 2 * x_i, x_i: float32[width] (a shard of 3 clients is > 64 KiB)."""
    double = tf_fn(lambda x: x * 2.0, fl.TensorType(np.float32, [width]))

    @fl.federated_computation(fl.FederatedType(fl.TensorType(np.float32, [width]), C))
    def comp(x):
        return fl.federated_mean(fl.federated_map(double, x))

    return comp


def test_client_columns_reach_each_shard_through_the_object_store_without_a_copy(ray_runner):
    from tffexec.formats.columns import ClientColumns  # noqa: PLC0415

    width = 6000
    xs = np.random.default_rng(3).normal(size=(12, width)).astype(np.float32)  # 4 shards
    comp = _wide_map_mean_comp(width)
    pool = _pool(ray_runner)
    before = pool.stats()
    puts, built = pool.puts, ClientColumns.members_built
    result = ray_runner.run(comp, xs)
    after = pool.stats()
    np.testing.assert_allclose(result, (2 * xs).mean(axis=0), rtol=1e-5, atol=1e-6)
    received = sum(a["columns_received"] - b["columns_received"] for a, b in zip(after, before))
    zero_copy = sum(a["columns_zero_copy"] - b["columns_zero_copy"] for a, b in zip(after, before))
    assert received == 4 and zero_copy == 4
    assert pool.puts - puts == 4  # one object per shard's slice of columns
    # No per-client member was built for the columns, in the driver or in the actors.
    assert ClientColumns.members_built == built
    assert all(a["members_built"] == b["members_built"] for a, b in zip(after, before))


def test_actors_are_reused_across_calls_and_client_counts(ray_runner):
    comp = _broadcast_comp()
    pool = _pool(ray_runner)
    pids = sorted(s["pid"] for s in pool.stats())
    for n in (1, 4, 7, 4):
        _check(ray_runner.run(comp, [2, list(range(n))]), 2, list(range(n)))
    assert sorted(s["pid"] for s in pool.stats()) == pids


def test_values_are_released_in_the_actors_once_the_driver_drops_them(ray_runner):
    comp, xs = _broadcast_comp(), list(range(12))
    pool = _pool(ray_runner)
    for s in range(15):
        _check(ray_runner.run(comp, [s, xs]), s, xs)
    held = sum(s["values"] for s in pool.stats())
    # At most one run's values wait for the release that travels with the next batch.
    for s in range(15):
        ray_runner.run(comp, [s, xs])
    assert sum(s["values"] for s in pool.stats()) <= held


def test_a_client_error_names_the_global_client_and_is_exit_6(ray_runner):
    check = tf_fn(lambda x: tfc_check(x), np.int32)

    @fl.federated_computation(fl.FederatedType(np.int32, C))
    def comp(x):
        return fl.federated_sum(fl.federated_map(check, x))

    with pytest.raises(errors.ExecutionError, match=r"client 7 in federated_map") as info:
        ray_runner.run(comp, list(range(7)) + [-1] + [1, 2])
    assert info.value.exit_code == 6
    # The failure stayed in its run: the same stack works again.
    assert int(ray_runner.run(comp, list(range(10)))) == 45


def tfc_check(x):
    import tensorflow as tf  # noqa: PLC0415

    with tf.control_dependencies([tf.debugging.assert_non_negative(x)]):
        return tf.identity(x)


def test_concurrent_runs_through_one_ray_factory_are_independent(ray_runner):
    comp = _broadcast_comp()
    outcomes: dict = {}

    def work(i):
        try:
            xs = list(range(i, i + 8))
            for _ in range(3):
                _check(ray_runner.run(comp, [i, xs]), i, xs)
            outcomes[i] = "ok"
        except BaseException as e:  # noqa: BLE001
            outcomes[i] = e

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert outcomes == {i: "ok" for i in range(4)}


# -- the embedded cluster --------------------------------------------------------------------------
_RAY_PROCESS_MARKS = ("raylet", "gcs_server", "ray::")


def _ray_processes() -> set[int]:
    found = set()
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split(") ", 1)[1][:1]
        except OSError:
            continue
        if state != "Z" and any(mark in cmdline for mark in _RAY_PROCESS_MARKS):
            found.add(int(entry.name))
    return found


@pytest.mark.skipif(not pathlib.Path("/proc").is_dir(), reason="lists processes through /proc")
def test_stack_ray_starts_an_embedded_cluster_and_shuts_it_down_on_exit():
    before = _ray_processes()
    out = _tffexec("run", str(MEAN / "comp.pb"), str(MEAN / "arg.json"), "--stack", "ray",
                   "--workers", "1", "--format", "json", env=_clean_env())
    assert out.returncode == 0, out.stderr
    json.loads(out.stdout)  # only the result on stdout
    assert out.stderr.strip() == ""  # and no Ray chatter on stderr
    deadline = time.monotonic() + 30
    while _ray_processes() - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _ray_processes() - before, "processes of the embedded cluster outlived tffexec"


# -- joining an existing cluster -------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_head():
    """A one-CPU head on loopback, started like a user would (`ray start --head`)."""
    with start_ray_head(_clean_env()) as started:
        yield started


def _tffexec(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tffexec", *args], capture_output=True,
                          text=True, timeout=240, cwd=REPO, env=env)


def test_address_joins_a_running_cluster_and_leaves_it_running(ray_head):
    address, head = ray_head
    out = _tffexec("run", str(MEAN / "comp.pb"), str(MEAN / "arg.json"), "--address", address,
                   "--format", "json", env=_clean_env())
    assert out.returncode == 0, out.stderr
    document = json.loads(out.stdout)  # Ray's noise stayed off stdout
    value = document["value"]["federated"]["values"][0]["value"]
    expected = json.loads((MEAN / "expected.json").read_text())
    assert value == expected["value"]["federated"]["values"][0]["value"]
    assert head.poll() is None
    with socket.create_connection(tuple(address.split(":")), timeout=5):
        pass  # the cluster tffexec joined still answers


def test_ray_address_in_the_environment_implies_the_ray_stack(ray_head):
    address, _ = ray_head
    # The head has 1 CPU: asking it for 3 one-CPU workers proves tffexec asked that cluster.
    out = _tffexec("run", str(MEAN / "comp.pb"), str(MEAN / "arg.json"), "--workers", "3",
                   env=_clean_env(RAY_ADDRESS=address))
    assert out.returncode == 7, out.stderr
    assert "the cluster has 1" in out.stderr


# -- failures (these kill actors of the shared pool: keep them last) -------------------------------
def _kill_and_wait(pool, slot: int) -> None:
    """Kills the actor of `slot` and waits until the driver sees it dead (no race with the
    batch sent next: that batch deterministically finds a dead actor)."""
    actor = pool.workers[slot].actor
    ray.kill(actor, no_restart=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            ray.get(actor.stats.remote(), timeout=10)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.05)
    pytest.fail("the killed actor still answers")


def test_a_shard_whose_actor_died_is_rerun_on_another_actor(ray_runner):
    comp, xs = _broadcast_comp(), list(range(12))
    pool = _pool(ray_runner)
    _check(ray_runner.run(comp, [1, xs]), 1, xs)
    losses, retries = pool.losses, pool.retries
    _kill_and_wait(pool, 1)
    _check(ray_runner.run(comp, [2, xs]), 2, xs)
    assert pool.losses == losses + 1
    assert pool.retries >= retries + 1
    # The pool replaced the dead actor: later runs use a full pool again.
    _check(ray_runner.run(comp, [3, xs]), 3, xs)
    assert len({s["pid"] for s in pool.stats()}) == 2


def test_a_lost_actor_with_no_retries_left_is_exit_7_not_a_hang(ray_runner):
    pool = _pool(ray_runner)
    comp, xs = _broadcast_comp(), list(range(12))
    config = dataclasses.replace(CONFIG, shard_retries=0)
    stack = ray_stack.build(config, len(xs), pool)  # same actors, no retries
    try:
        comp_proto = comp.to_proto()
        function_type = fl.Type.from_proto(comp_proto.type)

        def run(s):
            fn = stack.value(comp_proto, function_type)
            arg = stack.value(runner_lib.prepare_argument([s, xs], function_type.parameter),
                              function_type.parameter)
            return stack.materialize(stack.call(fn, arg))

        _check(run(1), 1, xs)
        _kill_and_wait(pool, 0)
        started = time.monotonic()
        with pytest.raises(errors.EngineUnavailable, match="Ray actor died") as info:
            run(2)
        assert info.value.exit_code == 7
        assert time.monotonic() - started < 60
    finally:
        stack.close()


def test_a_mutable_table_starts_fresh_on_every_client_call_on_ray(ray_runner):
    """Calls never share state on the Ray stack either: TFF 0.87's answer (each client looks a
    key up, then inserts its own value: all four see the default)."""
    from tffexec import value_files  # noqa: PLC0415

    folder = REPO / "examples" / "isolation" / "iso_mutable_hash_table"
    expected = json.loads((folder / "expected.json").read_text())
    result = ray_runner.run(str(folder / "comp.pb"), value_files.load_value(folder / "arg.pb"))
    assert [int(v) for v in result] == [int(v["value"])
                                        for v in expected["value"]["federated"]["values"]]
