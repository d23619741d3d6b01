"""The repository stands alone: no tracked file points at a particular machine's folders."""
from __future__ import annotations

import re
import subprocess


from tffexec_test_support import REPO

#: Absolute paths of the development machines (the work folder, a home folder): a fresh clone
#: elsewhere has none of them. Written in pieces so this file does not match itself.
MACHINE_PATH = re.compile("(?<![\\w.$])/" + "(?:work|root|home/[\\w.-]+|Users/[\\w.-]+)/")


#: What a copy without git metadata (`git archive`, an sdist) holds beside the sources.
NOT_SOURCES = {".venv", "venv", "__pycache__", ".pytest_cache", ".hypothesis", "build", "dist"}


def _tracked_files() -> list[str]:
    """The files git tracks; in a copy without git metadata, every file but build outputs."""
    if (REPO / ".git").exists():
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                             check=True).stdout
        return [name for name in out.decode().split("\0") if name]
    return [str(path.relative_to(REPO)) for path in REPO.rglob("*")
            if path.is_file() and not NOT_SOURCES.intersection(path.relative_to(REPO).parts)
            and not any(part.endswith(".egg-info") for part in path.parts)]


def test_no_tracked_file_names_an_absolute_machine_path():
    offenders = []
    for name in _tracked_files():
        path = REPO / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary (protos, npz)
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                offenders.append(f"{name}:{number}: {line.strip()[:120]}")
    assert not offenders, "absolute machine paths in tracked files:\n" + "\n".join(offenders)


def test_the_check_finds_a_machine_path():
    assert MACHINE_PATH.search("python " + "/work" + "/peer/bin/python x.py")
    assert MACHINE_PATH.search("see " + "/home" + "/alice/corpus")
    assert not MACHINE_PATH.search("$PEER/bin/python and ../shared/corpus and https://x.org/work/a")
