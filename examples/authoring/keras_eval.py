"""Federated evaluation of a Keras 3 model, written without TFF.

    python examples/authoring/keras_eval.py [OUTDIR]

The server broadcasts the weights of a one-layer Keras model; each client builds the model,
runs it with those weights and computes its mean squared error over its `tf.data`
dataset; the server gets the example-weighted mean. Keras 3 layers trace in TensorFlow graph
mode, and TFF 0.87 loads the saved graph (`check_in_tff.py`). The weights go in through
Keras 3's `stateless_call`: in graph mode (no automatic control dependencies, as in TFF) a
layer reads its variables through a snapshot taken when they were created, so assigning new
values to a layer's variables would race with that read. Writes OUTDIR/comp.pb and arg.pb (default:
examples/authoring/keras_eval/).
"""
import pathlib

import federated_language as fl
import keras
import numpy as np
import tensorflow as tf

import tffexec.tensorflow
from case_files import output_folder, save_case

WEIGHTS = fl.StructWithPythonType([("kernel", fl.TensorType(np.float32, [2, 1])),
                                   ("bias", fl.TensorType(np.float32, [1]))], dict)
EXAMPLE = fl.StructWithPythonType([("x", fl.TensorType(np.float32, [None, 2])),
                                   ("y", fl.TensorType(np.float32, [None, 1]))], dict)


@tffexec.tensorflow.computation(WEIGHTS, fl.SequenceType(EXAMPLE))
def client_eval(weights, dataset):
    model = keras.Sequential([keras.Input([2]), keras.layers.Dense(1)])
    trainable = [weights["kernel"], weights["bias"]]  # the order of model.trainable_variables

    def add_batch(state, batch):
        predictions, _ = model.stateless_call(trainable, [], batch["x"])
        return (state[0] + tf.reduce_sum(tf.square(predictions - batch["y"])),
                state[1] + tf.cast(tf.shape(batch["y"])[0], tf.float32))

    squared, count = dataset.reduce((tf.constant(0.0), tf.constant(0.0)), add_batch)
    return {"mse": squared / tf.maximum(count, 1.0), "examples": count}


@fl.federated_computation(fl.FederatedType(WEIGHTS, fl.SERVER),
                          fl.FederatedType(fl.SequenceType(EXAMPLE), fl.CLIENTS))
def evaluate(weights, data):
    metrics = fl.federated_map(client_eval, (fl.federated_broadcast(weights), data))
    return fl.federated_mean(metrics.mse, weight=metrics.examples)


def arguments() -> tuple:
    rng = np.random.default_rng(1)
    weights = {"kernel": np.array([[1.0], [-2.0]], np.float32), "bias": np.array([0.5], np.float32)}
    data = []
    for n in (4, 6, 3):
        x = rng.normal(size=(n, 2)).astype(np.float32)
        y = (x @ np.array([[1.5], [-2.0]], np.float32)).astype(np.float32)
        data.append(tf.data.Dataset.from_tensor_slices({"x": x, "y": y}).batch(2))
    return weights, data


def main(outdir: pathlib.Path) -> None:
    weights, data = arguments()
    print(evaluate.type_signature, "->", evaluate(weights, data))
    save_case(evaluate, {"weights": weights, "data": data}, outdir)


if __name__ == "__main__":
    main(output_folder(__file__, "keras_eval"))
