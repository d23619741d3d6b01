"""The README's quick start works verbatim in a fresh shell after the install command."""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def quick_start_block() -> str:
    """The first ```sh block under the README's `## Quick start` heading."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "no sh block in the quick start"
    return match.group(1)


def test_quick_start_activates_the_install_commands_venv_first():
    lines = [line for line in quick_start_block().splitlines() if line and not line.startswith("#")]
    assert lines[0] == ". .venv/bin/activate"
    assert all(line.split()[0] in {"tffexec", "cat", "echo", "."} for line in lines), lines


def test_quick_start_runs_verbatim(tmp_path):
    # A fresh checkout after the install command: the repository's examples/ and a .venv holding
    # the tffexec script (this test's own virtual environment stands in for it).
    (tmp_path / "examples").symlink_to(REPO / "examples")
    (tmp_path / ".venv").symlink_to(pathlib.Path(sys.prefix))
    script = tmp_path / "quick_start.sh"
    script.write_text(quick_start_block())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TFFEXEC_", "VIRTUAL_ENV", "PYTHON"))}
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", str(script)], cwd=tmp_path, env=env,
                          capture_output=True, timeout=300)
    stdout, stderr = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, stderr[-3000:]
    assert "<model=<w=float32[3],b=float32>@SERVER" in stdout           # 1. inspect
    assert "ok: result matches examples/fedavg_round/expected.json" in stderr  # 6. --expect
    assert "Error: stopped after --timeout 3 s; no output written" in stderr  # 7. --timeout
    assert "exit status 124" in stdout
    for name in ("my_arg.json", "result.npz", "result.json", "arg.npz", "arg.plain.json",
                 "result.pb", "bench.json"):
        assert (tmp_path / name).is_file(), name
    assert not list(tmp_path.glob(".*.tmp"))
