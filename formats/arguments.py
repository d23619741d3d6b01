"""Assembling a struct argument from one file per top-level element (`--arg name=FILE`).

Why: real arguments come in pieces — the server state from the last round as a `.pb`, the
clients' data as JSON or npz written by another tool. Each piece is read with its own element's
type (so npz and plain JSON pieces work), then put together in the parameter's order.

Elements are named by their struct names; elements of an unnamed (or partly named) struct by their
position (`--arg 0=state.pb --arg 1=data.json`).
"""
from __future__ import annotations

import dataclasses

import federated_language as fl
from federated_language.common_libs import structure

from tffexec import errors
from tffexec import policy as policy_lib
from tffexec.formats import loading
from tffexec.formats import types as tt


@dataclasses.dataclass(frozen=True)
class ArgPart:
    """One `--arg NAME=FILE`: the element's name (or position) and the file's bytes."""

    name: str
    data: bytes
    label: str


def split_spec(text: str) -> tuple[str, str]:
    """`"state=s.pb"` -> `("state", "s.pb")`; raises UsageError for anything else."""
    name, sep, source = text.partition("=")
    name = name.strip()
    if not sep or not name or not source:
        raise errors.UsageError(f"--arg {text!r}: expected NAME=FILE (e.g. --arg state=state.pb)")
    return name, source


def element_keys(parameter_type: fl.Type) -> list[str]:
    """The names `--arg` accepts, in order: element names, or positions for unnamed elements."""
    if not isinstance(parameter_type, fl.StructType):
        raise errors.ArgumentError(
            f"--arg needs a struct parameter, but the computation takes one value of type "
            f"{tt.type_str(parameter_type)}: pass it as ARG")
    return [name or str(i) for i, (name, _) in enumerate(parameter_type.items())]


def check_names(parameter_type: fl.Type, names: list[str]) -> None:
    """Every name is known, none repeats, none is missing — before any file is parsed."""
    keys = element_keys(parameter_type)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise errors.UsageError(f"--arg {name}=... given twice")
        seen.add(name)
    unknown = [n for n in names if n not in keys]
    if unknown:
        raise errors.ArgumentError(
            f"--arg {unknown[0]}: the parameter has no element {unknown[0]!r}; its elements are "
            f"{', '.join(keys)} (type {tt.type_str(parameter_type)})")
    missing = [k for k in keys if k not in seen]
    if missing:
        raise errors.ArgumentError(
            f"missing --arg for element{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} of the parameter {tt.type_str(parameter_type)}")


def assemble(parameter_type: fl.Type, parts: list[ArgPart], fmt: str | None = None, *,
             policy: policy_lib.Policy = policy_lib.DEFAULT) -> structure.Struct:
    """The struct argument built from `parts`, each checked against its element's type.

    Raises:
      UsageError: a name is given twice (exit 2).
      ArgumentError: an unknown or missing name, or a piece that is not a value of its element's
        type (exit 4, naming the piece's file and the path `arg.<name>...`).
    """
    check_names(parameter_type, [p.name for p in parts])
    by_name = {p.name: p for p in parts}
    members = []
    for i, (name, element_type) in enumerate(parameter_type.items()):
        part = by_name[name or str(i)]
        path = f"arg.{name}" if name else f"arg[{i}]"
        value = loading.load_value(part.data, element_type, fmt=fmt, name=part.label, path=path,
                                   policy=policy)
        members.append((name or None, value))
    return structure.Struct(members)
