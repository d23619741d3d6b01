"""`tffexec.policy`: what tffexec lets an untrusted computation do, as plain data.

A `Policy` says which extra TensorFlow ops may run and how large inputs may be. It is a value,
passed explicitly: it travels inside `StackConfig` (to `Runner.prepare`, the executors and the
graphs they admit), and the CLI builds one from a command's `--allow-op`/`--trust`/`--max-*`
flags and hands it to the loaders and the runner. There is no process-wide "current" policy, so
two runners with different policies in one process each apply their own.

Enforcement lives elsewhere: the op allowlist and the checks that apply a policy to graphs are
in `tffexec.checks` (`allowlist`, `op_check`); the limits are applied where inputs are read
(`tffexec.formats.loading`), where client counts are settled (`tffexec.preflight`) and where
sequences are materialised (`tffexec.formats.sequences`), each with the policy it is given.
Importing this module is cheap (no federated-language, no TensorFlow): `--help` builds its
defaults from it.
"""
from __future__ import annotations

import dataclasses

from tffexec import errors

MIB = 1 << 20
GIB = 1 << 30

#: A serialized computation larger than this is refused before it is parsed (`--max-computation-
#: bytes`). TFF-made computations are kilobytes to a few megabytes; model weights normally travel
#: in the argument, not in the graph.
DEFAULT_MAX_COMPUTATION_BYTES = 256 * MIB
#: An argument file (and the decoded value: arrays, strings, sequence graphs) larger than this
#: is refused (`--max-value-bytes`). Half of protobuf's 2 GiB message limit.
DEFAULT_MAX_VALUE_BYTES = 1 * GIB
#: More clients than this is refused before any stack is built (`--max-clients`).
DEFAULT_MAX_CLIENTS = 100_000
#: A sequence with more elements than this is cut with an error when it is materialised or fed
#: to a graph (`--max-sequence-elements`); infinite datasets are refused outright.
DEFAULT_MAX_SEQUENCE_ELEMENTS = 1_000_000
#: Reading one sequence's elements (materialising a dataset) is stopped with exit 5 after this
#: many seconds (`--max-sequence-seconds`): a filter that rejects every element of a huge range
#: produces nothing and never ends, and `--max-sequence-elements` counts only what it produces.
DEFAULT_MAX_SEQUENCE_SECONDS = 120
#: A call of a graph that dequeues from an in-memory TensorFlow queue is cancelled (exit 6) after
#: this many seconds (`--max-queue-wait`): a dequeue from an empty, open queue blocks forever.
DEFAULT_MAX_QUEUE_WAIT = 60


@dataclasses.dataclass(frozen=True)
class Policy:
    """Which TensorFlow ops may run, and how large inputs may be.

    Attributes:
      trust: run every op (`--trust`); the limits still apply.
      allowed_ops: extra op names allowed on top of the built-in allowlist (`--allow-op`); an op
        named here is also exempt from the per-op rules of `tffexec.checks.op_check` (e.g.
        DatasetFromGraph).
      max_computation_bytes: largest serialized computation accepted.
      max_value_bytes: largest argument file, and largest decoded argument value.
      max_clients: largest number of clients.
      max_sequence_elements: longest sequence that may be materialised or fed to a graph.
      max_queue_wait: seconds a call of a graph with queue dequeue ops may run (0: unbounded).
      max_sequence_seconds: seconds reading one sequence's elements may take (0: unbounded).
    """

    trust: bool = False
    allowed_ops: frozenset = frozenset()
    max_computation_bytes: int = DEFAULT_MAX_COMPUTATION_BYTES
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    max_clients: int = DEFAULT_MAX_CLIENTS
    max_sequence_elements: int = DEFAULT_MAX_SEQUENCE_ELEMENTS
    max_queue_wait: int = DEFAULT_MAX_QUEUE_WAIT
    max_sequence_seconds: int = DEFAULT_MAX_SEQUENCE_SECONDS

    def __post_init__(self):
        object.__setattr__(self, "allowed_ops", frozenset(self.allowed_ops))
        for name in ("max_computation_bytes", "max_value_bytes", "max_clients",
                     "max_sequence_elements", "max_queue_wait", "max_sequence_seconds"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")

    # -- limit checks (one message style for all of them) ------------------------------------
    def check_computation_bytes(self, size: int, *, file: str | None = None) -> None:
        if size > self.max_computation_bytes:
            raise errors.PolicyError(
                f"computation is {size:,} bytes, more than the limit of "
                f"{self.max_computation_bytes:,} (--max-computation-bytes)", file=file)

    def check_value_bytes(self, size: int, *, file: str | None = None,
                          what: str = "argument") -> None:
        if size > self.max_value_bytes:
            raise errors.PolicyError(
                f"{what} is {size:,} bytes, more than the limit of {self.max_value_bytes:,} "
                "(--max-value-bytes)", file=file)

    def check_clients(self, clients: int) -> None:
        check_clients(clients, self.max_clients)

    def sequence_too_long(self, count: int | None = None, *, infinite: bool = False,
                          path: str | None = None) -> errors.PolicyError:
        """The error for a sequence over the limit: `count` elements, infinite, or (neither
        given) found to be longer while reading it."""
        limit = self.max_sequence_elements
        if infinite:
            size = "is infinite"
        elif count is not None:
            size = f"has {count:,} elements"
        else:
            size = f"has more than {limit:,} elements"
        return errors.PolicyError(
            f"sequence {size}, more than the limit of {limit:,} elements "
            "(--max-sequence-elements)" if not infinite else
            f"sequence {size}; at most {limit:,} elements are read (--max-sequence-elements)",
            path=path)


    def sequence_too_slow(self, read: int, *, path: str | None = None) -> errors.PolicyError:
        """The error for a sequence whose reading ran past `max_sequence_seconds`, after
        `read` elements."""
        return errors.PolicyError(
            f"reading a sequence took more than {self.max_sequence_seconds:,} s after {read:,} "
            "elements (--max-sequence-seconds); does its dataset filter out every element of a "
            "huge range?", path=path)


def check_clients(clients: int, limit: int) -> None:
    """Refuses more than `limit` clients (before any stack for them is built)."""
    if clients > limit:
        raise errors.PolicyError(
            f"{clients:,} clients is more than the limit of {limit:,} (--max-clients)")


#: The policy of a caller that gives none: the built-in allowlist and the default limits.
DEFAULT = Policy()
