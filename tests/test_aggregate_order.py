"""`federated_aggregate` folds in client order on every flat stack, as TFF does.

The case `fed_aggregate_string_join` (made by real TFF 0.87) joins strings: `accumulate` appends a
client's string with "+", `merge` joins two partial aggregates with "|". TFF folds in client order
and never merges, so its answer has no "|". A stack that split the fold into chunks (as the
threaded stack once did) would put a "|" where chunks were merged. Flat stacks (local, batched,
per client, threaded with any thread count) must give TFF's string exactly; a composed stack
(`--max-fanout`) merges its children's partial aggregates by design, in client order: its answer
is TFF's with merge separators between the children's blocks.
"""
from __future__ import annotations

import federated_language
import pytest
from tffexec_test_support import CASES, MERGE_SHOWS

from tffexec import runner as runner_lib
from tffexec.cli.main import cli
from tffexec.factories import config as config_lib
from tffexec.formats import loading

CASE = CASES / "fed_aggregate_string_join"
MERGE_SEPARATOR = b"|"  # what the case's merge puts between two partial aggregates

FLAT_STACKS = {
    "local-batched": config_lib.StackConfig(),
    "local-per-client": config_lib.StackConfig(batch=False),
    **{f"threaded-{threads}": config_lib.StackConfig(kind="threaded", threads=threads)
       for threads in (2, 3, 4, 8)},
    "threaded-1-client-per-task": config_lib.StackConfig(kind="threaded", threads=3,
                                                        clients_per_thread=1),
    "threaded-per-client": config_lib.StackConfig(kind="threaded", threads=3, batch=False),
}

COMPOSED_STACKS = {
    "fanout2": config_lib.StackConfig(max_fanout=2),
    "fanout3-per-client": config_lib.StackConfig(max_fanout=3, batch=False),
    "threaded-fanout4": config_lib.StackConfig(kind="threaded", threads=2, max_fanout=4),
}


def _run(config: config_lib.StackConfig, form: str) -> tuple[bytes, bytes]:
    """The case's result on a stack built from `config`, and TFF's answer (both as bytes)."""
    comp = loading.load_computation(CASE / form)
    result_type = federated_language.Type.from_proto(comp.type).result
    expected = loading.load_value(CASE / "expected.pb", result_type, path="expected")
    with runner_lib.Runner(config) as runner:
        result = runner.run(comp, CASE / "arg.pb")
    return bytes(result.item()), bytes(expected.item())


def test_the_case_shows_merges():
    """The case is listed where the conformance suite learns which answers show merges."""
    assert CASE.name in MERGE_SHOWS


@pytest.mark.parametrize("form", ["comp.pb", "native_comp.pb"])
@pytest.mark.parametrize("stack", list(FLAT_STACKS))
def test_flat_stacks_fold_in_client_order_like_tff(stack, form):
    result, expected = _run(FLAT_STACKS[stack], form)
    assert MERGE_SEPARATOR not in expected  # TFF never merged
    assert result == expected


@pytest.mark.parametrize("stack", list(COMPOSED_STACKS))
def test_composed_stacks_merge_children_in_client_order(stack):
    result, expected = _run(COMPOSED_STACKS[stack], "comp.pb")
    assert MERGE_SEPARATOR in result  # the children's partial aggregates were merged ...
    assert result.replace(MERGE_SEPARATOR, b"") == expected  # ... in client order


def test_threaded_cli_run_matches_tffs_answer(runner):
    result = runner.invoke(cli, ["run", str(CASE / "comp.pb"), str(CASE / "arg.pb"),
                                 "--stack", "threaded", "--threads", "4",
                                 "--expect", str(CASE / "expected.pb")])
    assert result.exit_code == 0, result.stderr
    assert "ok: result matches" in result.stderr
