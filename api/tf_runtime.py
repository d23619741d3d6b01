"""The one place that imports TensorFlow, lazily.

Importing TensorFlow takes seconds, so tffexec imports it only when a `tensorflow` computation,
a literal of an unusual dtype or a sequence must actually run. Start-up of `--help`, `inspect`,
`validate` and graph-free runs never reaches this module's `tensorflow()` function.
"""
from __future__ import annotations

import os
import threading
import time

#: The stage name progress displays, `-v` logs and `tffexec benchmark` show for the import.
IMPORT_STAGE = "importing TensorFlow"

_lock = threading.Lock()
_tf = None
# (start, end) perf_counter times of our import of TensorFlow, once it happened.
_import_span: tuple[float, float] | None = None
# TensorFlow's process-wide thread pools, requested before it starts (see `request_threads`).
_requested_threads: dict[str, int] = {}


def is_loaded() -> bool:
    """Whether TensorFlow has been imported by this process (through us or anyone else)."""
    import sys

    return _tf is not None or sys.modules.get("tensorflow") is not None


def tensorflow():
    """Imports TensorFlow once, quietly.

    TensorFlow's C++ logging is set to errors only (`TF_CPP_MIN_LOG_LEVEL=3`, unless the user set
    it): its failures reach us as Python exceptions, which tffexec reports in one line. The absl
    banner that the import itself prints to file descriptor 2 ("All log messages before
    absl::InitializeLog() ...", "Could not find cuda drivers ...") ignores that setting, so the
    import runs with descriptor 2 pointed at /dev/null unless `TFFEXEC_TF_LOGS=1`.
    """
    global _tf, _import_span
    if _tf is None:
        with _lock:
            if _tf is None:
                # Announced as a stage of its own: it takes seconds, and without a word the
                # progress display would sit on whatever stage happened to need TensorFlow.
                from tffexec.executors import activity  # noqa: PLC0415 - standard library only

                activity.report(IMPORT_STAGE, 0, 1)
                start = time.perf_counter()
                try:
                    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
                    if os.environ.get("TFFEXEC_TF_LOGS") == "1":
                        tf = _import_tensorflow()
                    else:
                        with _stderr_silenced():
                            tf = _import_tensorflow()
                    _configure(tf)
                    _tf = tf
                finally:
                    _import_span = (start, time.perf_counter())
                    activity.report(IMPORT_STAGE, 1, 1)
    return _tf


def import_seconds_within(start: float, end: float) -> float:
    """Seconds of our TensorFlow import that fell between two `time.perf_counter()` readings
    (0.0 when it happened before, after, or never): a stage that triggered the import reports
    its own time without it."""
    span = _import_span
    if span is None:
        return 0.0
    return max(0.0, min(end, span[1]) - max(start, span[0]))


# TensorFlow is an extra, not a dependency, so that `tffexec[tensorflow-cpu]` need not pull in
# `tensorflow` as well (setup.cfg); a run that needs it says which extras provide it.
MISSING_TENSORFLOW = (
    "this computation needs TensorFlow, which is not installed: "
    "pip install 'tffexec[tensorflow]' (or 'tffexec[tensorflow-cpu]', CPU only)")


def _import_tensorflow():
    """`import tensorflow`, or EngineUnavailable (exit 7) naming the extras when it is absent."""
    try:
        import tensorflow as tf  # noqa: PLC0415 - deliberately lazy
    except ModuleNotFoundError as e:
        if e.name != "tensorflow":
            raise  # TensorFlow is there but broken: its own message says more than ours would
        from tffexec import errors  # noqa: PLC0415

        raise errors.EngineUnavailable(MISSING_TENSORFLOW) from None
    return tf


def _configure(tf) -> None:
    """Process-wide TensorFlow settings tffexec relies on.

    Grappler's meta-optimizer is turned off for the functions TensorFlow instantiates with the
    eager context's configuration (the imported graphs themselves): re-optimizing every imported
    function made the first call several times slower and steady-state calls slower too
    (measured on the corpus' FedAvg case: 6.5 s -> 1.9 s first call, 2.7 s -> 1.7 s per call).
    This setting does NOT reach function-call ops inside the graphs, which carry their own
    `config_proto`; `executors/tf_call_config.py` switches Grappler off there, once per graph.
    TensorFlow's other switches (auto-jit off, the MLIR bridge off, process-wide or in the call
    ops' ConfigProto) were measured and left alone: they saved no CPU time per call.
    """
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    _apply_threads(tf)


def cores() -> int:
    """The number of cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def request_threads(intra_op: int | None, inter_op: int | None) -> None:
    """Asks for TensorFlow's intra-/inter-op thread counts (None: TensorFlow's default).

    They are process-wide and fixed once TensorFlow has run its first op, so they are recorded
    here and applied when TensorFlow is imported (or right away if it is imported but idle). A
    later, different request in a process where TensorFlow already runs cannot take effect and
    is reported with a `RuntimeWarning`.
    """
    wanted = {k: v for k, v in (("intra", intra_op), ("inter", inter_op)) if v is not None}
    if not wanted:
        return
    with _lock:
        _requested_threads.update(wanted)
        tf = _tf
    if tf is not None:
        _apply_threads(tf)


def _apply_threads(tf) -> None:
    setters = {"intra": (tf.config.threading.get_intra_op_parallelism_threads,
                         tf.config.threading.set_intra_op_parallelism_threads),
               "inter": (tf.config.threading.get_inter_op_parallelism_threads,
                         tf.config.threading.set_inter_op_parallelism_threads)}
    for kind, count in list(_requested_threads.items()):
        get, set_ = setters[kind]
        if get() == count:
            continue
        try:
            set_(count)
        except RuntimeError:
            import warnings  # noqa: PLC0415

            warnings.warn(
                f"TensorFlow is already running with {get() or 'default'} {kind}-op threads; "
                f"the requested {count} applies only to a new process", RuntimeWarning,
                stacklevel=3)


def check_device(device: str) -> str:
    """The TensorFlow device name for `cpu`, `gpu` or `gpu:N`, with GPU memory growth on.

    Raises:
      errors.EngineUnavailable: a GPU was asked for and TensorFlow sees none (or not that many).
    """
    from tffexec import errors  # noqa: PLC0415

    tf = tensorflow()
    kind, _, index = device.partition(":")
    number = int(index) if index else 0
    if kind == "cpu":
        return f"/CPU:{number}"
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        raise errors.EngineUnavailable(
            f"--device {device}: TensorFlow sees no GPU on this machine (install a CUDA build of "
            "TensorFlow, e.g. `pip install tensorflow[and-cuda]`, or use --device cpu)")
    if number >= len(gpus):
        raise errors.EngineUnavailable(
            f"--device {device}: TensorFlow sees {len(gpus)} GPU(s), numbered 0 to {len(gpus) - 1}")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):
            pass  # already initialised: growth can no longer change
    return f"/GPU:{number}"


class _stderr_silenced:
    """Points file descriptor 2 at /dev/null for the duration (C++ code writes there directly)."""

    def __init__(self) -> None:
        self._saved: int | None = None  # the original descriptor 2 while silenced

    def __enter__(self):
        import sys  # noqa: PLC0415

        try:
            sys.stderr.flush()
            self._saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        except OSError:
            self._saved = None
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)
