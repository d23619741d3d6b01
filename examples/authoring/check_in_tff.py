"""Loads the computations tffexec authored (examples/authoring/) in real TFF 0.87 and runs them.

Run under the TFF 0.87 environment (Python 3.11, TensorFlow 2.14), from the repository root,
after `federated_mean.py`, `fedavg.py`, `features.py` and `keras_eval.py` wrote their
folders:

    $PEER/bin/python examples/authoring/check_in_tff.py > /tmp/check_in_tff.log 2>&1

It writes TFF's results next to the inputs, so tffexec's tests compare against TFF without TFF:
- mean/tff_result.pb: `comp(arg)`;
- fedavg/, features/, keras_eval/ tff_result.pb: `comp(arg)`;
- fedavg/tff_state.pb and fedavg/tff_losses.json: `init()` then ROUNDS rounds of `next` on
  every client (clients/ in name order), as `tffexec iterate --rounds ROUNDS` without -k does.
"""
import json
import pathlib

import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.proto.v0 import computation_pb2
from tensorflow_federated.proto.v0 import executor_pb2

HERE = pathlib.Path(__file__).resolve().parent
ROUNDS = 3


def load_computation(path: pathlib.Path):
    return tff.framework.deserialize_computation(
        computation_pb2.Computation.FromString(path.read_bytes()))


def load_value(path: pathlib.Path):
    return tff.framework.deserialize_value(executor_pb2.Value.FromString(path.read_bytes()))[0]


def save_value(path: pathlib.Path, value, type_spec) -> None:
    path.write_bytes(tff.framework.serialize_value(value, type_spec)[0].SerializeToString())


def run_once(folder: pathlib.Path) -> None:
    comp = load_computation(folder / "comp.pb")
    result = comp(load_value(folder / "arg.pb"))
    save_value(folder / "tff_result.pb", result, comp.type_signature.result)
    print(folder.name, comp.type_signature, "->", result)


def run_rounds(folder: pathlib.Path) -> None:
    initialize = load_computation(folder / "init.pb")
    next_fn = load_computation(folder / "next.pb")
    clients = [load_value(p) for p in sorted((folder / "clients").glob("*.pb"))]
    state, losses = initialize(), []
    for _ in range(ROUNDS):
        state, loss = next_fn(state, clients)
        losses.append(float(loss))
    save_value(folder / "tff_state.pb", state, next_fn.type_signature.result[0])
    (folder / "tff_losses.json").write_text(json.dumps(
        {"rounds": ROUNDS, "losses": losses, "tff_version": tff.__version__,
         "tf_version": tf.__version__}, indent=1) + "\n")
    print(folder.name, "state after", ROUNDS, "rounds:", state, "losses", losses)


def main() -> None:
    tff.backends.native.set_sync_local_cpp_execution_context()
    run_once(HERE / "mean")
    run_once(HERE / "fedavg")
    run_once(HERE / "features")
    run_once(HERE / "keras_eval")
    run_rounds(HERE / "fedavg")


if __name__ == "__main__":
    main()
