"""A federated mean written with tffexec.tensorflow + federated-language (no TFF needed).

    python examples/authoring/federated_mean.py [OUTDIR]

Writes OUTDIR/comp.pb (default: examples/authoring/mean/) and arg.pb, after calling the
computation in Python; then try `tffexec run OUTDIR/comp.pb OUTDIR/arg.pb`.
"""
import pathlib

import federated_language as fl
import numpy as np

import tffexec.tensorflow
from case_files import output_folder, save_case


@tffexec.tensorflow.computation(np.float32)
def to_celsius(fahrenheit):
    return (fahrenheit - 32.0) * 5.0 / 9.0


@fl.federated_computation(fl.FederatedType(np.float32, fl.CLIENTS))
def mean_celsius(readings):
    return fl.federated_mean(fl.federated_map(to_celsius, readings))


READINGS = [np.float32(v) for v in (50.0, 59.0, 68.0, 77.0)]


def main(outdir: pathlib.Path) -> None:
    print(mean_celsius.type_signature, "->", mean_celsius(READINGS))  # 17.5
    save_case(mean_celsius, READINGS, outdir)


if __name__ == "__main__":
    main(output_folder(__file__, "mean"))
