"""Helpers shared by the commands: reading inputs, output consoles, shared click types."""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Callable

import click

from tffexec import errors
from tffexec.formats import VALUE_FORMATS

STDIN_NAME = "<stdin>"

#: `ctx.meta` key of the command line as given (after `tffexec`), set by the command group.
ARGV_KEY = "tffexec.argv"


def command_line() -> str | None:
    """The command as the user typed it (`tffexec iterate ...`), quoted for a shell; None when
    not run through the `tffexec` group."""
    import shlex  # noqa: PLC0415

    ctx = click.get_current_context(silent=True)
    argv = ctx.meta.get(ARGV_KEY) if ctx is not None else None
    return None if argv is None else shlex.join(["tffexec", *argv])

#: COMP / ARG arguments: an existing file, or `-` for standard input.
INPUT_PATH = click.Path(exists=True, dir_okay=False, allow_dash=True)

#: What people read (`text`) and what every command accepts for it.
TEXT_FORMAT_ALIASES = {"pretty": "text", "table": "text"}


class FormatChoice(click.Choice):
    """`--format` values, named the same in every command: `text` for people (`pretty` and
    `table`, the names some commands used before, are kept as aliases), `json`, and the value
    formats; matched case-insensitively, so `--format JSON` works too."""

    def __init__(self, *choices: str):
        super().__init__(choices, case_sensitive=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and "text" in self.choices:
            value = TEXT_FORMAT_ALIASES.get(value.lower(), value)
        return super().convert(value, param, ctx)


#: Value-file formats (`--arg-format`, `--from`, `--to`, ...), case-insensitive.
VALUE_FORMAT = click.Choice(VALUE_FORMATS, case_sensitive=False)


@dataclasses.dataclass(frozen=True)
class Input:
    """The bytes of a COMP or ARG argument and the name to use for it in messages."""

    name: str
    data: bytes
    path: str | None  # None for standard input


def display_name(source: str) -> str:
    return STDIN_NAME if source == "-" else source


def read_input(source: str, *, error_class: type[errors.TffexecError],
               limit: int | None = None) -> Input:
    """Reads a file argument (or standard input for `-`) as bytes, never more than `limit + 1`
    of them (default: the default policy's limit for a computation or a value, by
    `error_class`), so `/dev/zero` or gigabytes on a pipe are refused with flat memory.

    Raises:
      error_class: the file cannot be read (the exit code says which input failed).
      tffexec.errors.PolicyError: the input is larger than the limit (exit 5).
    """
    from tffexec.formats import limits  # noqa: PLC0415 - numpy; keeps --help fast

    name = display_name(source)
    if limit is None:
        limit = _default_limit(error_class)
    what, flag = limits.input_kind(error_class)
    if source == "-":
        _say_waiting_on_a_terminal()
        try:
            data = limits.read_bounded(sys.stdin.buffer, limit, what=what, flag=flag, file=name)
        except OSError as e:
            raise error_class(f"cannot read: {e.strerror or e}", file=name) from None
    else:
        data = limits.read_file_bounded(source, limit, error=error_class, what=what, flag=flag,
                                        file=name)
    return Input(name=name, data=data, path=None if source == "-" else source)


def _default_limit(error_class: type[errors.TffexecError]) -> int:
    """The default policy's byte limit for a computation (`ComputationError`) or a value; a
    command with policy flags passes its own `limit`."""
    from tffexec import policy as policy_lib  # noqa: PLC0415

    policy = policy_lib.DEFAULT
    return (policy.max_computation_bytes if error_class is errors.ComputationError
            else policy.max_value_bytes)


def _stdout_console_class():
    from rich.console import Console  # noqa: PLC0415 - rich costs ~50 ms; only when printing

    class StdoutConsole(Console):
        """Rich's console, except that a reader who left (`| head -1`) is not an error.

        Rich's own handling of a closed pipe exits with status 1, which shells and CI read as a
        failure; raising BrokenPipeError lets the command group end quietly with 141, the status
        of a process stopped by SIGPIPE.
        """

        def on_broken_pipe(self) -> None:
            raise BrokenPipeError

    return StdoutConsole


def _say_waiting_on_a_terminal() -> None:
    """`tffexec run -` typed at a prompt otherwise sits silent, looking hung."""
    try:
        interactive = sys.stdin.isatty()
    except (AttributeError, ValueError):
        return
    if interactive:
        note("tffexec: waiting for input on standard input (a terminal): paste or type it and "
             "end with Ctrl-D, or pass a file name instead of '-'")


def stdout_console():
    """A Rich console for results on standard output.

    Off a terminal it never wraps lines at 80 columns (results are often piped into files or
    other tools); `COLUMNS` still wins when set.
    """
    console = _stdout_console_class()(highlight=False, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 1_000
    return console


def check_clients_used(uses_clients: bool, clients: int | None, *, name: str, strict: bool,
                       quiet: bool) -> None:
    """`--clients N` for a computation that places nothing at CLIENTS changes nothing; say so
    (a note on standard error, or a usage error under --strict) rather than ignore it silently,
    since it usually means the wrong file or a misunderstanding of the computation.

    `uses_clients` comes from the computation's analysis (`Runner.check`), made once per run.
    """
    if clients is None or uses_clients:
        return
    message = f"--clients {clients} has no effect: {name} places no values at CLIENTS"
    if strict:
        raise errors.UsageError(f"{message} (--strict)")
    if not quiet:
        click.echo(f"note: {message}", err=True)


STRICT_HELP = ("Make notes about flags that change nothing (--clients for a computation without "
               "CLIENTS values) errors (exit 2).")


def report_each(items: list[str], report: Callable[[str], None]) -> None:
    """Runs `report(item)` for every file of a several-file command (`inspect a.pb b.pb`).

    One file behaves as before (its error ends the command). With several, a file's error is
    printed as its one line and the others still get their report; the exit status is then the
    worst (highest) error class met, so a CI job sees any failure.
    """
    if len(items) == 1:
        report(items[0])
        return
    worst = 0
    for item in items:
        try:
            report(item)
        except errors.TffexecError as e:
            click.echo(f"Error: {' '.join(e.one_line().split())}", err=True)
            worst = max(worst, e.exit_code)
    if worst:
        raise click.exceptions.Exit(worst)


def check_single_stdin(*sources: str | None) -> None:
    """Only one input can come from standard input."""
    if sum(1 for s in sources if s == "-") > 1:
        raise click.UsageError("only one input may be '-' (standard input)")


# ---------------------------------------------------------------------------- -q / -v / --debug

def _remember(key: str, *, count: bool = False):
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if count:
            if value:
                ctx.meta[key] = int(ctx.meta.get(key, 0)) + int(value)
        elif value:
            ctx.meta[key] = True

    return callback


def env_option(*decls: str, **attrs: Any) -> Callable[[Callable], Callable]:
    """A click option that TFFEXEC_<NAME> also sets (shown in --help), where NAME is the long flag
    in capitals (`--max-fanout` -> TFFEXEC_MAX_FANOUT): the one rule for tffexec's variables."""
    flag = next(d for d in decls if d.startswith("--"))
    return click.option(*decls, envvar="TFFEXEC_" + flag[2:].upper().replace("-", "_"),
                        show_envvar=True, **attrs)


def timeout_option(consequence: str = "") -> Callable[[Callable], Callable]:
    """--timeout SECONDS (TFFEXEC_TIMEOUT): exit 124 when reached; `consequence` says what else
    holds for this command (", even inside a TensorFlow kernel")."""
    return env_option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                      metavar="SECONDS",
                      help=f"Stop after this many seconds (exit 124){consequence}.")


def verbosity_options(*, envvars: bool) -> Callable[[Callable], Callable]:
    """Adds -q/--quiet, -v/--verbose and --debug.

    They are accepted both before the command (`tffexec -v run ...`, where `envvars` is True and
    TFFEXEC_QUIET/TFFEXEC_VERBOSE/TFFEXEC_DEBUG apply) and after it (`tffexec run ... -v`); either
    place sets the same switch in `ctx.meta`, which click shares between the group and the command.
    """
    from tffexec.cli import progress  # noqa: PLC0415 - light module

    keys = progress._Verbosity  # noqa: SLF001

    def env(name: str) -> dict[str, Any]:
        if envvars:
            return {"envvar": name, "show_envvar": True}
        return {"allow_from_autoenv": False}

    decorators = [
        click.option("-q", "--quiet", is_flag=True, expose_value=False,
                     callback=_remember(keys.QUIET), **env("TFFEXEC_QUIET"),
                     help="No progress display and no notes on standard error (errors still "
                          "print)."),
        click.option("-v", "--verbose", count=True, expose_value=False,
                     callback=_remember(keys.VERBOSE, count=True), **env("TFFEXEC_VERBOSE"),
                     help="Log stages and executor activity to standard error (-vv: every "
                          "progress step)."),
        click.option("--debug", is_flag=True, expose_value=False,
                     callback=_remember(keys.DEBUG), **env("TFFEXEC_DEBUG"),
                     help="Show tracebacks for errors."),
    ]

    def apply(command: Callable) -> Callable:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


def note(message: str) -> None:
    """A one-line note for people on standard error, unless --quiet."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.meta.get("tffexec.quiet"):
        return
    click.echo(message, err=True)


# ---------------------------------------------------------------------------- outputs

def check_output_path(path: str | None, option: str) -> None:
    """A file option naming a folder that does not exist, or something that cannot be written (a
    directory, a socket, a block device), is a usage error (exit 2), found before any work is done
    rather than after a long run."""
    if path is None or path == "-":
        return
    import pathlib  # noqa: PLC0415

    from tffexec.formats import atomic  # noqa: PLC0415

    parent = pathlib.Path(path).parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise errors.UsageError(f"{option} {path}: the directory {parent} {what}; create it first")
    reason = atomic.refusal(path)
    if reason is not None:
        raise errors.UsageError(f"{option} {path}: {reason}")


def write_result(payload: bytes, output: str | None) -> None:
    """Writes encoded result bytes to FILE (atomically for a regular file, through a terminal,
    device or pipe), or to standard output for None / `-`."""
    if output is None or output == "-":
        stream = sys.stdout.buffer
        stream.write(payload)
        stream.flush()
        return
    from tffexec.formats import atomic  # noqa: PLC0415

    atomic.write(output, payload)


def refuse_binary_to_terminal(fmt: str, output: str | None) -> None:
    """pb/npz on a terminal would only garble it (the gzip/httpie rule)."""
    if fmt in ("pb", "npz") and output in (None, "-") and sys.stdout.isatty():
        raise click.UsageError(f"refusing to write binary {fmt} to a terminal; use --output FILE "
                               "or a pipe")
