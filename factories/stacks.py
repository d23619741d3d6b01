"""Assembles executor stacks from a `StackConfig` and a client count.

The local stack mirrors TFF's C++ local stack (tff-runtime-facts.md §2a):

    ReferenceResolving
     └─ Federating(num_clients)
          └─ ReferenceResolving            (unplaced work: server and clients share it)
               └─ Sequence                 (sequence_* and generic_* on unplaced values)
                    └─ ReferenceResolving  (closures handed to sequence intrinsics)
                         └─ TensorFlow     (leaf)
"""
from __future__ import annotations

from tffexec.executors import base
from tffexec.executors import client_work
from tffexec.executors import federating_executor
from tffexec.executors import reference_resolving_executor as rre
from tffexec.executors import sequence_executor
from tffexec.executors import tensorflow_executor
from tffexec.factories import config as config_lib


def unplaced_stack(config: config_lib.StackConfig) -> base.SyncExecutor:
    """The stack that runs unplaced work: closures, TensorFlow, sequences."""
    leaf = tensorflow_executor.TensorFlowExecutor(seed=config.seed, policy=config.policy)
    return rre.ReferenceResolvingExecutor(
        sequence_executor.SequenceExecutor(rre.ReferenceResolvingExecutor(leaf)))


def build_stack(config: config_lib.StackConfig, num_clients: int) -> base.SyncExecutor:
    """The full stack for `num_clients` clients."""
    federating = federating_executor.FederatingExecutor(
        unplaced_stack(config), num_clients, client_work=client_work.SequentialClientWork())
    return rre.ReferenceResolvingExecutor(federating)
