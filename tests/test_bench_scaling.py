"""The scaling benchmark's computations compute what its plain-TensorFlow floors compute.

The benchmark (benchmarks/bench_scaling.py) compares tffexec's stacks with a floor program doing
the same math for all clients in one TensorFlow call; the comparison only means something if both
compute the same result. Timing itself is never asserted here.
"""
from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

from tffexec import runner as runner_lib
from tffexec.factories import config as config_lib

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def _scaling_comps():
    spec = importlib.util.spec_from_file_location("scaling_comps", BENCHMARKS / "scaling_comps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("workload", ["trivial", "trivial_mean", "heavy", "fedavg"])
@pytest.mark.parametrize("stack", [config_lib.StackConfig(),
                                   config_lib.StackConfig(kind="threaded", max_fanout=2)],
                         ids=["local", "threaded-fanout2"])
def test_workload_result_equals_its_floor(workload, stack):
    sc = _scaling_comps()
    n = 5
    result = runner_lib.run(sc.computation(workload), sc.argument(workload, n), stack=stack)
    floor = sc.floor(workload, n)()
    if workload == "fedavg":
        np.testing.assert_allclose(result.w, floor[0].numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(result.b, floor[1].numpy(), rtol=1e-4, atol=1e-6)
    else:
        np.testing.assert_allclose(result, floor.numpy(), rtol=1e-5)
