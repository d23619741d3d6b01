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
import time
from typing import Any, Optional

import federated_language as fl

from tffexec import errors
from tffexec.formats import atomic
from tffexec.formats import loading

CHECKPOINT_FILE = "checkpoint.json"
CHECKPOINT_FORMAT = "tffexec-checkpoint/1"
_STATE_NAME = re.compile(r"state-(\d+)\.pb")


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
            raise errors.UsageError(f"every must be at least 1, not {every}")
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
