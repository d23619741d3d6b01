"""A lazy `ExecutorFactory`: stacks are built at call time, once the client count is known.

federated-language's execution contexts infer the cardinalities from the argument and then ask
the factory for an executor. Stacks are cached per client count in a small LRU cache and closed
when evicted or when the factory closes. Each stack keeps its TensorFlow executor's graph cache,
so a computation called again with the same client count reuses its imported graphs.
"""
from __future__ import annotations

import collections
import threading
from typing import Mapping

import federated_language

from tffexec import tf_runtime
from tffexec.executors import base
from tffexec.executors import tf_round
from tffexec.factories import config as config_lib
from tffexec.factories import stacks


def shared_resources(config: config_lib.StackConfig):
    """What every stack of one factory shares and the factory closes: the Ray stack's actor
    pool (started on first use); None for the in-process stacks."""
    if config.kind == "ray":
        from tffexec.factories import ray_pool  # noqa: PLC0415 - never on the default path

        return ray_pool.RayPool(config)
    return None


def build_stack(config: config_lib.StackConfig, num_clients: int,
                resources=None) -> base.SyncExecutor:
    """The full stack of `config`'s kind for `num_clients` clients (`resources`: from
    `shared_resources`, the Ray stack's pool)."""
    if config.kind == "ray":
        from tffexec.factories import ray_stack  # noqa: PLC0415 - never on the default path

        return ray_stack.build(config, num_clients, resources)
    return stacks.build_stack(config, num_clients)


def _clients_of(cardinalities: Mapping) -> int:
    for placement, count in cardinalities.items():
        uri = getattr(placement, "uri", placement)
        if uri == "clients":
            return int(count)
    return 0


class LazyExecutorFactory(federated_language.framework.ExecutorFactory):
    """Builds and caches one stack per client count, as `config` describes."""

    def __init__(self, config: config_lib.StackConfig | None = None):
        self.config = config or config_lib.StackConfig()
        tf_runtime.request_threads(*stacks.tf_thread_plan(self.config))
        self._stacks: collections.OrderedDict[int, base.SyncExecutor] = collections.OrderedDict()
        self._lock = threading.Lock()
        # Shared by all of this factory's stacks, closed with it (the Ray stack's actor pool).
        self.resources = shared_resources(self.config)
        self.built = 0  # how many stacks were built (observable by tests and `benchmark`)
        # Compiled rounds per stack (`tf_round`), dropped with their stack.
        self._rounds: dict[int, tuple[base.SyncExecutor, tf_round.Rounds]] = {}

    def compiled_rounds(self, num_clients: int, stack: base.SyncExecutor
                        ) -> tf_round.Rounds | None:
        """The compiled rounds of `stack` (the one for `num_clients`), or None where rounds run
        on the stack only: Ray shards, composed stacks, `--no-batch`, the switch off."""
        config = self.config
        if config.kind == "ray" or not config.batch or not tf_round.enabled() or (
                config.max_fanout is not None and num_clients > config.max_fanout):
            return None
        with self._lock:
            entry = self._rounds.get(num_clients)
            if entry is None or entry[0] is not stack:
                leaf = stacks.leaf_of(stack)
                if leaf is None:
                    return None
                entry = self._rounds[num_clients] = (stack, tf_round.Rounds(leaf, num_clients))
            return entry[1]

    def create_executor(self, cardinalities: Mapping) -> base.SyncExecutor:
        num_clients = _clients_of(cardinalities)
        if num_clients == 0 and self.config.clients is not None and not any(
                getattr(p, "uri", p) == "clients" for p in cardinalities):
            num_clients = self.config.clients
        with self._lock:
            stack = self._stacks.get(num_clients)
            if stack is not None:
                self._stacks.move_to_end(num_clients)
                return stack
            stack = build_stack(self.config, num_clients, self.resources)
            self.built += 1
            self._stacks[num_clients] = stack
            while len(self._stacks) > self.config.cache_size:
                count, evicted = self._stacks.popitem(last=False)
                self._rounds.pop(count, None)
                evicted.close()
            return stack

    def clean_up_executor(self, cardinalities: Mapping) -> None:
        with self._lock:
            stack = self._stacks.pop(_clients_of(cardinalities), None)
            self._rounds.pop(_clients_of(cardinalities), None)
        if stack is not None:
            stack.close()

    def close(self) -> None:
        with self._lock:
            stacks_ = list(self._stacks.values())
            self._stacks.clear()
            self._rounds.clear()
        for stack in stacks_:
            stack.close()
        if self.resources is not None:
            self.resources.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
