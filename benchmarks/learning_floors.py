"""The two floors of issue 16 for an MLP FedAvg round, written directly in TensorFlow.

A floor is what the same round costs without any federated machinery, to say how far tffexec (and
TFF) are from the model's own math:

- per-client floor: one `tf.function` per client call, the client's batches as stacked tensors
  (no tf.data), SGD over them in a loop; then the weighted mean of the clients' deltas and the
  server step, as eager ops;
- vectorised floor: ONE `tf.function` over all clients: every client's weights stacked along a
  leading client axis, each batch step one batched matmul for all clients (the gradient of the sum
  of the clients' losses is each client's own gradient, since clients share nothing), then the
  weighted mean and the server step in the same call.

The math is that of examples/make_learning_set.py's `fedavg_mlp` workload: Flatten -> Dense 16
relu -> Dense 4 logits, mean sparse softmax cross-entropy per batch, client SGD lr 0.1, client
weight = its number of examples, server SGD lr 1.0 momentum 0.9 on the mean delta
(initial - trained) with a zero accumulator (the state `initialize` gives). `check` compares the
floor's new model weights with TFF's expected.pb, so the floors time the right computation.
"""
from __future__ import annotations

import pathlib
import statistics
import time
from typing import Any

import numpy as np

CLIENT_LR = 0.1
SERVER_LR = 1.0


def load_round(case_dir: pathlib.Path) -> dict[str, Any]:
    """The case's initial trainable weights, its clients' batches stacked as
    [clients, batches, batch, ...] arrays (equal datasets only), and TFF's new weights."""
    import federated_language as fl  # noqa: PLC0415

    from tffexec import policy as policy_lib  # noqa: PLC0415
    from tffexec.checks import op_check  # noqa: PLC0415
    from tffexec.formats import loading, values  # noqa: PLC0415
    from tffexec.formats.protos import executor_pb2  # noqa: PLC0415

    comp = loading.load_computation(case_dir / "comp.pb")
    function_type = fl.Type.from_proto(comp.type)
    arg, _ = values.value_from_proto(
        executor_pb2.Value.FromString((case_dir / "arg.pb").read_bytes()),
        function_type.parameter, path="arg")
    op_check.check_value(arg, function_type.parameter, policy_lib.DEFAULT, path="arg")
    state, clients = arg
    xs, ys = [], []
    for sequence in clients:
        batches = sequence.elements()
        xs.append(np.stack([np.asarray(b[0]) for b in batches]))
        ys.append(np.stack([np.asarray(b[1]) for b in batches]))
    if len({x.shape for x in xs}) != 1:
        raise ValueError(f"{case_dir.name}: the floors need equal datasets (same batches)")
    expected = loading.load_value(case_dir / "expected.pb", function_type.result, path="expected")
    return {"weights": [np.asarray(w) for w in state[0][0]],
            "x": np.stack(xs), "y": np.stack(ys)[..., 0].astype(np.int32),
            "expected": [np.asarray(w) for w in expected[0][0][0]]}


def _logits(tf, w1, b1, w2, b2, x):
    flat = tf.reshape(x, [-1, w1.shape[-2]])
    return tf.matmul(tf.nn.relu(tf.matmul(flat, w1) + b1), w2) + b2


def per_client_floor(data: dict[str, Any]):
    """`round()` -> new weights, calling one tf.function per client."""
    import tensorflow as tf  # noqa: PLC0415

    @tf.function
    def client(w1, b1, w2, b2, xs, ys):
        weights = [w1, b1, w2, b2]
        for i in tf.range(tf.shape(xs)[0]):
            with tf.GradientTape() as tape:
                tape.watch(weights)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    ys[i], _logits(tf, *weights, xs[i])))
            grads = tape.gradient(loss, weights)
            weights = [w - CLIENT_LR * g for w, g in zip(weights, grads)]
        return weights

    initial = [tf.constant(w) for w in data["weights"]]
    xs = [tf.constant(x) for x in data["x"]]
    ys = [tf.constant(y) for y in data["y"]]
    examples = [float(np.prod(y.shape)) for y in data["y"]]

    def round_():
        total = [tf.zeros_like(w) for w in initial]
        for x, y, n in zip(xs, ys, examples):
            trained = client(*initial, x, y)
            total = [t + n * (w0 - w) for t, w0, w in zip(total, initial, trained)]
        return [w0 - SERVER_LR * t / sum(examples) for w0, t in zip(initial, total)]

    return round_


def vectorised_floor(data: dict[str, Any]):
    """`round()` -> new weights, in one tf.function over all clients at once."""
    import tensorflow as tf  # noqa: PLC0415

    clients = data["x"].shape[0]
    initial = [tf.constant(w) for w in data["weights"]]
    x_all, y_all = tf.constant(data["x"]), tf.constant(data["y"])
    # Every client has the same number of examples here; kept as weights for the same math.
    examples = tf.constant(np.full([clients], np.prod(data["y"].shape[1:]), np.float32))

    def stacked_logits(w1, b1, w2, b2, x):  # x: [clients, batch, ...]
        flat = tf.reshape(x, [clients, -1, w1.shape[-2]])
        hidden = tf.nn.relu(tf.matmul(flat, w1) + b1[:, None, :])
        return tf.matmul(hidden, w2) + b2[:, None, :]

    @tf.function
    def round_(x_all, y_all):
        start = [tf.tile(w[None], [clients] + [1] * w.shape.rank) for w in initial]
        weights = start
        for i in tf.range(tf.shape(x_all)[1]):
            with tf.GradientTape() as tape:
                tape.watch(weights)
                per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    y_all[:, i], stacked_logits(*weights, x_all[:, i]))
                loss = tf.reduce_sum(tf.reduce_mean(per_example, axis=1))
            grads = tape.gradient(loss, weights)
            weights = [w - CLIENT_LR * g for w, g in zip(weights, grads)]
        share = examples / tf.reduce_sum(examples)
        return [w0 - SERVER_LR * tf.tensordot(share, s - w, 1)
                for w0, s, w in zip(initial, start, weights)]

    return lambda: round_(x_all, y_all)


def tffexec_round(case_dir: pathlib.Path):
    """`round()` -> the case's result, by a tffexec Runner of its own (default stack): the same
    round as the floors, to time in the same process, taking turns with them."""
    import federated_language as fl  # noqa: PLC0415

    from tffexec import runner as runner_lib  # noqa: PLC0415
    from tffexec.formats import loading  # noqa: PLC0415

    comp = loading.load_computation(case_dir / "comp.pb")
    arg = loading.load_value((case_dir / "arg.pb").read_bytes(),
                             fl.Type.from_proto(comp.type).parameter)
    runner = runner_lib.Runner()
    return lambda: runner.run(comp, arg)


def time_interleaved(rounds: dict[str, Any], runs: int, warmup: int = 2) -> dict[str, Any]:
    """Median/min/max seconds of each round, the rounds taking turns call by call (after
    `warmup` untimed calls of each), so that the machine's load moves them alike."""
    for _ in range(warmup):
        for round_ in rounds.values():
            round_()
    times: dict[str, list] = {name: [] for name in rounds}
    for _ in range(runs):
        for name, round_ in rounds.items():
            t0 = time.perf_counter()
            round_()
            times[name].append(time.perf_counter() - t0)
    return {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
                   "runs": runs} for name, t in times.items()}


def time_floor(round_, runs: int, warmup: int = 2) -> dict[str, Any]:
    """Median/min/max seconds of one floor round (after `warmup` untimed calls)."""
    for _ in range(warmup):
        result = round_()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = round_()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "runs": runs, "result": [np.asarray(w) for w in result]}


def check(result: list[np.ndarray], expected: list[np.ndarray]) -> float:
    """Largest absolute difference between the floor's new weights and TFF's."""
    return max(float(np.max(np.abs(a - b))) for a, b in zip(result, expected))
