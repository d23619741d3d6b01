"""The plain, documented description of an execution stack.

The CLI builds a `StackConfig` from flags and the Python API takes the same object, so everything
a user can say on the command line can be said from Python and vice versa.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

STACK_KINDS = ("local",)


@dataclasses.dataclass(frozen=True)
class StackConfig:
    """How to build the executor stack for one computation call.

    Attributes:
      kind: which stack; "local" runs client work on the calling thread.
      clients: the number of clients when the argument does not say (`--clients`); when the
        argument has CLIENTS values, this must agree with their length.
      seed: makes random TensorFlow ops reproducible (`--seed`); None draws fresh values.
      cache_size: how many stacks (one per distinct client count) the factory keeps.
    """

    kind: str = "local"
    clients: Optional[int] = None
    seed: Optional[int] = None
    cache_size: int = 4

    def __post_init__(self):
        if self.kind not in STACK_KINDS:
            raise ValueError(f"unknown stack kind {self.kind!r}; expected one of {STACK_KINDS}")
        if self.clients is not None and self.clients < 0:
            raise ValueError(f"clients must be >= 0, got {self.clients}")
        if self.cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {self.cache_size}")
