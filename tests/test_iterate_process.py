"""`tffexec iterate` as a real process: Ctrl-C keeps the checkpoints and a rerun resumes from the
last one; standard output carries only the summary; progress is drawn on a terminal only."""
from __future__ import annotations

import json
import pathlib
import re
import shlex
import signal
import subprocess
import time

import federated_language as fl
import pytest

from tffexec import iterate as it
from tffexec.formats import compare
from tffexec.formats import loading

from tffexec_test_support import (REPO, clean_env, run_with_terminal_stderr,
                                  sigint_as_from_a_terminal, tffexec_script)


@pytest.fixture(scope="module")
def corpus_setup(corpus_dir, tmp_path_factory):
    """The corpus FedAvg pair and its 4 clients, one pb file each."""
    init = corpus_dir / "learn_fedavg_init" / "comp.pb"
    next_path = corpus_dir / "learn_fedavg_logreg_round" / "comp.pb"
    parameter = fl.Type.from_proto(loading.load_computation(next_path).type).parameter
    arg = loading.load_value(next_path.parent / "arg.pb", parameter)
    clients = tmp_path_factory.mktemp("clients")
    for i, client in enumerate(arg.client_data):
        loading.save_value(client, parameter[1].member, clients / f"c{i}.pb")
    return init, next_path, clients


def _command(corpus_setup, *extra) -> list[str]:
    init, next_path, clients = corpus_setup
    return [tffexec_script(), "iterate", "--init", str(init), "--next", str(next_path), "--data",
            str(clients), *map(str, extra)]


def _checkpoint_round(state_dir: pathlib.Path) -> int:
    try:
        return json.loads((state_dir / "checkpoint.json").read_text())["round"]
    except (OSError, ValueError, KeyError):
        return 0


def test_ctrl_c_keeps_checkpoints_and_a_rerun_resumes_where_it_stopped(corpus_setup, tmp_path):
    state_dir, metrics = tmp_path / "ckpt", tmp_path / "m.jsonl"
    common = ["-k", 2, "--seed", 7, "--state-dir", state_dir, "--checkpoint-every", 3,
              "--metrics", metrics]
    proc = subprocess.Popen(_command(corpus_setup, *common, "--rounds", 100000, "--output",
                                     tmp_path / "never.pb"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(), cwd=REPO,
                            preexec_fn=sigint_as_from_a_terminal)
    try:
        deadline = time.monotonic() + 120
        while _checkpoint_round(state_dir) < 6 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=10)
    finally:
        proc.kill()
    assert code == 130
    stopped_at = _checkpoint_round(state_dir)
    *_, resume, error = proc.stderr.read().decode().splitlines()
    # What survived, and the command that resumes (the same one: it finds the checkpoint).
    kept = re.fullmatch(
        re.escape(f"Error: interrupted; kept the checkpoint of round {stopped_at} "
                  f"({state_dir}/state-{stopped_at:06d}.pb) and the metrics of rounds 1-")
        + r"(\d+)" + re.escape(f" ({metrics}); --output {tmp_path / 'never.pb'} not written"),
        error)
    assert kept, error
    # The abandoned worker may finish one more round before the process is gone.
    assert stopped_at <= int(kept.group(1)) <= len(metrics.read_text().splitlines())
    assert resume == "resume with: " + shlex.join(
        ["tffexec", *_command(corpus_setup, *common, "--rounds", 100000, "--output",
                              tmp_path / "never.pb")[1:]])
    assert stopped_at >= 6 and stopped_at % 3 == 0
    assert sorted(p.name for p in state_dir.iterdir()) == ["checkpoint.json",
                                                           f"state-{stopped_at:06d}.pb"]
    assert not (tmp_path / "never.pb").exists()

    total = stopped_at + 4
    resumed = subprocess.run(_command(corpus_setup, *common, "--rounds", total, "--output",
                                      tmp_path / "final.pb"),
                             capture_output=True, env=clean_env(), cwd=REPO, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    # Off a terminal: standard error holds only the note, standard output only the summary.
    assert resumed.stderr.decode() == (f"resuming from round {stopped_at} "
                                       f"({state_dir}/state-{stopped_at:06d}.pb)\n")
    assert resumed.stdout.decode().splitlines()[-1].startswith("4 rounds run (")
    rounds = [json.loads(line)["round"] for line in metrics.read_text().splitlines()]
    assert rounds == list(range(1, total + 1))

    init, next_path, clients = corpus_setup  # the same rounds without an interruption
    with it.TrainingProcess(init, next_path) as process:
        data = it.load_clients(clients, process.signature.client_type)
        straight = it.run_rounds(process, data, total, clients_per_round=2, seed=7)
        state_type = process.signature.state_type
    final = loading.load_value(tmp_path / "final.pb", state_type)
    assert compare.value_differences(final, straight.state, state_type) == []


def test_progress_with_round_and_metrics_is_drawn_on_a_terminal(corpus_setup, tmp_path):
    stdout_file = tmp_path / "stdout"
    code, seen = run_with_terminal_stderr(_command(corpus_setup, "--rounds", 40), stdout_file,
                                          clean_env(COLUMNS="120", TERM="xterm"))
    assert code == 0, seen
    assert b"round" in seen and b"ETA" in seen and b"metrics 48" in seen
    assert stdout_file.read_text().splitlines()[-1].startswith("40 rounds run (")
