"""The plain, documented description of an execution stack.

The CLI builds a `StackConfig` from flags and the Python API takes the same object, so everything
a user can say on the command line can be said from Python and vice versa.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

from tffexec import policy as policy_lib

STACK_KINDS = ("local", "threaded", "ray")
# Fields that only the Ray stack reads (see factories/ray_pool.py).
RAY_FIELDS = ("address", "workers", "clients_per_shard", "worker_cpus", "worker_gpus")


@dataclasses.dataclass(frozen=True)
class StackConfig:
    """How to build the executor stack for one computation call.

    Attributes:
      kind: which stack; "local" and "threaded" run in this process: per-client maps on
        `threads` threads on both, batched calls one at a time on "local" (each with all of
        TensorFlow's intra-op threads) and side by side on "threaded"; "ray" spreads shards of
        clients over Ray actors.
      clients: the number of clients when the argument does not say (`--clients`); when the
        argument has CLIENTS values, this must agree with their length.
      seed: makes random TensorFlow ops reproducible (`--seed`); None draws fresh values.
      cache_size: how many stacks (one per distinct client count) the factory keeps.
      threads: threads that run a per-client map (default: the number of cores; in a Ray
        actor, its CPUs). 1 runs one client after another. Maps whose results depend on the
        order of their calls (stateful random ops, prints) always run in client order.
      clients_per_thread: clients per task of a threaded map (default: clients divided evenly
        over the threads).
      max_fanout: when clients exceed it, split them into child stacks of at most this many
        clients, composed in levels (TFF's composing stack); None is flat.
      device: where TensorFlow work runs: "cpu", "gpu" or "gpu:N" (None: TensorFlow decides).
      tf_threads: TensorFlow's intra-op thread count, set once per process before TensorFlow
        starts (None: a default that avoids oversubscribing the cores; see tf_runtime).
      policy: allowed TensorFlow ops and input limits (untrusted computations).
      batch: hold client values as columns and run `tensorflow` computations once for all
        clients where possible (`--no-batch` turns it off: one call per client).
      address: kind "ray": join the Ray cluster at host:port (None: start an embedded one).
      workers: kind "ray": actors in the pool (default: as many as the cluster's free CPUs
        allow at `worker_cpus` each).
      clients_per_shard: kind "ray": clients one shard holds (default: clients divided evenly
        over the workers, one shard per actor).
      worker_cpus, worker_gpus: kind "ray": Ray resources of each actor (default 1 CPU, 0 GPU).
      shard_retries: kind "ray": how many times a shard whose actor died moves to another actor
        before the run fails with exit 7.
    """

    kind: str = "local"
    clients: Optional[int] = None
    seed: Optional[int] = None
    cache_size: int = 4
    threads: Optional[int] = None
    clients_per_thread: Optional[int] = None
    max_fanout: Optional[int] = None
    device: Optional[str] = None
    tf_threads: Optional[int] = None
    policy: policy_lib.Policy = policy_lib.Policy()
    batch: bool = True
    address: Optional[str] = None
    workers: Optional[int] = None
    clients_per_shard: Optional[int] = None
    worker_cpus: Optional[float] = None
    worker_gpus: Optional[float] = None
    shard_retries: int = 2

    def __post_init__(self):
        if self.kind not in STACK_KINDS:
            raise ValueError(f"unknown stack kind {self.kind!r}; expected one of {STACK_KINDS}")
        if self.clients is not None and self.clients < 0:
            raise ValueError(f"clients must be >= 0, got {self.clients}")
        for name in ("threads", "clients_per_thread", "tf_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.max_fanout is not None and self.max_fanout < 2:
            raise ValueError(f"max_fanout must be >= 2, got {self.max_fanout}")
        if self.device is not None and not _valid_device(self.device):
            raise ValueError(f"device must be cpu, gpu or gpu:N, got {self.device!r}")
        if self.cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {self.cache_size}")
        self._check_ray_fields()

    def _check_ray_fields(self) -> None:
        if self.kind != "ray":
            given = [n for n in RAY_FIELDS if getattr(self, n) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'}"
                                 f" to the ray stack (kind='ray')")
            return
        for name in ("workers", "clients_per_shard"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.worker_cpus is not None and self.worker_cpus <= 0:
            raise ValueError(f"worker_cpus must be > 0, got {self.worker_cpus}")
        if self.worker_gpus is not None and self.worker_gpus < 0:
            raise ValueError(f"worker_gpus must be >= 0, got {self.worker_gpus}")
        if self.shard_retries < 0:
            raise ValueError(f"shard_retries must be >= 0, got {self.shard_retries}")
        if self.max_fanout is not None:
            raise ValueError("max_fanout does not apply to the ray stack: its clients are split "
                             "into shards (clients_per_shard), merged in one level")


def shard_config(config: StackConfig) -> StackConfig:
    """The in-process stack each Ray actor runs for its shards: threaded when `threads` is
    given, else local with one client thread per CPU the actor reserves (`worker_cpus`, default
    1: actors side by side already fill the cores); everything else (seed, policy, device, ...)
    as in `config`."""
    if config.threads:
        kind, threads = "threaded", config.threads
    else:
        kind, threads = "local", max(1, math.floor(config.worker_cpus or 1))
    return dataclasses.replace(config, kind=kind, threads=threads,
                               **{name: None for name in RAY_FIELDS})


def _valid_device(device: str) -> bool:
    if device in ("cpu", "gpu"):
        return True
    kind, _, index = device.partition(":")
    return kind in ("cpu", "gpu") and index.isdigit()
