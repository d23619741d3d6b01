"""The `tffexec` command group and the one place where errors become exit codes.

Commands live in their own modules (`inspect_cmd`, `validate_cmd`, ...) and stay thin; the work is
done by library modules under `tffexec.formats` (and, for running, `tffexec.executors`). Keep the
imports here light: `tffexec --help`, `--version`, `inspect` and `validate` must not import
TensorFlow.

Error handling (see `TffexecGroup.invoke`):
  * `tffexec.errors.TffexecError` subclasses -> their `exit_code`, one line `Error: <message>`;
  * click usage errors -> exit 2 (click's own handling);
  * KeyboardInterrupt -> exit 130; SIGTERM (`errors.TerminateSignal`) -> exit 143;
  * anything else -> exit 70, `Error: internal error: ...; please report it ...`;
  * `--debug` / `TFFEXEC_DEBUG=1` also prints the traceback.

Ctrl-C, SIGTERM and `--timeout` during `run`/`benchmark`/`iterate` are handled by
`tffexec.cli.watchdog`: the work runs on a worker thread, and when it is abandoned `main()` leaves
the process with `os._exit` rather than waiting for a TensorFlow kernel to return.
"""
from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import click

from tffexec import errors
from tffexec.cli import benchmark_cmd
from tffexec.cli import check_cmd
from tffexec.cli import common
from tffexec.cli import compare_cmd
from tffexec.cli import convert_cmd
from tffexec.cli import inspect_cmd
from tffexec.cli import iterate_cmd
from tffexec.cli import run_cmd
from tffexec.cli import template_cmd
from tffexec.cli import validate_cmd
from tffexec.cli import versions
from tffexec.cli import watchdog

REPORT_HINT = "please report it to the tffexec maintainers with the output of `tffexec --version`"
DEBUG_ENVVAR = "TFFEXEC_DEBUG"


def _debug_enabled(ctx: click.Context) -> bool:
    if ctx.meta.get("tffexec.debug"):
        return True
    return os.environ.get(DEBUG_ENVVAR, "").strip().lower() in {"1", "true", "yes", "on"}


def _echo_error(message: str) -> None:
    click.echo(f"Error: {' '.join(str(message).split())}", err=True)


def _print_traceback() -> None:
    click.echo(traceback.format_exc().rstrip(), err=True)


class TffexecGroup(click.Group):
    """A click group that maps exceptions raised by its commands to exit codes."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[common.ARGV_KEY] = list(args)  # as typed: for "resume with: tffexec ..." hints
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except errors.TffexecError as e:
            if _debug_enabled(ctx):
                _print_traceback()
            _echo_error(e.one_line())
            raise click.exceptions.Exit(e.exit_code) from None
        except KeyboardInterrupt as e:
            if _debug_enabled(ctx):
                _print_traceback()
            error = errors.interruption(e, "interrupted")
            _echo_error(error.one_line())
            raise click.exceptions.Exit(error.exit_code) from None
        except BrokenPipeError:
            # stdout was closed early (`tffexec inspect x | head`); nothing left to say.
            _silence_stdout()
            raise click.exceptions.Exit(141) from None
        except Exception as e:  # noqa: BLE001 - the catch-all that turns bugs into exit 70
            if _debug_enabled(ctx):
                _print_traceback()
                hint = ""
            else:
                hint = f" (rerun with --debug or {DEBUG_ENVVAR}=1 for the traceback)"
            _echo_error(
                f"internal error: {type(e).__name__}: {e}; {REPORT_HINT}{hint}"
            )
            raise click.exceptions.Exit(errors.InternalError.exit_code) from None


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(versions.version_text())
    ctx.exit(0)


EXIT_CODE_HELP = "\b\nExit codes:\n" + "\n".join(
    f"  {code:>3}  {meaning}" for code, meaning in errors.EXIT_CODES.items()
)


ENVIRONMENT_HELP = """\b
Environment (a flag on the command line wins):
  TFFEXEC_CLIENTS      --clients of run, benchmark
  TFFEXEC_STACK        --stack of run, benchmark, iterate (local, threaded, ray)
  TFFEXEC_THREADS      --threads of run, benchmark, iterate
  TFFEXEC_MAX_FANOUT   --max-fanout;  TFFEXEC_DEVICE  --device;  TFFEXEC_TF_THREADS  --tf-threads
  TFFEXEC_NO_BATCH     --no-batch (one TensorFlow call per client)
  TFFEXEC_ADDRESS, RAY_ADDRESS   --address (join a Ray cluster);  TFFEXEC_WORKERS  --workers
  TFFEXEC_SEED         --seed of run, benchmark
  TFFEXEC_PLAIN        --plain of run (plain JSON results, for jq)
  TFFEXEC_TIMEOUT      --timeout of run, benchmark, iterate, convert, inspect (seconds)
  TFFEXEC_MAX_CLIENTS, TFFEXEC_MAX_VALUE_BYTES, ...  the --max-* limits of run
  TFFEXEC_QUIET, TFFEXEC_VERBOSE, TFFEXEC_DEBUG   -q, -v (a count), --debug
--trust and --allow-op never come from the environment.
Shell completion: eval "$(_TFFEXEC_COMPLETE=bash_source tffexec)" (zsh_source, fish_source)."""


@click.group(
    cls=TffexecGroup,
    epilog=ENVIRONMENT_HELP + "\n\n" + EXIT_CODE_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the versions of tffexec, TensorFlow, federated-language, numpy and protobuf.",
)
@common.verbosity_options(envvars=True)
def cli() -> None:
    """Run serialized TensorFlow Federated computations in-process.

    COMP arguments are serialized `Computation` protos (`-` reads standard input).
    Results go to standard output; errors and diagnostics go to standard error.
    """


cli.add_command(inspect_cmd.inspect)
cli.add_command(validate_cmd.validate)
cli.add_command(run_cmd.run)
cli.add_command(convert_cmd.convert)
cli.add_command(template_cmd.template)
cli.add_command(benchmark_cmd.benchmark)
cli.add_command(iterate_cmd.iterate)
cli.add_command(compare_cmd.compare)
cli.add_command(check_cmd.check)


def main() -> None:
    """Entry point of the `tffexec` console script and of `python -m tffexec`.

    When Ctrl-C or `--timeout` abandoned a worker that may be inside a TensorFlow kernel, the
    process leaves with `os._exit` (after the one-line message): a normal interpreter exit would
    wait for that kernel, and TensorFlow's shutdown with a busy thread can hang or crash.
    """
    watchdog.install_sigterm()
    try:
        cli.main(prog_name="tffexec", auto_envvar_prefix="TFFEXEC")
    except SystemExit as e:
        if watchdog.work_abandoned():
            code = e.code if isinstance(e.code, int) else 1
            watchdog.hard_exit(code)
        _flush_stdout_or_exit_141()
        raise


def _flush_stdout_or_exit_141() -> None:
    """Output still buffered when the reader has gone (`tffexec inspect X | head -1`) ends the
    process as SIGPIPE would (141), not with Python's "Exception ignored ... BrokenPipeError"."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        raise SystemExit(141) from None
    except (OSError, ValueError, AttributeError):
        pass
