"""Writing computations without TFF: `tffexec.tensorflow.computation`, `tffexec.save`/`load`.

Each feature of the decorator is used inside a `federated_language.federated_computation` and
called on the batched, unbatched local and threaded stacks. The round trips compare calling in
Python, `tffexec run`/`tffexec iterate` on the saved files, and real TFF 0.87 on the same files
(its results are committed by `examples/authoring/check_in_tff.py`, so no TFF is needed here).
"""
from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import pathlib
import re
import runpy
import shlex
import subprocess
import sys

import attrs
import federated_language as fl
import numpy as np
import pytest
import tensorflow as tf

import tffexec
import tffexec.tensorflow
from tffexec import errors
from tffexec.cli.main import cli
from tffexec.factories.config import StackConfig
from tffexec.formats import compare
from tffexec.formats import loading
from tffexec.formats import tf214_compat
from tffexec.formats.protos import tf_graph_pb2

computation = tffexec.tensorflow.computation
REPO = pathlib.Path(__file__).resolve().parents[1]
AUTHORING = REPO / "examples" / "authoring"
DOC = REPO / "docs" / "authoring.md"
README = REPO / "README.md"
STACKS = {"batched": StackConfig(),
          "local": StackConfig(batch=False),
          "threaded": StackConfig(kind="threaded", threads=2, clients_per_thread=1)}
Point = collections.namedtuple("Point", ["x", "y"])
# The threaded stack asks for TensorFlow thread counts that an earlier test's TensorFlow fixed.
pytestmark = pytest.mark.filterwarnings("ignore:TensorFlow is already running")


@attrs.define
class Pair:
    low: np.ndarray
    high: np.ndarray


@pytest.fixture(params=list(STACKS))
def stack(request):
    """Makes tffexec's context on one stack the default; restores the default stack after."""
    tffexec.install_context(STACKS[request.param])
    yield request.param
    tffexec.install_context()


def _clients(type_spec) -> fl.FederatedType:
    return fl.FederatedType(type_spec, fl.CLIENTS)


# -- the decorator, feature by feature ---------------------------------------------------------

def test_tensor_parameters_are_packed_into_a_named_struct_and_mapped_over_clients(stack):
    @computation(np.float32, np.float32)
    def scaled_sum(x, y):
        return x + 2.0 * y

    @fl.federated_computation(_clients(np.float32), _clients(np.float32))
    def total(xs, ys):
        return fl.federated_sum(fl.federated_map(scaled_sum, (xs, ys)))

    assert str(scaled_sum.type_signature) == "(<x=float32,y=float32> -> float32)"
    xs, ys = [1.0, 2.0, 3.0], [0.5, 0.25, 4.0]
    assert total(xs, ys) == pytest.approx(sum(xs) + 2 * sum(ys))


def test_structures_come_back_as_the_python_containers_they_were_written_with(stack):
    @computation(Point(np.int32, np.int32))
    def describe(point):
        return {"swapped": Point(point.y, point.x),
                "pair": Pair(tf.minimum(point.x, point.y), tf.maximum(point.x, point.y)),
                "sums": (point.x + point.y, [point.x * point.y])}

    @fl.federated_computation(_clients(describe.type_signature.parameter))
    def at_clients(points):
        return fl.federated_map(describe, points)

    results = at_clients([Point(1, 5), Point(7, 2)])
    assert [type(r) for r in results] == [dict, dict]
    second = results[1]
    assert isinstance(second["swapped"], Point) and second["swapped"] == Point(2, 7)
    assert isinstance(second["pair"], Pair) and (second["pair"].low, second["pair"].high) == (2, 7)
    assert isinstance(second["sums"], tuple) and isinstance(second["sums"][1], list)
    assert (second["sums"][0], second["sums"][1][0]) == (9, 14)


def test_sequence_parameters_are_datasets_and_returned_datasets_are_sequences(stack):
    @computation(fl.SequenceType(np.int64))
    def total(numbers):
        return numbers.map(lambda n: n * 10).reduce(np.int64(0), lambda a, b: a + b)

    @computation
    def first_numbers():
        return tf.data.Dataset.range(4)

    @fl.federated_computation(_clients(fl.SequenceType(np.int64)))
    def client_totals(datasets):
        return fl.federated_sum(fl.federated_map(total, datasets)), total(first_numbers())

    assert str(first_numbers.type_signature) == "( -> int64*)"
    datasets = [tf.data.Dataset.range(n) for n in (2, 3, 5)]
    federated, unplaced = client_totals(datasets)
    assert federated == 10 * (1 + 3 + 10)
    assert unplaced == 10 * (0 + 1 + 2 + 3)
    assert list(first_numbers().elements()) == [0, 1, 2, 3]


def test_variables_are_initialised_before_every_call_and_unused_updates_do_not_run(stack):
    @computation(np.int32)
    def counted(step):
        total = tf.Variable(100)
        with tf.control_dependencies([total.assign_add(step)]):
            return total.read_value()

    @computation(np.int32)
    def forgotten(step):
        total = tf.Variable(100)
        total.assign_add(step)  # nothing uses it: not run, as in TFF
        return total.read_value()

    @fl.federated_computation(_clients(np.int32))
    def both(steps):
        return fl.federated_map(counted, steps), fl.federated_map(forgotten, steps)

    for _ in range(2):  # no state survives a call
        assert both([1, 2]) == ([101, 102], [100, 100])


def test_lookup_tables_are_initialised_at_every_client(stack):
    @computation(np.str_)
    def city_id(city):
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(["oslo", "rome"], [1, 2]), default_value=-1)
        return table.lookup(city)

    @fl.federated_computation(_clients(np.str_))
    def ids(cities):
        return fl.federated_map(city_id, cities)

    assert ids(["rome", "lima", "oslo"]) == [2, -1, 1]


def test_seeded_random_ops_give_the_values_tensorflow_gives_for_that_seed(stack):
    @computation(np.float32)
    def noisy(x):
        return x + tf.random.stateless_uniform([3], seed=[4, 2])

    @computation
    def op_seeded():
        return tf.random.uniform([3], seed=5)

    @fl.federated_computation(_clients(np.float32))
    def at_clients(xs):
        return fl.federated_map(noisy, xs), op_seeded()

    noise = tf.random.stateless_uniform([3], seed=[4, 2]).numpy()
    clients, server = at_clients([0.0, 10.0])
    np.testing.assert_allclose(clients, [noise, 10.0 + noise], rtol=1e-6)
    np.testing.assert_array_equal(server, at_clients([0.0])[1])  # the op seed fixes it


def test_a_tensorflow_computation_called_inside_another_is_inlined_with_its_initialisers(stack):
    @computation(np.float32, np.float32)
    def offset_sum(x, y):
        offset = tf.Variable(1.0)
        return {"sum": x + y + offset, "product": x * y}

    @computation(fl.SequenceType(np.float32))
    def total(numbers):
        return numbers.reduce(np.float32(0), lambda a, b: a + b)

    @computation(np.float32)
    def outer(x):
        return offset_sum(x, 2.0)["sum"] * 10 + total(tf.data.Dataset.from_tensors(x).repeat(2))

    @fl.federated_computation(_clients(np.float32))
    def at_clients(xs):
        return fl.federated_map(outer, xs)

    assert at_clients([3.0, 0.0]) == [(3 + 2 + 1) * 10 + 6, (0 + 2 + 1) * 10]


def test_sparse_and_ragged_results_are_named_structs_of_their_component_tensors():
    @computation
    def sparse_and_ragged():
        return (tf.SparseTensor(indices=[[0, 1], [2, 3]], values=[1.0, 2.0], dense_shape=[3, 4]),
                tf.RaggedTensor.from_row_splits([1, 2, 3], [0, 1, 3]))

    assert str(sparse_and_ragged.type_signature) == (
        "( -> <<indices=int64[2,2],values=float32[2],dense_shape=int64[2]>,"
        "<flat_values=int32[3],nested_row_splits=<int64[3]>>>)")
    sparse, ragged = sparse_and_ragged()
    assert sparse["indices"].tolist() == [[0, 1], [2, 3]] and sparse["dense_shape"].tolist() == [3, 4]
    assert ragged["flat_values"].tolist() == [1, 2, 3]
    assert ragged["nested_row_splits"][0].tolist() == [0, 1, 3]


def test_untyped_parameters_make_a_computation_traced_per_argument_type():
    @computation
    def double(x):
        return x * 2

    assert double(np.int32(21)) == 42
    assert double(np.float32(1.25)) == pytest.approx(2.5)
    assert double(np.array([1, 2], np.int64)).tolist() == [2, 4]


def test_a_function_returning_none_is_refused_when_traced():
    with pytest.raises(ValueError, match="returned `None`"):
        computation(lambda x: None, np.int32)


def test_a_federated_parameter_type_is_refused():
    with pytest.raises(TypeError, match="tensors, structs and sequences"):
        computation(lambda x: x, fl.FederatedType(np.int32, fl.CLIENTS))


def test_tffexec_tensorflow_is_reachable_from_tffexec_without_importing_tensorflow():
    script = ("import sys, tffexec, numpy as np\n"
              "c = tffexec.tensorflow.computation\n"
              "assert tffexec.save and tffexec.load\n"
              "assert 'tensorflow' not in sys.modules, 'imported TensorFlow'\n"
              "print('ok')")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/")
    assert out.stdout.strip() == "ok", out.stderr


# -- saving for TF 2.14 ------------------------------------------------------------------------

def _graph_attrs(path: pathlib.Path) -> set[str]:
    """`Op.attr` names of every node of every tensorflow computation in a saved file."""
    found = set()
    for part in tffexec.saving._tensorflow_parts(loading.load_computation(path)):
        graph = tf_graph_pb2.GraphDef.FromString(part.graph_def.value)
        nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
        found |= {f"{node.op}.{name}" for node in nodes for name in node.attr}
    return found


def test_the_committed_tf214_registry_lacks_the_attrs_added_since():
    ops = tf214_compat.tf214_ops()
    assert {"transpose_a", "transpose_b"} <= set(ops["MatMul"]) and "grad_a" not in ops["MatMul"]
    assert "debug_name" not in ops["VarHandleOp"] and "MapDataset" in ops
    assert "FFTND" not in ops and len(ops) > 1500


def test_save_strips_new_attrs_holding_defaults_or_hints(tmp_path):
    @computation(fl.TensorType(np.float32, [2, 2]))
    def product(m):
        weights = tf.Variable(tf.ones([2, 2]))
        return tf.data.Dataset.from_tensors(tf.matmul(m, weights)).map(lambda t: t * 2)

    assert {"MatMul.grad_a", "VarHandleOp.debug_name"} <= _attrs_of(product)
    stripped = tffexec.save(product, tmp_path / "comp.pb")
    assert stripped == ["MapDataset.force_synchronous", "MatMul.grad_a", "MatMul.grad_b",
                        "VarHandleOp.debug_name"]
    assert not set(stripped) & _graph_attrs(tmp_path / "comp.pb")
    result = tffexec.load(tmp_path / "comp.pb")(np.eye(2, dtype=np.float32))
    np.testing.assert_array_equal(result.elements()[0], np.full([2, 2], 2.0))


def _attrs_of(comp) -> set[str]:
    graph = tf_graph_pb2.GraphDef.FromString(comp.to_proto().tensorflow.graph_def.value)
    return {f"{node.op}.{name}" for node in graph.node for name in node.attr}


def test_save_refuses_ops_tf214_lacks_naming_them_and_writes_nothing(tmp_path, runner):
    @computation(fl.TensorType(np.complex64, [4]))
    def spectrum(x):
        return tf.raw_ops.FFTND(input=x, fft_length=[4], axes=[0])

    with pytest.raises(errors.ArgumentError) as raised:
        tffexec.save(spectrum, tmp_path / "comp.pb")
    assert "op FFTND" in str(raised.value) and str(tmp_path / "comp.pb") in str(raised.value)
    assert raised.value.exit_code == 4
    assert not list(tmp_path.iterdir())


def test_save_refuses_new_attrs_that_change_results(tmp_path):
    @computation(fl.TensorType(np.float32, [3]))
    def pick(x):
        return tf.raw_ops.GatherNd(params=x, indices=[[5]], bad_indices_policy="IGNORE")

    with pytest.raises(errors.ArgumentError, match=r"GatherNd\.bad_indices_policy"):
        tffexec.save(pick, tmp_path / "comp.pb")
    assert not (tmp_path / "comp.pb").exists()


def test_save_value_writes_dataset_graphs_tf214_can_import(tmp_path):
    dataset = tf.data.Dataset.range(3).map(lambda n: tf.cast(n, tf.float32) / 2)
    tffexec.save_value(dataset, tmp_path / "seq.pb")
    sequence = tffexec.load_value(tmp_path / "seq.pb")
    graph = tf_graph_pb2.GraphDef.FromString(sequence.graph_def())
    assert not any("force_synchronous" in n.attr for n in graph.node)
    assert sequence.elements() == [0.0, 0.5, 1.0]


def test_saving_a_computation_without_types_is_refused(tmp_path):
    with pytest.raises(errors.ArgumentError, match="give its decorator the parameter types"):
        tffexec.save(computation(lambda x: x), tmp_path / "comp.pb")


def test_loading_a_file_that_is_not_a_computation_names_it(tmp_path):
    (tmp_path / "notes.pb").write_bytes(b"not a computation")
    with pytest.raises(errors.ComputationError, match="notes.pb"):
        tffexec.load(tmp_path / "notes.pb")
    with pytest.raises(errors.TffexecError, match="missing.pb"):
        tffexec.load(str(tmp_path / "missing.pb"))


def test_load_gives_a_computation_usable_inside_federated_computations():
    mean = tffexec.load(AUTHORING / "mean" / "comp.pb")

    @fl.federated_computation(_clients(np.float32))
    def twice_the_mean(readings):
        return fl.federated_map(computation(lambda m: m * 2, np.float32), mean(readings))

    assert mean([50.0, 68.0]) == pytest.approx(15.0)
    assert twice_the_mean([50.0, 68.0]) == pytest.approx(30.0)


# -- round trips: Python, tffexec run / iterate, TFF 0.87 --------------------------------------

def _run_script(script: pathlib.Path, *args: str) -> dict:
    """Runs a script as `python SCRIPT ARGS...` does (its folder first on sys.path, its output
    captured), in this process; returns its globals."""
    argv, path = sys.argv, list(sys.path)
    sys.argv, sys.path[:0] = [str(script), *args], [str(script.parent)]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv, sys.path[:] = argv, path


def _run_example(script: str, outdir: pathlib.Path) -> dict:
    return _run_script(AUTHORING / script, str(outdir))


def _differences(got_path: pathlib.Path, expected_path: pathlib.Path, type_spec) -> list:
    got = loading.load_value(got_path, type_spec, path="got")
    expected = loading.load_value(expected_path, type_spec, path="tff")
    return compare.value_differences(got, expected, type_spec, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("script,folder,name", [("federated_mean.py", "mean", "mean_celsius"),
                                                ("fedavg.py", "fedavg", "next_round"),
                                                ("keras_eval.py", "keras_eval", "evaluate")])
def test_example_saved_and_run_by_tffexec_equals_python_and_tff(tmp_path, runner, script, folder,
                                                                name):
    names = _run_example(script, tmp_path)
    comp = tffexec.load(tmp_path / "comp.pb")
    result = runner.invoke(cli, ["run", str(tmp_path / "comp.pb"), str(tmp_path / "arg.pb"),
                                 "-o", str(tmp_path / "out.pb")])
    assert result.exit_code == 0, result.output
    result_type = comp.type_signature.result
    assert not _differences(tmp_path / "out.pb", AUTHORING / folder / "tff_result.pb", result_type)
    argument = tffexec.load_value(tmp_path / "arg.pb", comp.type_signature.parameter)
    several = isinstance(comp.type_signature.parameter, fl.StructType)
    in_python = names[name](*argument) if several else names[name](argument)
    expected = loading.load_value(AUTHORING / folder / "tff_result.pb", result_type)
    in_python = _as_struct(in_python)
    assert not compare.value_differences(in_python, expected, result_type, rtol=1e-5, atol=1e-6)


def _as_struct(value):
    """Python results (tuples, dicts) as the `Struct`s tffexec's value files hold."""
    if isinstance(value, dict):
        return tffexec.tensorflow.structure.Struct([(k, _as_struct(v)) for k, v in value.items()])
    if isinstance(value, tuple):
        return tffexec.tensorflow.structure.Struct([(None, _as_struct(v)) for v in value])
    return value


def test_features_example_equals_tff_seeded_random_ops_included(
        tmp_path, runner):
    _run_example("features.py", tmp_path)
    result = runner.invoke(cli, ["run", str(tmp_path / "comp.pb"), str(tmp_path / "arg.pb"),
                                 "-o", str(tmp_path / "out.pb")])
    assert result.exit_code == 0, result.output
    result_type = tffexec.load(tmp_path / "comp.pb").type_signature.result
    got = loading.load_value(tmp_path / "out.pb", result_type)
    tff = loading.load_value(AUTHORING / "features" / "tff_result.pb", result_type)
    assert len(got) == len(tff) == 3
    for i, (ours, theirs) in enumerate(zip(got, tff)):
        for name in ("city_id", "total", "fahrenheit", "noise", "op_seeded"):
            np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-6,
                                       err_msg=f"client {i}: {name}")


def test_fedavg_iterated_by_tffexec_reaches_tffs_state_and_losses(tmp_path, runner):
    fedavg = AUTHORING / "fedavg"
    result = runner.invoke(cli, ["iterate", "--init", str(fedavg / "init.pb"),
                                 "--next", str(fedavg / "next.pb"), "--data",
                                 str(fedavg / "clients"), "--rounds", "3", "-o",
                                 str(tmp_path / "state.pb"), "--metrics",
                                 str(tmp_path / "metrics.jsonl")])
    assert result.exit_code == 0, result.output
    state_type = tffexec.load(fedavg / "next.pb").type_signature.result[0]
    assert not _differences(tmp_path / "state.pb", fedavg / "tff_state.pb", state_type)
    rounds = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    tff_losses = json.loads((fedavg / "tff_losses.json").read_text())["losses"]
    losses = [r["metrics"]["metrics"] for r in rounds]  # an unnamed single metric
    np.testing.assert_allclose(losses, tff_losses, rtol=1e-5)


# -- the documentation runs as written ---------------------------------------------------------

def _blocks(markdown: str) -> list[tuple[str, str]]:
    return re.findall(r"```(python|sh)\n(.*?)```", markdown, flags=re.S)


def test_the_documentation_code_runs_and_prints_what_its_comments_say(tmp_path, runner,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    readme = README.read_text()
    section = readme.split("\n## Writing computations without TFF\n", 1)[1].split("\n## ", 1)[0]
    for language, code in _blocks(section) + _blocks(DOC.read_text()):
        if language == "python":
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - the doc's code
            promised = [c.strip() for c in re.findall(r"^print\(.*\)\s*#(.*)$", code, flags=re.M)]
            if promised:
                assert printed.getvalue().splitlines()[-len(promised):] == promised
            continue
        for command in code.replace("\\\n", " ").splitlines():
            words = shlex.split(command)
            if words[0] == "python":
                _run_script(REPO / words[1], *words[2:])
                continue
            assert words[0] == "tffexec", command
            result = runner.invoke(cli, words[1:])
            assert result.exit_code == 0, f"{command}: {result.output}"
    assert (tmp_path / "state.json").exists() and (tmp_path / "mean.pb").exists()
