"""Builds the Ray stack: a composing executor over shards of clients held by a pool of actors.

    ReferenceResolving
     └─ RayComposing(server: this process's unplaced stack)
          └─ ShardProxy x shards ──► ShardWorker actors (one local/threaded stack per shard)

Clients are cut into contiguous shards of `clients_per_shard` (default: the clients divided
evenly over the actors, one shard per actor: the least per-shard overhead), dealt to the pool's
actors round-robin. Aggregations run inside each shard and the partial results are merged here
with the computation's merge, exactly as on the `--max-fanout` stack. See
`tffexec.executors.ray_executor` for the driver's side of the protocol, `tffexec.executors.ray_wire`
for what travels, `tffexec.factories.ray_worker` for the actors and `tffexec.factories.ray_pool`
for the pool.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

from tffexec.executors import base
from tffexec.executors import composing_executor
from tffexec.executors import ray_executor
from tffexec.executors import reference_resolving_executor as rre
from tffexec.factories import config as config_lib
from tffexec.factories import ray_pool
from tffexec.factories import stacks


def plan(num_clients: int, workers: int, clients_per_shard: Optional[int]
         ) -> list[tuple[int, int, int]]:
    """(first client, client count, pool slot) of each shard; one empty shard for 0 clients."""
    size = clients_per_shard or max(1, math.ceil(num_clients / workers))
    starts = range(0, num_clients, size) if num_clients else [0]
    return [(first, min(size, num_clients - first), index % workers)
            for index, first in enumerate(starts)]


def build(config: config_lib.StackConfig, num_clients: int,
          pool: Optional[ray_pool.RayPool] = None) -> base.SyncExecutor:
    """The Ray stack for `num_clients` clients on `pool` (a private pool, closed with the stack,
    when the caller has none: factories pass theirs so that actors outlive the stack)."""
    private = pool is None
    if private:
        pool = ray_pool.RayPool(config)
    try:
        pool.start()
        # Server-side work (merges, reports, server functions) runs in this process; the
        # device flag is for the actors, where the clients' work runs.
        server = stacks.unplaced_stack(dataclasses.replace(config, device=None))
        children = []
        for first, count, slot in plan(num_clients, len(pool.workers), config.clients_per_shard):
            shard = ray_executor.Shard(pool.new_shard_key(), count, first, slot)
            proxy = ray_executor.ShardProxy(pool, shard, retries=config.shard_retries)
            children.append(composing_executor.Child(proxy, count, first))
    except BaseException:
        if private:
            pool.close()
        raise
    return rre.ReferenceResolvingExecutor(ray_executor.RayComposingExecutor(
        server, children, pool, owns_server=True, closables=(pool,) if private else ()))
