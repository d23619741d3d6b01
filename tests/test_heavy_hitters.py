"""TFF's IBLT heavy hitters run under the default policy (issue 15 §7).

The case `iblt_heavy_hitters` was made by real TFF 0.87 (`examples/make_cases.py`). Its decoder
drains a `RandomShuffleQueueV2`, so the decoded rows come in a random order, and it carries the
round's wall-clock timestamp: `meta.json`'s `compare` says to compare the rows as a set, some
members exactly, and to ignore the timestamp. Also here: the in-memory queue family is admitted
(the file readers are not), each call gets fresh queues, a dequeue from an empty queue fails with
one line instead of hanging, and the TFF-compiled form (TF1 loops) runs the same under any
`PYTHONHASHSEED`.
"""
from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import time

import federated_language as fl
import numpy as np
import pytest
from tffexec_test_support import CASES, clean_env

from tffexec import tensorflow as tc
from tffexec.cli.main import cli

CASE = CASES / "iblt_heavy_hitters"
FORMS = ("comp.pb", "native_comp.pb")


def _tf():
    from tffexec import tf_runtime  # noqa: PLC0415

    return tf_runtime.tensorflow()


def comparable(tagged: dict, compare: dict):
    """What must agree between two renderings of the case's result, per `meta.compare`."""
    assert compare["kind"] == "rows_as_set"
    server = tagged["federated"]["values"][0]
    members = {m["name"]: m["value"] for m in server["struct"]}
    rows = sorted(zip(*(members[k]["value"] for k in compare["row_members"])))
    exact = {k: members[k] for k in compare["exact_members"]}
    assert set(members) == (set(compare["row_members"]) | set(compare["exact_members"])
                            | set(compare["ignored_members"]))
    return rows, exact


def _expected():
    meta = json.loads((CASE / "meta.json").read_text())
    return meta["compare"], json.loads((CASE / "expected.json").read_text())["value"]


def _run_json(runner, form: str, tmp_path: pathlib.Path, *extra: str) -> dict:
    out = tmp_path / f"{form}.json"
    result = runner.invoke(cli, ["run", str(CASE / form), str(CASE / "arg.pb"),
                                 "--output", str(out), *extra])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())["value"]


def test_the_case_records_how_to_compare():
    compare, expected = _expected()
    rows, exact = comparable(expected, compare)
    assert compare["ignored_members"] == ["round_timestamp"]
    assert len(rows) == 5 and exact["clients"]["value"] == 4


@pytest.mark.parametrize("form", FORMS)
def test_iblt_gives_tffs_rows_under_the_default_policy(runner, tmp_path, form):
    compare, expected = _expected()
    got = _run_json(runner, form, tmp_path)
    assert comparable(got, compare) == comparable(expected, compare)


def test_the_row_comparison_notices_a_wrong_count(runner, tmp_path):
    compare, expected = _expected()
    got = _run_json(runner, "comp.pb", tmp_path)
    server = got["federated"]["values"][0]
    counts = next(m for m in server["struct"] if m["name"] == "heavy_hitters_counts")
    counts["value"]["value"][0] += 1
    assert comparable(got, compare) != comparable(expected, compare)


def test_compiled_form_is_the_same_under_any_hash_seed(tmp_path):
    """TensorFlow's `prune` copied TF1 loops in an order that depended on the process (exit 3
    for some PYTHONHASHSEED values); the GraphDef-level prune does not."""
    compare, expected = _expected()
    for seed in ("0", "2", "7"):  # 0 and 2 failed before the fix
        out = tmp_path / f"seed{seed}.json"
        done = subprocess.run(
            [sys.executable, "-m", "tffexec", "run", str(CASE / "native_comp.pb"),
             str(CASE / "arg.pb"), "--output", str(out)],
            env=clean_env(PYTHONHASHSEED=seed), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"PYTHONHASHSEED={seed}: {done.stderr[-500:]}"
        got = json.loads(out.read_text())["value"]
        assert comparable(got, compare) == comparable(expected, compare)


@pytest.mark.parametrize("form", FORMS)
def test_repeated_calls_in_one_process_give_tffs_rows(form):
    """One stack, three calls: the decoder's queues start empty each time (it drains them)."""
    from tffexec import runner as runner_lib  # noqa: PLC0415
    from tffexec.formats import jsonfmt, loading  # noqa: PLC0415

    compare, expected = _expected()
    comp = loading.load_computation(CASE / form)
    result_type = fl.Type.from_proto(comp.type).result
    with runner_lib.Runner() as stack:
        for _ in range(3):
            result = stack.run(comp, CASE / "arg.pb")
            got = json.loads(json.dumps(jsonfmt.tagged(result, result_type), default=str))
            assert comparable(got, compare) == comparable(expected, compare)


# ------------------------------------------------------------------------- queue graphs

def _save(tmp_path: pathlib.Path, name: str, proto) -> pathlib.Path:
    path = tmp_path / f"{name}.pb"
    path.write_bytes(proto.SerializeToString())
    return path


def _queue_size_after_enqueue(x):
    """Enqueues `x` into a queue with a fixed shared_name; returns the queue's size."""
    tf = _tf()
    queue = tf.raw_ops.FIFOQueueV2(component_types=[tf.int32], shapes=[[]], capacity=16,
                                   shared_name="leaky")
    enqueue = tf.raw_ops.QueueEnqueueV2(handle=queue, components=[x])
    with tf.control_dependencies([enqueue]):
        return tf.raw_ops.QueueSizeV2(handle=queue)


def test_each_call_starts_with_an_empty_queue(runner, tmp_path):
    """A federated_map over 4 clients of a graph whose queue has a shared_name: every client
    sees a queue holding only its own element (TFF: [1, 1, 1, 1])."""
    leaf = tc.as_computation(tc.tensorflow_computation(_queue_size_after_enqueue,
                                                       fl.TensorType(np.int32)))

    @fl.federated_computation(fl.FederatedType(np.int32, fl.CLIENTS))
    def comp(x):
        return fl.federated_map(leaf, x)

    path = _save(tmp_path, "queue_size", comp.to_proto())
    for _ in range(2):  # two runs of the same computation in one process
        result = runner.invoke(cli, ["run", str(path), "--arg-format", "json", "-",
                                     "--format", "json"], input="[1, 2, 3, 4]")
        assert result.exit_code == 0, result.output
        values = [v["value"] for v in json.loads(result.stdout)["value"]["federated"]["values"]]
        assert values == [1, 1, 1, 1]


def _dequeue_from_empty_queue():
    tf = _tf()
    queue = tf.raw_ops.FIFOQueueV2(component_types=[tf.int32], shapes=[[]])
    return tf.raw_ops.QueueDequeueV2(handle=queue, component_types=[tf.int32])[0]


def test_dequeue_from_an_empty_queue_fails_with_one_line(runner, tmp_path):
    path = _save(tmp_path, "dequeue", tc.tensorflow_computation(_dequeue_from_empty_queue))
    started = time.monotonic()
    result = runner.invoke(cli, ["run", str(path), "--max-queue-wait", "1"])
    assert time.monotonic() - started < 30
    assert result.exit_code == 6, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--max-queue-wait 1" in lines[0], result.output
    assert "Traceback" not in result.output


def test_a_file_reader_is_still_refused(runner, tmp_path):
    def read_records():
        tf = _tf()
        files = tf.raw_ops.FIFOQueueV2(component_types=[tf.string], shapes=[[]])
        reader = tf.raw_ops.TFRecordReaderV2()
        record = tf.raw_ops.ReaderReadV2(reader_handle=reader, queue_handle=files)[1]
        return tf.strings.length(record)

    path = _save(tmp_path, "reader", tc.tensorflow_computation(read_records))
    result = runner.invoke(cli, ["run", str(path)])
    assert result.exit_code == 5, result.output
    assert "TFRecordReaderV2" in result.output and "FIFOQueueV2" not in result.output


def test_check_compares_the_rows_as_meta_json_says(tmp_path):
    """`tffexec check` reads meta.json's `compare`: the case passes in any row order, and a
    wrong count in one row still fails it (in-process `CaseRunner`: what `check` runs)."""
    from tffexec import checking  # noqa: PLC0415

    copy = tmp_path / CASE.name
    shutil.copytree(CASE, copy)
    expected = json.loads((copy / "expected.json").read_text())
    server = expected["value"]["federated"]["values"][0]
    counts = next(m for m in server["struct"] if m["name"] == "heavy_hitters_counts")
    counts["value"]["value"][0] += 1
    (copy / "expected.pb").unlink()
    (copy / "expected.json").write_text(json.dumps(expected))
    good = checking.discover([str(CASE)], form="comp")
    bad = checking.discover([str(copy)], form="comp")
    assert good[0].compare["kind"] == "rows_as_set"
    with checking.CaseRunner() as cases:
        assert cases.check(good[0]).status == checking.PASS
        verdict = cases.check(bad[0])
    assert verdict.status == checking.FAIL and "heavy_hitters_counts" in verdict.message
