"""`--seed` makes random TensorFlow ops reproducible; clients still draw independent values."""
from __future__ import annotations

import numpy as np
import federated_language as fl
import pytest

import tffexec
from tffexec import tensorflow as tfc


@pytest.fixture(scope="module")
def eval_random_at_clients():
    import tensorflow as tf

    draw = tfc.as_computation(tfc.tensorflow_computation(lambda: tf.random.uniform([4])))

    @fl.federated_computation()
    def comp():
        return fl.federated_eval(draw, fl.CLIENTS)

    return comp.to_proto()


def test_same_seed_gives_same_values(eval_random_at_clients):
    first = tffexec.run(eval_random_at_clients, clients=3, seed=7)
    second = tffexec.run(eval_random_at_clients, clients=3, seed=7)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_different_seeds_give_different_values(eval_random_at_clients):
    first = tffexec.run(eval_random_at_clients, clients=3, seed=7)
    second = tffexec.run(eval_random_at_clients, clients=3, seed=8)
    assert not np.array_equal(first[0], second[0])


@pytest.mark.parametrize("seed", [None, 7])
def test_clients_draw_independent_values(eval_random_at_clients, seed):
    values = tffexec.run(eval_random_at_clients, clients=3, seed=seed)
    assert not np.array_equal(values[0], values[1])
    assert not np.array_equal(values[1], values[2])


@pytest.fixture(scope="module")
def eval_op_seeded_at_clients():
    import tensorflow as tf

    draw = tfc.as_computation(tfc.tensorflow_computation(lambda: tf.random.uniform([4], seed=5)))

    @fl.federated_computation()
    def comp():
        return fl.federated_eval(draw, fl.CLIENTS)

    return comp.to_proto()


@pytest.mark.parametrize("stack", [tffexec.StackConfig(),
                                   tffexec.StackConfig(kind="threaded", threads=2,
                                                       clients_per_thread=1)],
                         ids=["local", "threaded"])
def test_an_op_seeded_in_the_graph_restarts_its_stream_on_every_call_as_in_tff(
        eval_op_seeded_at_clients, stack):
    # TFF runs each call on fresh kernels: every client draws the seed's first values.
    first = tffexec.run(eval_op_seeded_at_clients, clients=3, stack=stack)
    second = tffexec.run(eval_op_seeded_at_clients, clients=3, stack=stack)
    for value in [*first, *second]:
        np.testing.assert_array_equal(value, first[0])
