"""File writes: the one helper every output file of tffexec goes through.

Why: a result, a saved value, a checkpoint, a metrics file or a plot is either complete or not
there at all. For a regular file (or a new one) `write` puts the bytes in a temporary file in the
target's folder and renames it over the target (`os.replace` is atomic on one file system), so a
reader never sees half a file and an earlier version stays until the new one is complete. A
symlink to a regular file stays a symlink: the file it points at is the one replaced.

An output that is not a regular file is never replaced, since a rename would destroy what the name
points at (`--output /dev/stdout` would turn the user's `/dev/stdout` link into a file): a
terminal, a character device (`/dev/null`), a FIFO or a pipe (`/proc/self/fd/1`) is opened and
written through, as a shell's `>` would. A directory, a socket or a block device is refused
(`refusal`), with one line naming it.

The temporary files in flight are registered here, so a process about to leave without
unwinding (the CLI's `os._exit` after Ctrl-C or `--timeout`, see `tffexec.cli.watchdog`) removes
them with `remove_temp_files()`: no `.name.XXXX.tmp` is left behind whenever the exit comes.
"""
from __future__ import annotations

import os
import pathlib
import stat
import tempfile
import threading
from typing import Optional

from tffexec.errors import ArgumentError

_lock = threading.Lock()
_temp_paths: set[str] = set()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _target_mode(path: str | os.PathLike) -> Optional[int]:
    """The mode of what `path` names, symlinks followed; None when nothing is there yet."""
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ArgumentError(f"cannot write: {e.strerror or e}", file=str(path)) from None


def writes_through(path: str | os.PathLike) -> bool:
    """Whether `path` names a terminal, character device, FIFO or pipe: written in place, never
    replaced by a rename."""
    mode = _target_mode(path)
    return mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode))


def refusal(path: str | os.PathLike) -> Optional[str]:
    """Why `path` cannot be an output (a directory, a socket, a block device), or None."""
    mode = _target_mode(path)
    if mode is None:
        return None
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return f"is {what}, not a file, terminal or pipe to write to"
    return None


def write(path: str | os.PathLike, payload: bytes) -> None:
    """Writes `payload` to `path`: through it for a terminal, device or pipe, else via a
    temporary file in the same folder and a rename.

    Raises:
      tffexec.errors.ArgumentError: the file cannot be written (exit 4), naming it.
    """
    reason = refusal(path)
    if reason is not None:
        raise ArgumentError(f"cannot write: {reason}", file=str(path))
    if writes_through(path):
        _write_through(path, payload)
    else:
        _write_replacing(path, payload)


def _write_through(path: str | os.PathLike, payload: bytes) -> None:
    """Opens the existing terminal/device/pipe (without making a terminal ours) and writes all of
    `payload`; a FIFO with no reader yet waits for one, as a shell's `>` does."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise ArgumentError(f"cannot write: {e.strerror or e}", file=str(path)) from None
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
    except OSError as e:
        raise ArgumentError(f"cannot write: {e.strerror or e}", file=str(path)) from None
    finally:
        os.close(fd)


def _write_replacing(path: str | os.PathLike, payload: bytes) -> None:
    target = pathlib.Path(os.path.realpath(path)) if os.path.islink(path) else pathlib.Path(path)
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
