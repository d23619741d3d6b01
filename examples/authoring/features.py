"""One computation using each feature of `tffexec.tensorflow.computation`, for comparing with TFF.

    python examples/authoring/features.py [OUTDIR]

Structures in and out (a namedtuple parameter, a dict result), a sequence parameter reduced
with `tf.data`, a variable and its initializer, a lookup table and seeded random ops, all at
the clients under `federated_map`. Writes OUTDIR/comp.pb and arg.pb (default:
examples/authoring/features/); `check_in_tff.py` runs them in TFF 0.87.
"""
import collections
import pathlib

import federated_language as fl
import numpy as np
import tensorflow as tf

import tffexec.tensorflow
from case_files import output_folder, save_case

Reading = collections.namedtuple("Reading", ["city", "celsius"])
READING = Reading(fl.TensorType(np.str_), fl.TensorType(np.float32))


@tffexec.tensorflow.computation(READING, fl.SequenceType(np.int32))
def client_work(reading, counts):
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(["oslo", "rome"], [1, 2]), default_value=-1)
    total = tf.Variable(10, dtype=tf.int32)
    added = total.assign_add(counts.reduce(np.int32(0), lambda a, b: a + b))
    return {"city_id": table.lookup(reading.city),
            "total": added,
            "fahrenheit": reading.celsius * 9.0 / 5.0 + 32.0,
            "noise": tf.random.stateless_uniform([2], seed=[1, 2]),
            "op_seeded": tf.random.uniform([2], seed=5)}


@fl.federated_computation(fl.FederatedType(READING, fl.CLIENTS),
                          fl.FederatedType(fl.SequenceType(np.int32), fl.CLIENTS))
def features(readings, counts):
    return fl.federated_map(client_work, (readings, counts))


def arguments() -> tuple:
    """Three clients' readings and count datasets."""
    readings = [Reading("oslo", np.float32(-5.0)), Reading("rome", np.float32(20.0)),
                Reading("lima", np.float32(18.5))]
    counts = [tf.data.Dataset.from_tensor_slices(np.arange(n, dtype=np.int32)) for n in (1, 3, 5)]
    return readings, counts


def main(outdir: pathlib.Path) -> None:
    readings, counts = arguments()
    for client in features(readings, counts):
        print(client)
    save_case(features, {"readings": readings, "counts": counts}, outdir)


if __name__ == "__main__":
    main(output_folder(__file__, "features"))
