"""Every case real TFF serialized runs through tffexec and returns TFF's answer.

One test per case and form: `comp.pb` (as the user serialized it, before TFF's compiler) and
`native_comp.pb` (the compiled form TFF's runtime executed), compared as `run --expect` compares
(floats within its default rtol/atol: TF 2.21's kernels differ from TF 2.14's in the last bits).
Cases whose values come from stateful random ops are checked for type and shape only.

Every stack runs every case: local with clients batched into columns (the default) and one client
at a time (`--no-batch`), threaded (one client per task, so per-client work really runs on several
threads), composed with the smallest fanout (every aggregation is merged from partials across
several levels), both together, and "compiled": the local stack with every round compiled into one
TensorFlow function on its first call (`executors/tf_round.py`; rounds it does not lower run on the
stack as in "local"). A composed stack merges partial aggregates where TFF does
not, so the cases whose answer shows merges (`MERGE_SHOWS`) are checked there by
tests/test_aggregate_order.py instead.
"""
from __future__ import annotations

import pytest
from tffexec_test_support import MERGE_SHOWS, check_case_form

from tffexec import runner as runner_lib
from tffexec.factories import config as config_lib

STACKS = {
    "local": config_lib.StackConfig(),
    "local-nobatch": config_lib.StackConfig(batch=False),
    "threaded": config_lib.StackConfig(kind="threaded", threads=3, clients_per_thread=1),
    "fanout2": config_lib.StackConfig(max_fanout=2),
    "threaded-fanout3": config_lib.StackConfig(kind="threaded", threads=2, max_fanout=3),
    "compiled": config_lib.StackConfig(),
}


@pytest.fixture(scope="module", params=list(STACKS))
def runner(request):
    with pytest.MonkeyPatch.context() as patch, runner_lib.Runner(STACKS[request.param]) as r:
        if request.param == "compiled":
            patch.setenv("TFFEXEC_COMPILE_AFTER", "0")
        yield r


def test_case_returns_tffs_result(runner, case_form):
    case_dir, form = case_form
    if case_dir.name in MERGE_SHOWS and (runner.config.max_fanout is not None
                                         or runner.config.kind == "ray"):
        pytest.skip("composed stacks and Ray shards merge partial aggregates "
                    "(tests/test_aggregate_order.py)")
    problems = check_case_form(runner, case_dir, form)
    assert not problems, f"{case_dir.name}/{form}: {problems[:5]}"
