"""How the commands load computations and argument values.

The work is done by `tffexec.formats.loading`; this module adapts the CLI's inputs (paths, `-`)
to it. The CLI reads the bytes itself so that it knows their size and can name `-` `<stdin>`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from tffexec import errors
from tffexec.cli import common

if TYPE_CHECKING:  # importing federated-language costs ~0.3 s; `--help` must not pay it
    from federated_language.proto import computation_pb2


def load_computation(source: str) -> tuple[computation_pb2.Computation, common.Input]:
    """Loads COMP (a path or `-`); raises `ComputationError` (exit 3) when it is unusable."""
    from tffexec.formats import loading

    comp_input = common.read_input(source, error_class=errors.ComputationError)
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
    value = loading.load_value(arg_input.data, type_hint, fmt=fmt, name=arg_input.name)
    try:
        return normalize.infer_clients(value, type_hint)
    except errors.ArgumentError as e:
        raise e.with_file(arg_input.name) from None
