"""Assembles executor stacks from a `StackConfig` and a client count.

The flat stack mirrors TFF's C++ local stack (tff-runtime-facts.md §2a):

    ReferenceResolving
     └─ Federating(num_clients, client work)
          └─ ReferenceResolving            (unplaced work: server and clients share it)
               └─ Sequence                 (sequence_* and generic_* on unplaced values)
                    └─ ReferenceResolving  (closures handed to sequence intrinsics)
                         └─ TensorFlow     (leaf)

`flat_stack` builds the two layers that place clients over a given unplaced stack: the local and
threaded stacks, each leaf below, and each Ray shard (`factories/ray_worker.py`) are all built by
it. Which kind of stack to build is the factory's choice (`executor_factory.build_stack`): this
module builds the in-process ones and never imports the Ray modules.

"Client work" is the seam where per-client calls happen: per-client maps on a pool of threads
(`client_threads`: the cores by default, on the local and threaded stacks alike; one thread is a
plain loop), batched calls one at a time on the local stack and side by side on the threaded one. With `max_fanout` and more clients than that, clients are split into
flat stacks of at most `max_fanout` clients (contiguous blocks, the last one smaller), grouped
`max_fanout` at a time under composing executors until one remains (TFF's composing stack):

    ReferenceResolving
     └─ Composing ── ReferenceResolving ─ Composing ── ReferenceResolving ─ Federating(<= F)
                  └─ ...                            └─ ...

All flat stacks and the composing levels share one unplaced stack (and so one TensorFlow
executor: each graph is imported once per process-wide stack, not once per child) and one pool
of client threads.
"""
from __future__ import annotations

import logging
import math

from tffexec import errors
from tffexec import tf_runtime
from tffexec.executors import base
from tffexec.executors import client_work as client_work_lib
from tffexec.executors import composing_executor
from tffexec.executors import federating_executor
from tffexec.executors import reference_resolving_executor as rre
from tffexec.executors import sequence_executor
from tffexec.executors import tensorflow_executor
from tffexec.factories import config as config_lib

_LOG = logging.getLogger("tffexec")


def tf_thread_plan(config: config_lib.StackConfig) -> tuple[int | None, int | None]:
    """TensorFlow's (intra-op, inter-op) thread counts for `config` (None: TensorFlow's default).

    The local stack keeps TensorFlow's defaults (both pools as large as the cores): its batched
    calls run one at a time and use every core, and its client threads share the one
    process-wide intra-op pool (on a busy 2-core machine, per-client training rounds were within
    noise of the threaded stack's one intra-op thread per client). The threaded stack also runs
    batched chunks side by side, so each client's ops get `cores // threads` intra-op threads
    (at least 1): N client threads x intra-op threads stay within the cores instead of
    oversubscribing them.
    `--tf-threads` overrides the intra-op count on either stack.
    """
    if config.tf_threads is not None:
        return config.tf_threads, None
    if config.kind == "threaded":
        threads = config.threads or tf_runtime.cores()
        return max(1, tf_runtime.cores() // threads), None
    return None, None


def leaf_executor(config: config_lib.StackConfig) -> tensorflow_executor.TensorFlowExecutor:
    """The TensorFlow executor at the bottom of a stack (handed to whoever batches on it)."""
    return tensorflow_executor.TensorFlowExecutor(seed=config.seed, policy=config.policy,
                                                  device=config.device)


def unplaced_stack(config: config_lib.StackConfig,
                   leaf: tensorflow_executor.TensorFlowExecutor | None = None) -> base.SyncExecutor:
    """The stack that runs unplaced work: closures, TensorFlow, sequences (on `leaf`, or on a
    new leaf executor)."""
    leaf = leaf if leaf is not None else leaf_executor(config)
    return rre.ReferenceResolvingExecutor(
        sequence_executor.SequenceExecutor(rre.ReferenceResolvingExecutor(leaf)))


def client_threads(config: config_lib.StackConfig) -> int:
    """How many threads run a per-client map on `config`'s in-process stacks (on the Ray stack:
    in each actor): `threads`, else the cores (an actor's: its CPUs)."""
    if config.kind == "ray":
        config = config_lib.shard_config(config)
    return config.threads or tf_runtime.cores()


def client_work(config: config_lib.StackConfig,
                leaf: tensorflow_executor.TensorFlowExecutor) -> client_work_lib.ClientWork:
    """Per-client work: batched on `leaf` (the unplaced stack's leaf) where possible, else
    per-client maps on `client_threads` threads (one: one client after another).

    The threaded stack also runs the chunks of batched calls on its pool; the local stack runs
    them one after another, each with all of TensorFlow's intra-op threads (see
    `tf_thread_plan`).
    """
    threads = client_threads(config)
    if config.kind == "threaded":
        work = client_work_lib.ThreadedClientWork(threads, config.clients_per_thread)
    elif threads > 1:
        work = client_work_lib.ThreadedClientWork(threads, config.clients_per_thread,
                                                  parallel_tasks=False)
    else:
        work = client_work_lib.SequentialClientWork()
    _LOG.info("client threads: %d for per-client maps (%s stack%s)", threads, config.kind,
              ", batched calls one at a time" if config.kind == "local" and config.batch else "")
    return client_work_lib.BatchingClientWork(work, leaf) if config.batch else work


def flat_stack(unplaced: base.SyncExecutor, num_clients: int,
               work: client_work_lib.ClientWork, *, first_client: int = 0,
               owns_child: bool = True) -> base.SyncExecutor:
    """One flat stack over `unplaced`: ReferenceResolving ─ Federating(`num_clients` clients).

    The one recipe of every stack that places clients: the local and threaded stacks
    (`owns_child`: the flat stack closes the unplaced stack), the leaves under `--max-fanout`
    and each Ray shard (which share theirs: `owns_child=False`, clients numbered from
    `first_client`).
    """
    return rre.ReferenceResolvingExecutor(federating_executor.FederatingExecutor(
        unplaced, num_clients, client_work=work, first_client=first_client,
        owns_child=owns_child))


def build_stack(config: config_lib.StackConfig, num_clients: int) -> base.SyncExecutor:
    """The in-process stack (local or threaded) for `num_clients` clients; flat, or composed
    under `--max-fanout`. (The Ray stack is `tffexec.factories.ray_stack`'s; the factory picks.)
    """
    if config.kind == "ray":
        raise errors.InternalError("the Ray stack is built by tffexec.factories.ray_stack")
    if config.device is not None:
        tf_runtime.check_device(config.device)  # a missing GPU is exit 7 before any work
    leaf = leaf_executor(config)
    unplaced = unplaced_stack(config, leaf)
    work = client_work(config, leaf)
    fanout = config.max_fanout
    if fanout is None or num_clients <= fanout:
        return flat_stack(unplaced, num_clients, work)
    return rre.ReferenceResolvingExecutor(
        compose(unplaced, work, num_clients, fanout))


def compose(unplaced: base.SyncExecutor, work: client_work_lib.ClientWork, num_clients: int,
            fanout: int) -> composing_executor.ComposingExecutor:
    """Levels of composing executors over flat stacks of at most `fanout` clients each."""
    level: list[composing_executor.Child] = []
    for first in range(0, num_clients, fanout):
        count = min(fanout, num_clients - first)
        flat = flat_stack(unplaced, count, work, first_client=first, owns_child=False)
        level.append(composing_executor.Child(flat, count, first))
    while True:
        groups = [level[i:i + fanout] for i in range(0, len(level), fanout)]
        if len(groups) == 1:
            return composing_executor.ComposingExecutor(
                unplaced, groups[0], owns_server=True, closables=(work,))
        level = [
            composing_executor.Child(
                rre.ReferenceResolvingExecutor(composing_executor.ComposingExecutor(unplaced, g)),
                sum(c.num_clients for c in g), g[0].first_client)
            for g in groups
        ]


def leaf_of(stack: base.SyncExecutor) -> tensorflow_executor.TensorFlowExecutor | None:
    """The TensorFlow executor at the bottom of a flat in-process stack (None if not found)."""
    layer, seen = stack, 0
    while layer is not None and seen < 16:
        if isinstance(layer, tensorflow_executor.TensorFlowExecutor):
            return layer
        layer = getattr(layer, "child", None) or getattr(layer, "_child", None)
        seen += 1
    return None


def depth(num_clients: int, fanout: int | None) -> int:
    """Levels of composing executors above the flat stacks (0 for a flat stack)."""
    if fanout is None or num_clients <= fanout:
        return 0
    stacks, levels = math.ceil(num_clients / fanout), 0
    while stacks > 1 or levels == 0:
        stacks, levels = math.ceil(stacks / fanout), levels + 1
    return levels
