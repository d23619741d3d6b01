"""Atomic file writes: the one helper every output file of tffexec goes through.

Why: a result, a saved value, a checkpoint, a metrics file or a plot is either complete or not
there at all. `write` puts the bytes in a temporary file in the target's folder and renames it
over the target (`os.replace` is atomic on one file system), so a reader never sees half a file
and an earlier version stays until the new one is complete.

The temporary files in flight are registered here, so a process about to leave without
unwinding (the CLI's `os._exit` after Ctrl-C or `--timeout`, see `tffexec.cli.watchdog`) removes
them with `remove_temp_files()`: no `.name.XXXX.tmp` is left behind whenever the exit comes.
"""
from __future__ import annotations

import os
import pathlib
import tempfile
import threading

from tffexec.errors import ArgumentError

_lock = threading.Lock()
_temp_paths: set[str] = set()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write(path: str | os.PathLike, payload: bytes) -> None:
    """Writes `payload` to `path` via a temporary file in the same folder and a rename.

    Raises:
      tffexec.errors.ArgumentError: the file cannot be written (exit 4), naming it.
    """
    target = pathlib.Path(path)
    directory = target.parent if str(target.parent) else pathlib.Path(".")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
        with _lock:
            _temp_paths.add(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        with _lock:
            _temp_paths.discard(tmp)
        tmp = None
    except OSError as e:
        raise ArgumentError(f"cannot write: {e.strerror or e}", file=str(path)) from None
    finally:
        if tmp is not None:
            with _lock:
                _temp_paths.discard(tmp)
            try:
                os.unlink(tmp)
            except OSError:
                pass


def temp_files() -> list[str]:
    """The temporary files being written right now (what `remove_temp_files` would remove)."""
    with _lock:
        return sorted(_temp_paths)


def remove_temp_files() -> None:
    """Removes the temporary files of writes still in flight (for a process leaving at once)."""
    with _lock:
        paths = list(_temp_paths)
        _temp_paths.clear()
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass
