"""How the commands load computations and argument values.

The work is done by `tffexec.formats.loading`; this module adapts the CLI's inputs (paths, `-`)
to it. The CLI reads the bytes itself so that it knows their size and can name `-` `<stdin>`.
"""
from __future__ import annotations

from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec.cli import common


def allow_deep_protos() -> None:
    """Lifts protobuf's default nesting limit of 100 messages for parsing (process-wide).

    Each AST level costs two or three message levels (Computation -> Block -> Local ->
    Computation), so the default refuses computations nested more than ~35 lambdas/blocks deep.
    With the upb runtime (protobuf's default), allowing oversize protos raises the limit to
    65535 levels (and the size limit to 2 GiB).
    """
    try:
        from google._upb import _message
    except ImportError:  # the pure-Python or C++ runtime: keep their limits
        return
    _message.SetAllowOversizeProtos(True)


def load_computation(source: str) -> tuple[computation_pb2.Computation, common.Input]:
    """Loads COMP (a path or `-`); raises `ComputationError` (exit 3) when it is unusable."""
    from tffexec.formats import loading

    comp_input = common.read_input(source, error_class=errors.ComputationError)
    allow_deep_protos()
    return loading.load_computation(comp_input.data, name=comp_input.name), comp_input


def load_argument(source: str, parameter_type: computation_pb2.Type, *, fmt: str | None) -> int | None:
    """Loads ARG as a value of `parameter_type`; returns the client count it implies, if any.

    Raises:
      tffexec.errors.ArgumentError: ARG is unreadable or not a value of the parameter type (exit 4).
    """
    from tffexec.formats import loading
    from tffexec.formats import normalize
    from tffexec.formats import types

    type_hint = types.type_from_proto(parameter_type, errors.ComputationError)
    arg_input = common.read_input(source, error_class=errors.ArgumentError)
    allow_deep_protos()
    value = loading.load_value(arg_input.data, type_hint, fmt=fmt, name=arg_input.name)
    try:
        return normalize.infer_clients(value, type_hint)
    except errors.ArgumentError as e:
        raise e.with_file(arg_input.name) from None
