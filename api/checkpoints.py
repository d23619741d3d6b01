"""Checkpoints of a training process: the state every N rounds, and what resuming needs.

Why a module of its own: the checkpoint files are a small format of their own (read back by a
later process, perhaps of a later tffexec), apart from the loop that writes them
(`tffexec.iterate`, which re-exports these names).

Files in the directory: `state-<round>.pb` (the state as a TFF Value, what `serialize_value`
writes) and `checkpoint.json` naming the latest one with what resuming needs (the sampling seed,
the clients per round, the `next` computation's digest and the state type). The state file is
written first and `checkpoint.json` second, both atomically (temporary file + rename), so an
interruption at any moment leaves the last complete checkpoint readable; older state files are
removed once a newer checkpoint is complete.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import threading
import time
from typing import Any, Optional

import federated_language as fl

from tffexec import errors
from tffexec.formats import atomic
from tffexec.formats import limits, loading

CHECKPOINT_FILE = "checkpoint.json"

# Directories whose checkpoints are final for this process (`close`): a save there, from rounds
# that were abandoned (Ctrl-C, --timeout) but still run until the process exits, is skipped, so
# what the interruption reported as kept is what stays. One lock orders saves and closing.
_closed: set = set()
_save_lock = threading.Lock()


def close(directory: str | os.PathLike) -> None:
    """Makes the checkpoints in `directory` final for this process: a save in progress ends
    first, later saves are skipped (for an interrupted run, before it reports what it kept)."""
    with _save_lock:
        _closed.add(pathlib.Path(directory).resolve())
CHECKPOINT_FORMAT = "tffexec-checkpoint/1"
_STATE_NAME = re.compile(r"state-(\d+)\.pb")
#: A checkpoint.json is a few hundred bytes; anything much larger is not one.
MAX_CHECKPOINT_JSON_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """The last complete checkpoint in a state directory."""

    round: int
    state_path: pathlib.Path
    seed: int
    clients_per_round: Optional[int]
    next_sha256: str
    state_type: str


def _checkpoint_from_json(meta: object, directory: pathlib.Path) -> Checkpoint:
    """The checkpoint `checkpoint.json` describes, every field checked for its type (the file
    may be damaged or hostile: a list, infinities, a path out of the directory)."""
    if not isinstance(meta, dict):
        raise ValueError(f"expected a JSON object, found a {type(meta).__name__}")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"format {str(meta.get('format'))[:40]!r}, expected "
                         f"{CHECKPOINT_FORMAT!r}")
    for key, kinds in (("round", int), ("seed", int), ("state", str), ("next_sha256", str),
                       ("state_type", str), ("clients_per_round", (int, type(None)))):
        if key not in meta:
            raise ValueError(f"no {key!r}")
        if not isinstance(meta[key], kinds) or isinstance(meta[key], bool):
            raise ValueError(f"{key!r} is a {type(meta[key]).__name__}")
    if not _STATE_NAME.fullmatch(meta["state"]):
        raise ValueError(f"'state' {meta['state'][:60]!r} is not a state-<round>.pb file name")
    if meta["round"] < 0 or meta["seed"] < 0:
        raise ValueError("'round' and 'seed' must be >= 0")
    return Checkpoint(round=meta["round"], state_path=directory / meta["state"],
                      seed=meta["seed"], clients_per_round=meta["clients_per_round"],
                      next_sha256=meta["next_sha256"], state_type=meta["state_type"])


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


class Checkpoints:
    """Saves the state every `every` rounds into `directory` and finds the last save.

    Files: `state-<round>.pb` (the state as a TFF Value) and `checkpoint.json` naming the latest
    one with what is needed to resume (seed, clients per round, the `next` digest and the state
    type). Older state files are removed once a newer checkpoint is complete.
    """

    def __init__(self, directory: str | os.PathLike, every: int):
        if every < 1:
            raise errors.UsageError(f"every must be at least 1, not {every}")
        self.directory = pathlib.Path(directory)
        self.every = every

    def latest(self) -> Optional[Checkpoint]:
        meta_path = self.directory / CHECKPOINT_FILE
        if not meta_path.exists():
            return None
        data = limits.read_file_bounded(meta_path, MAX_CHECKPOINT_JSON_BYTES,
                                        error=errors.ArgumentError, what="checkpoint file",
                                        flag="a checkpoint.json is a few hundred bytes")
        try:
            return _checkpoint_from_json(json.loads(data.decode("utf-8")), self.directory)
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            raise errors.ArgumentError(f"unreadable checkpoint: {_first_line(e)}",
                                       file=str(meta_path)) from None

    def due(self, round_num: int, last_round: int) -> bool:
        return round_num % self.every == 0 or round_num == last_round

    def save(self, round_num: int, state: Any, state_type: fl.Type, *, seed: int,
             clients_per_round: Optional[int], next_sha256: str) -> Optional[pathlib.Path]:
        """Writes the checkpoint of `round_num`; None when the directory was closed (`close`)."""
        with _save_lock:
            if self.directory.resolve() in _closed:
                return None
            return self._save(round_num, state, state_type, seed=seed,
                              clients_per_round=clients_per_round, next_sha256=next_sha256)

    def _save(self, round_num: int, state: Any, state_type: fl.Type, *, seed: int,
              clients_per_round: Optional[int], next_sha256: str) -> pathlib.Path:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise errors.ArgumentError(f"cannot create: {e.strerror or e}",
                                       file=str(self.directory)) from None
        name = f"state-{round_num:06d}.pb"
        payload = loading.encode_value(state, state_type, "pb")
        atomic.write(self.directory / name, payload)
        meta = {"format": CHECKPOINT_FORMAT, "round": round_num, "state": name, "seed": seed,
                "clients_per_round": clients_per_round, "next_sha256": next_sha256,
                "state_type": str(state_type), "saved_at": time.time()}
        atomic.write(self.directory / CHECKPOINT_FILE,
                      (json.dumps(meta, indent=1) + "\n").encode("utf-8"))
        for old in self.directory.iterdir():
            match = _STATE_NAME.fullmatch(old.name)
            if match and old.name != name:
                try:
                    old.unlink()
                except OSError:
                    pass
        return self.directory / name
