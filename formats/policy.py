"""What tffexec lets an untrusted computation do: allowed TensorFlow ops and size limits.

A `Policy` travels inside `StackConfig`, so the CLI's `--allow-op`/`--trust`/`--max-*` flags and
the Python API say the same thing. The op allowlist itself is in `allowlist`, the checks that
apply it in `op_check`; the limits are enforced where inputs are read (`loading`), where client
counts are resolved (`tffexec.runner`) and where sequences are materialised (`sequences`).

The *current* policy: loaders deep inside the CLI (and `loading.load_*` called without explicit
limits) need the limits of the command being run, without every caller threading a `Policy`
through. `use(policy)` makes a policy current; the CLI does so once per command and restores the
previous one when the command ends.
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


@dataclasses.dataclass(frozen=True)
class Policy:
    """Which TensorFlow ops may run, and how large inputs may be.

    Attributes:
      trust: run every op (`--trust`); the limits still apply.
      allowed_ops: extra op names allowed on top of the built-in allowlist (`--allow-op`); an op
        named here is also exempt from the per-op rules of `op_check` (e.g. DatasetFromGraph).
      max_computation_bytes: largest serialized computation accepted.
      max_value_bytes: largest argument file, and largest decoded argument value.
      max_clients: largest number of clients.
      max_sequence_elements: longest sequence that may be materialised or fed to a graph.
    """

    trust: bool = False
    allowed_ops: frozenset = frozenset()
    max_computation_bytes: int = DEFAULT_MAX_COMPUTATION_BYTES
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    max_clients: int = DEFAULT_MAX_CLIENTS
    max_sequence_elements: int = DEFAULT_MAX_SEQUENCE_ELEMENTS

    def __post_init__(self):
        object.__setattr__(self, "allowed_ops", frozenset(self.allowed_ops))
        for name in ("max_computation_bytes", "max_value_bytes", "max_clients",
                     "max_sequence_elements"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")

    def allows(self, op: str) -> bool:
        """Whether `op` may run: trusted, explicitly allowed, or on the built-in allowlist."""
        if self.trust or op in self.allowed_ops:
            return True
        from tffexec.checks import allowlist  # noqa: PLC0415 - a large table, load on use

        return op in allowlist.ALLOWED_OPS

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


def check_clients(clients: int, limit: int) -> None:
    """Refuses more than `limit` clients (before any stack for them is built)."""
    if clients > limit:
        raise errors.PolicyError(
            f"{clients:,} clients is more than the limit of {limit:,} (--max-clients)")


DEFAULT = Policy()

_current: Policy | None = None
_check_ops = False


def current() -> Policy:
    """The policy made current by `use`, else the default one."""
    return _current or DEFAULT


def active() -> Policy | None:
    """The current policy if it was made current with `check_ops=True`, else None.

    Commands that run computations make their policy current that way, and loaders then also
    check the ops of what they load; `validate` reports ops instead of refusing them, and
    inspect/convert only read, so they get the limits but no op check.
    """
    return _current if _check_ops else None


def use(policy: Policy | None, *, check_ops: bool = True) -> tuple[Policy | None, bool]:
    """Makes `policy` current for the process (None: the default); returns what to pass to
    `restore` to undo it.

    Process-wide rather than per thread on purpose: the CLI loads inputs on a worker thread (for
    its watchdog) while the flags are parsed on the main thread.
    """
    global _current, _check_ops
    previous = (_current, _check_ops)
    _current, _check_ops = policy, check_ops and policy is not None
    return previous


def restore(previous: tuple[Policy | None, bool]) -> None:
    global _current, _check_ops
    _current, _check_ops = previous
