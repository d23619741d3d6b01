"""A Ray cluster tffexec starts is its own, stays quiet, and is gone when tffexec is (issue 15 §4).

Each test runs the installed CLI in a real process with `--stack ray` and no address, while
another Ray cluster (started like a user would, `ray start --head`, in its own temp dir) runs on
the machine: tffexec must start its own head and never join that one. While the run goes on,
the test records the processes below tffexec (its GCS, raylet, agents and actor workers, by
pid and start time); once tffexec has exited none of them may be running 2 s later.

Cluster starts cost tens of seconds on a loaded machine, so there are few runs: a client graph
that aborts its actor's process (`Abort`: a dead worker is one line on stderr, Ray's
`(raylet) ...` messages never reach stdout), SIGTERM in the middle of a long client kernel
(exit 143, one line), and a short `--timeout` that lands while the cluster starts (exit 124).
"""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time

import federated_language as fl
import numpy as np
import pytest

from tffexec import errors
from tffexec import tf_runtime
from tffexec.factories import config as config_lib
from tffexec.factories import ray_pool
from tffexec.factories import ray_procs
from tffexec import tensorflow as tfc
from tffexec_test_support import REPO, clean_env, ray_head, tffexec_script

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.skipif(not pathlib.Path("/proc").is_dir(),
                                reason="finds the cluster's processes through /proc")

GONE_WITHIN_S = 2.0


def _env(**extra) -> dict:
    env = clean_env(RAY_AUTH_MODE="disabled", **extra)
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture(scope="module")
def other_cluster():
    """Someone else's one-CPU cluster on this machine, in its own temp dir."""
    temp_dir = tempfile.mkdtemp(prefix="rayo", dir="/tmp")  # short: Ray's socket paths
    with ray_head(_env(), "--temp-dir", temp_dir) as (_, head):
        yield pathlib.Path(temp_dir), head


def _drivers_of(temp_dir: pathlib.Path) -> set[str]:
    """The drivers that ever connected to the cluster in `temp_dir` (one log file each)."""
    return {p.name for p in temp_dir.glob("session_*/logs/*driver*")}


def _client_map(body, dtype, path: pathlib.Path) -> pathlib.Path:
    """A federated_map of the TensorFlow function `body` over {dtype}@CLIENTS, saved to `path`."""
    inner = tfc.as_computation(tfc.tensorflow_computation(body, dtype))

    @fl.federated_computation(fl.FederatedType(dtype, fl.CLIENTS))
    def comp(xs):
        return fl.federated_map(inner, xs)

    path.write_bytes(comp.to_proto().SerializeToString())
    return path


def _aborting(x):
    tf = tf_runtime.tensorflow()
    abort = tf.raw_ops.Abort(error_msg="abort requested by test_ray_cleanup")
    with tf.control_dependencies([abort]):
        return tf.identity(x)


def _slow(n):
    """n steps of a 64x64 tanh recurrence inside one while-loop kernel."""
    tf = tf_runtime.tensorflow()
    _, state = tf.while_loop(lambda i, s: i < n,
                             lambda i, s: (i + 1, tf.tanh(tf.matmul(s, s) * 0.01 + 0.01)),
                             [tf.constant(0, tf.int64), tf.ones([64, 64])])
    return tf.reduce_sum(state)


class Watched:
    """tffexec in a real process, with every process ever seen below it recorded."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [tffexec_script(), *args, "--stack", "ray", "--workers", "2", "--worker-cpus", "0.5",
             "-v"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
            cwd=REPO)
        self.seen: set[ray_procs.Proc] = set()
        self.names: set[str] = set()  # of the processes seen (read while they run)
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def watch_until(self, condition, timeout_s: float = 240) -> None:
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and not condition() and time.monotonic() < deadline:
            self._record()
            time.sleep(0.1)
        self._record()

    def _record(self) -> None:
        for pid, started in ray_procs.descendants([self.proc.pid]) - self.seen:
            self.seen.add((pid, started))
            try:
                self.names.add(pathlib.Path(f"/proc/{pid}/comm").read_text().strip())
            except OSError:
                pass

    def finish(self) -> tuple[int, str, float]:
        """(exit code, stdout, seconds from the exit until the recorded processes were gone)."""
        try:
            self.proc.wait(timeout=240)
        finally:
            self.proc.kill()
        exited = time.monotonic()
        stdout = self.proc.stdout.read()
        self._reader.join(10)
        while ray_procs.alive(self.seen) and time.monotonic() - exited < 10:
            time.sleep(0.05)
        return self.proc.returncode, stdout, time.monotonic() - exited

    def own_cluster_started(self) -> bool:
        """Whether a GCS and a raylet ran below tffexec (a head of its own)."""
        return (any("gcs_server" in n for n in self.names)
                and any("raylet" in n for n in self.names))


def test_an_aborting_client_is_one_line_per_dead_worker_and_the_cluster_is_gone(
        other_cluster, tmp_path):
    other_dir, other_head = other_cluster
    drivers_before = _drivers_of(other_dir)
    comp = _client_map(_aborting, np.int32, tmp_path / "abort.pb")
    (tmp_path / "arg.json").write_text("[1]")
    run = Watched("run", str(comp), str(tmp_path / "arg.json"), "--allow-op", "Abort",
                  "--shard-retries", "0")
    run.watch_until(lambda: False)
    code, stdout, gone_after = run.finish()
    assert code == 7, run.stderr
    assert stdout == ""  # no "(raylet) A worker died ..." on stdout
    died = [line for line in run.stderr if "a Ray actor died (its process ended)" in line]
    assert len(died) == 1, run.stderr  # one line for the one dead actor
    others = [line for line in run.stderr if not line.startswith("tffexec: ")]
    assert len(others) == 1 and others[0].startswith("Error: a Ray actor died"), others
    assert not any("raylet" in line or "\x1b[" in line for line in run.stderr)
    assert any("started a local Ray cluster" in line for line in run.stderr)
    assert run.own_cluster_started()
    assert gone_after < GONE_WITHIN_S, (gone_after, ray_procs.alive(run.seen))
    assert _drivers_of(other_dir) == drivers_before  # never joined the other cluster
    assert other_head.poll() is None


def test_sigterm_mid_run_is_exit_143_in_one_line_and_the_cluster_is_gone(other_cluster,
                                                                         tmp_path):
    other_dir, _ = other_cluster
    drivers_before = _drivers_of(other_dir)
    comp = _client_map(_slow, np.int64, tmp_path / "slow.pb")
    (tmp_path / "n.json").write_text("[100000000000, 100000000000]")
    run = Watched("run", str(comp), str(tmp_path / "n.json"))
    run.watch_until(lambda: "tffexec: run: started" in run.stderr)
    assert run.proc.poll() is None, run.stderr
    time.sleep(1.0)  # the actors are inside the kernel
    run.watch_until(lambda: True)
    run.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    code, stdout, gone_after = run.finish()
    assert code == 143, run.stderr
    assert stdout == ""
    assert [line for line in run.stderr if not line.startswith("tffexec: ")] == [
        "Error: terminated; no output written"]
    assert run.own_cluster_started()
    assert gone_after < GONE_WITHIN_S, (gone_after, ray_procs.alive(run.seen))
    assert time.monotonic() - signalled < 10
    assert _drivers_of(other_dir) == drivers_before


def test_timeout_while_the_cluster_starts_is_exit_124_and_the_cluster_is_gone(tmp_path):
    """The limit lands while Ray starts (the worker thread inside `ray.init` or waiting for
    actors): the exit is still 124 with one line, not Ray ending the process (exit 1)."""
    comp = _client_map(_slow, np.int64, tmp_path / "slow.pb")
    (tmp_path / "n.json").write_text("[100000000000, 100000000000]")
    run = Watched("run", str(comp), str(tmp_path / "n.json"), "--timeout", "8")
    run.watch_until(lambda: False)
    code, stdout, gone_after = run.finish()
    assert code == 124, run.stderr
    assert stdout == ""
    assert [line for line in run.stderr if not line.startswith("tffexec: ")] == [
        "Error: stopped after --timeout 8 s; no output written"]
    assert run.seen, "no Ray process was started within the limit"
    assert gone_after < GONE_WITHIN_S, (gone_after, ray_procs.alive(run.seen))


def test_once_the_exit_clean_up_ran_nothing_connects_ray_again(monkeypatch):
    """A worker thread still running after the clean-up (Ctrl-C, SIGTERM, --timeout) neither
    starts a pool nor gets a cluster from Ray's auto-connect (which would start one, or join
    the latest cluster on the machine)."""
    if ray.is_initialized():
        pytest.skip("Ray is connected in this test process")
    monkeypatch.setattr(ray_pool, "_leaving", threading.Event())
    hook = sys.modules["ray._private.auto_init_hook"]
    monkeypatch.setattr(hook, "enable_auto_connect", hook.enable_auto_connect)
    for name in ("RAY_ENABLE_AUTO_CONNECT", "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    ray_pool.shutdown_started_clusters()
    with pytest.raises(errors.Interrupted, match="exiting"):
        ray_pool.RayPool(config_lib.StackConfig(kind="ray", workers=1)).start()
    with pytest.raises(Exception, match="(?i)not.*(started|initialized|connected)"):
        ray.put(1)
    assert not ray.is_initialized()
