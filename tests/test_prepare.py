"""Prepare once: `Runner.prepare` checks, `Runner.call` runs, and the CLI prepares once per run.

The counts are observed, not mocked: prepares through the `prepare` stage event that
`Runner.prepare` announces itself (and the Runner's `prepares` counter), GraphDef parses through a
profiler hook on tffexec's own parser (`graphs.parse_graph_def`), on every thread of the run.
"""
from __future__ import annotations

import collections
import contextlib
import json
import sys
import threading
from typing import Callable, Iterator

import pytest
from federated_language.proto import computation_pb2

from tffexec import preflight
from tffexec import errors
from tffexec import runner as runner_lib
from tffexec import stages
from tffexec.cli import main
from tffexec.executors import activity
from tffexec.checks import analysis
from tffexec.formats import compare
from tffexec.checks import graphs
from tffexec.formats import loading

from tffexec_test_support import CORPUS

MEAN = CORPUS / "fed_mean_weighted"  # <x={float32}@CLIENTS,w={float32}@CLIENTS>, 5 clients
VALUE_CLIENTS = CORPUS / "fed_value_clients_sum"  # ( -> int32@SERVER), CLIENTS inside
VALUE_SERVER = CORPUS / "fed_value_server"  # ( -> int32@SERVER), no CLIENTS
FEDAVG = CORPUS / "learn_fedavg_logreg_round"  # a graph with datasets in the argument
SEQ = CORPUS / "seq_sequence_reduce_intrinsic"  # {int32*}@CLIENTS: dataset graphs


def invoke(runner, *args):
    return runner.invoke(main.cli, [str(a) for a in args])


@contextlib.contextmanager
def prepare_events() -> Iterator[list[activity.Event]]:
    """Every start of a `prepare` stage while the block runs."""
    seen: list[activity.Event] = []

    def listener(event: activity.Event) -> None:
        if event.task == stages.PREPARE and event.done == 0:
            seen.append(event)

    with activity.listen(listener):
        yield seen


@contextlib.contextmanager
def counting_calls(*functions: Callable) -> Iterator[collections.Counter]:
    """How often each function is entered, on this thread and on threads started in the block."""
    codes = {f.__code__: f.__qualname__ for f in functions}
    counts: collections.Counter = collections.Counter()

    def hook(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            counts[codes[frame.f_code]] += 1

    threading.setprofile(hook)
    sys.setprofile(hook)
    try:
        yield counts
    finally:
        sys.setprofile(None)
        threading.setprofile(None)


def tensorflow_nodes(comp_path) -> int:
    comp = computation_pb2.Computation.FromString(comp_path.read_bytes())
    return sum(1 for node in analysis.walk(comp) if node.kind == "tensorflow")


def load_case(case):
    """(computation, signature, argument) of a corpus case, read as the CLI reads them."""
    comp = loading.load_computation(case / "comp.pb")
    sig = runner_lib.signature(comp)
    return comp, sig, loading.load_value(case / "arg.pb", sig.parameter_type)


def case_args(case) -> list:
    return [case / "comp.pb", *([case / "arg.pb"] if (case / "arg.pb").exists() else [])]


# --- one prepare per CLI run ---------------------------------------------------------------------

@pytest.mark.parametrize("case", [MEAN, FEDAVG, VALUE_CLIENTS], ids=lambda c: c.name)
def test_cli_run_prepares_once(runner, case):
    extra = ["--clients", "3"] if case is VALUE_CLIENTS else []
    with prepare_events() as prepares:
        result = invoke(runner, "run", *case_args(case), *extra, "--format", "json")
    assert result.exit_code == 0, result.output
    assert len(prepares) == 1


def test_cli_benchmark_prepares_once_and_times_only_calls(runner):
    with prepare_events() as prepares:
        result = invoke(runner, "benchmark", *case_args(MEAN), "--runs", "3", "--warmup", "1",
                        "--json")
    assert result.exit_code == 0, result.output
    assert len(prepares) == 1  # the first call, the warm-up and the 3 timed calls reuse it
    report = json.loads(result.stdout)
    assert report["prepare_s"] > 0 and report["steady"]["runs"] == 3


def test_runner_run_is_prepare_then_call():
    comp, _, arg = load_case(MEAN)
    with runner_lib.Runner() as r:
        r.run(comp, arg)
        r.run(comp, arg)
        assert r.prepares == 2


# --- each GraphDef parsed once before TensorFlow parses it ---------------------------------------

@pytest.mark.parametrize("case", [FEDAVG, SEQ, CORPUS / "fed_broadcast_map_sum"],
                         ids=lambda c: c.name)
def test_cli_run_parses_each_graphdef_once_before_tensorflow(runner, case):
    graphs_in_comp = tensorflow_nodes(case / "comp.pb")
    assert graphs_in_comp >= 1
    with counting_calls(graphs.parse_graph_def) as parses:
        result = invoke(runner, "run", *case_args(case), "--format", "json")
    assert result.exit_code == 0, result.output  # TensorFlow imported and ran every graph
    assert parses["parse_graph_def"] == graphs_in_comp


def test_runner_checks_a_computation_once():
    comp, _, arg = load_case(FEDAVG)
    with runner_lib.Runner() as r:
        with counting_calls(graphs.parse_graph_def, analysis.analyze) as first:
            r.run(comp, arg)
        with counting_calls(graphs.parse_graph_def, analysis.analyze) as again:
            r.run(comp, arg)
    assert first["analyze"] == 1 and first["parse_graph_def"] == tensorflow_nodes(
        FEDAVG / "comp.pb")
    assert again["analyze"] == 0 and again["parse_graph_def"] == 0


# --- a Prepared is reusable ----------------------------------------------------------------------

@pytest.mark.parametrize("case", [FEDAVG, SEQ, MEAN], ids=lambda c: c.name)
def test_prepared_called_again_gives_the_same_result(case):
    comp, sig, arg = load_case(case)
    expected = loading.load_value(case / "expected.pb", sig.result_type)
    with runner_lib.Runner() as r:
        prepared = r.prepare(comp, arg)
        results = [r.call(prepared) for _ in range(3)]
        assert r.prepares == 1
    for result in results:
        assert compare.value_differences(result, expected, sig.result_type, rtol=1e-5,
                                         atol=1e-6) == []
        assert compare.value_differences(result, results[0], sig.result_type, rtol=0,
                                         atol=0) == []


def test_prepare_settles_the_client_count_without_building_a_stack():
    comp = loading.load_computation(VALUE_CLIENTS / "comp.pb")
    with runner_lib.Runner() as r:
        prepared = r.prepare(comp, clients=4)
        assert (prepared.clients, prepared.uses_clients, r.factory.built) == (4, True, 0)
        r.call(prepared)
        assert r.factory.built == 1


# --- validate and run: one set of client-count rules ---------------------------------------------

# (arguments after the command, run's exit code). validate reports the same problems, each as
# one line with run's message, and exits 1 (a check failed) where run refuses, 0 where it runs.
CLIENT_COUNT_CASES = {
    "unknown": ([VALUE_CLIENTS / "comp.pb"], errors.ArgumentError.exit_code),
    "disagrees_with_argument": ([*case_args(MEAN), "--clients", "7"],
                                errors.ArgumentError.exit_code),
    "argument_over_limit": ([*case_args(MEAN), "--max-clients", "4"],
                            errors.PolicyError.exit_code),
    "flag_over_limit": ([VALUE_CLIENTS / "comp.pb", "--clients", "7", "--max-clients", "5"],
                        errors.PolicyError.exit_code),
    "zero_clients": ([VALUE_CLIENTS / "comp.pb", "--clients", "0"], 0),
    "from_argument": ([*case_args(MEAN)], 0),
    "flag_matches_argument": ([*case_args(MEAN), "--clients", "5"], 0),
    "flag_without_clients_in_computation": ([VALUE_SERVER / "comp.pb", "--clients", "3"], 0),
}


@pytest.mark.parametrize("case", sorted(CLIENT_COUNT_CASES))
def test_validate_and_run_agree_on_client_counts(runner, case):
    args, run_exit = CLIENT_COUNT_CASES[case]
    ran = invoke(runner, "run", *args, "--format", "json")
    validated = invoke(runner, "validate", *args)
    assert ran.exit_code == run_exit, ran.output
    if run_exit == 0:
        assert validated.exit_code == 0, validated.output
        return
    assert validated.exit_code == errors.CheckFailed.exit_code, validated.output
    run_error = ran.stderr.strip().splitlines()[-1]
    problem = validated.stderr.strip().splitlines()[0]
    # run: "Error: [FILE: PATH: ]message"; validate: "FILE: PATH: message" (<root> for the
    # computation's problems, whose file run does not repeat).
    assert run_error.startswith("Error: ") and problem.endswith(run_error[len("Error: "):])


def test_client_count_rules_raise_the_first_problem_or_collect_all():
    rules = dict(uses_clients=True, clients=3, argument_clients=200, max_clients=100)
    with pytest.raises(errors.ArgumentError, match="--clients 3 disagrees with the argument's "
                                                   "200 clients"):
        preflight.client_count(**rules, problems=preflight.Problems())
    collected = preflight.Problems(collect=True)
    assert preflight.client_count(**rules, problems=collected) == 200
    assert [p.message for p in collected.computation] == [
        "--clients 3 disagrees with the argument's 200 clients",
        "200 clients is more than the limit of 100 (--max-clients)"]
    unknown = preflight.Problems(collect=True)
    preflight.client_count(True, clients=None, argument_clients=None, max_clients=100,
                          problems=unknown)
    assert [p.message for p in unknown.computation] == [preflight.UNKNOWN_CLIENTS]
    assert preflight.client_count(False, clients=None, argument_clients=None, max_clients=100,
                                 problems=preflight.Problems()) == 0


# --- the Python API is unchanged -----------------------------------------------------------------

def test_tffexec_run_still_runs_paths_and_reports_client_problems():
    import pathlib

    import tffexec

    result = tffexec.run(MEAN / "comp.pb", pathlib.Path(MEAN / "arg.pb"))
    result_type = runner_lib.signature(loading.load_computation(MEAN / "comp.pb")).result_type
    expected = loading.load_value(MEAN / "expected.pb", result_type)
    assert compare.value_differences(result, expected, result_type, rtol=1e-5, atol=1e-6) == []
    with pytest.raises(errors.ArgumentError, match="number of clients is unknown"):
        tffexec.run(VALUE_CLIENTS / "comp.pb")
    assert int(tffexec.run(VALUE_CLIENTS / "comp.pb", clients=0)) == 0
