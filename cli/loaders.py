"""How the commands load computations and argument values.

The work is done by `tffexec.formats.loading`; this module adapts the CLI's inputs (paths, `-`)
to it. The CLI reads the bytes itself so that it knows their size and can name `-` `<stdin>`.

Limits: a file larger than the command's policy allows (`policy=`, built from its flags; the
default policy for commands without them) is refused by its size before it is read, a stream
after at most limit + 1 bytes (`common.read_input`). The ops of a computation's graphs and of an
argument's dataset graphs are not checked here but by `tffexec.preflight`, which `run` (through
`Runner.prepare`) and `validate` share.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from tffexec import errors
from tffexec.cli import common

if TYPE_CHECKING:  # importing federated-language costs ~0.3 s; `--help` must not pay it
    from federated_language.proto import computation_pb2

    from tffexec.policy import Policy


def load_computation(source: str, *, policy: Policy | None = None
                     ) -> tuple[computation_pb2.Computation, common.Input]:
    """Loads COMP (a path or `-`); raises `ComputationError` (exit 3) when it is unusable.

    Only the size limit applies here; what the computation holds is checked by
    `tffexec.preflight` (`Runner.prepare` for `run`, `validate`), each graph parsed once.
    """
    from tffexec import policy as policy_lib
    from tffexec.formats import loading

    policy = policy or policy_lib.DEFAULT
    comp_input = common.read_input(source, error_class=errors.ComputationError,
                                   limit=policy.max_computation_bytes)
    computation = loading.load_computation(comp_input.data, name=comp_input.name, policy=policy)
    return computation, comp_input


def load_argument(source: str, parameter_type: computation_pb2.Type, *, fmt: str | None,
                  policy: Policy | None = None) -> int | None:
    """Loads ARG as a value of `parameter_type`; returns the client count it implies, if any.

    Raises:
      tffexec.errors.ArgumentError: ARG is unreadable or not a value of the parameter type (exit 4).
      tffexec.errors.PolicyError: ARG is larger than `policy` allows (exit 5).
    """
    return load_argument_value(source, parameter_type, fmt=fmt, policy=policy)[2]


def load_argument_value(source: str, parameter_type: computation_pb2.Type, *, fmt: str | None,
                        policy: Policy | None = None):
    """(value, its federated-language type, implied client count or None) of ARG."""
    from tffexec import policy as policy_lib
    from tffexec.formats import loading
    from tffexec.formats import normalize
    from tffexec.formats import types

    policy = policy or policy_lib.DEFAULT
    type_hint = types.type_from_proto(parameter_type, errors.ComputationError)
    arg_input = common.read_input(source, error_class=errors.ArgumentError,
                                  limit=policy.max_value_bytes)
    value = loading.load_value(arg_input.data, type_hint, fmt=fmt, name=arg_input.name,
                               policy=policy)
    try:
        return value, type_hint, normalize.infer_clients(value, type_hint)
    except errors.ArgumentError as e:
        raise e.with_file(arg_input.name) from None


def guarded(value, type_spec, *, path: str):
    """`value` with the default policy and the op checker bound to its sequences: commands that
    only read or re-encode values (`convert`, `compare`) check a dataset graph's ops when, and
    only if, they turn it into a dataset to read its elements."""
    from tffexec import policy as policy_lib
    from tffexec.checks import op_check

    op_check.guard_value(value, type_spec, policy_lib.DEFAULT, path=path)
    return value


def type_of_computation(type_of: str, use_result: bool):
    """The type a value file is read with under `--type-of COMP` (its parameter type, or with
    `--result` its result type): for formats that do not say their type (npz, plain JSON)."""
    from tffexec import preflight  # noqa: PLC0415 - keeps --help free of the pre-flight imports

    computation, comp_input = load_computation(type_of)
    sig = preflight.signature(computation, file=comp_input.name)
    type_hint = sig.result_type if use_result else sig.parameter_type
    if type_hint is None:
        raise errors.UsageError(f"{comp_input.name} takes no argument; use --result for its "
                                "result type")
    return type_hint
