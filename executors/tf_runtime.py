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
    """Imports TensorFlow once, quietly (its C++ logs stay off unless the user set the level)."""
    global _tf
    if _tf is None:
        with _lock:
            if _tf is None:
                os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
                import tensorflow as tf  # noqa: PLC0415 - deliberately lazy

                _tf = tf
    return _tf
