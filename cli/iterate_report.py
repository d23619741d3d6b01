"""What `tffexec iterate` shows of a run: the metrics file, the summary table and the plot.

Why here and not in `tffexec.iterate`: the library runs rounds and returns numbers (a
`RoundResult` per round); how they are written down for a person (a JSON-lines file flushed per
round, a Rich table of a dozen rounds, a matplotlib figure) is the command's choice, and keeps
Rich and matplotlib out of the library.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pathlib
from typing import Any, Iterable, Optional, Sequence

import click

from tffexec import errors
from tffexec import iterate
from tffexec.cli import common
from tffexec.formats import atomic

#: Metric columns in the final table (the rest are in --metrics and --format json).
MAX_TABLE_METRICS = 6


@dataclasses.dataclass
class Outcome:
    """What a run hands back to the report: the process, the last state and every record."""

    process: Any
    state: Any
    records: list[dict[str, Any]]  # every round's record (a resumed run's earlier ones too)
    start_round: int
    seed: int
    clients: int
    clients_per_round: Optional[int]  # the one used (a resumed run keeps the checkpoint's)
    peak_rss_mb: float


class MetricsLog:
    """The `--metrics` JSON-lines file: one record per round, flushed as each round ends.

    A new run starts the file afresh; a resumed run keeps the records up to its checkpoint
    (dropping later ones, which the resumed run redoes) and appends from there.
    """

    def __init__(self, path: str | os.PathLike, *, resume_after: Optional[int] = None):
        self.path = pathlib.Path(path)
        kept: list[str] = []
        through = atomic.writes_through(self.path)  # a FIFO or terminal: only appended to
        if resume_after is not None and not through and self.path.exists():
            text = self.path.read_text(encoding="utf-8", errors="replace")
            kept = [line for line, record in _records(text) if record["round"] <= resume_after]
        if not through:
            atomic.write(self.path, "".join(line + "\n" for line in kept).encode("utf-8"))
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOCTTY, 0o666)
            self._file = os.fdopen(fd, "a", encoding="utf-8")  # kept open: one line per round
        except OSError as e:
            raise errors.ArgumentError(f"cannot write: {e.strerror or e}",
                                       file=str(path)) from None

    def write(self, result: iterate.RoundResult) -> None:
        self._file.write(json.dumps(result.record(), allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete records of a `--metrics` file (a resumed run's history included); none
    from a FIFO or terminal (reading one would wait for a writer: this process)."""
    if atomic.writes_through(path):
        return []
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [record for _, record in _records(text)]


def _records(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(line, record) of each complete record; a line cut by a hard exit is skipped."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("round"), int):
            records.append((line, record))
    return records


def summary_rows(results: Iterable[dict[str, Any]], max_rows: int = 12) -> list[dict[str, Any]]:
    """At most `max_rows` rounds, evenly spread, always the first and the last."""
    results = list(results)
    if len(results) <= max_rows:
        return results
    picks = sorted({round(i * (len(results) - 1) / (max_rows - 1)) for i in range(max_rows)})
    return [results[i] for i in picks]


PLOT_FORMATS = (".png", ".svg", ".pdf")
#: More numeric metrics than this are not all drawn (the first ones in the record are).
MAX_PLOTTED_METRICS = 9


def require_matplotlib() -> None:
    """Checked before any round runs, so a missing extra fails in a second, not after training.

    Raises:
      tffexec.errors.EngineUnavailable: matplotlib is not installed (exit 7, the code for a
        missing extra).
    """
    try:
        import matplotlib  # noqa: F401, PLC0415
    except ImportError:
        raise errors.EngineUnavailable(
            "--plot needs matplotlib, which is not installed: pip install 'tffexec[plot]'"
        ) from None


def plot_records(records: Sequence[dict[str, Any]], dest: str | os.PathLike) -> None:
    """Draws each numeric metric per round (one panel each) into a PNG/SVG/PDF, atomically."""
    require_matplotlib()
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    from matplotlib import pyplot  # noqa: PLC0415
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    dest = pathlib.Path(dest)
    series: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for key, value in iterate.scalar_metrics(record.get("metrics", {})).items():
            series.setdefault(key, []).append((record["round"], value))
    if not series:  # a process without metrics: plot the time per round instead
        series["seconds per round"] = [(r["round"], float(r["seconds"])) for r in records]
    names = list(series)[:MAX_PLOTTED_METRICS]
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = pyplot.subplots(rows, columns, figsize=(4.5 * columns, 3.2 * rows),
                                   squeeze=False)
    try:
        for ax, name in zip(axes.flat, names):
            xs, ys = zip(*series[name])
            ax.plot(xs, ys, marker="." if len(xs) <= 50 else None, linewidth=1.2)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("round")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
            ax.grid(True, alpha=0.3)
        for ax in list(axes.flat)[len(names):]:
            ax.set_visible(False)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format=dest.suffix.lower().lstrip(".") or "png", dpi=100)
    finally:
        pyplot.close(figure)
    atomic.write(dest, buffer.getvalue())


def _short_names(keys: list[str]) -> dict[str, str]:
    """`client_work/train/loss` -> `loss` where the last part is unique, else the full path."""
    last = [k.rsplit("/", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def short_metrics(metrics: dict[str, float], limit: int) -> str:
    """The first `limit` metrics (losses first, then accuracies) as `name value` pairs."""
    names = _short_names(list(metrics))
    preferred = sorted(metrics, key=lambda k: (0 if "loss" in k else 1 if "acc" in k else 2))
    return "  ".join(f"{names[k]} {metrics[k]:.4g}" for k in preferred[:limit])


def print_summary(outcome: Outcome, *, rounds: int, fmt: str) -> None:
    """The summary on standard output: a table of (at most 12) rounds and a line, or JSON."""
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
        click.echo(json.dumps(summary, allow_nan=False))
        return
    console = common.stdout_console()
    if not records:
        console.print(f"no rounds run (the state was already at round {outcome.start_round})")
        return
    from rich.table import Table  # noqa: PLC0415

    keys: list[str] = []
    for r in records:
        for k in iterate.scalar_metrics(r.get("metrics", {})):
            if k not in keys:
                keys.append(k)
    shown = keys[:MAX_TABLE_METRICS]
    names = _short_names(shown)
    table = Table(title=None, box=None, pad_edge=False, header_style="bold")
    for column in ("round", "clients", "seconds", "RSS MiB", *(names[k] for k in shown)):
        table.add_column(column, justify="right")
    for r in summary_rows(records):
        metrics = iterate.scalar_metrics(r.get("metrics", {}))
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
