"""A sequence that never yields is bounded: `--max-sequence-seconds` stops reading it (exit 5).

The hostile dataset filters out every element of `range(2**62)`: it produces nothing, so
`--max-sequence-elements` (which counts produced elements) never trips, and before this bound only
`--timeout` stopped it. Each run here must end well under the test's own patience, with one line
naming the flag and nothing written.
"""
from __future__ import annotations

import json
import time

import federated_language as fl
import numpy as np
import pytest

from tffexec import policy as policy_lib
from tffexec.cli import main
from tffexec.formats.sequences import SequenceValue
from tffexec.formats.values import value_to_proto

from tffexec_test_support import CORPUS

INT32 = fl.TensorType(np.int32)
CLIENT_SEQUENCES = fl.FederatedType(fl.SequenceType(INT32), fl.CLIENTS)


def _tf():
    from tffexec import tf_runtime  # noqa: PLC0415

    return tf_runtime.tensorflow()


def _never_yielding() -> SequenceValue:
    tf = _tf()
    dataset = (tf.data.Dataset.range(2**62).map(lambda x: tf.cast(x, tf.int32))
               .filter(lambda x: x < 0))
    return SequenceValue.from_dataset(dataset, INT32)


def _filtered(n: int) -> SequenceValue:
    """A finite dataset of unknown length (a filter): the odd numbers below `n`."""
    tf = _tf()
    dataset = (tf.data.Dataset.range(n).map(lambda x: tf.cast(x, tf.int32))
               .filter(lambda x: x % 2 == 1))
    return SequenceValue.from_dataset(dataset, INT32)


@pytest.fixture(scope="module")
def hostile_arg(tmp_path_factory):
    """`{int32*}@CLIENTS` of two clients: a normal sequence, then one that never yields."""
    path = tmp_path_factory.mktemp("seq") / "arg.pb"
    path.write_bytes(value_to_proto([_filtered(8), _never_yielding()],
                                    CLIENT_SEQUENCES).SerializeToString())
    return path


def _run(runner, *args):
    start = time.monotonic()
    result = runner.invoke(main.cli, [str(a) for a in args], catch_exceptions=False)
    return result, time.monotonic() - start


@pytest.mark.parametrize("case", ["seq_sequence_reduce_intrinsic", "seq_tf_reduce_then_sum"])
def test_never_yielding_client_sequence_stops_with_exit_5_naming_the_flag(runner, hostile_arg,
                                                                         tmp_path, case):
    """Materialised by a sequence intrinsic, or fed to a TensorFlow graph: both are bounded."""
    out = tmp_path / "out.json"
    result, seconds = _run(runner, "run", CORPUS / case / "comp.pb", hostile_arg,
                           "--max-sequence-seconds", "2", "--output", out, "--timeout", "300")
    assert result.exit_code == 5, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--max-sequence-seconds" in lines[0] and "client 1" in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()
    assert seconds < 120  # the budget is 2 s; the rest is TensorFlow starting on a busy machine


def test_finite_filtered_sequences_are_read_whole_under_the_budget(runner, tmp_path):
    arg = tmp_path / "arg.pb"
    arg.write_bytes(value_to_proto([_filtered(8), _filtered(5)],
                                   CLIENT_SEQUENCES).SerializeToString())
    expected = {"seq_sequence_reduce_intrinsic": (1 + 3 + 5 + 7) + (1 + 3),
                "seq_tf_reduce_then_sum": (1 + 9 + 25 + 49) + (1 + 9)}  # sums, sums of squares
    for case, total in expected.items():
        result, _ = _run(runner, "run", CORPUS / case / "comp.pb", arg,
                         "--max-sequence-seconds", "60", "--plain")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == total


def test_elements_read_under_the_budget_equal_eager_iteration():
    bounded = _filtered(40).bind_policy(policy_lib.Policy(max_sequence_seconds=60)).elements()
    unbounded = _filtered(40).bind_policy(policy_lib.Policy(max_sequence_seconds=0)).elements()
    assert [int(x) for x in bounded] == [int(x) for x in unbounded] == list(range(1, 40, 2))


def test_the_budget_covers_the_whole_read_not_each_element():
    sequence = _never_yielding().bind_policy(policy_lib.Policy(max_sequence_seconds=1))
    start = time.monotonic()
    with pytest.raises(policy_lib.errors.PolicyError, match="after 0 elements"):
        sequence.elements()
    assert time.monotonic() - start < 60
