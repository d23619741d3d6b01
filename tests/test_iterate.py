"""`tffexec iterate` and `tffexec.iterate`: training processes run for many rounds.

Real TensorFlow throughout: the corpus' hand-written FedAvg (`learn_fedavg_init` +
`learn_fedavg_logreg_round`), the `tff.learning` processes TFF 0.87 wrote into examples/iterate,
and the FedAvg round of examples/fedavg_round. Commands run in-process through Click's CliRunner;
tests/test_iterate_process.py runs the installed script.
"""
from __future__ import annotations

import json
import pathlib
import sys

import federated_language as fl
import numpy as np
import pytest
from click.testing import CliRunner

from tffexec import errors
from tffexec import iterate as it
from tffexec import runner as runner_lib
from tffexec.cli.main import cli
from tffexec.formats import compare
from tffexec.formats import loading

REPO = pathlib.Path(__file__).resolve().parents[1]
ITERATE = REPO / "examples" / "iterate"
FEDAVG_ROUND = REPO / "examples" / "fedavg_round"
MEAN = REPO / "examples" / "mean_of_clients"


@pytest.fixture(scope="module")
def corpus_process(corpus_dir):
    """(init path, next path) of the corpus' hand-written FedAvg."""
    return (corpus_dir / "learn_fedavg_init" / "comp.pb",
            corpus_dir / "learn_fedavg_logreg_round" / "comp.pb")


@pytest.fixture(scope="module")
def corpus_data(corpus_process, tmp_path_factory):
    """The corpus round's 4 clients as one file per client (pb), and as one {T*}@CLIENTS file."""
    _, next_path = corpus_process
    arg_path = next_path.parent / "arg.pb"
    parameter = fl.Type.from_proto(loading.load_computation(next_path).type).parameter
    arg = loading.load_value(arg_path, parameter)
    root = tmp_path_factory.mktemp("corpus_data")
    (root / "clients").mkdir()
    for i, client in enumerate(arg.client_data):
        loading.save_value(client, parameter[1].member, root / "clients" / f"c{i}.pb")
    loading.save_value(arg.client_data, parameter[1], root / "all.pb")
    return root


@pytest.fixture(scope="module")
def corpus_runner():
    with runner_lib.Runner() as runner:
        yield runner


def _softmax_loss(state, clients: it.ClientData) -> float:
    """Mean cross-entropy of the softmax regression `state` on every client's examples (numpy)."""
    xs, ys = [], []
    for seq in clients.values:
        for batch in seq.elements():
            xs.append(np.asarray(batch["x"]))
            ys.append(np.asarray(batch["y"]))
    x, y = np.concatenate(xs), np.concatenate(ys)
    logits = x @ np.asarray(state["w"]) + np.asarray(state["b"])
    logits = logits - logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


# ------------------------------------------------------------------------------ the library

def test_corpus_fedavg_loss_decreases_over_rounds(corpus_process, corpus_data, corpus_runner):
    process = it.TrainingProcess(*corpus_process, runner=corpus_runner)
    clients = it.load_clients(corpus_data / "clients", process.signature.client_type)
    state = process.initialize()
    losses = [_softmax_loss(state, clients)]
    for _ in range(6):
        result = it.run_rounds(process, clients, 1, state=state, seed=0)
        state = result.state
        losses.append(_softmax_loss(state, clients))
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.9 * losses[0]


def test_signature_tells_state_data_and_metrics_apart(corpus_process):
    process = it.TrainingProcess(*corpus_process)
    sig = process.signature
    assert (sig.state_index, sig.data_index) == (0, 1)
    assert sig.parameter_names == ("server_model", "client_data")
    assert sig.returns_metrics and str(sig.metrics_type) == "float32@SERVER"
    assert str(sig.client_type) == "<x=float32[?,4],y=int32[?]>*"
    learning = it.TrainingProcess(ITERATE / "fedavg_keras" / "init.pb",
                                  ITERATE / "fedavg_keras" / "next.pb")
    assert learning.signature.parameter_names == ("state", "client_data")
    assert learning.signature.returns_metrics


@pytest.mark.parametrize("name", ["fedavg_keras", "fedsgd_keras"])
def test_tff_learning_process_matches_tff_state_and_metrics_after_3_rounds(name):
    folder = ITERATE / name
    with it.TrainingProcess(folder / "init.pb", folder / "next.pb") as process:
        clients = it.load_clients(folder / "clients", process.signature.client_type)
        result = it.run_rounds(process, clients, 3, seed=0)
        expected_state = loading.load_value(folder / "expected_state.pb",
                                            process.signature.state_type)
        differences = compare.value_differences(result.state, expected_state,
                                                process.signature.state_type, rtol=1e-4,
                                                atol=1e-5, path="state")
    assert differences == []
    expected = json.loads((folder / "expected_metrics.json").read_text())
    for got, want in zip(result.rounds, expected):
        for key, value in want.items():
            if key != "round":
                assert got.metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    losses = [r.metrics["client_work/train/loss"] for r in result.rounds]
    assert losses[0] > losses[1] > losses[2]


def test_client_directory_of_pb_and_json_files_equals_one_file_of_all_clients():
    folder = ITERATE / "fedavg_unweighted"
    process = it.TrainingProcess(folder / "init.pb", folder / "next.pb")
    client_type = process.signature.client_type
    per_file = it.load_clients(folder / "clients", client_type)
    one_file = it.load_clients(folder / "clients_all.pb", client_type)
    assert {p.suffix for p in (folder / "clients").iterdir()} == {".pb", ".json"}
    assert per_file.names[:2] == ["client_000", "client_001"]
    assert len(per_file) == len(one_file) == 10
    for a, b in zip(per_file.values, one_file.values):
        assert compare.value_differences(a, b, client_type) == []


def test_sampling_is_seeded_without_replacement_and_depends_on_round_only():
    first = [it.sample_clients(50, 7, seed=3, round_num=r) for r in range(1, 21)]
    again = [it.sample_clients(50, 7, seed=3, round_num=r) for r in range(1, 21)]
    assert first == again
    assert all(len(set(s)) == 7 and s == sorted(s) and max(s) < 50 for s in first)
    assert len({tuple(s) for s in first}) > 15  # participants change from round to round
    assert it.sample_clients(50, 7, seed=4, round_num=1) != first[0]
    assert it.sample_clients(5, None, seed=3, round_num=1) == [0, 1, 2, 3, 4]
    assert it.sample_clients(5, 5, seed=3, round_num=9) == [0, 1, 2, 3, 4]


def test_metrics_flatten_to_slash_paths_without_empty_structs():
    t = fl.FederatedType(fl.StructType([
        ("distributor", fl.StructType([])),
        ("train", fl.StructType([("loss", fl.TensorType(np.float32)),
                                 ("n", fl.TensorType(np.int64))])),
        (None, fl.TensorType(np.float32, [2]))]), fl.SERVER)
    from federated_language.common_libs import structure

    value = structure.Struct([("distributor", structure.Struct([])),
                              ("train", structure.Struct([("loss", np.float32(np.nan)),
                                                          ("n", np.int64(2 ** 40))])),
                              (None, np.array([1.5, 2.5], np.float32))])
    flat = it.flatten_metrics(value, t)
    assert flat == {"train/loss": "nan", "train/n": 2 ** 40, "2": [1.5, 2.5]}
    assert set(it.scalar_metrics(flat)) == {"train/loss", "train/n"}


def test_memory_stays_flat_over_100_rounds_with_changing_participants(corpus_process,
                                                                      corpus_runner):
    """TFF users saw memory grow per round (#871, #1215, #4590); here RSS must stay flat."""
    process = it.TrainingProcess(*corpus_process, runner=corpus_runner)
    rng = np.random.default_rng(0)
    values = []
    for _ in range(30):  # 30 clients with datasets of their own, as JSON element lists
        n = int(rng.integers(5, 15))
        x = rng.normal(size=(n, 4)).astype(np.float32)
        y = rng.integers(0, 3, size=n).astype(np.int32)
        elements = [{"x": x[s:s + 5].tolist(), "y": y[s:s + 5].tolist()} for s in range(0, n, 5)]
        values.append(loading.load_value(json.dumps(elements).encode(),
                                         process.signature.client_type, fmt="json"))
    clients = it.ClientData([f"c{i}" for i in range(30)], values)
    rss: list[float] = []
    participants = set()

    def on_round(result: it.RoundResult) -> None:
        rss.append(it.rss_mb())
        participants.add(tuple(result.clients))

    it.run_rounds(process, clients, 100, clients_per_round=4, seed=1, on_round=on_round,
                  keep_history=False)
    assert len(participants) > 90
    growth = rss[-1] - rss[29]  # after 30 rounds every client's dataset exists
    assert growth < 8.0, f"RSS grew {growth:.1f} MiB over 70 rounds: {rss[29]:.0f} -> {rss[-1]:.0f}"


def test_checkpoints_are_atomic_and_only_the_latest_is_kept(corpus_process, corpus_data,
                                                            corpus_runner, tmp_path):
    process = it.TrainingProcess(*corpus_process, runner=corpus_runner)
    clients = it.load_clients(corpus_data / "all.pb", process.signature.client_type)
    checkpoints = it.Checkpoints(tmp_path / "ckpt", every=2)
    result = it.run_rounds(process, clients, 5, seed=9, clients_per_round=2,
                           checkpoints=checkpoints)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["checkpoint.json",
                                                                     "state-000005.pb"]
    latest = checkpoints.latest()
    assert (latest.round, latest.seed, latest.clients_per_round) == (5, 9, 2)
    saved = it.load_state(latest.state_path, process)
    assert compare.value_differences(saved, result.state, process.signature.state_type) == []


def test_resume_from_python_continues_exactly_as_the_uninterrupted_run(
        corpus_process, corpus_data, corpus_runner, tmp_path):
    process = it.TrainingProcess(*corpus_process, runner=corpus_runner)
    clients = it.load_clients(corpus_data / "all.pb", process.signature.client_type)
    straight = it.run_rounds(process, clients, 4, seed=5, clients_per_round=2)
    checkpoints = it.Checkpoints(tmp_path / "ckpt", every=1)
    it.run_rounds(process, clients, 2, seed=5, clients_per_round=2, checkpoints=checkpoints)

    start = it.resume(process, clients, rounds=4, checkpoints=checkpoints)
    assert (start.round, start.seed, start.clients_per_round) == (2, 5, 2)
    assert start.checkpoint.state_path.name == "state-000002.pb"
    resumed = it.run_rounds(process, clients, 4, state=start.state, start_round=start.round,
                            seed=start.seed, clients_per_round=start.clients_per_round)
    assert [r.round for r in resumed.rounds] == [3, 4]
    assert [r.clients for r in resumed.rounds] == [r.clients for r in straight.rounds[2:]]
    assert compare.value_differences(resumed.state, straight.state,
                                     process.signature.state_type) == []


def test_resume_without_a_checkpoint_starts_at_round_0_from_the_given_state(
        corpus_process, corpus_data, corpus_runner, tmp_path):
    process = it.TrainingProcess(*corpus_process, runner=corpus_runner)
    clients = it.load_clients(corpus_data / "clients", process.signature.client_type)
    state = process.initialize()
    it.save_state(state, process, tmp_path / "state.npz")
    from_file = it.resume(process, clients, rounds=3, state=tmp_path / "state.npz", seed=1,
                          checkpoints=it.Checkpoints(tmp_path / "empty", every=1))
    assert (from_file.round, from_file.seed, from_file.checkpoint) == (0, 1, None)
    assert compare.value_differences(from_file.state, state, process.signature.state_type) == []
    fresh = it.resume(process, clients, rounds=3)
    assert fresh.state is None and fresh.round == 0 and isinstance(fresh.seed, int)


@pytest.mark.parametrize("names, seed_name, rounds_name", [
    (None, "seed", "rounds"),
    ({"seed": "--seed", "rounds": "--rounds"}, "--seed", "--rounds"),
])
def test_resume_errors_name_the_parameters_or_the_callers_names_for_them(
        corpus_process, corpus_data, corpus_runner, tmp_path, names, seed_name, rounds_name):
    process = it.TrainingProcess(*corpus_process, runner=corpus_runner)
    clients = it.load_clients(corpus_data / "clients", process.signature.client_type)
    checkpoints = it.Checkpoints(tmp_path / "ckpt", every=1)
    it.run_rounds(process, clients, 2, seed=3, checkpoints=checkpoints)

    with pytest.raises(errors.UsageError) as seed_error:
        it.resume(process, clients, rounds=4, checkpoints=checkpoints, seed=4, names=names)
    assert seed_error.value.message.startswith(f"{seed_name} 4 differs from the checkpoint's (3)")
    with pytest.raises(errors.UsageError) as rounds_error:
        it.resume(process, clients, rounds=1, checkpoints=checkpoints, names=names)
    assert rounds_error.value.message.startswith(f"{rounds_name} 1, but ")
    assert "already holds round 2" in rounds_error.value.message


def test_too_many_clients_per_round_names_the_parameter_and_the_data(
        corpus_process, corpus_data, corpus_runner):
    process = it.TrainingProcess(*corpus_process, runner=corpus_runner)
    clients = it.load_clients(corpus_data / "clients", process.signature.client_type)
    with pytest.raises(errors.ArgumentError) as error:
        it.resume(process, clients, rounds=2, clients_per_round=9)
    assert error.value.file == str(corpus_data / "clients")
    assert error.value.message == "clients_per_round 9 but the data has only 4 clients"
    with pytest.raises(errors.UsageError, match="^rounds must be at least 0, not -1$"):
        it.run_rounds(process, clients, -1)
    assert "--" not in str(error.value)


# ------------------------------------------------------------------------------ the command

def _invoke(*args, catch: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=catch)
    return result


def _corpus_args(corpus_process, data):
    init, next_path = corpus_process
    return ["iterate", "--init", init, "--next", next_path, "--data", data]


def test_state_after_3_rounds_equals_3_chained_run_calls(corpus_process, corpus_data, tmp_path):
    init, next_path = corpus_process
    result = _invoke("run", init, "--output", tmp_path / "state0.json")
    assert result.exit_code == 0, result.output
    state_file = tmp_path / "state0.json"
    for r in range(1, 4):
        out = tmp_path / f"round{r}.json"
        result = _invoke("run", next_path, "--arg", f"server_model={state_file}",
                         "--arg", f"client_data={corpus_data / 'all.pb'}", "--output", out)
        assert result.exit_code == 0, result.output
        document = json.loads(out.read_text())
        state_file = tmp_path / f"state{r}.json"  # the result's first element: the state
        state_file.write_text(json.dumps(document["value"]["struct"][0]["value"]))
    result = _invoke(*_corpus_args(corpus_process, corpus_data / "clients"), "--rounds", 3,
                     "--output", tmp_path / "iterated.pb")
    assert result.exit_code == 0, result.output
    state_type = fl.Type.from_proto(loading.load_computation(init).type).result
    chained = loading.load_value(state_file, state_type)
    iterated = loading.load_value(tmp_path / "iterated.pb", state_type)
    assert compare.value_differences(iterated, chained, state_type) == []


def test_metrics_file_table_and_json_summary(corpus_process, corpus_data, tmp_path):
    metrics = tmp_path / "m.jsonl"
    result = _invoke(*_corpus_args(corpus_process, corpus_data / "clients"), "--rounds", 4,
                     "-k", 3, "--seed", 5, "--metrics", metrics)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2, 3, 4]
    assert all(r["clients"] == 3 and r["metrics"] == {"metrics": 36.0} for r in records)
    assert {"seconds", "rss_mb"} <= set(records[0])
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["round", "clients", "seconds", "RSS", "MiB", "metrics"]
    assert lines[-1].startswith("4 rounds run (") and "seed 5" in lines[-1]
    result = _invoke(*_corpus_args(corpus_process, corpus_data / "all.pb"), "--rounds", 2,
                     "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["clients"] == summary["clients_per_round"] == 4
    assert [r["round"] for r in summary["history"]] == [1, 2]
    assert summary["final_metrics"] == {"metrics": 48.0}


def test_resume_from_state_dir_runs_only_the_rounds_left(corpus_process, corpus_data, tmp_path):
    args = [*_corpus_args(corpus_process, corpus_data / "clients"), "-k", 2, "--seed", 3,
            "--state-dir", tmp_path / "ckpt", "--checkpoint-every", 2,
            "--metrics", tmp_path / "m.jsonl"]
    first = _invoke(*args, "--rounds", 4)
    assert first.exit_code == 0, first.output
    second = _invoke(*args, "--rounds", 7, "--output", tmp_path / "resumed.npz")
    assert second.exit_code == 0, second.output
    assert "resuming from round 4" in second.stderr
    records = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == list(range(1, 8))
    straight = _invoke(*_corpus_args(corpus_process, corpus_data / "clients"), "-k", 2,
                       "--seed", 3, "--rounds", 7, "--output", tmp_path / "straight.npz")
    assert straight.exit_code == 0, straight.output
    state_type = fl.Type.from_proto(loading.load_computation(corpus_process[0]).type).result
    a = loading.load_value(tmp_path / "resumed.npz", state_type)
    b = loading.load_value(tmp_path / "straight.npz", state_type)
    assert compare.value_differences(a, b, state_type) == []
    changed = _invoke(*args, "--rounds", 8, "--seed", 4)
    assert changed.exit_code == 2 and "--seed 4 differs from the checkpoint's (3)" in changed.output


def test_fedavg_round_from_a_saved_state_with_npz_clients_matches_tff(tmp_path):
    """examples/fedavg_round: no init, the state from --state, client data as npz files."""
    comp = FEDAVG_ROUND / "comp.pb"
    parameter = fl.Type.from_proto(loading.load_computation(comp).type).parameter
    data = loading.load_value(FEDAVG_ROUND / "data.npz", parameter[1])
    (tmp_path / "clients").mkdir()
    for i, client in enumerate(data):
        loading.save_value(client, parameter[1].member, tmp_path / "clients" / f"client_{i}.npz")
    result = _invoke("iterate", "--next", comp, "--state", FEDAVG_ROUND / "model.pb", "--data",
                     tmp_path / "clients", "--rounds", 1, "--output", tmp_path / "model.json",
                     "--metrics", tmp_path / "m.jsonl")
    assert result.exit_code == 0, result.output
    result_type = fl.Type.from_proto(loading.load_computation(comp).type).result
    expected = loading.load_value(FEDAVG_ROUND / "expected.json", result_type)
    got = loading.load_value(tmp_path / "model.json", parameter[0])
    assert compare.value_differences(got, expected[0], parameter[0], rtol=1e-5, atol=1e-6) == []
    record = json.loads((tmp_path / "m.jsonl").read_text())
    assert record["metrics"]["loss"] == pytest.approx(float(expected[1]), rel=1e-5)


def test_plot_draws_a_png(corpus_process, corpus_data, tmp_path):
    pytest.importorskip("matplotlib")
    result = _invoke(*_corpus_args(corpus_process, corpus_data / "all.pb"), "--rounds", 3,
                     "--plot", tmp_path / "m.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png"]


def test_plot_without_matplotlib_exits_7_before_any_round(corpus_process, corpus_data,
                                                          tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without it sees
    result = _invoke(*_corpus_args(corpus_process, corpus_data / "all.pb"), "--rounds", 3,
                     "--plot", tmp_path / "m.png", "--metrics", tmp_path / "m.jsonl")
    assert result.exit_code == 7
    assert result.stderr.strip() == ("Error: --plot needs matplotlib, which is not installed: "
                                     "pip install 'tffexec[plot]'")
    assert not (tmp_path / "m.jsonl").exists()


@pytest.mark.parametrize("extra, code, message", [
    (["--rounds", 2, "--checkpoint-every", 2], 2, "--checkpoint-every needs --state-dir"),
    (["--rounds", 2, "-k", 9], 4, "--clients-per-round 9 but"),
    (["--rounds", 2, "--output", "state.txt"], 2, "cannot tell the state format"),
    (["--rounds", 2, "--plot", "m.gif"], 2, "use a .png, .svg or .pdf name"),
], ids=["checkpoint-without-dir", "more-clients-than-data", "output-format", "plot-format"])
def test_bad_flags_exit_with_the_documented_code(corpus_process, corpus_data, extra, code,
                                                 message):
    result = _invoke(*_corpus_args(corpus_process, corpus_data / "clients"), *extra)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_computations_that_are_not_a_training_process_exit_3(corpus_process, corpus_data):
    init, next_path = corpus_process
    result = _invoke("iterate", "--init", init, "--next", MEAN / "comp.pb", "--data",
                     corpus_data / "all.pb", "--rounds", 1)
    assert result.exit_code == 3
    assert "next must take <state, client data>" in result.stderr
    result = _invoke("iterate", "--init", ITERATE / "fedavg_keras" / "init.pb", "--next",
                     next_path, "--data", corpus_data / "all.pb", "--rounds", 1)
    assert result.exit_code == 3
    assert "but next takes the state as <w=float32[4,3],b=float32[3]>@SERVER" in result.stderr


def test_missing_initial_state_and_bad_client_files_are_reported(corpus_process, corpus_data,
                                                                 tmp_path):
    _, next_path = corpus_process
    result = _invoke("iterate", "--next", next_path, "--data", corpus_data / "all.pb",
                     "--rounds", 1)
    assert result.exit_code == 2 and "give --init" in result.output
    (tmp_path / "c0.json").write_text('[{"x": [[1, 2, 3, 4]], "y": [0]}]')
    (tmp_path / "notes.txt").write_text("not a client")
    result = _invoke(*_corpus_args(corpus_process, tmp_path), "--rounds", 1)
    assert result.exit_code == 4
    assert "notes.txt: not a client value file" in result.stderr
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "c1.json").write_text('[{"x": [[1, 2, 3]], "y": [0]}]')
    result = _invoke(*_corpus_args(corpus_process, tmp_path), "--rounds", 1)
    assert result.exit_code == 4 and "c1.json" in result.stderr


def test_state_only_process_with_npz_and_json_clients_matches_tff(tmp_path):
    folder = ITERATE / "running_sum"
    result = _invoke("iterate", "--init", folder / "init.pb", "--next", folder / "next.pb",
                     "--data", folder / "clients", "--rounds", 3, "--output",
                     tmp_path / "state.pb", "--metrics", tmp_path / "m.jsonl")
    assert result.exit_code == 0, result.output
    state_type = fl.Type.from_proto(loading.load_computation(folder / "next.pb").type).result
    got = loading.load_value(tmp_path / "state.pb", state_type)
    expected = loading.load_value(folder / "expected_state.pb", state_type)
    assert compare.value_differences(got, expected, state_type, rtol=1e-6) == []
    records = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["metrics"] for r in records] == [{}, {}, {}]
    assert "metrics" not in result.stdout.splitlines()[0]


def test_data_element_is_found_by_placement_whatever_its_position():
    """`next` may take <client data, state>; the element at CLIENTS is the data."""
    from federated_language.proto import computation_pb2

    state = fl.FederatedType(fl.TensorType(np.float32), fl.SERVER)
    data = fl.FederatedType(fl.TensorType(np.float32), fl.CLIENTS)

    def comp_of(function_type):
        comp = computation_pb2.Computation()
        comp.type.CopyFrom(function_type.to_proto())
        comp.intrinsic.uri = "federated_sum"  # only the type is read
        return comp

    sig = it.signature_of(None, comp_of(fl.FunctionType(fl.StructType([data, state]), state)))
    assert (sig.state_index, sig.data_index, sig.parameter_names) == (1, 0, (None, None))
    assert not sig.returns_metrics
    with pytest.raises(errors.ComputationError, match="neither the state"):
        it.signature_of(None, comp_of(fl.FunctionType(fl.StructType([state, data]), data)))
