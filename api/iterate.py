"""Run a federated training process (`initialize` + `next`) for many rounds: `tffexec.iterate`.

Why a library module: `tffexec iterate` is a thin shell around this, and Python users get the
same loop (`run_rounds`) with the same sampling, checkpoints and metrics without the CLI.

The shape TFF's iterative processes have (hand-written FedAvg and `tff.learning` alike):

- `initialize`: a no-argument computation whose result is the server state;
- `next`: `(<state, client_data> -> state)` or `(<state, client_data> -> <state, metrics>)`, where
  `client_data` is `{T}@CLIENTS`. The two parameter elements are told apart by placement (the one
  at CLIENTS is the data), else by position; a named parameter gets a named argument.

Design choices, and why:

- One `tffexec.Runner` for every round, so stacks (one per client count) and imported TensorFlow
  graphs are built once. The state stays in memory between rounds as the Python value the last
  round returned; nothing is re-serialized.
- Client data is loaded once (`load_clients`) and the same value objects are passed every round,
  so each client's dataset is built at most once however often it is sampled.
- Sampling is a pure function of (seed, round): `sample_clients` draws round r's clients from
  `numpy.random.default_rng([seed, r])`. A run resumed from a checkpoint therefore samples exactly
  the clients the uninterrupted run would have.
- Checkpoints (`Checkpoints`) write the state file first and then a small `checkpoint.json` naming
  it, both atomically (temporary file + rename), so an interruption at any moment leaves the last
  complete checkpoint readable.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import re
import secrets
import time
from typing import Any, Callable, Iterable, Optional, Sequence

import federated_language as fl
import numpy as np
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec import runner as runner_lib
from tffexec.factories import config as config_lib
from tffexec.formats import loading

#: Extensions of client value files in a DATA directory.
VALUE_EXTENSIONS = (".pb", ".binpb", ".bin", ".json", ".npz")
CHECKPOINT_FILE = "checkpoint.json"
CHECKPOINT_FORMAT = "tffexec-checkpoint/1"
_STATE_NAME = re.compile(r"state-(\d+)\.pb")


# ------------------------------------------------------------------------------- the process

@dataclasses.dataclass(frozen=True)
class ProcessSignature:
    """How `next` is called and what it returns, read from the types of the two computations."""

    state_type: fl.Type
    client_type: fl.Type  # T of the `{T}@CLIENTS` data element
    state_index: int
    data_index: int
    parameter_names: tuple[Optional[str], Optional[str]]
    returns_metrics: bool
    metrics_type: Optional[fl.Type]
    metrics_name: str  # prefix for a metric that is a single tensor


def _function_type(comp: computation_pb2.Computation, label: str):
    try:
        return fl.Type.from_proto(comp.type)
    except Exception as e:  # noqa: BLE001 - federated-language raises several kinds
        raise errors.ComputationError(f"unreadable type signature: {e}", file=label) from None


def _is_clients_data(t: fl.Type) -> bool:
    return (isinstance(t, fl.FederatedType) and t.placement is fl.CLIENTS
            and not t.all_equal)


def _equivalent(a: fl.Type, b: fl.Type) -> bool:
    try:
        return a.is_assignable_from(b) and b.is_assignable_from(a)
    except Exception:  # noqa: BLE001 - types of different kinds
        return False


def signature_of(init: Optional[computation_pb2.Computation], next_comp: computation_pb2.Computation,
                 *, init_name: str = "init", next_name: str = "next") -> ProcessSignature:
    """Checks that the two computations form a training process and says how to call `next`.

    Raises:
      tffexec.errors.ComputationError: the types do not fit (exit 3), naming the file.
    """
    next_type = _function_type(next_comp, next_name)
    parameter = getattr(next_type, "parameter", None)
    if not isinstance(next_type, fl.FunctionType) or not isinstance(parameter, fl.StructType) \
            or len(parameter) != 2:
        raise errors.ComputationError(
            f"next must take <state, client data>, but its type is {next_type}", file=next_name)
    items = list(parameter.items())
    clients_at = [i for i, (_, t) in enumerate(items) if _is_clients_data(t)]
    if len(clients_at) == 1:
        data_index = clients_at[0]
    elif _is_clients_data(items[1][1]):
        data_index = 1
    else:
        raise errors.ComputationError(
            f"next's parameter {parameter} has no {{T}}@CLIENTS element for the client data",
            file=next_name)
    state_index = 1 - data_index
    state_type = items[state_index][1]
    client_type = items[data_index][1].member

    result = next_type.result
    metrics_type, metrics_name, returns_metrics = None, "metrics", False
    if _equivalent(state_type, result):
        pass
    elif (isinstance(result, fl.StructType) and len(result) == 2
          and _equivalent(state_type, list(result.items())[0][1])):
        returns_metrics = True
        name, metrics_type = list(result.items())[1]
        metrics_name = name or "metrics"
    else:
        raise errors.ComputationError(
            f"next returns {result}, which is neither the state {state_type} nor a struct "
            f"<state, metrics> whose first element is the state", file=next_name)

    if init is not None:
        init_type = _function_type(init, init_name)
        if isinstance(init_type, fl.FunctionType):
            if init_type.parameter is not None:
                raise errors.ComputationError(
                    f"init must take no argument, but its type is {init_type}", file=init_name)
            init_result = init_type.result
        else:
            init_result = init_type
        if not state_type.is_assignable_from(init_result):
            raise errors.ComputationError(
                f"init returns {init_result}, but next takes the state as {state_type}",
                file=init_name)
    return ProcessSignature(state_type=state_type, client_type=client_type,
                            state_index=state_index, data_index=data_index,
                            parameter_names=(items[0][0], items[1][0]),
                            returns_metrics=returns_metrics, metrics_type=metrics_type,
                            metrics_name=metrics_name)


class TrainingProcess:
    """`initialize` and `next` of a training process, run on one `tffexec.Runner`.

    Args:
      init: the `initialize` computation (path, bytes or proto), or None when the state always
        comes from elsewhere (`--state`).
      next: the `next` computation.
      runner: the Runner to use (kept open by its owner); default: a new one on `config`,
        closed by `close()`.
      config: the stack when no runner is given.
    """

    def __init__(self, init: Any, next: Any, *,  # noqa: A002 - TFF's name for it
                 runner: Optional[runner_lib.Runner] = None,
                 config: Optional[config_lib.StackConfig] = None,
                 init_name: str = "init", next_name: str = "next"):
        self.init_comp = None if init is None else _load_comp(init, init_name)
        self.next_comp = _load_comp(next, next_name)
        self.init_name, self.next_name = init_name, next_name
        self.signature = signature_of(self.init_comp, self.next_comp, init_name=init_name,
                                      next_name=next_name)
        self._owns_runner = runner is None
        self.runner = runner or runner_lib.Runner(config)
        digest = hashlib.sha256(self.next_comp.SerializeToString(deterministic=True))
        self.next_digest = digest.hexdigest()

    def initialize(self) -> Any:
        """The initial state: the result of `init`."""
        if self.init_comp is None:
            raise errors.UsageError("no init computation: give the initial state instead")
        try:
            return self.runner.run(self.init_comp)
        except errors.TffexecError as e:
            raise e.with_file(self.init_name) from None

    def next(self, state: Any, client_values: Sequence[Any]) -> tuple[Any, Any]:
        """One round on the given clients' values: (new state, metrics value or None)."""
        sig = self.signature
        elements: list[Any] = [None, None]
        elements[sig.state_index] = state
        elements[sig.data_index] = list(client_values)
        names = sig.parameter_names
        argument = structure.Struct(list(zip(names, elements)))
        try:
            result = self.runner.run(self.next_comp, argument, clients=len(client_values))
        except errors.TffexecError as e:
            raise e.with_file(self.next_name) from None
        if not sig.returns_metrics:
            return result, None
        return result[0], result[1]

    def close(self) -> None:
        if self._owns_runner:
            self.runner.close()

    def __enter__(self) -> "TrainingProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _load_comp(source: Any, name: str) -> computation_pb2.Computation:
    if isinstance(source, computation_pb2.Computation):
        return source
    if isinstance(source, (str, os.PathLike)):
        return loading.load_computation(pathlib.Path(source), name=name)
    return runner_lib.to_proto(source)


# ------------------------------------------------------------------------------- client data

@dataclasses.dataclass
class ClientData:
    """Every client's value, loaded once: `names[i]` owns `values[i]`."""

    names: list[str]
    values: list[Any]

    def __len__(self) -> int:
        return len(self.values)


def load_clients(source: str | os.PathLike, client_type: fl.Type, *,
                 fmt: Optional[str] = None) -> ClientData:
    """The clients in DATA: a directory with one value file per client, or one value file.

    A directory's files (.pb/.json/.npz, any mix; names starting with '.' are ignored) are read in
    name order, each as a value of `client_type`, and the client is named after its file. A
    single file holds a `{T}@CLIENTS` value; its clients are named `client_0`, `client_1`, ...

    Raises:
      tffexec.errors.ArgumentError: unreadable or mistyped values, other files in the
        directory, or no clients at all (exit 4).
    """
    path = pathlib.Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if not p.name.startswith("."))
        names, values = [], []
        for p in files:
            if p.is_dir() or p.suffix.lower() not in VALUE_EXTENSIONS:
                raise errors.ArgumentError(
                    "not a client value file (expected one .pb, .json or .npz file per client)",
                    file=str(p))
            names.append(p.stem)
            values.append(loading.load_value(p, client_type, fmt=fmt, name=str(p),
                                             path=f"client[{p.stem}]"))
        if not values:
            raise errors.ArgumentError("no client value files in the directory", file=str(path))
        return ClientData(names, values)
    if not path.exists():
        raise errors.ArgumentError("no such file or directory", file=str(path))
    all_clients = fl.FederatedType(client_type, fl.CLIENTS)
    values = loading.load_value(path, all_clients, fmt=fmt, name=str(path), path="clients")
    values = list(values)
    if not values:
        raise errors.ArgumentError("the value holds no clients", file=str(path))
    return ClientData([f"client_{i}" for i in range(len(values))], values)


def sample_clients(num_clients: int, clients_per_round: Optional[int], seed: int,
                   round_num: int) -> list[int]:
    """Indices of round `round_num`'s clients, sorted: all, or K without replacement.

    Depends only on (seed, round), so a resumed run samples what the uninterrupted one would.
    """
    if clients_per_round is None or clients_per_round >= num_clients:
        return list(range(num_clients))
    rng = np.random.default_rng([seed, round_num])
    return sorted(rng.choice(num_clients, size=clients_per_round, replace=False).tolist())


# ------------------------------------------------------------------------------- metrics

def flatten_metrics(value: Any, type_spec: Optional[fl.Type], prefix: str = "") -> dict[str, Any]:
    """Metrics as {"a/b/c": number or nested list}: struct paths joined with '/', unnamed
    elements by index, SERVER placement dropped, empty structs left out."""
    out: dict[str, Any] = {}
    _flatten(value, type_spec, prefix, out)
    return out


def _flatten(value: Any, t: Optional[fl.Type], prefix: str, out: dict[str, Any]) -> None:
    if isinstance(t, fl.FederatedType):
        if t.all_equal or t.placement is fl.SERVER:
            _flatten(value, t.member, prefix, out)
        else:
            for i, v in enumerate(value):
                _flatten(v, t.member, f"{prefix}/#{i}" if prefix else f"#{i}", out)
        return
    if isinstance(t, fl.StructType):
        for i, ((name, et), (_, v)) in enumerate(zip(t.items(),
                                                     structure.iter_elements(value))):
            key = name if name else str(i)
            _flatten(v, et, f"{prefix}/{key}" if prefix else key, out)
        return
    out[prefix or "metrics"] = _json_number(value)


def _json_number(value: Any) -> Any:
    arr = np.asarray(value)
    if arr.dtype.kind in "SUO":
        items = arr.tolist()
        return items.decode("utf-8", "replace") if isinstance(items, bytes) else items
    if arr.dtype.kind == "c":
        return [_json_number(arr.real), _json_number(arr.imag)]
    if arr.shape == ():
        x = arr.item()
        if isinstance(x, float) and not math.isfinite(x):
            return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
        return x
    return [_json_number(v) for v in arr]


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics that are single numbers (what tables and plots show)."""
    out = {}
    for key, v in metrics.items():
        if isinstance(v, bool):
            out[key] = float(v)
        elif isinstance(v, (int, float)):
            out[key] = float(v)
        elif v in ("nan", "inf", "-inf"):
            out[key] = float(v)
    return out


@dataclasses.dataclass
class RoundResult:
    """One finished round."""

    round: int
    clients: list[str]
    metrics: dict[str, Any]
    seconds: float
    rss_mb: float

    def record(self) -> dict[str, Any]:
        """The round's JSON-lines record."""
        return {"round": self.round, "seconds": round(self.seconds, 6),
                "clients": len(self.clients), "rss_mb": round(self.rss_mb, 1),
                "metrics": self.metrics}


def rss_mb() -> float:
    """Resident set size of this process in MiB (from /proc/self/statm; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except (OSError, ValueError, IndexError):
        return 0.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB."""
    try:
        import resource  # noqa: PLC0415 - POSIX only

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except (ImportError, OSError):
        return 0.0


class MetricsLog:
    """The `--metrics` JSON-lines file: one record per round, flushed as each round ends.

    A new run starts the file afresh; a resumed run keeps the records up to its checkpoint
    (dropping later ones, which the resumed run redoes) and appends from there.
    """

    def __init__(self, path: str | os.PathLike, *, resume_after: Optional[int] = None):
        self.path = pathlib.Path(path)
        kept: list[str] = []
        if resume_after is not None and self.path.exists():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a hard exit
                if isinstance(record, dict) and isinstance(record.get("round"), int) \
                        and record["round"] <= resume_after:
                    kept.append(line)
        payload = "".join(line + "\n" for line in kept).encode("utf-8")
        _atomic_write(self.path, payload)
        try:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        except OSError as e:
            raise errors.ArgumentError(f"cannot write: {e.strerror or e}",
                                       file=str(path)) from None

    def write(self, result: RoundResult) -> None:
        self._file.write(json.dumps(result.record(), allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


# ------------------------------------------------------------------------------- checkpoints

@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """The last complete checkpoint in a state directory."""

    round: int
    state_path: pathlib.Path
    seed: int
    clients_per_round: Optional[int]
    next_sha256: str
    state_type: str


class Checkpoints:
    """Saves the state every `every` rounds into `directory` and finds the last save.

    Files: `state-<round>.pb` (the state as a TFF Value) and `checkpoint.json` naming the latest
    one with what is needed to resume (seed, clients per round, the `next` digest and the state
    type). Older state files are removed once a newer checkpoint is complete.
    """

    def __init__(self, directory: str | os.PathLike, every: int):
        if every < 1:
            raise errors.UsageError("--checkpoint-every must be at least 1")
        self.directory = pathlib.Path(directory)
        self.every = every

    def latest(self) -> Optional[Checkpoint]:
        meta_path = self.directory / CHECKPOINT_FILE
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"format {meta.get('format')!r}")
            state_path = self.directory / meta["state"]
            return Checkpoint(round=int(meta["round"]), state_path=state_path,
                              seed=int(meta["seed"]),
                              clients_per_round=meta.get("clients_per_round"),
                              next_sha256=str(meta["next_sha256"]),
                              state_type=str(meta["state_type"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise errors.ArgumentError(f"unreadable checkpoint: {e}", file=str(meta_path)) from None

    def due(self, round_num: int, last_round: int) -> bool:
        return round_num % self.every == 0 or round_num == last_round

    def save(self, round_num: int, state: Any, state_type: fl.Type, *, seed: int,
             clients_per_round: Optional[int], next_sha256: str) -> pathlib.Path:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise errors.ArgumentError(f"cannot create: {e.strerror or e}",
                                       file=str(self.directory)) from None
        name = f"state-{round_num:06d}.pb"
        payload = loading.encode_value(state, state_type, "pb")
        _atomic_write(self.directory / name, payload)
        meta = {"format": CHECKPOINT_FORMAT, "round": round_num, "state": name, "seed": seed,
                "clients_per_round": clients_per_round, "next_sha256": next_sha256,
                "state_type": str(state_type), "saved_at": time.time()}
        _atomic_write(self.directory / CHECKPOINT_FILE,
                      (json.dumps(meta, indent=1) + "\n").encode("utf-8"))
        for old in self.directory.iterdir():
            match = _STATE_NAME.fullmatch(old.name)
            if match and old.name != name:
                try:
                    old.unlink()
                except OSError:
                    pass
        return self.directory / name


def _atomic_write(path: pathlib.Path, payload: bytes) -> None:
    """Atomic write that the CLI's watchdog knows about (no temp file left by a hard exit)."""
    try:
        from tffexec.cli import watchdog  # noqa: PLC0415 - registers temp files for Ctrl-C
    except ImportError:  # pragma: no cover - the CLI is part of the package
        loading._atomic_write(path, payload)  # noqa: SLF001
        return
    watchdog.atomic_write(path, payload)


# ------------------------------------------------------------------------------- the loop

@dataclasses.dataclass
class IterateResult:
    """The state after the last round and every round's result (of this run)."""

    state: Any
    rounds: list[RoundResult]
    start_round: int
    seed: int


def new_seed() -> int:
    """A sampling seed for runs started without one (recorded in checkpoints)."""
    return secrets.randbits(31)


def run_rounds(process: TrainingProcess, data: ClientData, rounds: int, *,
               state: Any = None, start_round: int = 0,
               clients_per_round: Optional[int] = None, seed: Optional[int] = None,
               checkpoints: Optional[Checkpoints] = None,
               on_round: Optional[Callable[[RoundResult], None]] = None,
               keep_history: bool = True) -> IterateResult:
    """Runs rounds `start_round + 1 .. rounds` of `process` on `data`.

    Args:
      state: the state to start from; default: `process.initialize()` (only when starting at
        round 0).
      start_round: rounds already done (when resuming from a checkpoint).
      clients_per_round: K clients sampled per round without replacement; None: all.
      seed: sampling seed; None picks one (see `IterateResult.seed`).
      checkpoints: save the state every N rounds and after the last one.
      on_round: called after each round (metrics files, progress displays).
      keep_history: keep each round's `RoundResult` in the result (off for very long runs).
    """
    if rounds < 0:
        raise errors.UsageError("--rounds must be at least 0")
    if clients_per_round is not None:
        if clients_per_round < 1:
            raise errors.UsageError("--clients-per-round must be at least 1")
        if clients_per_round > len(data):
            raise errors.ArgumentError(
                f"--clients-per-round {clients_per_round} but the data has only {len(data)} "
                "clients")
    seed = new_seed() if seed is None else seed
    if state is None:
        if start_round:
            raise errors.UsageError("a resumed run needs the checkpoint's state")
        state = process.initialize()
    sig = process.signature
    history: list[RoundResult] = []
    for r in range(start_round + 1, rounds + 1):
        chosen = sample_clients(len(data), clients_per_round, seed, r)
        start = time.perf_counter()
        state, metrics_value = process.next(state, [data.values[i] for i in chosen])
        seconds = time.perf_counter() - start
        metrics = ({} if metrics_value is None else
                   flatten_metrics(metrics_value, sig.metrics_type,
                                   "" if isinstance(_unplaced(sig.metrics_type), fl.StructType)
                                   else sig.metrics_name))
        result = RoundResult(round=r, clients=[data.names[i] for i in chosen], metrics=metrics,
                             seconds=seconds, rss_mb=rss_mb())
        if checkpoints is not None and checkpoints.due(r, rounds):
            checkpoints.save(r, state, sig.state_type, seed=seed,
                             clients_per_round=clients_per_round,
                             next_sha256=process.next_digest)
        if keep_history:
            history.append(result)
        if on_round is not None:
            on_round(result)
    return IterateResult(state=state, rounds=history, start_round=start_round, seed=seed)


def _unplaced(t: Optional[fl.Type]) -> Optional[fl.Type]:
    return t.member if isinstance(t, fl.FederatedType) else t


def check_resumable(checkpoint: Checkpoint, process: TrainingProcess) -> None:
    """A checkpoint must come from the same `next` (same state type, same computation)."""
    if checkpoint.state_type != str(process.signature.state_type):
        raise errors.ArgumentError(
            f"the checkpoint's state has type {checkpoint.state_type}, but next takes "
            f"{process.signature.state_type}", file=str(checkpoint.state_path))
    if checkpoint.next_sha256 != process.next_digest:
        raise errors.ArgumentError(
            "the checkpoint was written by a different next computation; use another "
            "--state-dir (or remove this one) to start afresh", file=str(checkpoint.state_path))


def load_state(source: str | os.PathLike, process: TrainingProcess, *,
               fmt: Optional[str] = None) -> Any:
    """A saved state (pb, JSON or npz), checked against the state type."""
    return loading.load_value(pathlib.Path(source), process.signature.state_type, fmt=fmt,
                              name=str(source), path="state")


def save_state(state: Any, process: TrainingProcess, dest: str | os.PathLike) -> None:
    """Writes the state atomically, in the format of `dest`'s extension."""
    loading.save_value(state, process.signature.state_type, dest)


def summary_rows(results: Iterable[RoundResult], max_rows: int = 12) -> list[RoundResult]:
    """At most `max_rows` rounds, evenly spread, always the first and the last."""
    results = list(results)
    if len(results) <= max_rows:
        return results
    picks = sorted({round(i * (len(results) - 1) / (max_rows - 1)) for i in range(max_rows)})
    return [results[i] for i in picks]


# ------------------------------------------------------------------------------- plots

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
    import io  # noqa: PLC0415

    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    from matplotlib import pyplot  # noqa: PLC0415
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    dest = pathlib.Path(dest)
    series: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for key, value in scalar_metrics(record.get("metrics", {})).items():
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
    _atomic_write(dest, buffer.getvalue())


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete records of a `--metrics` file (a resumed run's history included)."""
    records = []
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return records
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("round"), int):
            records.append(record)
    return records
