"""What tffexec lets an untrusted computation do: allowed TensorFlow ops and size limits.

A `Policy` travels inside `StackConfig`, so the CLI's `--allow-op`/`--trust`/limit flags and the
Python API say the same thing. (The op allowlist and the limits are filled in by the
untrusted-input work; this module is the one place that defines them.)
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Policy:
    """Which TensorFlow ops may run, and how large inputs may be.

    Attributes:
      trust: run every op (`--trust`); the limits still apply.
      allowed_ops: extra op names allowed on top of the built-in allowlist (`--allow-op`).
    """

    trust: bool = False
    allowed_ops: frozenset = frozenset()
