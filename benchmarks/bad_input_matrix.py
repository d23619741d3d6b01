"""The bad-input matrix of issue 15: ~65 hostile or broken inputs, each run through the installed
script, each classified PASS or FAIL (with why). An audit, not a test: run it against this
checkout and an older one to count what the hardening fixed.

Every entry runs `<python> -m tffexec ...` in its own process group (`--tffexec-python`, default:
this interpreter), with a wall-clock limit and its peak memory read from `wait4`. PASS means: the
expected exit status; on failure exactly one line on standard error, naming what it must name,
no traceback; no output file (not even a temp file) left behind; memory under the entry's bound;
no hang; and, for outputs, the special file is written through and left as it was. The inputs
are built in a temp folder by the generators the test suite already has (tests/test_bad_inputs.py,
test_bounded_reads.py, test_bounded_decoding.py, test_static_agree.py, test_outputs_through.py,
benchmarks/bench_wide_types.py): the matrix reuses them rather than copying them.

Usage:

    .venv/bin/python benchmarks/bad_input_matrix.py [--tffexec-python PATH] [--only ID,...]
        [--timeout S] [-v]

It needs pytest and TensorFlow in the interpreter that runs it (to build the inputs), not in the
one it tests.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import pathlib
import resource
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable

REPO = pathlib.Path(__file__).resolve().parents[1]
LIMIT = "1M"
#: Peak memory any refusal may use (MB): TensorFlow alone is ~600 MB.
DEFAULT_MAX_MB = 1500
#: What a bounded read may use over the process's own baseline (MB), as the issue asks.
FLAT_MB = 100
TIME = "/usr/bin/time"  # GNU time: the peak resident memory of the command (%M)
#: Address space each audited process may map (GiB): an unbounded read of /dev/zero by an older
#: checkout must fail there, not take the shared machine's memory (TensorFlow maps ~3 GiB).
ADDRESS_SPACE_GIB = 6


@dataclasses.dataclass
class Entry:
    """One hostile input: the command line and what must come out."""

    id: str
    group: str
    argv: list[str]
    codes: tuple[int, ...]
    fragments: tuple[str, ...] = ()  # must appear in the one line on stderr
    stdin: str | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    output: pathlib.Path | None = None  # must not exist afterwards (nor its temp files)
    timeout: float | None = None
    flat: bool = False  # memory bounded by the baseline + FLAT_MB
    one_line: bool = True  # False for `validate` reporting problems: a line each, then a summary
    setup: Callable[[], Callable[[], str | None]] | None = None  # returns the after-check


@dataclasses.dataclass
class Outcome:
    entry: Entry
    ok: bool
    why: str
    seconds: float
    peak_mb: float


class _TmpFactory:
    """What the test fixtures expect of pytest's `tmp_path_factory`."""

    def __init__(self, root: pathlib.Path):
        self.root = root

    def mktemp(self, name: str) -> pathlib.Path:
        path = pathlib.Path(tempfile.mkdtemp(prefix=name, dir=self.root))
        return path


def _tests(name: str):
    """A module of the test suite, imported for its generators."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    return importlib.import_module(name)


def _bench_wide():
    benchmarks = str(REPO / "benchmarks")
    if benchmarks not in sys.path:
        sys.path.insert(0, benchmarks)
    return importlib.import_module("bench_wide_types")


# ------------------------------------------------------------------------------------ entries

def build_entries(root: pathlib.Path, builders: tuple[str, ...] | None = None) -> list[Entry]:
    """Every entry (or those of the named `BUILDERS`), its inputs written under `root`."""
    entries: list[Entry] = []
    for name, build in BUILDERS.items():
        if builders is None or name in builders:
            entries += build(root)
    return entries


def _bounded_reads(root: pathlib.Path) -> list[Entry]:
    reads = _tests("test_bounded_reads")
    sum_, running = reads.SUM, reads.RUNNING_SUM
    comp, arg = str(sum_ / "comp.pb"), str(sum_ / "arg.pb")
    iterate = ["iterate", "--next", str(running / "next.pb"), "--rounds", "1"]
    sparse = root / "sparse6g.pb"
    with open(sparse, "wb") as f:
        f.truncate(6 << 30)
    named = reads.CONFORMANCE / "fed_named_struct"
    from tffexec.formats import loading  # noqa: PLC0415

    names = [e.name for e in loading.load_computation(named / "comp.pb")
             .type.function.parameter.struct.element]
    parts = [a for name in names for a in ("--arg", f"{name}=/dev/zero")]
    state_dir = root / "state_dev_zero"
    state_dir.mkdir()
    (state_dir / "checkpoint.json").symlink_to("/dev/zero")
    rows = [
        ("comp_dev_zero", ["run", "/dev/zero", arg, "--max-computation-bytes", LIMIT], None),
        ("arg_dev_zero", ["run", comp, "/dev/zero", "--max-value-bytes", LIMIT], None),
        ("expect_dev_zero", ["run", comp, arg, "--expect", "/dev/zero", "--max-value-bytes",
                             LIMIT], None),
        ("validate_arg_dev_zero", ["validate", comp, "/dev/zero", "--max-value-bytes", LIMIT],
         None),
        ("iterate_data_dev_zero", [*iterate, "--init", str(running / "init.pb"), "--data",
                                   "/dev/zero", "--max-value-bytes", LIMIT], None),
        ("iterate_state_dev_zero", [*iterate, "--state", "/dev/zero", "--data",
                                    str(running / "clients"), "--max-value-bytes", LIMIT], None),
        ("arg_part_dev_zero", ["run", str(named / "comp.pb"), *parts, "--max-value-bytes",
                               LIMIT], None),
        ("checkpoint_dev_zero", [*iterate, "--init", str(running / "init.pb"), "--data",
                                 str(running / "clients"), "--state-dir", str(state_dir)], None),
        ("stdin_endless", ["run", comp, "-", "--max-value-bytes", LIMIT], "/dev/zero"),
        ("sparse_6gb_argument", ["run", comp, str(sparse)], None),
    ]
    return [Entry(id_, "bounded reads", [*argv, "--output", str(_out(root, id_))]
                  if argv[0] == "run" else argv, (5,), stdin=stdin, output=_out(root, id_),
                  flat=True)
            for id_, argv, stdin in rows]


def _out(root: pathlib.Path, id_: str) -> pathlib.Path:
    """The output path of one entry (never shared: a partial output would fail the next)."""
    return root / f"{id_}_out.json"


def _declared_sizes(root: pathlib.Path) -> list[Entry]:
    reads = _tests("test_bounded_reads")
    decoding = _tests("test_bounded_decoding")
    import zipfile  # noqa: PLC0415

    legacy, value_file = reads._legacy_tensor, reads._value_file
    fills = {
        "tensorproto_repeat": lambda v: legacy(v, 3, [10**9], int_val=[7]),
        "tensorproto_zeros": lambda v: legacy(v, 1, [10**5, 10**5]),
        "tensorproto_strings": lambda v: legacy(v, 7, [10**9], string_val=[b"x" * 50]),
        "array_past_2_64": lambda v: (v.array.shape.dim.extend([2**32] * 3),
                                      setattr(v.array, "dtype", 3)),
        "struct_of_tensorproto": lambda v: [legacy(v.struct.element.add().value, 9,
                                                   [10**4, 10**4], int64_val=[1])
                                            for _ in range(3)],
    }
    entries = [Entry(id_, "declared sizes", ["convert", str(value_file(root, f"{id_}.pb", fill)),
                                              str(_out(root, id_))], (5,), (f"{id_}.pb",),
                     output=_out(root, id_))
               for id_, fill in fills.items()]

    def wrap(value):
        value.array.dtype = 3
        value.array.shape.dim.extend([2**32, 2**32, 0])
        value.array.content = b"1234"
    out = _out(root, "shape_product_wraps_2_64")
    entries.append(Entry("shape_product_wraps_2_64", "declared sizes",
                         ["convert", str(value_file(root, "wrap.pb", wrap)), str(out)], (4,),
                         ("wrap.pb",), output=out))
    declared = root / "declared.npz"
    with zipfile.ZipFile(declared, "w") as archive:
        archive.writestr("value.npy", reads._npy_header_only((10**5, 10**5)))
    sum_comp = str(reads.SUM / "comp.pb")
    out = _out(root, "npz_header_declares_80gb")
    entries.append(Entry("npz_header_declares_80gb", "declared sizes",
                         ["convert", str(declared), str(out), "--type-of", sum_comp], (5,),
                         ("declared.npz",), output=out))
    splat = root / "splat.pb"
    reads._splat_constant_computation(splat, [100_000, 100_000])
    out = _out(root, "graph_const_splat_40gb")
    entries.append(Entry("graph_const_splat_40gb", "declared sizes",
                         ["run", str(splat), "--output", str(out)], (5,), ("Const",),
                         output=out))
    huge = root / "huge_param.pb"
    decoding._huge_parameter_computation(huge)
    out = _out(root, "template_for_40gb_parameter")
    entries.append(Entry("template_for_40gb_parameter", "declared sizes",
                         ["template", str(huge), "-o", str(out)], (5,), output=out))
    for id_, text in (("json_5000_digit_int", "[" + "9" * 5000 + ", 1]"),
                      ("json_4000_digit_int", "[" + "9" * 4000 + ", 1]"),
                      ("json_overflowing_float", "[1e999, 1]")):
        path = root / f"{id_}.json"
        path.write_text(text)
        out = _out(root, id_)
        entries.append(Entry(id_, "huge JSON numbers", ["run", sum_comp, str(path), "--output",
                                                         str(out)], (4,), (path.name,),
                             output=out))
    return entries


def _clients_and_checkpoints(root: pathlib.Path) -> list[Entry]:
    reads = _tests("test_bounded_reads")
    sum_ = reads.SUM
    out = _out(root, "client_count_before_members")

    def bomb(value):
        value.federated.type.placement.value.uri = "clients"
        for _ in range(11):
            value.federated.value.add().array.dtype = 999
    members = reads._value_file(root, "clients_bomb.pb", bomb)
    entries = [
        Entry("client_count_before_members", "client counts",
              ["run", str(sum_ / "comp.pb"), str(members), "--max-clients", "10", "--output",
               str(out)], (5,), ("clients_bomb.pb", "--max-clients"), output=out),
        Entry("clients_flag_over_limit", "client counts",
              ["run", str(reads.CONFORMANCE / "fed_value_clients_sum" / "comp.pb"), "--clients",
               "1000000000", "--output", str(_out(root, "clients_flag"))], (5,),
              ("--max-clients",), output=_out(root, "clients_flag")),
    ]
    running = reads.RUNNING_SUM
    contents = {
        "checkpoint_is_a_list": "[1, 2, 3]",
        "checkpoint_round_infinity":
            '{"format": "tffexec-checkpoint/1", "round": Infinity, "state": "state-000001.pb", '
            '"seed": 1, "clients_per_round": null, "next_sha256": "x", "state_type": "int32"}',
        "checkpoint_state_escapes":
            '{"format": "tffexec-checkpoint/1", "round": 1, "state": "../../etc/passwd", '
            '"seed": 1, "clients_per_round": null, "next_sha256": "x", "state_type": "int32"}',
        "checkpoint_wrong_types":
            '{"format": "tffexec-checkpoint/1", "round": "1", "state": "state-000001.pb", '
            '"seed": [], "clients_per_round": {}, "next_sha256": 5, "state_type": "int32"}',
        "checkpoint_5000_digits": "1" * 5000,
    }
    for id_, text in contents.items():
        folder = root / id_
        folder.mkdir()
        (folder / "checkpoint.json").write_text(text)
        entries.append(Entry(id_, "hostile checkpoint.json",
                             ["iterate", "--next", str(running / "next.pb"), "--rounds", "1",
                              "--init", str(running / "init.pb"), "--data",
                              str(running / "clients"), "--state-dir", str(folder)], (4,),
                             ("checkpoint.json",),
                             setup=_folder_unchanged(folder, ["checkpoint.json"])))
    import zipfile  # noqa: PLC0415

    raw = root / "raw_member.npz"
    out = _out(root, "npz_member_not_npy")
    with zipfile.ZipFile(raw, "w") as archive:
        archive.writestr("value", b"\x01\x02\x03\x04")
    entries.append(Entry("npz_member_not_npy", "malformed npz",
                         ["convert", str(raw), str(out), "--type-of", str(sum_ / "comp.pb")],
                         (4,), ("raw_member.npz",), output=out))
    return entries


def _folder_unchanged(folder: pathlib.Path, names: list[str]):
    def setup():
        def after() -> str | None:
            found = sorted(p.name for p in folder.iterdir())
            return None if found == names else f"the folder now holds {found}"
        return after
    return setup


def _wide_and_sequences(root: pathlib.Path) -> list[Entry]:
    wide = root / "wide_100000.pb"
    wide.write_bytes(_bench_wide().wide_computation(100_000).SerializeToString())
    entries = [Entry("validate_wide_type_1e5", "wide types",
                     ["validate", str(wide), "--clients", "2"], (0,), timeout=30)]
    import federated_language as fl  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from tffexec import tf_runtime  # noqa: PLC0415
    from tffexec.formats.sequences import SequenceValue  # noqa: PLC0415
    from tffexec.formats.values import value_to_proto  # noqa: PLC0415

    tf = tf_runtime.tensorflow()
    int32 = fl.TensorType(np.int32)
    never = SequenceValue.from_dataset(
        tf.data.Dataset.range(2**62).map(lambda x: tf.cast(x, tf.int32)).filter(
            lambda x: x < 0), int32)
    fine = SequenceValue.from_dataset(
        tf.data.Dataset.range(4).map(lambda x: tf.cast(x, tf.int32)), int32)
    arg = root / "never_yields.pb"
    client_sequences = fl.FederatedType(fl.SequenceType(int32), fl.CLIENTS)
    arg.write_bytes(value_to_proto([fine, never], client_sequences).SerializeToString())
    conformance = REPO / "examples" / "conformance"
    for case in ("seq_sequence_reduce_intrinsic", "seq_tf_reduce_then_sum"):
        out = _out(root, case)
        entries.append(Entry(f"never_yielding_sequence_{case}", "never-yielding sequences",
                             ["run", str(conformance / case / "comp.pb"), str(arg), "--output",
                              str(out)], (5,), ("sequence",), output=out,
                             env={"TFFEXEC_MAX_SEQUENCE_SECONDS": "3"}, timeout=90))
    return entries


def _outputs(root: pathlib.Path) -> list[Entry]:
    through = _tests("test_outputs_through")
    mean = through.MEAN
    run = ["run", str(mean / "comp.pb"), str(mean / "arg.json")]
    entries = []

    fifo = root / "out_fifo"

    def fifo_setup():
        reader = through.FifoReader(root, fifo.name)  # makes the FIFO and reads it

        def after() -> str | None:
            try:
                data = reader.finish()
            except AssertionError as e:
                return str(e)
            return None if data.strip() else "nothing came through the FIFO"
        return after
    entries.append(_written_through("output_to_fifo", run, fifo, fifo_setup))

    pty_link = root / "to_a_terminal"

    def pty_setup():
        master, slave = os.openpty()
        pty_link.symlink_to(os.ttyname(slave))
        received = bytearray()

        def drain():
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                received.extend(chunk)
        thread = threading.Thread(target=drain, daemon=True)
        thread.start()

        def after() -> str | None:
            time.sleep(0.5)
            kept = pty_link.is_symlink()
            os.close(slave)
            os.close(master)
            if not kept:
                return "the symlink to the terminal was replaced"
            return None if received.strip() else "nothing reached the terminal"
        return after
    entries.append(_written_through("output_symlink_to_pty", run, pty_link, pty_setup))

    fd1 = root / "to_fd1"
    fd1.symlink_to("/proc/self/fd/1")

    entries.append(_written_through(
        "output_symlink_to_proc_self_fd_1", run, fd1, lambda: (
            lambda: None if fd1.is_symlink() else "the /proc/self/fd/1 symlink was replaced")))

    sock_path = root / "s.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    entries.append(Entry("output_to_unix_socket", "outputs", [*run, "--output", str(sock_path)],
                         (2,), ("socket",), setup=lambda: (
                             lambda: None if stat.S_ISSOCK(os.lstat(sock_path).st_mode)
                             else "the socket was replaced")))
    regular = root / "regular_target.json"
    regular.write_text("old")
    link = root / "link_to_regular.json"
    link.symlink_to(regular)
    entries.append(_written_through(
        "output_symlink_to_regular_file", run, link, lambda: (
            lambda: None if link.is_symlink() and regular.read_text() != "old"
            else "the symlink was replaced or its file not written")))
    return entries


def _written_through(id_: str, run: list[str], target: pathlib.Path, setup) -> Entry:
    """A run whose JSON result goes to `target` (a special file, or a symlink): exit 0, and
    `setup`'s after-check says whether `target` got it and was left as it was."""
    return Entry(id_, "outputs", [*run, "--output", str(target), "--format", "json"], (0,),
                 setup=setup)


def _state_sharing(root: pathlib.Path) -> list[Entry]:  # noqa: ARG001 - committed cases
    isolation = _tests("test_state_isolation")
    entries = []
    for case in isolation.CASES:
        folder = isolation.ISOLATION / case
        entries.append(Entry(f"state_isolation_{case}", "state sharing",
                             ["run", str(folder / "comp.pb"), str(folder / "arg.pb"), "--expect",
                              str(folder / "expected.json"), *isolation.ALLOW], (0,)))
    return entries


def _static_checks(root: pathlib.Path) -> list[Entry]:
    agree = _tests("test_static_agree")
    wrong = agree.apply_intrinsic("federated_sum", agree.at(agree.int32(), "server"),
                                  agree.at(agree.int32(), "server"))
    wrong_path = agree.write(root, wrong, "sum_server_to_server.pb")
    arg = root / "server_int.json"
    arg.write_text("3")
    entries = [
        Entry("intrinsic_declared_wrong_run", "wrong intrinsic types",
              ["run", str(wrong_path), str(arg)], (3,), ("federated_sum",)),
        Entry("intrinsic_declared_wrong_validate", "wrong intrinsic types",
              ["validate", str(wrong_path), str(arg)], (1,), ("federated_sum",),
              one_line=False),
    ]
    pair = root / "pair.json"
    pair.write_text('{"x": 3, "y": 4}')
    shadows = {
        "library_fn_named_readfile_called": dict(function_name="ReadFile", call_it=True),
        "library_fn_named_sub_uncalled": dict(function_name="Sub"),
        "gradient_of_readfile": dict(function_name="fn", gradient=("ReadFile", "grad")),
        "gradient_is_readfile": dict(function_name="fn", gradient=("fn", "ReadFile")),
    }
    for id_, how in shadows.items():
        path = agree.write(root, agree.with_library(agree.ADD, **how), f"{id_}.pb")
        entries.append(Entry(id_, "shadowing library functions", ["run", str(path), str(pair)],
                             (5,), (f"{id_}.pb",)))
    return entries


#: Rows of tests/test_bad_inputs.py's table: op-allowlist escapes and round-one classes.
BAD_INPUT_ROWS = (
    "write_file_inside_function", "write_file_through_function_attribute", "print_to_file",
    "py_func", "cache_dataset_to_file", "dataset_from_constant_string",
    "dataset_graph_in_string_parameter", "tfrecord_dataset_argument", "read_file_op",
    "trust_from_environment_is_ignored", "infinite_dataset_argument", "npz_decompression_bomb",
    "json_too_deep", "comp_nested_too_deeply",
)


def _op_escapes(root: pathlib.Path) -> list[Entry]:
    bad = _tests("test_bad_inputs")
    files = bad.files.__wrapped__(_TmpFactory(root))
    rows = {case.id: case for case in bad.CASES_TABLE}
    entries = []
    for id_ in BAD_INPUT_ROWS:
        case = rows[id_]
        out = _out(root, id_)
        must_not = [files.root / name for name in case.must_not_exist]

        def setup(must_not=must_not):
            return lambda: next((f"{p.name} was created" for p in must_not if p.exists()), None)
        entries.append(Entry(id_, "op allowlist / round one",
                             ["run", *(bad._resolve(a, files) for a in case.args), "--output",
                              str(out)], (case.exit_code,), case.fragments, env=dict(case.env),
                             output=out, setup=setup))
    return entries


#: Name -> the function that writes a group of entries' inputs and returns the entries.
BUILDERS: dict[str, Callable[[pathlib.Path], list[Entry]]] = {
    "bounded_reads": _bounded_reads,
    "declared_sizes": _declared_sizes,
    "clients_and_checkpoints": _clients_and_checkpoints,
    "wide_and_sequences": _wide_and_sequences,
    "outputs": _outputs,
    "state_sharing": _state_sharing,
    "static_checks": _static_checks,
    "op_escapes": _op_escapes,
}


# ------------------------------------------------------------------------------------ running

def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TFFEXEC_", "RAY_"))}
    env.update(extra)
    return env


def run_entry(python: str, entry: Entry, workdir: pathlib.Path, timeout: float,
              baseline_mb: float | None) -> Outcome:
    """Runs one entry and judges it."""
    after = entry.setup() if entry.setup else None
    limit = entry.timeout or timeout
    out_path, err_path = workdir / f"{entry.id}.out", workdir / f"{entry.id}.err"
    rss_path = workdir / f"{entry.id}.rss"
    stdin = open(entry.stdin, "rb") if entry.stdin else subprocess.DEVNULL  # noqa: SIM115
    start = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        # /usr/bin/time, not our own wait4: a child forked from this (TensorFlow-sized) process
        # inherits its memory high-water mark across exec.
        proc = subprocess.Popen([TIME, "-f", "%M", "-o", str(rss_path), python, "-m",
                                 "tffexec", *entry.argv], stdin=stdin, stdout=out,
                                stderr=err, cwd=workdir, env=_clean_env(entry.env),
                                start_new_session=True, preexec_fn=_cap_address_space)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        timer = threading.Timer(limit, kill)
        timer.start()
        proc.wait()
        timer.cancel()
    if stdin is not subprocess.DEVNULL:
        stdin.close()
    seconds = time.monotonic() - start
    peak_mb = _peak_kb(rss_path) / 1024
    stderr = err_path.read_text(errors="replace")
    why = _judge(entry, proc.returncode, stderr, killed.is_set(), peak_mb, baseline_mb, limit)
    if why is None and after is not None:
        why = after()
    elif after is not None:
        after()
    return Outcome(entry, why is None, why or "", seconds, peak_mb)


def _cap_address_space() -> None:
    cap = ADDRESS_SPACE_GIB << 30
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _peak_kb(path: pathlib.Path) -> float:
    """The `%M` figure /usr/bin/time wrote (its last line), 0 if it wrote none (killed)."""
    try:
        return float(path.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return 0.0


def _judge(entry: Entry, code: int, stderr: str, killed: bool, peak_mb: float,
           baseline_mb: float | None, limit: float) -> str | None:
    """Why the entry failed, or None."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    first = lines[0][:160] if lines else ""
    if killed:
        return f"hang: still running after {limit:g} s"
    if code not in entry.codes:
        return f"exit {code}, expected {'/'.join(map(str, entry.codes))}: {first}"
    if "Traceback" in stderr:
        return "a traceback on stderr"
    if code != 0 and (len(lines) != 1 if entry.one_line else not lines):
        return f"{len(lines)} lines on stderr, expected one: {first}"
    if code == 0 and len(lines) > 1:
        return f"{len(lines)} lines on stderr on success"
    missing = [f for f in entry.fragments if f not in stderr]
    if missing:
        return f"the error does not name {missing}: {first}"
    if entry.output is not None:
        left = [p.name for p in entry.output.parent.glob(f"*{entry.output.name}*")]
        if left:
            return f"partial output left behind: {left}"
    bound = (baseline_mb + FLAT_MB) if entry.flat and baseline_mb else DEFAULT_MAX_MB
    if peak_mb > bound:
        return f"peak memory {peak_mb:.0f} MB, over {bound:.0f} MB"
    return None


def baseline(python: str, workdir: pathlib.Path) -> float:
    """Peak MB of a small refusal that reads nothing (the process's own footprint)."""
    probe = Entry("baseline", "", ["validate", str(REPO / "examples" / "conformance" /
                                                  "fed_sum_int32" / "comp.pb")], (0, 1))
    return run_entry(python, probe, workdir, 120, None).peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tffexec-python", default=sys.executable,
                        help="interpreter whose `-m tffexec` is audited (e.g. an older "
                             "checkout's .venv/bin/python)")
    parser.add_argument("--only", default="", help="comma-separated entry ids")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per entry")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every entry")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bad_input_matrix") as tmp:
        root = pathlib.Path(tmp)
        (root / "inputs").mkdir()
        entries = build_entries(root / "inputs")
        if args.only:
            wanted = set(args.only.split(","))
            entries = [e for e in entries if e.id in wanted]
        work = root / "work"
        work.mkdir()
        base = baseline(args.tffexec_python, work)
        print(f"{len(entries)} entries; {args.tffexec_python}; baseline {base:.0f} MB",
              flush=True)
        outcomes = []
        for entry in entries:
            outcome = run_entry(args.tffexec_python, entry, work, args.timeout, base)
            outcomes.append(outcome)
            if args.verbose or not outcome.ok:
                mark = "PASS" if outcome.ok else "FAIL"
                print(f"{mark} {entry.group:28} {entry.id:44} {outcome.seconds:6.1f} s "
                      f"{outcome.peak_mb:6.0f} MB {outcome.why}", flush=True)
    passed = sum(o.ok for o in outcomes)
    groups: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault(outcome.entry.group, []).append(outcome)
    for group, found in groups.items():
        print(f"  {group:32} {sum(o.ok for o in found)}/{len(found)}")
    print(f"PASS {passed} / FAIL {len(outcomes) - passed} of {len(outcomes)}")


if __name__ == "__main__":
    main()
