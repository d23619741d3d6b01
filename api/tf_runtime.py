"""The one place that imports TensorFlow, lazily.

Importing TensorFlow takes seconds, so tffexec imports it only when a `tensorflow` computation,
a literal of an unusual dtype or a sequence must actually run. Start-up of `--help`, `inspect`,
`validate` and graph-free runs never reaches this module's `tensorflow()` function.
"""
from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_tf = None


def is_loaded() -> bool:
    """Whether TensorFlow has been imported by this process (through us or anyone else)."""
    import sys

    return _tf is not None or "tensorflow" in sys.modules


def tensorflow():
    """Imports TensorFlow once, quietly.

    TensorFlow's C++ logging is set to errors only (`TF_CPP_MIN_LOG_LEVEL=3`, unless the user set
    it): its failures reach us as Python exceptions, which tffexec reports in one line. The absl
    banner that the import itself prints to file descriptor 2 ("All log messages before
    absl::InitializeLog() ...", "Could not find cuda drivers ...") ignores that setting, so the
    import runs with descriptor 2 pointed at /dev/null unless `TFFEXEC_TF_LOGS=1`.
    """
    global _tf
    if _tf is None:
        with _lock:
            if _tf is None:
                os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
                if os.environ.get("TFFEXEC_TF_LOGS") == "1":
                    import tensorflow as tf  # noqa: PLC0415 - deliberately lazy
                else:
                    with _stderr_silenced():
                        import tensorflow as tf  # noqa: PLC0415 - deliberately lazy
                _configure(tf)
                _tf = tf
    return _tf


def _configure(tf) -> None:
    """Process-wide TensorFlow settings tffexec relies on.

    Grappler's meta-optimizer is turned off, as TFF's C++ runtime did for its sessions: the
    graphs TFF serialized were already optimized by TFF's compiler, and re-optimizing every
    imported function made the first call several times slower and steady-state calls slower too
    (measured on the corpus' FedAvg case: 6.5 s -> 1.9 s first call, 2.7 s -> 1.7 s per call).
    """
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


class _stderr_silenced:
    """Points file descriptor 2 at /dev/null for the duration (C++ code writes there directly)."""

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
