"""The stages of a run — load, prepare, build the stack, call — each timed and announced.

Why a module of its own: the stages are announced through `tffexec.executors.activity` by whoever
performs them (`Runner.prepare` announces `PREPARE` itself, so every prepare is seen, including
one a caller did not expect), and the CLI shows them as progress (and logs them with `-v`), while
`tffexec benchmark` reports their times. It sits below `tffexec.runner` and imports nothing of
tffexec but the activity events and the TensorFlow import clock.
"""
from __future__ import annotations

import contextlib
import time
from typing import Iterator

from tffexec import tf_runtime
from tffexec.executors import activity

# Stage names as they appear in progress displays, `-v` logs and benchmark reports.
LOAD_COMPUTATION = "load computation"
LOAD_ARGUMENT = "load argument"
PREPARE = "prepare"
BUILD_STACK = "build stack"
CALL = "run"


@contextlib.contextmanager
def stage(name: str) -> Iterator[dict]:
    """Announces `name` (activity event 0/1), then its end (1/1).

    `["seconds"]` holds its time without the import of TensorFlow, when the stage triggered it
    (that import is a stage of its own, `tf_runtime.IMPORT_STAGE`); `["import_s"]` holds that
    part.
    """
    timing: dict[str, float] = {}
    activity.report(name, 0, 1)
    start = time.perf_counter()
    try:
        yield timing
    finally:
        end = time.perf_counter()
        timing["import_s"] = tf_runtime.import_seconds_within(start, end)
        timing["seconds"] = end - start - timing["import_s"]
        activity.report(name, 1, 1)
