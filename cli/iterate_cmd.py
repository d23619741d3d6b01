"""`tffexec iterate`: run a training process (`initialize` + `next`) for many rounds.

A thin shell around `tffexec.iterate` (the round loop, sampling, checkpoints and resuming live
there; the metrics file, the summary table and the plot in `tffexec.cli.iterate_report`). Its
errors name this command's flags (`FLAG_NAMES`). The rounds run on a worker thread under
`tffexec.cli.watchdog` (Ctrl-C and `--timeout` work even inside a TensorFlow kernel; checkpoints
already written stay), with a round progress bar on standard error; the main thread then writes
the final state, the plot and the summary.
"""
from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Any, Optional

import click

from tffexec import errors
from tffexec.formats import VALUE_EXTENSIONS
from tffexec.cli import common
from tffexec.cli import policy_flags
from tffexec.cli import stack_flags

if TYPE_CHECKING:
    from tffexec.cli import iterate_report

DEFAULT_CHECKPOINT_EVERY = 10
#: What the library's errors call the parameters this command takes as flags.
FLAG_NAMES = {"rounds": "--rounds", "seed": "--seed", "clients_per_round": "--clients-per-round",
              "checkpoints": "--state-dir"}


@click.command("iterate", short_help="Run a training process (init + next) for many rounds.")
@click.option("--init", "init", type=click.Path(exists=True, dir_okay=False), default=None,
              allow_from_autoenv=False,
              help="The initialize computation (no argument; returns the state). Not needed "
                   "with --state or when resuming from --state-dir.")
@click.option("--next", "next_", type=click.Path(exists=True, dir_okay=False), required=True,
              allow_from_autoenv=False,
              help="The next computation: <state, {T}@CLIENTS> -> state or <state, metrics>.")
@click.option("--rounds", type=click.IntRange(min=0), required=True,
              help="Rounds to run in all (a resumed run does the ones left).")
@click.option("--data", "data", type=click.Path(exists=True), required=True,
              allow_from_autoenv=False,
              help="Client data: a directory with one value file per client (pb/JSON/npz, "
                   "read in name order), or one file holding a {T}@CLIENTS value.")
@click.option("--data-format", type=common.VALUE_FORMAT, default=None,
              help="Format of the data files (default: by extension, else sniffed).")
@click.option("-k", "--clients-per-round", type=click.IntRange(min=1), default=None,
              help="Sample K clients per round without replacement (default: all clients).")
@click.option("--seed", type=int, default=None,
              help="Seed of the client sampling (round r uses seed and r, so a resumed run "
                   "samples as the uninterrupted one). Default: random, recorded in checkpoints.")
@click.option("--state", "state", type=click.Path(exists=True, dir_okay=False), default=None,
              allow_from_autoenv=False,
              help="Start from this saved state (pb/JSON/npz) instead of running --init.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              allow_from_autoenv=False,
              help="Save the final state here (.pb/.json/.npz), atomically.")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False), default=None,
              allow_from_autoenv=False,
              help="Write each round's metrics to this JSON-lines file as the round ends "
                   "(started afresh by a new run, continued by a resumed one).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              allow_from_autoenv=False,
              help="Draw the numeric metrics per round into FILE.png (.svg, .pdf); needs "
                   "pip install 'tffexec[plot]' (exit 7 without matplotlib).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=None, metavar="N",
              help=f"Save the state every N rounds and after the last one into --state-dir "
                   f"(default {DEFAULT_CHECKPOINT_EVERY} when --state-dir is given).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              allow_from_autoenv=False,
              help="Checkpoint directory. When it holds a checkpoint, the run resumes from it.")
@click.option("--format", "summary_format", type=common.FormatChoice("text", "json"),
              default=None,
              help="Summary on standard output at the end: text, a table (the default; "
                   "`table` also accepted), or json.")
@click.option("--json", "as_json", is_flag=True, help="Shorthand for --format json.")
@common.timeout_option("; checkpoints written so far stay")
@common.verbosity_options(envvars=False)
@stack_flags.options
@policy_flags.options
def iterate(init: Optional[str], next_: str, rounds: int, data: str, data_format: Optional[str],
            clients_per_round: Optional[int], seed: Optional[int], state: Optional[str],
            output: Optional[str], metrics_path: Optional[str], plot_path: Optional[str],
            checkpoint_every: Optional[int], state_dir: Optional[str],
            summary_format: Optional[str], as_json: bool, timeout: Optional[float],
            **flags) -> None:
    """Run a federated training process for ROUNDS rounds.

    Runs --init once (or starts from --state, or from the last checkpoint in --state-dir), then
    --next once per round on the clients of that round, feeding the state back in memory. The
    summary goes to standard output; progress (round, ETA, last metrics) to standard error on a
    terminal.

    \b
    Examples:
      tffexec iterate --init init.pb --next next.pb --data clients/ --rounds 100 -k 10 --seed 1
      tffexec iterate --init init.pb --next next.pb --data clients/ --rounds 500 \\
          --metrics metrics.jsonl --plot metrics.png --state-dir ckpt --checkpoint-every 25
      tffexec iterate --next next.pb --state state.pb --data all_clients.pb --rounds 3 -o out.pb
    """
    stack_params = stack_flags.pop_stack_params(flags)
    policy = policy_flags.policy_from(policy_flags.pop_policy_params(flags))
    config = stack_flags.config_from(stack_params, policy=policy)
    if as_json:
        if summary_format == "text":
            raise click.UsageError("--json and --format text contradict each other")
        summary_format = "json"
    summary_format = summary_format or "text"
    for path, option in ((output, "--output"), (metrics_path, "--metrics"), (plot_path, "--plot")):
        common.check_output_path(path, option)
    if checkpoint_every is not None and state_dir is None:
        raise click.UsageError("--checkpoint-every needs --state-dir DIR")
    if state_dir is not None and checkpoint_every is None:
        checkpoint_every = DEFAULT_CHECKPOINT_EVERY
    if init is None and state is None and not _has_checkpoint(state_dir):
        raise click.UsageError("give --init (or --state FILE, or a --state-dir holding a "
                               "checkpoint) for the initial state")
    if output is not None and not output.lower().endswith(VALUE_EXTENSIONS):
        raise click.UsageError(f"cannot tell the state format from {output!r}: use a .pb, .json "
                               "or .npz name")
    if plot_path is not None:
        from tffexec.cli import iterate_report  # noqa: PLC0415

        if not plot_path.lower().endswith(iterate_report.PLOT_FORMATS):
            raise click.UsageError(f"--plot {plot_path!r}: use a .png, .svg or .pdf name")
        iterate_report.require_matplotlib()

    from tffexec.cli import progress  # noqa: PLC0415
    from tffexec.cli import watchdog  # noqa: PLC0415

    quiet, verbose = progress.settings(click.get_current_context())
    display = _RoundDisplay(enabled=progress.show_progress(quiet), verbose=verbose, quiet=quiet)

    def work() -> iterate_report.Outcome:
        return _execute(init=init, next_=next_, rounds=rounds, data=data,
                        data_format=data_format, clients_per_round=clients_per_round, seed=seed,
                        state=state, metrics_path=metrics_path, checkpoint_every=checkpoint_every,
                        state_dir=state_dir, config=config, display=display)

    try:
        with progress.Reporter(progress=False, verbose=verbose), display:
            outcome = watchdog.run_guarded(work, timeout=timeout)
    except (errors.Interrupted, errors.Timeout) as stopped:
        raise _what_was_kept(stopped, state_dir=state_dir, metrics_path=metrics_path,
                             output=output, quiet=quiet) from None

    from tffexec import iterate as iterate_lib  # noqa: PLC0415 - loaded by the rounds already
    from tffexec.cli import iterate_report  # noqa: PLC0415

    if output is not None:
        iterate_lib.save_state(outcome.state, outcome.process, output)
    if plot_path is not None:
        iterate_report.plot_records(outcome.records, plot_path)
    iterate_report.print_summary(outcome, rounds=rounds, fmt=summary_format)


def _what_was_kept(stopped: errors.TffexecError, *, state_dir: Optional[str],
                   metrics_path: Optional[str], output: Optional[str], quiet: bool
                   ) -> errors.TffexecError:
    """Ctrl-C or --timeout during rounds: the error says which checkpoint and metrics survive
    and what was not written, and a note gives the command that resumes (the same one: a
    --state-dir holding a checkpoint is resumed from)."""
    from tffexec import checkpoints  # noqa: PLC0415
    from tffexec.cli import iterate_report  # noqa: PLC0415

    checkpoint = None
    if state_dir is not None:
        checkpoints.close(state_dir)  # the abandoned rounds write no checkpoint after this
        try:
            checkpoint = checkpoints.Checkpoints(state_dir, 1).latest()
        except errors.TffexecError:
            checkpoint = None  # a half-written checkpoint.json is not one to resume from
    kept = []
    if checkpoint is not None:
        kept.append(f"the checkpoint of round {checkpoint.round} ({checkpoint.state_path})")
    records = iterate_report.read_records(metrics_path) if metrics_path else []
    if records:
        rounds = [record["round"] for record in records]
        kept.append(f"the metrics of rounds {min(rounds)}-{max(rounds)} ({metrics_path})")
    what = " and ".join(kept) if kept else "nothing"
    if checkpoint is None:
        what += (" (no checkpoint: --state-dir DIR keeps one every --checkpoint-every rounds)"
                 if state_dir is None else f" (no checkpoint in {state_dir} yet)")
    not_written = f"; --output {output} not written" if output else ""
    cause = stopped.message.split(";", 1)[0]
    if checkpoint is not None and not quiet:
        resume = common.command_line()  # the same command resumes from the checkpoint
        if resume:
            click.echo(f"resume with: {resume}", err=True)
    return type(stopped)(f"{cause}; kept {what}{not_written}")


def _has_checkpoint(state_dir: Optional[str]) -> bool:
    from tffexec import checkpoints  # noqa: PLC0415 - light enough, no TF

    if state_dir is None:
        return False
    return (pathlib.Path(state_dir) / checkpoints.CHECKPOINT_FILE).exists()


def _execute(*, init, next_, rounds, data, data_format, clients_per_round, seed, state,
             metrics_path, checkpoint_every, state_dir, config, display
             ) -> iterate_report.Outcome:
    """The worker's part: load, resume or initialise (`tffexec.iterate.resume`), run the rounds
    (`tffexec.iterate.run_rounds`), writing each round's record as it ends."""
    from tffexec import iterate as it  # noqa: PLC0415
    from tffexec import runner as runner_lib  # noqa: PLC0415
    from tffexec.cli import iterate_report  # noqa: PLC0415

    display.stage("loading computations")
    checkpoints = it.Checkpoints(state_dir, checkpoint_every) if state_dir else None
    with runner_lib.Runner(config) as runner:
        process = it.TrainingProcess(init, next_, runner=runner, init_name=init or "init",
                                     next_name=next_)
        display.stage("loading client data")
        clients = it.load_clients(data, process.signature.client_type, fmt=data_format,
                                  policy=config.policy)
        display.stage("loading state")
        start = it.resume(process, clients, rounds=rounds, checkpoints=checkpoints,
                          state=None if state is None else pathlib.Path(state), seed=seed,
                          clients_per_round=clients_per_round, names=FLAG_NAMES)
        if start.checkpoint is not None:
            display.note(f"resuming from round {start.round} ({start.checkpoint.state_path})")
        log = (iterate_report.MetricsLog(metrics_path, resume_after=start.round)
               if metrics_path else None)
        earlier = iterate_report.read_records(metrics_path) if metrics_path and start.round else []
        records: list[dict[str, Any]] = list(earlier)
        state_value = start.state
        if state_value is None:
            display.stage("initializing")
            state_value = process.initialize()

        def on_round(result: it.RoundResult) -> None:
            records.append(result.record())
            if log is not None:
                log.write(result)
            display.round_done(result, rounds)

        display.begin_rounds(start.round, rounds)
        try:
            result = it.run_rounds(process, clients, rounds, state=state_value,
                                   start_round=start.round,
                                   clients_per_round=start.clients_per_round, seed=start.seed,
                                   checkpoints=checkpoints, on_round=on_round, keep_history=False)
        finally:
            if log is not None:
                log.close()
    return iterate_report.Outcome(
        process=process, state=result.state, records=records, start_round=start.round,
        seed=start.seed, clients=len(clients), clients_per_round=start.clients_per_round,
        peak_rss_mb=it.peak_rss_mb())


class _RoundDisplay:
    """The round progress bar (round, ETA, last metrics) on a terminal, and -v round logs.

    Updated from the worker thread; Rich's Progress is thread-safe.
    """

    def __init__(self, *, enabled: bool, verbose: int, quiet: bool):
        self.enabled = enabled
        self.quiet = quiet
        self.verbose = verbose
        self._progress = None
        self._task = None
        import logging  # noqa: PLC0415 - keeps `tffexec --help` light

        self._logger = logging.getLogger("tffexec")

    def __enter__(self) -> "_RoundDisplay":
        if self.enabled:
            from rich.console import Console  # noqa: PLC0415 - only on a terminal
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress,  # noqa: PLC0415
                                       SpinnerColumn, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), TextColumn("{task.fields[last]}"),
                console=Console(stderr=True), transient=True)
            self._progress.start()
            self._task = self._progress.add_task("starting", total=None, last="")
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def note(self, text: str) -> None:
        """A one-line note on standard error unless --quiet (click's context, which `common.note`
        reads, is not visible on the worker thread)."""
        if self.quiet:
            return
        if self._progress is not None:
            self._progress.console.print(text, highlight=False, markup=False)
        else:
            click.echo(text, err=True)

    def stage(self, text: str) -> None:
        if self.verbose:
            self._logger.info("%s", text)
        if self._progress is not None:
            self._progress.update(self._task, description=text)

    def begin_rounds(self, start: int, total: int) -> None:
        if self._progress is not None:
            self._progress.reset(self._task, total=total, completed=start, description="round",
                                 last="")

    def round_done(self, result, total: int) -> None:
        from tffexec import iterate as it  # noqa: PLC0415
        from tffexec.cli import iterate_report  # noqa: PLC0415

        last = iterate_report.short_metrics(it.scalar_metrics(result.metrics), 3)
        if self.verbose:
            self._logger.info("round %d/%d: %d clients, %.3f s, %.0f MiB%s", result.round, total,
                              len(result.clients), result.seconds, result.rss_mb,
                              f", {last}" if last else "")
        if self._progress is not None:
            self._progress.update(self._task, completed=result.round, last=last)
