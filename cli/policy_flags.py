"""The flags that set what an untrusted computation may do (`--allow-op`, `--trust`, limits).

Flags that weaken the op check (`--allow-op`, `--trust`) are explicit only: they never come from
environment variables (the command group reads `TFFEXEC_<COMMAND>_<FLAG>` for other flags, so
they carry `allow_from_autoenv=False`). A stray `TFFEXEC_RUN_TRUST=1` in a shell profile must not
turn the sandbox off. The limits may come from the environment (`TFFEXEC_MAX_CLIENTS`, ...):
raising a limit only lets larger inputs in, it does not let new ops run.
"""
from __future__ import annotations

import functools
import re
from typing import Any, Callable

import click

#: (flag, parameter name, Policy field, environment variable, help).
LIMITS = (
    ("--max-computation-bytes", "max_computation_bytes", "TFFEXEC_MAX_COMPUTATION_BYTES",
     "Refuse a computation file larger than SIZE (exit 5)."),
    ("--max-value-bytes", "max_value_bytes", "TFFEXEC_MAX_VALUE_BYTES",
     "Refuse an argument file, or a decoded argument, larger than SIZE (exit 5)."),
    ("--max-clients", "max_clients", "TFFEXEC_MAX_CLIENTS",
     "Refuse to run with more than N clients (exit 5)."),
    ("--max-sequence-elements", "max_sequence_elements", "TFFEXEC_MAX_SEQUENCE_ELEMENTS",
     "Stop with exit 5 when a sequence (dataset) has more than N elements; infinite datasets "
     "are refused."),
    ("--max-sequence-seconds", "max_sequence_seconds", "TFFEXEC_MAX_SEQUENCE_SECONDS",
     "Stop with exit 5 when reading one sequence's elements takes longer than N seconds (a "
     "dataset whose filter rejects every element never ends); 0: no bound."),
    ("--max-queue-wait", "max_queue_wait", "TFFEXEC_MAX_QUEUE_WAIT",
     "Stop with exit 6 when a call of a graph that dequeues from a TensorFlow queue runs longer "
     "than N seconds (a dequeue from an empty queue would wait forever); 0: no bound."),
)

_SIZE = re.compile(r"\s*(\d+)\s*([kmgt]?)(i?b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class ByteSize(click.ParamType):
    """A byte count: `1048576`, `512K`, `64M`, `1G`, `2GiB` (K/M/G/T are powers of 1024)."""

    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        match = _SIZE.fullmatch(str(value))
        if not match:
            self.fail(f"{value!r} is not a size (examples: 1048576, 512K, 64M, 1G)", param, ctx)
        return int(match.group(1)) * _UNITS[match.group(2).lower()]


def _defaults() -> dict[str, int]:
    from tffexec import policy as policy_lib  # noqa: PLC0415

    return {
        "max_computation_bytes": policy_lib.DEFAULT_MAX_COMPUTATION_BYTES,
        "max_value_bytes": policy_lib.DEFAULT_MAX_VALUE_BYTES,
        "max_clients": policy_lib.DEFAULT_MAX_CLIENTS,
        "max_sequence_elements": policy_lib.DEFAULT_MAX_SEQUENCE_ELEMENTS,
        "max_queue_wait": policy_lib.DEFAULT_MAX_QUEUE_WAIT,
        "max_sequence_seconds": policy_lib.DEFAULT_MAX_SEQUENCE_SECONDS,
    }


def _human(n: int) -> str:
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def options(command: Callable) -> Callable:
    """Adds --allow-op, --trust and the --max-* limits."""
    defaults = _defaults()  # tffexec.policy is light: no federated-language, no TF
    decorators = [
        click.option("--allow-op", "allow_op", multiple=True, metavar="NAME",
                     allow_from_autoenv=False,
                     help="Allow this TensorFlow op on top of the built-in allowlist of pure "
                          "computation ops (repeatable). Never read from the environment."),
        click.option("--trust", is_flag=True, allow_from_autoenv=False,
                     help="Run every TensorFlow op in the computation, file and network ops "
                          "included (limits still apply). Never read from the environment."),
    ]
    for flag, name, envvar, text in LIMITS:
        is_size = name.endswith("_bytes")
        default = defaults[name]
        shown = _human(default) if is_size else f"{default:,}"
        decorators.append(click.option(
            flag, name, type=ByteSize() if is_size else click.IntRange(min=0), default=default,
            envvar=envvar, show_envvar=True, metavar="SIZE" if is_size else "N",
            help=f"{text} [default: {shown}]"))
    return functools.reduce(lambda f, d: d(f), reversed(decorators), command)


POLICY_PARAMS = ("allow_op", "trust") + tuple(name for _, name, _, _ in LIMITS)


def pop_policy_params(params: dict[str, Any]) -> dict[str, Any]:
    return {name: params.pop(name) for name in POLICY_PARAMS if name in params}


def build_policy(policy_params: dict[str, Any]):
    """The `Policy` the parsed flags describe (missing limits take their defaults)."""
    from tffexec import policy as policy_lib  # noqa: PLC0415

    limits = _defaults()
    limits.update({name: policy_params[name] for name in limits
                   if policy_params.get(name) is not None})
    return policy_lib.Policy(trust=bool(policy_params.get("trust")),
                             allowed_ops=frozenset(policy_params.get("allow_op") or ()),
                             **limits)


def policy_from(policy_params: dict[str, Any]):
    """The command's `Policy`: the command hands it to its loaders and its `StackConfig`
    (there is no process-wide current policy to set)."""
    return build_policy(policy_params)
