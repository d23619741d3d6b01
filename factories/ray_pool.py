"""The pool of Ray actors a factory owns: started once, reused by every stack it builds.

Actors are long-lived because starting one costs seconds (a Python process that imports
TensorFlow), while a warm actor call costs about a millisecond: the pool is created with the
factory's first Ray stack and serves every call and every client count until the factory closes.
Participants change every round in real training, so a new client count builds a new stack (new
shards) on the same actors.

Where Ray comes from (checked in this order):
- Ray already initialised in this process (a program or test that called `ray.init`): used, and
  left as it was; only the pool's actors are killed on close.
- `StackConfig.address` (`--address`, `RAY_ADDRESS`): tffexec joins that cluster and leaves it
  running on close (it only disconnects).
- Otherwise an embedded local cluster, started here with Ray's dashboard off and shut down on
  close: nothing to set up, and nothing left running after `tffexec run`. It is always a new
  cluster of this process's own (`address="local"`), never another user's cluster running on the
  same machine; `-v` says so. Its processes are recorded by pid (`tffexec.factories.ray_procs`),
  and whatever of them outlives `ray.shutdown()` is ended, on close and on a hard exit alike.

Once tffexec has connected Ray itself, Ray's auto-connect is off in this process: a worker
thread still running after the cluster was shut down (Ctrl-C, SIGTERM, --timeout) gets an error
from its next Ray call instead of silently starting or joining another cluster.

The driver's view of each actor is a `Worker` (its handle, and which computation protos it
already holds); the actor's body is `tffexec.factories.ray_worker.ShardWorker`.

Ray's own noise stays off stdout: workers' output is not forwarded to the driver
(`log_to_driver=False`), Ray's driver logging is at ERROR (`RAY_LOG_LEVEL`), and the raylet's
messages that Ray's driver would print on stdout (`(raylet) A worker died ...`, coloured and
deduplicated) are dropped (they stay in the session's log files). A dead actor is one line on
stderr, a warning of this module's logger.
"""
from __future__ import annotations

import itertools
import logging
import math
import os
import sys
import threading
import weakref
from typing import Any, Optional

from tffexec import errors
from tffexec import tf_runtime
from tffexec.executors import ray_wire
from tffexec.executors.ray_wire import OP_GET, OP_VALUE
from tffexec.factories import config as config_lib
from tffexec.factories import ray_procs
from tffexec.factories import ray_worker

INSTALL_HINT = "pip install 'tffexec[ray]'"
# How long actors may take to start (schedule, start Python, import TensorFlow) before the pool
# reports the cluster as unable to host them, instead of waiting forever for resources.
START_TIMEOUT_S = 120.0
# Ray's driver-side logging: its INFO start-up lines and WARNINGs about token auth or signal
# handlers (tffexec runs work on a worker thread) are noise on tffexec's stderr; problems that
# matter reach the user as tffexec errors (exit 7).
RAY_LOG_LEVEL = logging.ERROR
_pool_ids = itertools.count(1)
_live_pools: "weakref.WeakSet[RayPool]" = weakref.WeakSet()
# Set when the process is leaving (`shutdown_started_clusters`): no pool connects after it.
_leaving = threading.Event()
_log = logging.getLogger(__name__)


def import_ray():
    """Imports Ray, or explains how to install it (exit 7)."""
    try:
        import ray  # noqa: PLC0415 - Ray is optional and heavy: only the Ray stack loads it
    except ImportError as e:
        raise errors.EngineUnavailable(
            f"--stack ray needs Ray, which is not installed ({e}): {INSTALL_HINT}") from None
    return ray


class Worker:
    """One actor of the pool, as the driver sees it: the handle, and the computation protos this
    actor already holds (the rest of the protocol is stateless on this side)."""

    def __init__(self, slot: int, actor, ready_ref):
        self.slot = slot
        self.actor = actor
        self.ready_ref = ready_ref
        self.started = False  # ready() returned: TensorFlow is imported, the actor answers
        self.dead = False
        self._known: set[bytes] = set()
        self._lock = threading.Lock()

    def submit(self, spec: tuple, ops: list, reset: bool = False):
        """Sends one batch; returns the reference to its results. Encoding and submission
        happen under one lock, so a proto is named by digest only after the batch that carries
        its bytes was submitted (the actor runs batches in submission order)."""
        with self._lock:
            return self.actor.run_batch.remote(spec, [self._encode(op) for op in ops], reset)

    def _encode(self, op):
        if isinstance(op, ray_wire.Get):
            return OP_GET, op.vid, op.key
        if op[0] == OP_VALUE and op[2] == "proto":
            return OP_VALUE, op[1], "proto", self._proto(op[3]), op[4]
        if op[0] == OP_VALUE and op[2] == "closure":
            entry, captured = op[3]
            return OP_VALUE, op[1], "closure", (self._proto(entry), captured), op[4]
        return op

    def _proto(self, entry: ray_wire.ProtoEntry) -> tuple:
        if entry.digest in self._known:
            return entry.digest, None
        self._known.add(entry.digest)
        return entry.digest, entry.data


class RayPool:
    """Long-lived `ShardWorker` actors (`tffexec.factories.ray_worker`), one per slot; dead
    actors are replaced.

    Attributes:
      puts: values put into Ray's object store (one per broadcast call).
      losses: actors found dead; retries: shards moved to another actor after a loss.
    """

    def __init__(self, config: config_lib.StackConfig):
        self.config = config
        self.ray: Any = None
        self.lost_errors: tuple = ()
        self.workers: list[Worker] = []
        self.puts = 0
        self.losses = 0
        self.retries = 0
        self.owns_cluster = False
        self.cluster_procs: set[ray_procs.Proc] = set()  # of the cluster this pool started
        self._disconnect = False
        self._started = False
        self._closed = False
        self._lock = threading.Lock()
        self._id = next(_pool_ids)
        self._shard_ids = itertools.count(1)
        self._actor_class = None
        _live_pools.add(self)

    # -- start ---------------------------------------------------------------------------------
    @property
    def cpus_per_worker(self) -> float:
        return self.config.worker_cpus if self.config.worker_cpus is not None else 1.0

    @property
    def gpus_per_worker(self) -> float:
        return self.config.worker_gpus or 0.0

    def start(self) -> None:
        """Connects to (or starts) Ray and starts the actors; idempotent."""
        with self._lock:
            if self._started:
                return
            if self._closed:
                raise errors.InternalError("the Ray pool was used after close")
            ray = import_ray()
            self.ray = ray
            self.lost_errors = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError)
            self._connect(ray)
            try:
                count = self._worker_count(ray)
                self._actor_class = ray.remote(ray_worker.ShardWorker).options(
                    num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker,
                    max_restarts=0, max_task_retries=0)
                self.workers = [self._new_worker(slot) for slot in range(count)]
                self._wait_ready(self.workers)
            except BaseException:
                self._shutdown()
                raise
            self._started = True

    def _connect(self, ray) -> None:
        _quiet_ray_logging()
        if ray.is_initialized():
            return  # the caller's Ray: use it, leave it
        _tffexec_ray_settings(ray)
        if _leaving.is_set():
            raise errors.Interrupted("the Ray stack was not started: tffexec is exiting")
        _drop_ray_messages()
        address = self.config.address
        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=RAY_LOG_LEVEL)
                self._disconnect = True
            else:
                cores = tf_runtime.cores()
                cpus = max(cores, math.ceil((self.config.workers or 0) * self.cpus_per_worker))
                before = ray_procs.descendants()
                self.owns_cluster = True  # from here on: a hard exit ends what was started
                ray.init(address="local", num_cpus=cpus, include_dashboard=False,
                         log_to_driver=False, logging_level=RAY_LOG_LEVEL)
                self.cluster_procs = ray_procs.descendants() - before
                self._disconnect = True
                _log.info("started a local Ray cluster of %d CPUs for this run (%d processes; "
                          "it stops when tffexec exits); --address joins an existing one",
                          cpus, len(self.cluster_procs))
        except Exception as e:  # noqa: BLE001 - Ray raises many kinds; all mean "no cluster"
            self.owns_cluster = False
            where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
            hint = (" (give host:port as printed by `ray start --head`, or ray://host:10001; a "
                    "cluster with token authentication needs RAY_AUTH_TOKEN or "
                    "RAY_AUTH_TOKEN_PATH)") if address else ""
            raise errors.EngineUnavailable(
                f"cannot connect to {where}: {ray_wire.first_line(e)}{hint}") from None

    def _worker_count(self, ray) -> int:
        """`--workers`, or as many actors as the cluster's free CPUs (and GPUs) allow."""
        total = ray.cluster_resources()
        free = ray.available_resources()
        cpus, gpus = self.cpus_per_worker, self.gpus_per_worker
        if self.config.workers is not None:
            count = self.config.workers
            needs = [("CPU", cpus * count), ("GPU", gpus * count)]
            for resource, needed in needs:
                if needed > total.get(resource, 0) + 1e-9:
                    raise errors.EngineUnavailable(
                        f"{count} Ray workers x {needed / count:g} {resource} need {needed:g} "
                        f"{resource}s, but the cluster has {total.get(resource, 0):g}: use fewer "
                        "--workers or smaller --worker-cpus/--worker-gpus")
            return count
        fits = [math.floor(free.get("CPU", 0) / cpus + 1e-9) if cpus > 0 else math.inf]
        if gpus > 0:
            fits.append(math.floor(free.get("GPU", 0) / gpus + 1e-9))
        count = min(fits)
        if count == math.inf:
            count = tf_runtime.cores()
        if count < 1:
            raise errors.EngineUnavailable(
                f"the Ray cluster has no room for an actor of {cpus:g} CPU and {gpus:g} GPU "
                f"(free: {free.get('CPU', 0):g} CPU, {free.get('GPU', 0):g} GPU)")
        return int(count)

    def _new_worker(self, slot: int) -> "Worker":
        actor = self._actor_class.remote(config_lib.shard_config(self.config),
                                         self._intra_op_threads())
        return Worker(slot, actor, actor.ready.remote())

    def _intra_op_threads(self) -> Optional[int]:
        """TensorFlow threads in an actor: its CPUs, shared by its client threads if any."""
        if self.config.tf_threads is not None:
            return self.config.tf_threads
        cpus = max(1, math.floor(self.cpus_per_worker))
        return max(1, cpus // (self.config.threads or 1))

    def _wait_ready(self, workers: list) -> None:
        ray = self.ray
        refs = [w.ready_ref for w in workers]
        done, pending = ray.wait(refs, num_returns=len(refs), timeout=START_TIMEOUT_S)
        if pending:
            raise errors.EngineUnavailable(
                f"{len(pending)} of {len(refs)} Ray actors did not start within "
                f"{START_TIMEOUT_S:g} s: the cluster cannot place actors of "
                f"{self.cpus_per_worker:g} CPU / {self.gpus_per_worker:g} GPU (see `ray status`)")
        try:
            ray.get(done)
            for worker in workers:
                worker.started = True
        except errors.TffexecError:
            raise
        except Exception as e:  # noqa: BLE001
            cause = getattr(e, "cause", None)
            if isinstance(cause, errors.TffexecError):
                raise cause from None
            raise errors.EngineUnavailable(
                f"a Ray actor failed to start: {ray_wire.first_line(e)} (is tffexec installed on "
                "every node, with the same Python?)") from None

    # -- used by the shard proxies -------------------------------------------------------------
    def new_shard_key(self) -> str:
        return f"p{self._id}s{next(self._shard_ids)}"

    def worker(self, slot: int):
        """The live actor of `slot` (a replacement if the previous one died), once it has
        started: a replacement the cluster cannot place is exit 7 after START_TIMEOUT_S, not a
        batch waiting forever."""
        with self._lock:
            worker = self.workers[slot % len(self.workers)]
        if not worker.started:
            self._wait_ready([worker])
        return worker

    def note_loss(self, worker) -> None:
        """Records that `worker` died and starts a replacement in its slot."""
        if worker is None:
            return
        with self._lock:
            if worker.dead or self._closed:
                return
            worker.dead = True
            self.losses += 1
            _log.warning("a Ray actor died (its process ended); its clients are rerun on "
                         "another actor if retries are left")
            if self.workers[worker.slot] is worker:
                self.workers[worker.slot] = self._new_worker(worker.slot)

    def another_worker(self, lost):
        """A live actor other than `lost` to take over a shard: a started one if any (warm),
        else a replacement once it is ready (never waiting longer than START_TIMEOUT_S)."""
        ray = self.ray
        with self._lock:
            candidates = [w for w in self.workers if w is not lost and not w.dead]
        started = [w for w in candidates
                   if w.started or ray.wait([w.ready_ref], timeout=0)[0]]
        for worker in started:
            worker.started = True
        if started:
            return started[lost.slot % len(started) if lost is not None else 0]
        if not candidates:
            raise errors.EngineUnavailable("no live Ray actor is left to take over a shard")
        self._wait_ready(candidates[:1])
        return candidates[0]

    def put(self, value: Any):
        """Puts a value into Ray's object store once; shards read it from there."""
        with self._lock:
            self.puts += 1
        return self.ray.put(value)

    def drop_shard(self, worker, key: str) -> None:
        if self._closed or worker.dead:
            return
        try:
            worker.actor.drop_shard.remote(key)
        except Exception:  # noqa: BLE001 - a dead actor or a closed connection holds nothing
            pass

    def kill(self, slot: int) -> None:
        """Kills the actor of `slot` (for failure drills and tests); the pool notices on use."""
        self.ray.kill(self.workers[slot].actor, no_restart=True)

    def stats(self) -> list[dict]:
        """What each live actor holds (pid, shards, values, protos)."""
        return self.ray.get([w.actor.stats.remote() for w in self.workers])

    # -- close ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Kills the actors; shuts down a cluster tffexec started, leaves one it joined."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._started
        if started or self.ray is not None:
            self._shutdown()

    def _shutdown(self) -> None:
        ray = self.ray
        if ray is None or not ray.is_initialized():
            return
        procs = ray_procs.tree(self.cluster_procs) if self.owns_cluster else set()
        for worker in self.workers:
            try:
                ray.kill(worker.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead
                pass
        self.workers = []
        if self._disconnect:
            ray.shutdown()  # stops an embedded cluster; only disconnects from a joined one
        ray_procs.stop(procs)  # workers and agents that outlived the raylet

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def shutdown_started_clusters() -> None:
    """For a process about to leave without running `close` (`os._exit` after --timeout, Ctrl-C
    or SIGTERM): kills every process of the embedded clusters live pools started (SIGKILL, no
    waiting), and no pool connects after this. Deliberately not `ray.shutdown()`: the abandoned
    worker thread may still be inside Ray, and Ray's core worker ends the whole process (exit 1,
    and a C++ error line) when it is used after a shutdown, before the cluster is killed and
    before the exit status tffexec chose."""
    _leaving.set()
    owned = [pool for pool in list(_live_pools) if pool.owns_cluster and pool.ray is not None]
    if not owned:
        return
    procs = set().union(*(ray_procs.tree(pool.cluster_procs) for pool in owned))
    if any(not pool.cluster_procs for pool in owned):  # caught inside ray.init: all below us
        procs |= ray_procs.descendants()
    ray_procs.kill(procs)


def _drop_ray_messages() -> None:
    """Stops Ray's driver from printing the raylet's messages on stdout (they stay in the
    session's log files, /tmp/ray/session_*/logs); tffexec reports what matters itself."""
    module = sys.modules.get("ray._private.worker")
    printer = getattr(module, "print_to_stdstream", None)
    if printer is None or getattr(printer, "tffexec_dropped", False):
        return

    def drop(data: dict, ignore_prefix: bool = False) -> None:
        del data, ignore_prefix

    drop.tffexec_dropped = True  # type: ignore[attr-defined]
    module.print_to_stdstream = drop


def _tffexec_ray_settings(ray) -> None:
    """Turns off Ray's auto-connect (a Ray call without a connection runs `ray.init()`, which
    starts a cluster or joins the latest one on the machine), and Ray's C++ failure-signal
    handler in this process (it prints a stack dump on SIGTERM, which tffexec handles itself
    with one line)."""
    for name, module_name, attribute, value in (
            ("RAY_ENABLE_AUTO_CONNECT", "ray._private.auto_init_hook", "enable_auto_connect",
             False),
            ("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "ray._private.ray_constants",
             "RAY_DISABLE_FAILURE_SIGNAL_HANDLER", True)):
        os.environ[name] = "1" if value else "0"  # read by Ray at import: processes it starts
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attribute):
            setattr(module, attribute, value)


def _quiet_ray_logging() -> None:
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)

