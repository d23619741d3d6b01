"""The README's examples work verbatim, and the Quick start leaves nothing in the repository.

Shell blocks run in a stand-in for a fresh checkout (the repository's examples/ and a .venv
holding this test's own Python); every other `tffexec` command line of the README is parsed by
the real click command, so a misspelt option or a missing example file fails here.
"""
from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess
import sys

import click
import pytest

from tffexec.cli.main import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
# Not part of a checkout's tracked content: virtual environments, caches, build outputs.
_UNTRACKED = {".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".hypothesis", "build", "dist"}


def section(heading: str) -> str:
    """The text under a `## heading` of the README, up to the next `## ` heading."""
    return README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def quick_start_block() -> str:
    """The first ```sh block under the README's `## Quick start` heading."""
    blocks = code_blocks(section("Quick start"), "sh")
    assert blocks, "no sh block in the quick start"
    return blocks[0]


def first_screen_example() -> str:
    """The ```sh block right under the `# tffexec` title: the 5-line example."""
    intro = README.split("\n# tffexec\n", 1)[1].split("\n## ", 1)[0]
    blocks = code_blocks(intro, "sh")
    assert blocks, "no sh example under the title"
    return blocks[0]


def repository_files() -> set[str]:
    """Every file of the working tree, except virtual environments, caches and build outputs."""
    found = set()
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in _UNTRACKED and not d.endswith(".egg-info")]
        found.update(os.path.relpath(os.path.join(root, f), REPO) for f in files)
    return found


@pytest.fixture
def checkout(tmp_path) -> pathlib.Path:
    """A stand-in for a fresh checkout after the install command: examples/ and .venv."""
    root = tmp_path / "checkout"
    root.mkdir()
    (root / "examples").symlink_to(REPO / "examples")
    (root / ".venv").symlink_to(pathlib.Path(sys.prefix))
    return root


def run_block(block: str, cwd: pathlib.Path, tmpdir: pathlib.Path) -> subprocess.CompletedProcess:
    script = tmpdir / "block.sh"
    script.write_text(block)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TFFEXEC_", "VIRTUAL_ENV", "PYTHON"))}
    env["TMPDIR"] = str(tmpdir)  # where `mktemp -d` makes the scratch folder
    return subprocess.run(["bash", "-e", "-o", "pipefail", str(script)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_quick_start_activates_the_venv_then_moves_to_a_scratch_folder():
    lines = [line for line in quick_start_block().splitlines() if line and not line.startswith("#")]
    assert lines[0] == ". .venv/bin/activate"
    assert lines[1].startswith('cd "$(mktemp -d)"'), lines[1]
    assert all(line.split()[0] in {"tffexec", "cat", "echo", ".", "cd"} for line in lines), lines


def test_quick_start_runs_verbatim_and_writes_only_into_its_scratch_folder(checkout, tmp_path):
    before = repository_files()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = run_block(quick_start_block(), checkout, tmpdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stdout, stderr = proc.stdout, proc.stderr
    assert "<model=<w=float32[3],b=float32>@SERVER" in stdout           # 1. inspect
    assert "ok: result matches examples/fedavg_round/expected.json" in stderr  # 6. --expect
    assert "Error: stopped after --timeout 3 s; no output written" in stderr  # 7. --timeout
    assert "exit status 124" in stdout
    scratch = [p for p in tmpdir.iterdir() if p.is_dir()]
    assert len(scratch) == 1, list(tmpdir.iterdir())
    for name in ("my_arg.json", "result.npz", "result.json", "arg.npz", "arg.plain.json",
                 "result.pb", "bench.json"):
        assert (scratch[0] / name).is_file(), name
    assert not list(scratch[0].glob(".*.tmp"))
    assert sorted(p.name for p in checkout.iterdir()) == [".venv", "examples"]
    assert repository_files() == before


def test_first_screen_example_runs_verbatim(checkout, tmp_path):
    block = first_screen_example()
    assert len(block.splitlines()) == 5
    before = repository_files()
    proc = run_block(block, checkout, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "({float32}@CLIENTS -> float32@SERVER)" in proc.stdout
    assert "2.33333" in proc.stdout and proc.stdout.rstrip().endswith("2.3333333")
    assert "ok: result matches examples/fedavg_round/expected.json" in proc.stderr
    assert sorted(p.name for p in checkout.iterdir()) == [".venv", "examples"]
    assert repository_files() == before


# --- every other command line ---------------------------------------------------------------------

_SEPARATORS = {"|", "||", "&&", ";", "&"}
_REDIRECTIONS = {">", ">>", "<", "2>", "&>"}


def tffexec_commands(block: str) -> list[list[str]]:
    """The arguments of each `tffexec ...` command in a shell block (pipelines split, redirections,
    comments and leading VAR=value assignments dropped)."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        segment: list[str] = []
        tokens = iter([*lexer, ";"])
        for token in tokens:
            if token in _SEPARATORS:
                while segment and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", segment[0]):
                    segment.pop(0)
                if segment and segment[0] == "tffexec":
                    commands.append(segment[1:])
                segment = []
            elif token in _REDIRECTIONS:
                next(tokens, None)
            else:
                segment.append(token)
    return commands


def readme_commands() -> list[list[str]]:
    """Every `tffexec` command of the README's shell blocks except the Quick start's (it runs
    verbatim above, and its commands read files that its earlier lines write) and the authoring
    section's (likewise, run by test_authoring.py). A bare `tffexec`
    (shell completion's `_TFFEXEC_COMPLETE=... tffexec`) has nothing to parse."""
    quick_start = quick_start_block()
    # The authoring section's commands read the files its Python writes; test_authoring.py runs
    # that section verbatim, in order.
    authoring = code_blocks(section("Writing computations without TFF"), "sh")
    return [command for block in code_blocks(README, "sh")
            if block != quick_start and block not in authoring
            for command in tffexec_commands(block) if command]


def test_readme_has_command_lines_to_check():
    commands = readme_commands()
    assert len(commands) >= 20
    assert {c[0] for c in commands} >= {"run", "inspect", "validate", "iterate"}


@pytest.mark.parametrize("args", readme_commands(), ids=lambda args: " ".join(args)[:80])
def test_readme_command_line_parses(args, monkeypatch, capsys):
    """Options exist, choices are valid and input files exist, relative to the repository root."""
    monkeypatch.chdir(REPO)
    for name in [k for k in os.environ if k.startswith("TFFEXEC_") or k == "RAY_ADDRESS"]:
        monkeypatch.delenv(name)
    try:
        ctx = cli.make_context("tffexec", list(args), auto_envvar_prefix="TFFEXEC")
        protected = getattr(ctx, "_protected_args", None)
        rest = [*(ctx.protected_args if protected is None else protected), *ctx.args]
        if rest:
            name, command, rest = cli.resolve_command(ctx, rest)
            command.make_context(name, rest, parent=ctx)
    except click.exceptions.Exit as e:  # --version, --help
        assert e.exit_code == 0
    except click.ClickException as e:
        pytest.fail(f"tffexec {shlex.join(args)}: {e.format_message()}")


def test_command_line_splitting_finds_commands_in_pipes_and_after_assignments():
    block = ("cat c.pb | tffexec run - a.json --format json > out.json  # note\n"
             "RAY_ADDRESS=h:1 tffexec run c.pb \\\n    --seed 1 || echo failed\n"
             "eval \"$(_TFFEXEC_COMPLETE=bash_source tffexec)\"\n")
    assert tffexec_commands(block) == [["run", "-", "a.json", "--format", "json"],
                                       ["run", "c.pb", "--seed", "1"]]


# --- Python examples --------------------------------------------------------------------------------

def python_blocks() -> list[str]:
    return code_blocks(README, "python")


def test_every_python_example_compiles():
    blocks = python_blocks()
    assert blocks
    for i, block in enumerate(blocks):
        compile(block, f"README python block {i}", "exec")


def test_python_examples_without_tff_run_and_write_nothing_into_the_repository(checkout):
    # The "From your TFF code" snippets need TFF itself (checked by hand with TFF 0.87); the rest
    # run here, in one process, each in a fresh namespace.
    blocks = [b for b in python_blocks() if "tensorflow_federated" not in b]
    assert len(blocks) >= 2
    # Blocks run in a scratch folder that sees the checkout's examples/, so a block that saves a
    # file (the authoring example) writes it there, and the repository check below stays strict.
    driver = ("import os, sys, tempfile\n"
              "scratch = tempfile.mkdtemp()\n"
              "os.symlink(os.path.abspath('examples'), os.path.join(scratch, 'examples'))\n"
              "os.chdir(scratch)\n"
              "for i, block in enumerate(sys.argv[1:]):\n"
              "    exec(compile(block, f'README python block {i}', 'exec'), {'__name__': '__main__'})\n"
              "print('ALL BLOCKS RAN')\n")
    before = repository_files()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFFEXEC_")}
    proc = subprocess.run([sys.executable, "-c", driver, *blocks], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.rstrip().endswith("ALL BLOCKS RAN")
    assert sorted(p.name for p in checkout.iterdir()) == [".venv", "examples"]
    assert repository_files() == before


# --- links ------------------------------------------------------------------------------------------

def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_point_at_existing_headings_and_files():
    prose = re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", README, flags=re.S | re.M))
    anchors = {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", prose, re.M)}
    targets = re.findall(r"\]\(([^)\s]+)\)", prose)
    assert len(targets) >= 10
    for target in targets:
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        if path:
            assert (REPO / path).exists(), target
            if anchor and path.endswith(".md"):
                linked = (REPO / path).read_text()
                assert anchor in {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", linked, re.M)}, target
        else:
            assert anchor in anchors, target
