"""Quiet success: a batched map that pfor cannot vectorise falls back to the per-client path
without TensorFlow's error log on standard error; `-v` says so in one line.

Through the installed script in a real process: the records come from TensorFlow's Python logger,
whose handler writes to the process's standard error.
"""
from __future__ import annotations

import json
import subprocess

import federated_language as fl
import numpy as np
import pytest

from tffexec import tensorflow as tfc
from tffexec_test_support import clean_env, tffexec_script


@pytest.fixture(scope="module")
def loop_case(tmp_path_factory):
    """A federated_map of a `tf.while_loop` (pfor cannot vectorise it) over 4 clients."""
    import tensorflow as tf  # noqa: PLC0415

    def doubled_x_times(x):
        return tf.while_loop(lambda i, v: i < x, lambda i, v: (i + 1, v * 2),
                             [tf.constant(0), tf.constant(1)])[1]

    client = tfc.as_computation(tfc.tensorflow_computation(doubled_x_times,
                                                           fl.TensorType(np.int32)))

    @fl.federated_computation(fl.FederatedType(np.int32, fl.CLIENTS))
    def comp(x):
        return fl.federated_map(client, x)

    folder = tmp_path_factory.mktemp("loop")
    (folder / "comp.pb").write_bytes(comp.to_proto().SerializeToString())
    (folder / "arg.json").write_text("[1, 2, 3, 4]")
    return folder


def _run(folder, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tffexec_script(), "run", str(folder / "comp.pb"), str(folder / "arg.json"), "--plain",
         *flags], capture_output=True, text=True, timeout=300, env=clean_env(), check=False)


def test_a_map_pfor_cannot_vectorise_succeeds_with_nothing_on_stderr(loop_case):
    done = _run(loop_case)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [2, 4, 8, 16]
    assert done.stderr == ""


def test_verbose_reports_the_fallback_in_one_line_naming_the_op(loop_case):
    done = _run(loop_case, "-v")
    assert done.returncode == 0, done.stderr
    assert "ERROR:tensorflow" not in done.stderr
    fallback = [line for line in done.stderr.splitlines() if "pfor" in line]
    assert len(fallback) == 1, done.stderr
    assert "runs client by client" in fallback[0] and "While" in fallback[0]
