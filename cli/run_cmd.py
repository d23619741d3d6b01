"""`tffexec run COMP [ARG]`: run a computation and print or save its result.

The command is a thin shell around `tffexec.Runner` (`prepare`, then `call`), its stages announced
through `tffexec.stages`: the loading, checking and running happen on
a worker thread under `tffexec.cli.watchdog` (so Ctrl-C and `--timeout` always work), with
progress on standard error; the main thread then writes the result (atomically for files) and,
with `--expect`, compares it with the expected value.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any

import click

from tffexec import errors
from tffexec.formats import VALUE_EXTENSIONS, VALUE_FORMATS
from tffexec.cli import common
from tffexec.cli import loaders
from tffexec.cli import policy_flags
from tffexec.cli import stack_flags

FORMATS = ("text", "json", "pb", "npz")
#: Differences listed by a failed --expect; the rest are counted.
MAX_DIFFERENCES_SHOWN = 10


@dataclasses.dataclass
class _Outcome:
    """What the worker hands back to the main thread."""

    result: Any
    result_type: Any
    payload: bytes | None  # the encoded result for json/pb/npz; None for text or nothing
    fmt: str | None
    differences: list[tuple[str, str]] | None  # None without --expect
    expect_name: str | None


class ArgSpec(click.ParamType):
    """`NAME=FILE` for `--arg` (FILE may be `-`)."""

    name = "NAME=FILE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        from tffexec.formats import arguments  # noqa: PLC0415

        try:
            name, source = arguments.split_spec(str(value))
        except errors.UsageError as e:
            self.fail(e.message, param, ctx)
        return name, source

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem  # noqa: PLC0415

        if "=" in incomplete:
            name, _, prefix = incomplete.partition("=")
            return [CompletionItem(f"{name}={prefix}", type="file")]
        return []


@click.command("run", short_help="Run a computation and print or save its result.")
@click.argument("comp", type=common.INPUT_PATH)
@click.argument("arg", type=common.INPUT_PATH, required=False)
@click.option("--arg", "arg_parts", type=ArgSpec(), multiple=True, allow_from_autoenv=False,
              help="One element of a struct argument from its own file (repeatable): "
                   "--arg state=state.pb --arg data=clients.json. Unnamed elements by position "
                   "(--arg 0=...). Instead of ARG.")
@click.option("--clients", type=click.IntRange(min=0), default=None, envvar="TFFEXEC_CLIENTS",
              show_envvar=True,
              help="Number of clients when the argument does not say; checked against it "
                   "when it does.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              allow_from_autoenv=False,
              help="Save the result to FILE (format from the extension .pb/.json/.npz, or "
                   "--format); '-' writes to standard output. Never leaves a partial file.")
@click.option("--format", "output_format", type=common.FormatChoice(*FORMATS), default=None,
              help="Result format (text, also called pretty; json; pb; npz). Default: text on a "
                   "terminal, json otherwise; with --output, taken from the file's extension.")
@click.option("--plain", is_flag=True, envvar="TFFEXEC_PLAIN", show_envvar=True,
              help="JSON in the plain form that follows the type (what `convert --plain` "
                   "writes): `--plain | jq .loss` instead of the tagged tffexec-value/1 "
                   "envelope.")
@click.option("--arg-format", type=common.VALUE_FORMAT, default=None,
              help="Format of ARG and --arg files (default: by extension, else sniffed from the "
                   "content); needed for npz on standard input.")
@click.option("--seed", type=int, default=None, envvar="TFFEXEC_SEED", show_envvar=True,
              help="Make random TensorFlow ops reproducible (per-op seeds derived from S).")
@click.option("--full", is_flag=True, help="Pretty output: print large values in full.")
@click.option("--expect", "expect", type=common.INPUT_PATH, default=None,
              allow_from_autoenv=False,
              help="Compare the result with this value file (pb, JSON incl. the corpus' "
                   "expected.json, npz): exit 0 on a match, 1 on a mismatch listing the first "
                   "differing paths. The result is then printed only with --format/--output.")
@click.option("--rtol", type=click.FloatRange(min=0), default=1e-5, show_default=True,
              help="--expect: relative tolerance for floating-point leaves.")
@click.option("--atol", type=click.FloatRange(min=0), default=1e-6, show_default=True,
              help="--expect: absolute tolerance for floating-point leaves.")
@click.option("--strict", is_flag=True, help=common.STRICT_HELP)
@common.timeout_option(", even inside a TensorFlow kernel")
@common.verbosity_options(envvars=False)
@stack_flags.options
@policy_flags.options
def run(comp: str, arg: str | None, arg_parts: tuple[tuple[str, str], ...], clients: int | None,
        output: str | None, output_format: str | None, plain: bool, arg_format: str | None,
        seed: int | None,
        full: bool, expect: str | None, rtol: float, atol: float, strict: bool,
        timeout: float | None, **flags) -> None:
    """Run the computation COMP on the argument ARG and print or save the result.

    COMP, ARG, an --arg file or --expect may be '-' (standard input; only one of them).

    \b
    Examples:
      tffexec run examples/mean_of_clients/comp.pb examples/mean_of_clients/arg.pb
      tffexec run comp.pb args.json --clients 10 --output result.npz
      tffexec run comp.pb --arg model=model.pb --arg data=clients.npz
      cat comp.pb | tffexec run - args.json --format json | jq .
      tffexec run comp.pb arg.pb --plain | jq .metrics
      tffexec run comp.pb arg.pb --expect expected.json --rtol 1e-4
    """
    common.check_single_stdin(comp, arg, expect, *(source for _, source in arg_parts))
    if arg is not None and arg_parts:
        raise click.UsageError("give the argument either as ARG or with --arg NAME=FILE, not both")
    stack_params = stack_flags.pop_stack_params(flags)
    # Limits apply while loading; ops (in the graphs and in dataset arguments) are checked once,
    # by `Runner.prepare`.
    policy = policy_flags.policy_from(policy_flags.pop_policy_params(flags))
    config = stack_flags.config_from(stack_params, clients=clients, seed=seed, policy=policy)

    common.check_output_path(output, "--output")
    # TFFEXEC_PLAIN changes how JSON looks; only --plain itself asks for JSON output.
    plain_flag = plain and click.get_current_context().get_parameter_source(
        "plain") is not click.core.ParameterSource.ENVIRONMENT
    fmt = _result_format(output, output_format, expect, plain=plain_flag)
    if fmt == "text" and output not in (None, "-"):
        raise click.UsageError("--format text cannot be saved to a file; use pb, json or npz")
    if plain and fmt != "json":
        if plain_flag:
            raise click.UsageError(f"--plain writes JSON, but the result format is {fmt}")
        plain = False
    if fmt is not None:
        common.refuse_binary_to_terminal(fmt, output)

    from tffexec.cli import progress  # noqa: PLC0415
    from tffexec.cli import watchdog  # noqa: PLC0415

    quiet, verbose = progress.settings(click.get_current_context())

    def work() -> _Outcome:
        return _execute(comp, arg, arg_parts, arg_format=arg_format, config=config,
                        strict=strict, quiet=quiet,
                        clients=clients, fmt=fmt, plain=plain, expect=expect, rtol=rtol,
                        atol=atol)

    with progress.Reporter(progress=progress.show_progress(quiet), verbose=verbose):
        outcome = watchdog.run_guarded(work, timeout=timeout)

    if fmt == "text":
        from tffexec.cli import value_render  # noqa: PLC0415

        common.stdout_console().print(
            value_render.render(outcome.result, outcome.result_type, full=full))
    elif outcome.payload is not None:
        common.write_result(outcome.payload, output)
    if outcome.differences is not None:
        _report_expectation(outcome, rtol=rtol, atol=atol)


def _result_format(output: str | None, output_format: str | None, expect: str | None, *,
                   plain: bool = False) -> str | None:
    """The format the result is written in; None: not written (a bare --expect check)."""
    if output_format is not None:
        return output_format
    if plain and (output is None or output == "-" or output.lower().endswith(".json")):
        return "json"
    if output is not None and output != "-":
        if not output.lower().endswith(VALUE_EXTENSIONS):
            raise click.UsageError(f"cannot tell the result format from {output!r}: use a .pb, "
                                   ".json or .npz name, or --format pb|json|npz")
        from tffexec.formats import loading  # noqa: PLC0415

        return loading.detect_format(b"", output, None)
    if expect is not None and output is None:
        return None
    return "text" if sys.stdout.isatty() else "json"


def _execute(comp: str, arg: str | None, arg_parts, *, arg_format: str | None, config,
             clients: int | None, fmt: str | None, expect: str | None, rtol: float,
             atol: float, plain: bool = False, strict: bool = False,
             quiet: bool = False) -> _Outcome:
    """The worker's part: load, prepare, build the stack, run, encode, compare."""
    from tffexec import runner as runner_lib  # noqa: PLC0415
    from tffexec import stages  # noqa: PLC0415
    from tffexec.formats import loading  # noqa: PLC0415

    with stages.stage(stages.LOAD_COMPUTATION):
        computation, comp_input = loaders.load_computation(comp, policy=config.policy)
    sig = runner_lib.signature(computation, file=comp_input.name)
    with stages.stage(stages.LOAD_ARGUMENT):
        value, arg_files = _load_argument(arg, arg_parts, sig.parameter_type,
                                          arg_format=arg_format, comp_name=comp_input.name,
                                          policy=config.policy)

    with runner_lib.Runner(config) as runner:
        try:
            checked = runner.check(computation)
        except errors.TffexecError as e:
            raise e.with_file(comp_input.name) from None
        common.check_clients_used(checked.uses_clients, clients, name=comp_input.name,
                                  strict=strict, quiet=quiet)
        try:
            prepared = runner.prepare(computation, value, clients=clients)
        except errors.TffexecError as e:
            file = _argument_file(e.path, arg_files)
            raise (e.with_file(file) if file else e) from None
        with stages.stage(stages.BUILD_STACK):
            runner.stack(prepared)
        with stages.stage(stages.CALL):
            try:
                result = runner.call(prepared, columns=True)  # written without members
            except errors.ComputationError as e:
                raise e.with_file(comp_input.name) from None

    payload = None
    if plain:
        from tffexec.formats import plainjson  # noqa: PLC0415

        payload = plainjson.dumps(plainjson.to_plain(result, sig.result_type)).encode("utf-8")
    elif fmt in VALUE_FORMATS:
        payload = loading.encode_value(result, sig.result_type, fmt)
    differences = None
    expect_name = None
    if expect is not None:
        from tffexec.formats import compare  # noqa: PLC0415

        expected_input = common.read_input(expect, error_class=errors.ArgumentError,
                                           limit=config.policy.max_value_bytes)
        expect_name = expected_input.name
        expected = _load_expected(expected_input, sig.result_type, config.policy)
        differences = compare.value_differences(result, expected, sig.result_type, rtol=rtol,
                                                atol=atol, path="result")
    return _Outcome(result, sig.result_type, payload, fmt, differences, expect_name)


def _load_expected(expected_input: common.Input, result_type, policy) -> Any:
    """The --expect value, read with the result type (rules: `tffexec.checking.load_expected`:
    another type is a failed check, exit 1; an unreadable file exit 4)."""
    from tffexec import checking  # noqa: PLC0415

    return checking.load_expected(expected_input.data, result_type, name=expected_input.name,
                                  policy=policy)


def _load_argument(arg: str | None, arg_parts, parameter_type, *, arg_format: str | None,
                   comp_name: str, policy) -> tuple[Any, dict[str, str]]:
    """(the argument, the file of each part of it: `{"arg": ARG}` or `{"arg.<name>": FILE}` for
    `--arg name=FILE`), so that a problem `prepare` finds later names the file it is in."""
    from tffexec.formats import loading  # noqa: PLC0415

    if arg is None and not arg_parts:
        if parameter_type is not None:
            raise errors.ArgumentError(
                f"the computation needs an argument of type {parameter_type}: pass ARG or "
                "--arg NAME=FILE", file=comp_name)
        return None, {}
    if parameter_type is None:
        given = common.display_name(arg) if arg is not None else "--arg"
        raise errors.ArgumentError("the computation takes no argument, but one was given",
                                   file=given)
    if arg_parts:
        from tffexec.formats import arguments  # noqa: PLC0415

        arguments.check_names(parameter_type, [name for name, _ in arg_parts])
        parts = []
        for name, source in arg_parts:
            data = common.read_input(source, error_class=errors.ArgumentError,
                                     limit=policy.max_value_bytes)
            parts.append(arguments.ArgPart(name, data.data, data.name))
        files = {(f"arg[{p.name}]" if p.name.isdigit() else f"arg.{p.name}"): p.label
                 for p in parts}
        return arguments.assemble(parameter_type, parts, fmt=arg_format, policy=policy), files
    arg_input = common.read_input(arg, error_class=errors.ArgumentError,
                                  limit=policy.max_value_bytes)
    value = loading.load_value(arg_input.data, parameter_type, fmt=arg_format,
                               name=arg_input.name, policy=policy)
    return value, {"arg": arg_input.name}


def _argument_file(path: str | None, files: dict[str, str]) -> str | None:
    """The file that holds the place `path` in the argument (`arg.data[3]`), if one does."""
    for prefix, file in files.items():
        if path is not None and (path == prefix or path.startswith((prefix + ".", prefix + "["))):
            return file
    return None


def _report_expectation(outcome: _Outcome, *, rtol: float, atol: float) -> None:
    differences = outcome.differences or []
    if not differences:
        common.note(f"ok: result matches {outcome.expect_name} (rtol {rtol:g}, atol {atol:g})")
        return
    shown = differences[:MAX_DIFFERENCES_SHOWN]
    for path, explanation in shown:
        click.echo(f"{path}: {explanation}  (got vs expected)", err=True)
    more = len(differences) - len(shown)
    suffix = f" ({more} more not shown)" if more > 0 else ""
    raise errors.CheckFailed(
        f"result differs from {outcome.expect_name} at {len(differences)} "
        f"path{'s' if len(differences) != 1 else ''} (rtol {rtol:g}, atol {atol:g}){suffix}")
