"""`tffexec benchmark COMP [ARG]`: how long one call takes once everything is warm.

Why a command: `saved_model_cli`/TFLite `benchmark_model` users expect one. Start-up costs (reading
and parsing files, importing TensorFlow, building the stack, the first call importing TensorFlow
graphs) are reported
separately from the steady-state time per call, measured over the region "argument in memory ->
result in memory" (as benchmarks/bench_corpus.py measures TFF and tffexec). `--json` is for CI
trend tracking: the median is `steady.median_s`.
"""
from __future__ import annotations

import json

import click

from tffexec import errors
from tffexec.cli import common
from tffexec.cli import stack_flags

JSON_SCHEMA = "tffexec.benchmark/1"


@click.command("benchmark", short_help="Time a computation: start-up and steady state per call.")
@click.argument("comp", type=common.INPUT_PATH)
@click.argument("arg", type=common.INPUT_PATH, required=False)
@click.option("--runs", type=click.IntRange(min=1), default=10, show_default=True,
              help="Timed calls.")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True,
              help="Untimed calls after the first call, before the timed ones.")
@click.option("--clients", type=click.IntRange(min=0), default=None, envvar="TFFEXEC_CLIENTS",
              show_envvar=True, help="Number of clients when the argument does not say.")
@click.option("--arg-format", type=common.VALUE_FORMAT, default=None,
              help="Format of ARG (default: by extension, else sniffed).")
@click.option("--seed", type=int, default=None, envvar="TFFEXEC_SEED", show_envvar=True,
              help="Make random TensorFlow ops reproducible.")
@click.option("--format", "output_format", type=common.FormatChoice("text", "json"),
              default="text", show_default=True,
              help=f"text: a table for people; json: one JSON document (schema {JSON_SCHEMA}; "
                   "the median is steady.median_s).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@common.timeout_option()
@common.verbosity_options(envvars=False)
@stack_flags.options
def benchmark(comp: str, arg: str | None, runs: int, warmup: int, clients: int | None,
              arg_format: str | None, seed: int | None, output_format: str, as_json: bool,
              timeout: float | None, **flags) -> None:
    """Run COMP on ARG repeatedly and report start-up and per-call times.

    \b
    Examples:
      tffexec benchmark examples/fedavg_round/comp.pb examples/fedavg_round/arg.pb --runs 20
      tffexec benchmark comp.pb arg.pb --stack threaded --threads 4 --json | jq .steady.median_s
    """
    common.check_single_stdin(comp, arg)
    stack_params = stack_flags.pop_stack_params(flags)
    config = stack_flags.config_from(stack_params, clients=clients, seed=seed)

    from tffexec.cli import progress  # noqa: PLC0415
    from tffexec.cli import watchdog  # noqa: PLC0415

    quiet, verbose = progress.settings(click.get_current_context())

    def work():
        from tffexec import benchmark as benchmark_lib  # noqa: PLC0415
        from tffexec import runner as runner_lib  # noqa: PLC0415
        from tffexec.cli import loaders  # noqa: PLC0415
        from tffexec.formats import loading  # noqa: PLC0415

        names = {}

        def load_computation():
            computation, comp_input = loaders.load_computation(comp, policy=config.policy)
            names["comp"] = comp_input.name
            return computation

        def load_argument(sig):
            if arg is None:
                if sig.parameter_type is not None:
                    raise errors.ArgumentError(
                        f"the computation needs an argument of type {sig.parameter_type}: pass "
                        "ARG", file=names["comp"])
                return None
            if sig.parameter_type is None:
                raise errors.ArgumentError("the computation takes no argument, but ARG was given",
                                           file=common.display_name(arg))
            arg_input = common.read_input(arg, error_class=errors.ArgumentError,
                                          limit=config.policy.max_value_bytes)
            return loading.load_value(arg_input.data, sig.parameter_type, fmt=arg_format,
                                      name=arg_input.name, policy=config.policy)

        def on_prepared(prepared):
            common.check_clients_used(prepared.uses_clients, clients, name=names["comp"],
                                      strict=False, quiet=quiet)

        with runner_lib.Runner(config) as runner:
            try:
                report = benchmark_lib.benchmark(runner, load_computation, load_argument,
                                                 clients=clients, runs=runs, warmup=warmup,
                                                 on_prepared=on_prepared)
            except errors.ComputationError as e:
                raise e.with_file(names.get("comp", common.display_name(comp))) from None
        return names["comp"], report

    with progress.Reporter(progress=progress.show_progress(quiet), verbose=verbose):
        comp_name, report = watchdog.run_guarded(work, timeout=timeout)

    from tffexec.factories import stacks  # noqa: PLC0415 - loaded with the executors

    document = {
        "schema": JSON_SCHEMA,
        "file": comp_name,
        "argument": common.display_name(arg) if arg is not None else None,
        "clients": report.clients,
        "stack": {key: value for key, value in stack_params.items()},
        "client_threads": stacks.client_threads(config),
        "load": {"computation_s": report.load_computation_s,
                 "argument_s": report.load_argument_s},
        "import_tensorflow_s": report.import_tensorflow_s,
        "prepare_s": report.prepare_s,
        "stack_build_s": report.stack_build_s,
        "first_call_s": report.first_call_s,
        "warmup": report.warmup,
        "steady": report.steady(),
        "times_s": report.times_s,
        "client_paths": report.client_paths,
    }
    if as_json or output_format == "json":
        click.echo(json.dumps(document, indent=2))
        return
    _print_table(document)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms"


def _print_table(doc: dict) -> None:
    from rich.table import Table  # noqa: PLC0415

    steady = doc["steady"]
    table = Table(title=doc["file"], caption=f"{doc['clients']} clients, stack "
                                              f"{doc['stack'].get('stack') or 'local'}, "
                                              f"{doc['client_threads']} client threads",
                  show_header=True)
    table.add_column("stage")
    table.add_column("time", justify="right")
    table.add_row("load computation", _ms(doc["load"]["computation_s"]))
    table.add_row("load argument", _ms(doc["load"]["argument_s"]))
    if doc["import_tensorflow_s"]:
        table.add_row("import TensorFlow", _ms(doc["import_tensorflow_s"]))
    table.add_row("prepare", _ms(doc["prepare_s"]))
    table.add_row("build stack", _ms(doc["stack_build_s"]))
    table.add_row("first call", _ms(doc["first_call_s"]))
    runs = f"{steady['runs']} runs after {doc['warmup']} warm-up"
    table.add_row(f"steady min ({runs})", _ms(steady["min_s"]))
    table.add_row("steady median", _ms(steady["median_s"]))
    table.add_row("steady p90", _ms(steady["p90_s"]))
    table.add_row("steady max", _ms(steady["max_s"]))
    common.stdout_console().print(table)
