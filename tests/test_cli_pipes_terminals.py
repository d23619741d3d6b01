"""Real processes where the process is the point: a reader that leaves early (SIGPIPE), a person
at a terminal on standard input, `| jq`, and the TensorFlow import as its own stage in a fresh
process."""
from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import time

import pytest

from tffexec_test_support import REPO, clean_env, tffexec_script

MEAN = REPO / "examples" / "mean_of_clients"
FEDAVG = REPO / "examples" / "fedavg_round"


def _wide_computation(locals_count: int) -> bytes:
    """`(x -> block[a0=x, a1=x, ...] in a0)` with `locals_count` locals: a tree of that many
    lines, far more output than a pipe buffers."""
    from federated_language.proto import computation_pb2 as pb
    from federated_language.proto import data_type_pb2

    int32 = pb.Type(tensor=pb.TensorType(dtype=data_type_pb2.DT_INT32))
    root = pb.Computation(type=pb.Type(function=pb.FunctionType(parameter=int32, result=int32)))
    fn = getattr(root, "lambda")
    fn.parameter_name = "x"
    fn.result.type.CopyFrom(int32)
    for i in range(locals_count):
        local = fn.result.block.local.add(name=f"a{i}")
        local.value.type.CopyFrom(int32)
        local.value.reference.name = "x"
    fn.result.block.result.type.CopyFrom(int32)
    fn.result.block.result.reference.name = "a0"
    return root.SerializeToString()


def test_inspect_tree_into_head_exits_quietly(tmp_path):
    big = tmp_path / "big.pb"
    big.write_bytes(_wide_computation(5000))
    proc = subprocess.Popen([tffexec_script(), "inspect", str(big), "--tree"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
                            cwd=REPO)
    first = proc.stdout.readline()  # what `| head -1` does: one line, then leave
    proc.stdout.close()
    code = proc.wait(timeout=60)
    stderr = proc.stderr.read()
    assert first.startswith(b"file ")
    assert code in (0, 141), stderr
    assert stderr == b""


def test_inspect_tree_into_head_in_a_shell_pipeline(tmp_path):
    big = tmp_path / "big.pb"
    big.write_bytes(_wide_computation(5000))
    proc = subprocess.run(["bash", "-o", "pipefail", "-c",
                           f"'{tffexec_script()}' inspect '{big}' --tree | head -1"],
                          capture_output=True, env=clean_env(), cwd=REPO, timeout=60)
    assert proc.stdout.startswith(b"file ") and proc.stdout.count(b"\n") == 1
    assert proc.returncode in (0, 141) and proc.stderr == b""


def test_run_dash_on_a_terminal_says_it_waits_for_input():
    master, slave = pty.openpty()
    proc = subprocess.Popen([tffexec_script(), "run", "-", str(MEAN / "arg.pb")], stdin=slave,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
                            cwd=REPO)
    os.close(slave)
    try:
        said = b""
        deadline = time.monotonic() + 60
        while b"Ctrl-D" not in said and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 0.5)
            if ready:
                said += os.read(proc.stderr.fileno(), 4096)
            assert proc.poll() is None, said  # still waiting: nothing was typed yet
        assert b"waiting for input on standard input (a terminal)" in said
        os.write(master, b"\x04")  # Ctrl-D at the start of a line: end of input
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
        os.close(master)
    rest = proc.stderr.read()
    assert code == 3  # nothing typed: an empty computation
    assert b"Error: <stdin>: empty file" in rest


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_run_plain_into_jq():
    env = clean_env()
    env["PATH"] = f"{os.path.dirname(tffexec_script())}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c",
                           "tffexec run examples/fedavg_round/comp.pb examples/fedavg_round/arg.pb "
                           "--plain | jq .loss"], capture_output=True, env=env, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    expected = json.loads((FEDAVG / "expected.json").read_text())
    loss = expected["value"]["struct"][1]["value"]["federated"]["values"][0]["value"]
    assert float(proc.stdout) == pytest.approx(loss, rel=1e-5)


def test_benchmark_and_verbose_report_the_tensorflow_import_as_a_stage():
    proc = subprocess.run([tffexec_script(), "benchmark", str(FEDAVG / "comp.pb"),
                           str(FEDAVG / "arg.pb"), "--runs", "1", "--warmup", "0", "--json", "-v"],
                          capture_output=True, env=clean_env(), cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    log = proc.stderr.decode().splitlines()
    assert "tffexec: importing TensorFlow: started" in log
    done = [line for line in log if line.startswith("tffexec: importing TensorFlow: done in ")]
    assert len(done) == 1
    logged_s = float(done[0].split(" in ")[1].split()[0])
    report = json.loads(proc.stdout)
    assert report["import_tensorflow_s"] == pytest.approx(logged_s, abs=0.05)
    assert report["import_tensorflow_s"] > 0.2  # a fresh process imports TensorFlow here
    # The first call triggered the import; its reported time leaves the import out (the -v log
    # times the whole stage).
    first = next(line for line in log if line.startswith("tffexec: first call: done in "))
    first_logged_s = float(first.split(" in ")[1].split()[0])
    assert report["first_call_s"] == pytest.approx(first_logged_s - logged_s, abs=0.05)
