"""Helpers shared by the commands: reading inputs, output consoles, shared click types."""
from __future__ import annotations

import dataclasses
import os
import sys

import click

from tffexec import errors

STDIN_NAME = "<stdin>"

#: COMP / ARG arguments: an existing file, or `-` for standard input.
INPUT_PATH = click.Path(exists=True, dir_okay=False, allow_dash=True)


@dataclasses.dataclass(frozen=True)
class Input:
    """The bytes of a COMP or ARG argument and the name to use for it in messages."""

    name: str
    data: bytes
    path: str | None  # None for standard input


def display_name(source: str) -> str:
    return STDIN_NAME if source == "-" else source


def read_input(source: str, *, error_class: type[errors.TffexecError]) -> Input:
    """Reads a file argument (or standard input for `-`) as bytes.

    Raises:
      error_class: the file cannot be read (the exit code says which input failed).
    """
    name = display_name(source)
    try:
        if source == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(source, "rb") as f:
                data = f.read()
    except OSError as e:
        raise error_class(f"cannot read: {e.strerror or e}", file=name) from None
    return Input(name=name, data=data, path=None if source == "-" else source)


def stdout_console():
    """A Rich console for results on standard output.

    Off a terminal it never wraps lines at 80 columns (results are often piped into files or
    other tools); `COLUMNS` still wins when set.
    """
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 1_000
    return console


def check_single_stdin(*sources: str | None) -> None:
    """Only one input can come from standard input."""
    if sum(1 for s in sources if s == "-") > 1:
        raise click.UsageError("only one input may be '-' (standard input)")
