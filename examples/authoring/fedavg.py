"""A weighted FedAvg round on a small linear model, written without TFF.

    python examples/authoring/fedavg.py [OUTDIR]

The model is `<w=float32[2],b=float32>`; each client holds a `tf.data` dataset of
`<x=float32[2],y=float32>` examples. The client update is one pass of SGD written as a
`tf.data` reduce with `tf.linalg` math; the server averages the client models weighted by their
example counts (`federated_mean(..., weight=...)`) and applies the average with a server
learning rate held in a `tf.Variable`; the initial model comes from `tf.Variable`s.

Writes to OUTDIR (default: examples/authoring/fedavg/): `init.pb` and `next.pb` (for
`tffexec iterate`), `comp.pb` (the same round as `next.pb`, for `tffexec run`) with `arg.pb`
(the initial state and every client's data), and `clients/client_N.pb` (one dataset each).
"""
import pathlib

import federated_language as fl
import numpy as np
import tensorflow as tf

import tffexec
import tffexec.tensorflow
from case_files import output_folder, save_case

MODEL = fl.StructWithPythonType([("w", fl.TensorType(np.float32, [2])),
                                 ("b", fl.TensorType(np.float32))], dict)
EXAMPLE = fl.StructWithPythonType([("x", fl.TensorType(np.float32, [2])),
                                   ("y", fl.TensorType(np.float32))], dict)
CLIENT_LR = 0.1
SERVER_LR = 1.0


@tffexec.tensorflow.computation
def initial_model():
    w = tf.Variable(tf.zeros([2]), name="w")
    b = tf.Variable(0.0, name="b")
    return {"w": w, "b": b}


@tffexec.tensorflow.computation(MODEL, fl.SequenceType(EXAMPLE))
def client_update(model, dataset):
    """One SGD pass over the client's examples; returns its model, weight and mean loss."""
    def step(state, example):
        w, b, loss, count = state
        x = tf.reshape(example["x"], [1, 2])
        error = tf.linalg.matvec(x, w)[0] + b - example["y"]
        w = w - CLIENT_LR * error * example["x"]
        b = b - CLIENT_LR * error
        return w, b, loss + 0.5 * error * error, count + 1.0

    w, b, loss, count = dataset.reduce(
        (model["w"], model["b"], tf.constant(0.0), tf.constant(0.0)), step)
    return {"model": {"w": w, "b": b}, "weight": count,
            "loss": loss / tf.maximum(count, 1.0)}


@tffexec.tensorflow.computation(MODEL, MODEL)
def server_update(model, average):
    learning_rate = tf.Variable(SERVER_LR, trainable=False, name="server_lr")
    return {name: model[name] + learning_rate * (average[name] - model[name])
            for name in ("w", "b")}


@fl.federated_computation
def initialize():
    return fl.federated_eval(initial_model, fl.SERVER)


@fl.federated_computation(fl.FederatedType(MODEL, fl.SERVER),
                          fl.FederatedType(fl.SequenceType(EXAMPLE), fl.CLIENTS))
def next_round(state, data):
    outputs = fl.federated_map(client_update, (fl.federated_broadcast(state), data))
    average = fl.federated_mean(outputs.model, weight=outputs.weight)
    loss = fl.federated_mean(outputs.loss, weight=outputs.weight)
    return fl.federated_map(server_update, (state, average)), loss


def client_datasets(clients: int = 4, seed: int = 0) -> list:
    """Each client's examples of y = 2 x0 - x1 + 0.5 (+ noise); client i holds 3 + i."""
    rng = np.random.default_rng(seed)
    datasets = []
    for i in range(clients):
        x = rng.normal(size=(3 + i, 2)).astype(np.float32)
        y = (x @ np.array([2.0, -1.0], np.float32) + 0.5
             + 0.01 * rng.normal(size=3 + i)).astype(np.float32)
        datasets.append(tf.data.Dataset.from_tensor_slices({"x": x, "y": y}))
    return datasets


def main(outdir: pathlib.Path) -> None:
    data = client_datasets()
    state = initialize()
    for round_number in range(3):
        state, loss = next_round(state, data)
        print(f"round {round_number + 1}: loss {loss:.4f}, model {state}")
    save_case(next_round, {"state": initialize(), "data": data}, outdir)
    (outdir / "clients").mkdir(exist_ok=True)
    tffexec.save(initialize, outdir / "init.pb")
    tffexec.save(next_round, outdir / "next.pb")
    for i, dataset in enumerate(data):
        tffexec.save_value(dataset, outdir / "clients" / f"client_{i}.pb")


if __name__ == "__main__":
    main(output_folder(__file__, "fedavg"))
