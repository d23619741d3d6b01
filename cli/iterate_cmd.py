"""`tffexec iterate`: run a training process (`initialize` + `next`) for many rounds.

A thin shell around `tffexec.iterate` (the round loop, sampling, checkpoints and metrics live
there): the rounds run on a worker thread under `tffexec.cli.watchdog` (Ctrl-C and `--timeout`
work even inside a TensorFlow kernel; checkpoints already written stay), with a round progress bar
on standard error; the main thread then writes the final state, the plot and the summary.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Optional

import click

from tffexec import errors
from tffexec.cli import common
from tffexec.cli import policy_flags
from tffexec.cli import stack_flags

STATE_EXTENSIONS = (".pb", ".binpb", ".bin", ".json", ".npz")
#: Metric columns in the final table (the rest are in --metrics and --format json).
MAX_TABLE_METRICS = 6
DEFAULT_CHECKPOINT_EVERY = 10


@dataclasses.dataclass
class _Outcome:
    """What the worker hands back to the main thread."""

    process: Any
    state: Any
    records: list[dict[str, Any]]  # every round's record (a resumed run's earlier ones too)
    start_round: int
    seed: int
    clients: int
    clients_per_round: Optional[int]  # the one used (a resumed run keeps the checkpoint's)
    peak_rss_mb: float


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
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              envvar="TFFEXEC_TIMEOUT", show_envvar=True, metavar="SECONDS",
              help="Stop after this many seconds (exit 124); checkpoints written so far stay.")
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
    if output is not None and not output.lower().endswith(STATE_EXTENSIONS):
        raise click.UsageError(f"cannot tell the state format from {output!r}: use a .pb, .json "
                               "or .npz name")
    if plot_path is not None:
        from tffexec import iterate as iterate_lib  # noqa: PLC0415

        if not plot_path.lower().endswith(iterate_lib.PLOT_FORMATS):
            raise click.UsageError(f"--plot {plot_path!r}: use a .png, .svg or .pdf name")
        iterate_lib.require_matplotlib()

    from tffexec.cli import progress  # noqa: PLC0415
    from tffexec.cli import watchdog  # noqa: PLC0415

    quiet, verbose = progress.settings(click.get_current_context())
    display = _RoundDisplay(enabled=progress.show_progress(quiet), verbose=verbose, quiet=quiet)

    def work() -> _Outcome:
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

    if output is not None:
        from tffexec import iterate as iterate_lib  # noqa: PLC0415

        iterate_lib.save_state(outcome.state, outcome.process, output)
    if plot_path is not None:
        from tffexec import iterate as iterate_lib  # noqa: PLC0415

        iterate_lib.plot_records(outcome.records, plot_path)
    _print_summary(outcome, rounds=rounds, fmt=summary_format)


def _what_was_kept(stopped: errors.TffexecError, *, state_dir: Optional[str],
                   metrics_path: Optional[str], output: Optional[str], quiet: bool
                   ) -> errors.TffexecError:
    """Ctrl-C or --timeout during rounds: the error says which checkpoint and metrics survive
    and what was not written, and a note gives the command that resumes (the same one: a
    --state-dir holding a checkpoint is resumed from)."""
    from tffexec import iterate as it  # noqa: PLC0415

    checkpoint = None
    if state_dir is not None:
        try:
            checkpoint = it.Checkpoints(state_dir, 1).latest()
        except errors.TffexecError:
            checkpoint = None  # a half-written checkpoint.json is not one to resume from
    kept = []
    if checkpoint is not None:
        kept.append(f"the checkpoint of round {checkpoint.round} ({checkpoint.state_path})")
    records = it.read_records(metrics_path) if metrics_path else []
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
    from tffexec import iterate as iterate_lib  # noqa: PLC0415 - light enough, no TF

    return state_dir is not None and (pathlib.Path(state_dir) / iterate_lib.CHECKPOINT_FILE).exists()


def _execute(*, init, next_, rounds, data, data_format, clients_per_round, seed, state,
             metrics_path, checkpoint_every, state_dir, config, display) -> _Outcome:
    """The worker's part: load, resume or initialise, run the rounds."""
    from tffexec import iterate as it  # noqa: PLC0415
    from tffexec import runner as runner_lib  # noqa: PLC0415

    display.stage("loading computations")
    checkpoints = it.Checkpoints(state_dir, checkpoint_every) if state_dir else None
    with runner_lib.Runner(config) as runner:
        process = it.TrainingProcess(init, next_, runner=runner, init_name=init or "init",
                                     next_name=next_)
        display.stage("loading client data")
        clients = it.load_clients(data, process.signature.client_type, fmt=data_format)
        if clients_per_round is not None and clients_per_round > len(clients):
            raise errors.ArgumentError(
                f"--clients-per-round {clients_per_round} but {data} has only {len(clients)} "
                "clients")
        start_round, start_state = 0, None
        checkpoint = checkpoints.latest() if checkpoints else None
        if checkpoint is not None:
            it.check_resumable(checkpoint, process)
            seed = _agree("--seed", seed, checkpoint.seed)
            clients_per_round = _agree("--clients-per-round", clients_per_round,
                                       checkpoint.clients_per_round, default_is_none=True)
            if checkpoint.round > rounds:
                raise errors.UsageError(f"--rounds {rounds}, but {state_dir} already holds "
                                        f"round {checkpoint.round}")
            start_state = it.load_state(checkpoint.state_path, process)
            start_round = checkpoint.round
            display.note(f"resuming from round {start_round} ({checkpoint.state_path})")
        elif state is not None:
            display.stage("loading state")
            start_state = it.load_state(state, process)
        if seed is None:
            seed = it.new_seed()
        log = it.MetricsLog(metrics_path, resume_after=start_round) if metrics_path else None
        earlier = it.read_records(metrics_path) if metrics_path and start_round else []
        records: list[dict[str, Any]] = list(earlier)
        if start_state is None:
            display.stage("initializing")
            start_state = process.initialize()

        def on_round(result: it.RoundResult) -> None:
            record = result.record()
            records.append(record)
            if log is not None:
                log.write(result)
            display.round_done(result, rounds)

        display.begin_rounds(start_round, rounds)
        try:
            result = it.run_rounds(process, clients, rounds, state=start_state,
                                   start_round=start_round, clients_per_round=clients_per_round,
                                   seed=seed, checkpoints=checkpoints, on_round=on_round,
                                   keep_history=False)
        finally:
            if log is not None:
                log.close()
    return _Outcome(process=process, state=result.state, records=records,
                    start_round=start_round, seed=seed, clients=len(clients),
                    clients_per_round=clients_per_round, peak_rss_mb=it.peak_rss_mb())


def _agree(flag: str, given, saved, *, default_is_none: bool = False):
    """A resumed run keeps the checkpoint's sampling; a different value on the command line is
    a usage error rather than a silently different run."""
    if given is None:
        return saved
    if given != saved:
        shown = "all clients" if saved is None and default_is_none else saved
        raise errors.UsageError(f"{flag} {given} differs from the checkpoint's ({shown}); "
                                "resume with the same sampling or use another --state-dir")
    return given


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

        last = _short_metrics(it.scalar_metrics(result.metrics), 3)
        if self.verbose:
            self._logger.info("round %d/%d: %d clients, %.3f s, %.0f MiB%s", result.round, total,
                              len(result.clients), result.seconds, result.rss_mb,
                              f", {last}" if last else "")
        if self._progress is not None:
            self._progress.update(self._task, completed=result.round, last=last)


def _short_names(keys: list[str]) -> dict[str, str]:
    """`client_work/train/loss` -> `loss` where the last part is unique, else the full path."""
    last = [k.rsplit("/", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def _short_metrics(metrics: dict[str, float], limit: int) -> str:
    names = _short_names(list(metrics))
    preferred = sorted(metrics, key=lambda k: (0 if "loss" in k else 1 if "acc" in k else 2))
    return "  ".join(f"{names[k]} {metrics[k]:.4g}" for k in preferred[:limit])


def _print_summary(outcome: _Outcome, *, rounds: int, fmt: str) -> None:
    from tffexec import iterate as it  # noqa: PLC0415

    records = outcome.records
    this_run = [r for r in records if r["round"] > outcome.start_round]
    seconds = [r["seconds"] for r in this_run]
    summary = {
        "rounds": rounds,
        "resumed_from_round": outcome.start_round or None,
        "clients": outcome.clients,
        "clients_per_round": outcome.clients_per_round or outcome.clients,
        "seed": outcome.seed,
        "seconds_per_round": (sum(seconds) / len(seconds)) if seconds else None,
        "peak_rss_mb": round(outcome.peak_rss_mb, 1),
        "final_metrics": records[-1]["metrics"] if records else {},
        "history": records,
    }
    if fmt == "json":
        import json  # noqa: PLC0415

        click.echo(json.dumps(summary, allow_nan=False))
        return
    console = common.stdout_console()
    if not records:
        console.print(f"no rounds run (the state was already at round {outcome.start_round})")
        return
    from rich.table import Table  # noqa: PLC0415

    keys: list[str] = []
    for r in records:
        for k in it.scalar_metrics(r.get("metrics", {})):
            if k not in keys:
                keys.append(k)
    shown = keys[:MAX_TABLE_METRICS]
    names = _short_names(shown)
    table = Table(title=None, box=None, pad_edge=False, header_style="bold")
    for column in ("round", "clients", "seconds", "RSS MiB", *(names[k] for k in shown)):
        table.add_column(column, justify="right")
    for r in it.summary_rows(records):
        metrics = it.scalar_metrics(r.get("metrics", {}))
        table.add_row(str(r["round"]), str(r["clients"]), f"{r['seconds']:.3f}",
                      f"{r['rss_mb']:.0f}", *(f"{metrics[k]:.6g}" if k in metrics else ""
                                              for k in shown))
    console.print(table)
    extra = f"; {len(keys) - len(shown)} more metrics in --metrics/--json" if len(keys) > len(
        shown) else ""
    per_round = summary["seconds_per_round"]
    timing = f"{per_round:.3f} s per round" if per_round is not None else "no rounds run"
    console.print(f"{len(this_run)} rounds run ({timing}), peak RSS "
                  f"{summary['peak_rss_mb']:.0f} MiB, seed {outcome.seed}{extra}")
