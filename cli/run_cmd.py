"""`tffexec run COMP [ARG]`: run a computation and print or save its result."""
from __future__ import annotations

import sys

import click

from tffexec import errors
from tffexec.cli import common
from tffexec.cli import loaders
from tffexec.cli import policy_flags
from tffexec.cli import stack_flags

FORMATS = ("pretty", "json", "pb", "npz")
VALUE_FORMATS = ("pb", "json", "npz")


@click.command("run")
@click.argument("comp", type=common.INPUT_PATH)
@click.argument("arg", type=common.INPUT_PATH, required=False)
@click.option("--clients", type=click.IntRange(min=0), default=None,
              help="Number of clients when the argument does not say; checked against it "
                   "when it does.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Save the result to FILE (format from the extension .pb/.json/.npz, or "
                   "--format); '-' writes to standard output. Never leaves a partial file.")
@click.option("--format", "output_format", type=click.Choice(FORMATS), default=None,
              help="Result format. Default: pretty on a terminal, json otherwise; with "
                   "--output, taken from the file's extension.")
@click.option("--arg-format", type=click.Choice(VALUE_FORMATS), default=None,
              help="Format of ARG (default: by extension, else sniffed from the content).")
@click.option("--seed", type=int, default=None,
              help="Make random TensorFlow ops reproducible (per-op seeds derived from S).")
@click.option("--full", is_flag=True, help="Pretty output: print large values in full.")
@stack_flags.options
@policy_flags.options
def run(comp: str, arg: str | None, clients: int | None, output: str | None,
        output_format: str | None, arg_format: str | None, seed: int | None, full: bool,
        **flags) -> None:
    """Run the computation COMP on the argument ARG and print or save the result.

    \b
    Examples:
      tffexec run examples/mean_of_clients/comp.pb examples/mean_of_clients/arg.pb
      tffexec run comp.pb args.json --clients 10 --output result.npz
      cat comp.pb | tffexec run - args.json --format json | jq .
    """
    common.check_single_stdin(comp, arg)
    stack_params = stack_flags.pop_stack_params(flags)
    policy = policy_flags.policy_from(policy_flags.pop_policy_params(flags))
    config = stack_flags.config_from(stack_params, clients=clients, seed=seed, policy=policy)
    import federated_language  # noqa: PLC0415

    from tffexec import runner as runner_lib  # noqa: PLC0415
    from tffexec.formats import loading  # noqa: PLC0415

    computation, comp_input = loaders.load_computation(comp)
    try:
        function_type = federated_language.Type.from_proto(computation.type)
    except Exception as e:  # noqa: BLE001 - federated-language raises several kinds
        raise errors.ComputationError(f"unreadable type signature: {e}", file=comp_input.name)
    parameter_type = getattr(function_type, "parameter", None)
    result_type = getattr(function_type, "result", function_type)

    value = None
    if arg is not None:
        if parameter_type is None:
            raise errors.ArgumentError("the computation takes no argument, but ARG was given",
                                       file=common.display_name(arg))
        arg_input = common.read_input(arg, error_class=errors.ArgumentError)
        value = loading.load_value(arg_input.data, parameter_type, fmt=arg_format,
                                   name=arg_input.name)
    elif parameter_type is not None:
        raise errors.ArgumentError(
            f"the computation needs an argument of type {parameter_type}: pass ARG",
            file=comp_input.name)

    with runner_lib.Runner(config) as runner:
        try:
            result = runner.run(computation, value, clients=clients)
        except errors.ComputationError as e:
            raise e.with_file(comp_input.name) from None

    _emit(result, result_type, output=output, output_format=output_format, full=full)


def _emit(result, result_type, *, output: str | None, output_format: str | None,
          full: bool) -> None:
    from tffexec.formats import loading  # noqa: PLC0415

    if output is not None and output != "-":
        fmt = output_format if output_format in VALUE_FORMATS else None
        if output_format == "pretty":
            raise click.UsageError("--format pretty cannot be saved to a file; use pb, json or npz")
        loading.save_value(result, result_type, output, fmt=fmt)
        return
    fmt = output_format or ("pretty" if sys.stdout.isatty() else "json")
    if fmt == "pretty":
        from tffexec.cli import value_render  # noqa: PLC0415

        common.stdout_console().print(value_render.render(result, result_type, full=full))
        return
    if fmt in ("pb", "npz") and sys.stdout.isatty():
        raise click.UsageError(f"refusing to write binary {fmt} to a terminal; use --output FILE "
                               "or a pipe")
    payload = loading.encode_value(result, result_type, fmt)
    stream = sys.stdout.buffer
    stream.write(payload)
    stream.flush()
