"""The three computations of the scaling benchmark, built without TFF, and their plain-TF floors.

Each workload has
- `computation()`: a serialized federated computation (federated-language tracing around
  `tensorflow` computations traced by `tffexec.tensorflow`, the same proto
  shapes TFF writes);
- `argument(n)`: its argument for n clients (small per-client values: client data is generated
  inside the client's TensorFlow function from a per-client seed, so 10 000 clients fit in memory);
- `floor(n)`: a function running the same math for all n clients at once in one compiled
  TensorFlow program (batched ops over a leading client axis) — the least any runtime can take.

Workloads:
  trivial  federated_sum(federated_map(x -> x + 1, x)), x: float32@CLIENTS
  trivial_mean  the same with federated_mean
  heavy    per client: 50 chained 64x64 matmuls from its seed, summed; then federated_sum
  fedavg   broadcast a 784x10 softmax model; per client 5 gradient steps on 100 generated
           examples; federated_weighted_mean of the new models (weight 100 per client)
"""
from __future__ import annotations

import functools

import federated_language as fl
import numpy as np

from tffexec import tf_runtime
from tffexec import tensorflow as tfc

WORKLOADS = ("trivial", "trivial_mean", "heavy", "fedavg")
MATMULS, SIZE = 50, 64
FEATURES, CLASSES, EXAMPLES, STEPS, LEARNING_RATE = 784, 10, 100, 5, 0.1


def _tf():
    return tf_runtime.tensorflow()


def _heavy_matrix(tf):
    # A fixed, well-conditioned matrix: chained products stay finite.
    return tf.constant(np.eye(SIZE, dtype=np.float32) * 0.9
                       + np.full((SIZE, SIZE), 0.1 / SIZE, dtype=np.float32))


_BASE_X = np.random.default_rng(0).uniform(size=(EXAMPLES, FEATURES)).astype(np.float32)


def _client_examples(tf, seed):
    """100 examples of one client, derived cheaply from its seed (the same on every stack).

    A shared base matrix shifted per client, and labels rotated per client: generating 78 400
    random numbers per client would cost more than the training steps being measured.
    """
    shift = tf.cast(seed, tf.float32) * 0.001
    x = tf.constant(_BASE_X) + shift
    labels = tf.math.floormod(seed + tf.range(EXAMPLES, dtype=tf.int32), CLASSES)
    return x, tf.one_hot(labels, CLASSES)


def _local_steps(tf, w, b, x, y):
    for _ in range(STEPS):
        p = tf.nn.softmax(tf.matmul(x, w) + b)
        g = (p - y) / EXAMPLES
        w = w - LEARNING_RATE * tf.matmul(x, g, transpose_a=True)
        b = b - LEARNING_RATE * tf.reduce_sum(g, axis=0)
    return w, b


@functools.lru_cache(maxsize=None)
def computation(workload: str):
    """The federated computation for `workload` as a `Computation` proto."""
    tf = _tf()
    C, S = fl.CLIENTS, fl.SERVER
    if workload in ("trivial", "trivial_mean"):
        add_one = tfc.as_computation(tfc.tensorflow_computation(lambda x: x + 1.0, np.float32))
        aggregate = fl.federated_sum if workload == "trivial" else fl.federated_mean

        @fl.federated_computation(fl.FederatedType(np.float32, C))
        def comp(x):
            return aggregate(fl.federated_map(add_one, x))

    elif workload == "heavy":
        def chain(seed):
            m = tf.random.stateless_uniform([SIZE, SIZE], seed=tf.stack([seed, 1]))
            w = _heavy_matrix(tf)
            for _ in range(MATMULS):
                m = tf.matmul(m, w)
            return tf.reduce_sum(m)

        per_client = tfc.as_computation(tfc.tensorflow_computation(chain, np.int32))

        @fl.federated_computation(fl.FederatedType(np.int32, C))
        def comp(seeds):
            return fl.federated_sum(fl.federated_map(per_client, seeds))

    elif workload == "fedavg":
        model_type = fl.StructType([("w", fl.TensorType(np.float32, [FEATURES, CLASSES])),
                                    ("b", fl.TensorType(np.float32, [CLASSES]))])

        def train(model, seed):
            x, y = _client_examples(tf, seed)
            w, b = _local_steps(tf, model["w"], model["b"], x, y)
            return {"w": w, "b": b}

        client_update = tfc.as_computation(tfc.tensorflow_computation(
            lambda arg: train(arg[0], arg[1]), fl.StructType([model_type, np.int32])))
        weight = tfc.as_computation(tfc.tensorflow_computation(
            lambda seed: tf.constant(float(EXAMPLES)), np.int32))

        @fl.federated_computation(fl.FederatedType(model_type, S), fl.FederatedType(np.int32, C))
        def comp(model, seeds):
            updated = fl.federated_map(client_update,
                                       fl.federated_zip((fl.federated_broadcast(model), seeds)))
            weights = fl.federated_map(weight, seeds)
            return fl.federated_mean(updated, weights)

    else:
        raise ValueError(f"unknown workload {workload!r}; expected one of {WORKLOADS}")
    return comp.to_building_block().to_proto()


def argument(workload: str, n: int):
    """The argument for n clients, in tffexec's Python representation."""
    if workload in ("trivial", "trivial_mean"):
        return [np.float32(i % 100) for i in range(n)]
    seeds = [np.int32(i) for i in range(n)]
    if workload == "heavy":
        return seeds
    model = {"w": np.zeros((FEATURES, CLASSES), np.float32), "b": np.zeros((CLASSES,), np.float32)}
    return [model, seeds]


def floor(workload: str, n: int):
    """A zero-argument callable doing the workload's math for all n clients in one TF call."""
    tf = _tf()
    if workload in ("trivial", "trivial_mean"):
        x = tf.constant(np.asarray(argument("trivial", n), np.float32))
        reduce = tf.reduce_sum if workload == "trivial" else tf.reduce_mean
        fn = tf.function(lambda: reduce(x + 1.0))
    elif workload == "heavy":
        seeds = tf.range(n, dtype=tf.int32)

        def heavy():
            m = tf.map_fn(lambda s: tf.random.stateless_uniform([SIZE, SIZE], seed=tf.stack([s, 1])),
                          seeds, fn_output_signature=tf.float32)
            w = _heavy_matrix(tf)
            for _ in range(MATMULS):
                m = tf.matmul(m, w)  # batched over the client axis
            return tf.reduce_sum(m)

        fn = tf.function(heavy)
    elif workload == "fedavg":
        base = tf.constant(_BASE_X)

        @tf.function
        def chunk_sums(seeds):
            # Clients of one chunk at once: [k, 100, 784] inputs, batched matmuls.
            x = base[None] + tf.cast(seeds, tf.float32)[:, None, None] * 0.001
            labels = tf.math.floormod(seeds[:, None] + tf.range(EXAMPLES)[None], CLASSES)
            y = tf.one_hot(labels, CLASSES)
            k = tf.shape(seeds)[0]
            w = tf.zeros([k, FEATURES, CLASSES])
            b = tf.zeros([k, 1, CLASSES])
            for _ in range(STEPS):
                p = tf.nn.softmax(tf.matmul(x, w) + b)
                g = (p - y) / EXAMPLES
                w = w - LEARNING_RATE * tf.matmul(x, g, transpose_a=True)
                b = b - LEARNING_RATE * tf.reduce_sum(g, axis=1, keepdims=True)
            return tf.reduce_sum(w, axis=0), tf.reduce_sum(b, axis=[0, 1])

        def fedavg():
            # Chunks of 500 clients keep the inputs in memory at 10 000+ clients.
            total_w, total_b = 0.0, 0.0
            for start in range(0, n, 500):
                w, b = chunk_sums(tf.range(start, min(start + 500, n), dtype=tf.int32))
                total_w, total_b = total_w + w, total_b + b
            return total_w / n, total_b / n

        return fedavg
    else:
        raise ValueError(f"unknown workload {workload!r}")
    return fn
