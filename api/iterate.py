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
- Checkpoints (`Checkpoints`, from `tffexec.checkpoints`) are written atomically, so an
  interruption at any moment leaves the last complete one readable. `resume` finds where a run
  starts: the last checkpoint (whose
  seed and sampling the run must keep), a given state, or round 0.
- Errors name the parameters of these functions (`clients_per_round`), not command-line flags;
  a caller that exposes them under other names (the CLI: `--clients-per-round`) passes `names`.
  What is shown of a run (the metrics file, the summary table, the plot) is the CLI's business
  (`tffexec.cli.iterate_report`); this module returns the numbers.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import pathlib
import secrets
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import federated_language as fl
import numpy as np
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec import policy as policy_lib
from tffexec import preflight
from tffexec import runner as runner_lib
from tffexec.checkpoints import CHECKPOINT_FILE, Checkpoint, Checkpoints  # noqa: F401 - API
from tffexec.factories import config as config_lib
from tffexec.formats import VALUE_EXTENSIONS, loading
from tffexec.formats.columns import ClientColumns

#: Extensions of client value files in a DATA directory.
#: How errors call the parameters whose name a caller may replace (see `names` in `resume`).
PARAMETER_NAMES = {"rounds": "rounds", "seed": "seed", "clients_per_round": "clients_per_round",
                   "checkpoints": "checkpoints directory"}


def _named(names: Optional[Mapping[str, str]], parameter: str) -> str:
    """A parameter as errors name it: the caller's name for it, else the library's."""
    return (names or {}).get(parameter) or PARAMETER_NAMES.get(parameter, parameter)


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
        self._owns_runner = runner is None
        self.runner = runner or runner_lib.Runner(config)
        policy = self.runner.config.policy
        self.init_comp = None if init is None else _load_comp(init, init_name, policy)
        self.next_comp = _load_comp(next, next_name, policy)
        self.init_name, self.next_name = init_name, next_name
        self.signature = signature_of(self.init_comp, self.next_comp, init_name=init_name,
                                      next_name=next_name)
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
        elements[sig.data_index] = (client_values if isinstance(client_values, ClientColumns)
                                    else list(client_values))
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


def _load_comp(source: Any, name: str, policy: policy_lib.Policy) -> computation_pb2.Computation:
    if isinstance(source, computation_pb2.Computation):
        return source
    if isinstance(source, (str, os.PathLike)):
        return loading.load_computation(pathlib.Path(source), name=name, policy=policy)
    return runner_lib.to_proto(source, policy)


# ------------------------------------------------------------------------------- client data

@dataclasses.dataclass
class ClientData:
    """Every client's value, loaded once: `names[i]` owns `values[i]`; `source`: where they
    were read from (named by errors about the data), when from a file or directory."""

    names: list[str]
    values: list[Any] | ClientColumns  # columns when the file held them (rounds gather)
    source: Optional[str] = None

    def __len__(self) -> int:
        return len(self.values)


def load_clients(source: str | os.PathLike, client_type: fl.Type, *,
                 fmt: Optional[str] = None,
                 policy: policy_lib.Policy = policy_lib.DEFAULT) -> ClientData:
    """The clients in DATA: a directory with one value file per client, or one value file.

    A directory's files (.pb/.json/.npz, any mix; names starting with '.' are ignored) are read in
    name order, each as a value of `client_type`, and the client is named after its file. A
    single file holds a `{T}@CLIENTS` value; its clients are named `client_0`, `client_1`, ...

    Each file is read under `policy`'s limits and its dataset graphs are checked against it
    here, so that an error names the file (each round's `prepare` finds them checked already).

    Raises:
      tffexec.errors.ArgumentError: unreadable or mistyped values, other files in the
        directory, or no clients at all (exit 4).
      tffexec.errors.PolicyError: a file over the limits, or a dataset graph holding an op the
        policy refuses (exit 5).
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
            values.append(preflight.load_checked_value(p, client_type, policy=policy, fmt=fmt,
                                                       name=str(p), path=f"client[{p.stem}]"))
        if not values:
            raise errors.ArgumentError("no client value files in the directory", file=str(path))
        return ClientData(names, values, str(path))
    if not path.exists():
        raise errors.ArgumentError("no such file or directory", file=str(path))
    all_clients = fl.FederatedType(client_type, fl.CLIENTS)
    values = preflight.load_checked_value(path, all_clients, policy=policy, fmt=fmt,
                                          name=str(path), path="clients")
    if not isinstance(values, ClientColumns):  # columns stay columns: rounds slice them
        values = list(values)
    if not values:
        raise errors.ArgumentError("the value holds no clients", file=str(path))
    return ClientData([f"client_{i}" for i in range(len(values))], values, str(path))


def _take(values, chosen: list[int]):
    """The chosen clients' values: a gather per column for columns (the round's cost then
    depends on K, not on the N clients loaded), else a list."""
    if isinstance(values, ClientColumns):
        return values.take(chosen)
    return [values[i] for i in chosen]


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
    _check_sampling(rounds, clients_per_round, data, names=None)
    seed = new_seed() if seed is None else seed
    if state is None:
        if start_round:
            raise errors.UsageError(f"start_round {start_round} needs the state to start from "
                                    "(state=, e.g. from `resume`)")
        state = process.initialize()
    sig = process.signature
    history: list[RoundResult] = []
    for r in range(start_round + 1, rounds + 1):
        chosen = sample_clients(len(data), clients_per_round, seed, r)
        start = time.perf_counter()
        state, metrics_value = process.next(state, _take(data.values, chosen))
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


def _check_sampling(rounds: int, clients_per_round: Optional[int], data: ClientData, *,
                    names: Optional[Mapping[str, str]]) -> None:
    if rounds < 0:
        raise errors.UsageError(f"{_named(names, 'rounds')} must be at least 0, not {rounds}")
    if clients_per_round is None:
        return
    k = _named(names, "clients_per_round")
    if clients_per_round < 1:
        raise errors.UsageError(f"{k} must be at least 1, not {clients_per_round}")
    if clients_per_round > len(data):
        raise errors.ArgumentError(
            f"{k} {clients_per_round} but the data has only {len(data)} clients",
            file=data.source)


@dataclasses.dataclass(frozen=True)
class Start:
    """Where a run starts (see `resume`): what `run_rounds` takes as `start_round`, `state`,
    `seed` and `clients_per_round`. `state` is None when `process.initialize()` must make it."""

    round: int
    state: Any
    seed: int
    clients_per_round: Optional[int]
    checkpoint: Optional[Checkpoint] = None


def resume(process: TrainingProcess, data: ClientData, *, rounds: int,
           checkpoints: Optional[Checkpoints] = None, state: Any = None,
           seed: Optional[int] = None, clients_per_round: Optional[int] = None,
           names: Optional[Mapping[str, str]] = None) -> Start:
    """Where a run of `rounds` rounds starts: from the last checkpoint in `checkpoints` if there
    is one, else from `state`, else from round 0 with the state still to initialize.

    A resumed run keeps the checkpoint's seed and clients per round, so it samples the clients
    the uninterrupted run would have: `seed`/`clients_per_round` may be left None (taken from the
    checkpoint) or repeat its values; a different value is an error, not a different run.

    Args:
      state: the state to start from when there is no checkpoint: a value, or a file given as an
        `os.PathLike` (read against the state type; a `str` is a value, as for `tffexec.run`).
      seed: None picks a new one (recorded in the checkpoints) when not resuming.
      names: how errors call the parameters (e.g. {"seed": "--seed"}); default: their names here.

    Raises:
      tffexec.errors.UsageError: `seed` or `clients_per_round` differs from the checkpoint's, or
        the checkpoint is past `rounds` (exit 2).
      tffexec.errors.ArgumentError: the checkpoint comes from another `next`, a state file is
        unreadable, or `clients_per_round` exceeds the clients in `data` (exit 4).
    """
    checkpoint = checkpoints.latest() if checkpoints is not None else None
    start_round = 0
    if checkpoint is not None:
        check_resumable(checkpoint, process, names=names)
        seed = _agree("seed", seed, checkpoint.seed, names)
        clients_per_round = _agree("clients_per_round", clients_per_round,
                                   checkpoint.clients_per_round, names)
        if checkpoint.round > rounds:
            raise errors.UsageError(f"{_named(names, 'rounds')} {rounds}, but "
                                    f"{checkpoints.directory} already holds round "
                                    f"{checkpoint.round}")
        state, start_round = load_state(checkpoint.state_path, process), checkpoint.round
    elif isinstance(state, os.PathLike):
        state = load_state(state, process)
    _check_sampling(rounds, clients_per_round, data, names=names)
    return Start(round=start_round, state=state, seed=new_seed() if seed is None else seed,
                 clients_per_round=clients_per_round, checkpoint=checkpoint)


def _agree(parameter: str, given: Any, saved: Any, names: Optional[Mapping[str, str]]) -> Any:
    """A resumed run keeps the checkpoint's sampling; a different value is a usage error
    rather than a silently different run."""
    if given is None:
        return saved
    if given != saved:
        shown = "all clients" if saved is None else saved
        raise errors.UsageError(
            f"{_named(names, parameter)} {given} differs from the checkpoint's ({shown}); resume "
            f"with the same sampling or use another {_named(names, 'checkpoints')}")
    return given


def check_resumable(checkpoint: Checkpoint, process: TrainingProcess, *,
                    names: Optional[Mapping[str, str]] = None) -> None:
    """A checkpoint must come from the same `next` (same state type, same computation)."""
    if checkpoint.state_type != str(process.signature.state_type):
        raise errors.ArgumentError(
            f"the checkpoint's state has type {checkpoint.state_type}, but next takes "
            f"{process.signature.state_type}", file=str(checkpoint.state_path))
    if checkpoint.next_sha256 != process.next_digest:
        raise errors.ArgumentError(
            "the checkpoint was written by a different next computation; use another "
            f"{_named(names, 'checkpoints')} (or remove this one) to start afresh",
            file=str(checkpoint.state_path))


def load_state(source: str | os.PathLike, process: TrainingProcess, *,
               fmt: Optional[str] = None) -> Any:
    """A saved state (pb, JSON or npz), checked against the state type."""
    return loading.load_value(pathlib.Path(source), process.signature.state_type, fmt=fmt,
                              name=str(source), path="state",
                              policy=process.runner.config.policy)


def save_state(state: Any, process: TrainingProcess, dest: str | os.PathLike) -> None:
    """Writes the state atomically, in the format of `dest`'s extension."""
    loading.save_value(state, process.signature.state_type, dest)
