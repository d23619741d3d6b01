"""Every case real TFF serialized runs through tffexec and returns TFF's answer.

One test per case and form: `comp.pb` (as the user serialized it, before TFF's compiler) and
`native_comp.pb` (the compiled form TFF's runtime executed). Integers, strings and bools must be
equal; floats within rtol 1e-5 / atol 1e-6 (TF 2.21's kernels differ from TF 2.14's in the last
bits). Cases whose values come from stateful random ops are checked for type and shape only.

Every stack runs every case: local with clients batched into columns (the default) and one client
at a time (`--no-batch`), threaded (one client per task, so per-client work really runs on several
threads), composed with the smallest fanout (every aggregation is merged from partials across
several levels), and both together.
"""
from __future__ import annotations

import json

import federated_language
import pytest

from tffexec import policy as policy_lib
from tffexec import runner as runner_lib
from tffexec.checks import op_check
from tffexec.factories import config as config_lib
from tffexec.formats import loading
from tffexec.formats import values
from tffexec.formats.protos import executor_pb2

RTOL, ATOL = 1e-5, 1e-6


STACKS = {
    "local": config_lib.StackConfig(),
    "local-nobatch": config_lib.StackConfig(batch=False),
    "threaded": config_lib.StackConfig(kind="threaded", threads=3, clients_per_thread=1),
    "fanout2": config_lib.StackConfig(max_fanout=2),
    "threaded-fanout3": config_lib.StackConfig(kind="threaded", threads=2, max_fanout=3),
}


@pytest.fixture(scope="module", params=list(STACKS))
def runner(request):
    with runner_lib.Runner(STACKS[request.param]) as r:
        yield r


def _load_case(case_dir, form):
    comp = loading.load_computation(case_dir / form)
    function_type = federated_language.Type.from_proto(comp.type)
    arg = None
    if (case_dir / "arg.pb").exists():
        arg = executor_pb2.Value.FromString((case_dir / "arg.pb").read_bytes())
    expected_pb = executor_pb2.Value.FromString((case_dir / "expected.pb").read_bytes())
    expected, _ = values.value_from_proto(expected_pb, function_type.result)
    # Loaders check no ops; comparing reads the expected sequences' dataset graphs.
    op_check.check_value(expected, function_type.result, policy_lib.DEFAULT, path="expected")
    meta = json.loads((case_dir / "meta.json").read_text())
    return comp, function_type, arg, expected, meta


def test_case_returns_tffs_result(runner, case_form):
    case_dir, form = case_form
    comp, function_type, arg, expected, meta = _load_case(case_dir, form)
    clients = meta.get("num_clients")
    result = runner.run(comp, arg, clients=clients)
    if meta.get("random") or "stateful random" in str(meta.get("roundtrip_error")):
        # Only the deterministic parts can be compared; check that the result has the type.
        values.normalize(result, function_type.result, path="result")
        return
    differences = values.values_equal(result, expected, function_type.result, rtol=RTOL, atol=ATOL,
                                      path="result")
    assert not differences, f"{case_dir.name}/{form}: differs at {differences[:5]}"
