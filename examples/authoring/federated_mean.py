"""A federated mean written with tffexec.tensorflow + federated-language (no TFF needed).

    python examples/authoring/federated_mean.py [OUTDIR]

Writes OUTDIR/comp.pb (default: examples/authoring/mean/) and arg.pb, after calling the
computation in Python; then try `tffexec run OUTDIR/comp.pb OUTDIR/arg.pb`.
"""
import pathlib
import sys

import federated_language as fl
import numpy as np

import tffexec
import tffexec.tensorflow


@tffexec.tensorflow.computation(np.float32)
def to_celsius(fahrenheit):
    return (fahrenheit - 32.0) * 5.0 / 9.0


@fl.federated_computation(fl.FederatedType(np.float32, fl.CLIENTS))
def mean_celsius(readings):
    return fl.federated_mean(fl.federated_map(to_celsius, readings))


READINGS = [np.float32(v) for v in (50.0, 59.0, 68.0, 77.0)]


def main(outdir: pathlib.Path) -> None:
    print(mean_celsius.type_signature, "->", mean_celsius(READINGS))  # 17.5
    outdir.mkdir(parents=True, exist_ok=True)
    tffexec.save(mean_celsius, outdir / "comp.pb")
    tffexec.save_value(READINGS, outdir / "arg.pb", type=mean_celsius.type_signature.parameter)


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).with_name("mean"))
