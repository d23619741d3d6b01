"""Nothing is read before its size is known: endless streams, huge sparse files and gigabytes on
standard input are refused at the byte limit, with flat memory, through the installed script.

Memory is the peak resident size of the tffexec process itself (`os.wait4`), compared with the
same command refused by a file's size alone (nothing read), which is the baseline.
"""
from __future__ import annotations

import json
import os
import pathlib
import select
import subprocess
import time

import pytest

from tffexec_test_support import CONFORMANCE, REPO, clean_env, tffexec_script

SUM = CONFORMANCE / "fed_sum_int32"
RUNNING_SUM = REPO / "examples" / "iterate" / "running_sum"
LIMIT = "1M"
#: Peak memory a refused read may add over the baseline (the issue's bound).
FLAT_MB = 100


def _peak_mb(args: list[str], *, stdin=subprocess.DEVNULL, timeout: float = 120
             ) -> tuple[int, str, str, float]:
    """(exit code, stdout, stderr, peak RSS in MB) of the installed script with `args`: the
    child's own peak from `os.wait4`; a child still running after `timeout` is killed."""
    proc = subprocess.Popen([tffexec_script(), *args], stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean_env())
    deadline = time.monotonic() + timeout
    out, err = b"", b""
    streams = {proc.stdout.fileno(): "out", proc.stderr.fileno(): "err"}
    while streams and time.monotonic() < deadline:
        ready, _, _ = select.select(list(streams), [], [], 1.0)
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                del streams[fd]
            elif streams[fd] == "out":
                out += data
            else:
                err += data
    if streams:
        proc.kill()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    proc.stderr.close()
    if streams:
        pytest.fail(f"tffexec {' '.join(args)} still reading after {timeout} s")
    return proc.returncode, out.decode(), err.decode(), usage.ru_maxrss / 1024


def _assert_refused(code: int, out: str, err: str, *names: str) -> None:
    assert code == 5, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "limit" in lines[0] and all(name in lines[0] for name in names), lines[0]


@pytest.fixture(scope="module")
def baseline_mb(tmp_path_factory) -> float:
    """Peak RSS of `run` refusing an over-limit regular file by its size (nothing read)."""
    over = tmp_path_factory.mktemp("baseline") / "over.pb"
    over.write_bytes(b"\0" * (2 << 20))
    code, out, err, peak = _peak_mb(["run", str(SUM / "comp.pb"), str(over),
                                     "--max-value-bytes", LIMIT])
    _assert_refused(code, out, err, "over.pb")
    return peak


def test_endless_device_as_argument_is_refused_at_the_limit_with_flat_memory(baseline_mb):
    code, out, err, peak = _peak_mb(["run", str(SUM / "comp.pb"), "/dev/zero",
                                     "--max-value-bytes", LIMIT])
    _assert_refused(code, out, err, "/dev/zero", "--max-value-bytes")
    assert peak - baseline_mb < FLAT_MB, (peak, baseline_mb)


def test_endless_standard_input_is_refused_at_the_limit_with_flat_memory(baseline_mb):
    with open("/dev/zero", "rb") as endless:
        code, out, err, peak = _peak_mb(["run", str(SUM / "comp.pb"), "-",
                                         "--max-value-bytes", LIMIT], stdin=endless)
    _assert_refused(code, out, err, "<stdin>", "--max-value-bytes")
    assert peak - baseline_mb < FLAT_MB, (peak, baseline_mb)


def test_six_gigabyte_sparse_argument_is_refused_by_its_size_with_flat_memory(
        tmp_path, baseline_mb):
    sparse = tmp_path / "huge.pb"
    sparse.touch()
    os.truncate(sparse, 6 << 30)
    code, out, err, peak = _peak_mb(["run", str(SUM / "comp.pb"), str(sparse)])
    _assert_refused(code, out, err, "huge.pb", "6,442,450,944 bytes", "--max-value-bytes")
    assert peak - baseline_mb < FLAT_MB, (peak, baseline_mb)


# -- every other input of a command, in-process (CliRunner): exit 5, one line ---------------

def _cli(runner, args: list[str], **kwargs):
    from tffexec.cli.main import cli  # noqa: PLC0415

    return runner.invoke(cli, args, catch_exceptions=False, **kwargs)


def _one_line_refusal(result, *names: str) -> None:
    assert result.exit_code == 5, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert all(name in lines[0] for name in names), lines[0]


@pytest.mark.parametrize("args", [
    pytest.param(["run", "/dev/zero", str(SUM / "arg.pb"), "--max-computation-bytes", LIMIT],
                 id="computation"),
    pytest.param(["run", str(SUM / "comp.pb"), str(SUM / "arg.pb"), "--expect", "/dev/zero",
                  "--max-value-bytes", LIMIT], id="expect"),
    pytest.param(["validate", str(SUM / "comp.pb"), "/dev/zero", "--max-value-bytes", LIMIT],
                 id="validate-argument"),
    pytest.param(["iterate", "--next", str(RUNNING_SUM / "next.pb"), "--rounds", "1",
                  "--init", str(RUNNING_SUM / "init.pb"), "--data", "/dev/zero",
                  "--max-value-bytes", LIMIT], id="iterate-data"),
    pytest.param(["iterate", "--next", str(RUNNING_SUM / "next.pb"), "--rounds", "1",
                  "--state", "/dev/zero", "--data", str(RUNNING_SUM / "clients"),
                  "--max-value-bytes", LIMIT], id="iterate-state"),
])
def test_endless_input_to_any_command_is_refused_at_the_limit(runner, args):
    _one_line_refusal(_cli(runner, args), "/dev/zero", "limit")


def test_endless_argument_part_is_refused_at_the_limit(runner, tmp_path):
    named = CONFORMANCE / "fed_named_struct"
    from tffexec.formats import loading  # noqa: PLC0415

    comp = loading.load_computation(named / "comp.pb")
    parts = [arg for element in comp.type.function.parameter.struct.element
             for arg in ("--arg", f"{element.name}=/dev/zero")]
    result = _cli(runner, ["run", str(named / "comp.pb"), *parts, "--max-value-bytes", LIMIT])
    _one_line_refusal(result, "/dev/zero", "--max-value-bytes")


def test_endless_checkpoint_file_is_refused(runner, tmp_path):
    (tmp_path / "checkpoint.json").symlink_to("/dev/zero")
    result = _cli(runner, ["iterate", "--next", str(RUNNING_SUM / "next.pb"), "--rounds", "1",
                           "--init", str(RUNNING_SUM / "init.pb"), "--data",
                           str(RUNNING_SUM / "clients"), "--state-dir", str(tmp_path)])
    _one_line_refusal(result, "checkpoint.json", "limit")


@pytest.mark.parametrize("content", [
    "[1, 2, 3]", '"checkpoint"', "null",
    '{"format": "tffexec-checkpoint/1", "round": Infinity, "state": "state-000001.pb", '
    '"seed": 1, "clients_per_round": null, "next_sha256": "x", "state_type": "int32"}',
    '{"format": "tffexec-checkpoint/1", "round": 1, "state": "../../etc/passwd", '
    '"seed": 1, "clients_per_round": null, "next_sha256": "x", "state_type": "int32"}',
    '{"format": "tffexec-checkpoint/1", "round": "1", "state": "state-000001.pb", '
    '"seed": [], "clients_per_round": {}, "next_sha256": 5, "state_type": "int32"}',
    '{"format": ["tffexec-checkpoint/1"]}', "1" * 5000, "\udcff".encode("utf-8",
                                                                       "surrogateescape").hex(),
])
def test_hostile_checkpoint_json_is_an_argument_error_naming_it(runner, tmp_path, content):
    (tmp_path / "checkpoint.json").write_text(content, encoding="utf-8")
    result = _cli(runner, ["iterate", "--next", str(RUNNING_SUM / "next.pb"), "--rounds", "1",
                           "--init", str(RUNNING_SUM / "init.pb"), "--data",
                           str(RUNNING_SUM / "clients"), "--state-dir", str(tmp_path)])
    assert result.exit_code == 4, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "checkpoint.json" in lines[0], result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json"]


def test_bounded_read_returns_everything_up_to_the_limit(tmp_path):
    from tffexec.formats import limits  # noqa: PLC0415

    exact = tmp_path / "exact.bin"
    exact.write_bytes(bytes(range(256)) * 4)
    assert limits.read_file_bounded(exact, 1024, error=Exception) == exact.read_bytes()
    with open("/dev/zero", "rb") as endless, pytest.raises(Exception, match="larger than"):
        limits.read_bounded(endless, 3 * limits.CHUNK + 7)


def test_json_file_of_the_checkpoint_is_read_back(tmp_path):
    """A checkpoint the loop wrote is still accepted by the stricter reader."""
    import federated_language as fl  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from tffexec import checkpoints  # noqa: PLC0415

    saver = checkpoints.Checkpoints(tmp_path, every=1)
    saver.save(3, np.int32(7), fl.TensorType(np.int32), seed=11, clients_per_round=None,
               next_sha256="abc")
    found = saver.latest()
    assert (found.round, found.seed, found.clients_per_round) == (3, 11, None)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["state"] == found.state_path.name
    assert found.state_path == pathlib.Path(tmp_path) / "state-000003.pb"


@pytest.mark.parametrize("command", [
    pytest.param(["convert", "-", "out.json"], id="convert"),
    pytest.param(["inspect", "-"], id="inspect"),
])
def test_read_that_never_ends_stops_at_the_timeout(tmp_path, command):
    """Standard input left open with nothing on it: --timeout ends the wait (exit 124)."""
    read_end, write_end = os.pipe()  # the write end stays open, silent, until the end
    try:
        proc = subprocess.run([tffexec_script(), *command, "--timeout", "1"], cwd=tmp_path,
                              stdin=read_end, capture_output=True, env=clean_env(), timeout=60)
    finally:
        os.close(read_end)
        os.close(write_end)
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 124, err
    assert out == b"" and len(err.decode().strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


# -- declared sizes checked before anything is decoded or expanded ---------------------------

def _value_file(tmp_path, name: str, fill) -> pathlib.Path:
    from tffexec.formats.protos import executor_pb2  # noqa: PLC0415

    value = executor_pb2.Value()
    fill(value)
    path = tmp_path / name
    path.write_bytes(value.SerializeToString())
    return path


def _legacy_tensor(value, dtype: int, dims: list[int], **lists) -> None:
    """An old-style `Any(tensorflow.TensorProto)` tensor (TFF <= 0.82)."""
    from tffexec.formats.protos import tf_graph_pb2  # noqa: PLC0415

    tensor = tf_graph_pb2.TensorProto(dtype=dtype)
    for size in dims:
        tensor.tensor_shape.dim.add(size=size)
    for field, items in lists.items():
        getattr(tensor, field).extend(items)
    value.tensor.type_url = "type.googleapis.com/tensorflow.TensorProto"
    value.tensor.value = tensor.SerializeToString()


@pytest.mark.parametrize("fill", [
    pytest.param(lambda v: _legacy_tensor(v, 3, [10**9], int_val=[7]), id="tensorproto-repeat"),
    pytest.param(lambda v: _legacy_tensor(v, 1, [10**5, 10**5]), id="tensorproto-zeros"),
    pytest.param(lambda v: _legacy_tensor(v, 7, [10**9], string_val=[b"x" * 50]),
                 id="tensorproto-strings"),
    pytest.param(lambda v: (v.array.shape.dim.extend([2**32] * 3),
                            setattr(v.array, "dtype", 3)), id="array-past-2**64"),
    pytest.param(lambda v: [_legacy_tensor(v.struct.element.add().value, 9, [10**4, 10**4],
                                           int64_val=[1]) for _ in range(3)],
                 id="struct-of-tensorproto"),
])
def test_tensor_declaring_more_than_the_limit_is_refused_before_it_is_expanded(
        runner, tmp_path, fill):
    path = _value_file(tmp_path, "small.pb", fill)
    assert path.stat().st_size < 300
    result = _cli(runner, ["convert", str(path), str(tmp_path / "out.json")])
    _one_line_refusal(result, "small.pb", "--max-value-bytes")
    assert not (tmp_path / "out.json").exists()


def test_declared_shape_whose_product_wraps_at_2_64_is_an_argument_error(runner, tmp_path):
    def fill(value):
        value.array.dtype = 3
        value.array.shape.dim.extend([2**32, 2**32, 0])
        value.array.content = b"1234"
    path = _value_file(tmp_path, "wrap.pb", fill)
    result = _cli(runner, ["convert", str(path), str(tmp_path / "out.json")])
    assert result.exit_code == 4, result.output
    assert "larger than any array can be" in result.output and "Traceback" not in result.output


def test_client_count_is_checked_before_any_member_is_decoded(runner, tmp_path):
    def fill(value):
        value.federated.type.placement.value.uri = "clients"
        for _ in range(11):  # members of an unknown dtype: decoding any would fail (exit 4)
            value.federated.value.add().array.dtype = 999
    path = _value_file(tmp_path, "clients.pb", fill)
    result = _cli(runner, ["run", str(SUM / "comp.pb"), str(path), "--max-clients", "10"])
    _one_line_refusal(result, "clients.pb", "11 clients", "--max-clients")


def _npy_header_only(shape: tuple, descr: str = "<f8") -> bytes:
    """A .npy file whose header declares `shape` and which holds no data at all."""
    import io  # noqa: PLC0415

    from numpy.lib import format as npy  # noqa: PLC0415

    buffer = io.BytesIO()
    npy.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False,
                                        "shape": shape})
    return buffer.getvalue()


def test_npz_member_declaring_more_than_the_limit_is_refused_from_its_header(runner, tmp_path):
    import zipfile  # noqa: PLC0415

    path = tmp_path / "declared.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("value.npy", _npy_header_only((10**5, 10**5)))
    result = _cli(runner, ["convert", str(path), str(tmp_path / "out.json"), "--type-of",
                           str(SUM / "comp.pb")])
    _one_line_refusal(result, "declared.npz", "--max-value-bytes")


def test_npz_member_that_is_not_an_npy_array_is_an_argument_error(runner, tmp_path):
    import zipfile  # noqa: PLC0415

    path = tmp_path / "raw.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("value", b"\x01\x02\x03\x04")
    result = _cli(runner, ["convert", str(path), str(tmp_path / "out.json"), "--type-of",
                           str(SUM / "comp.pb")])
    assert result.exit_code == 4, result.output
    assert "raw.npz" in result.output and "not a .npy array" in result.output
    assert len(result.output.strip().splitlines()) == 1


def _splat_constant_computation(path: pathlib.Path, shape: list[int]) -> None:
    """A no-argument computation whose graph holds one `Const` listing a single value for
    `shape`: a few bytes that TensorFlow expands to the whole shape when it imports the graph."""
    import tensorflow as tf  # noqa: PLC0415

    from tffexec import tensorflow as tft  # noqa: PLC0415

    comp = tft.tensorflow_computation(lambda: tf.constant(1.0, shape=shape)[0, :2])
    path.write_bytes(comp.SerializeToString())


def test_graph_constant_expanding_past_the_value_limit_is_refused_before_import(runner, tmp_path):
    comp = tmp_path / "splat.pb"
    _splat_constant_computation(comp, [100_000, 100_000])  # 40 GB once expanded
    assert comp.stat().st_size < 2000
    _one_line_refusal(_cli(runner, ["run", str(comp)]), "Const", "40,000,000,000 bytes",
                      "--max-value-bytes")
    reported = _cli(runner, ["validate", str(comp)])  # validate reports problems: exit 1
    assert reported.exit_code == 1 and "40,000,000,000 bytes" in reported.output, reported.output


def test_graph_constant_under_the_value_limit_runs(runner, tmp_path):
    comp = tmp_path / "splat.pb"
    _splat_constant_computation(comp, [1000, 1000])  # 4 MB once expanded
    result = _cli(runner, ["run", str(comp), "--format", "json"])
    assert result.exit_code == 0, result.output
    refused = _cli(runner, ["run", str(comp), "--max-value-bytes", "1M"])
    assert refused.exit_code == 5 and "4,000,000 bytes" in refused.output
