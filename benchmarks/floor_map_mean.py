"""The floor of map+mean: `tanh(2x + 1)` on every client's float32[16], then the mean over the
clients, as ONE TensorFlow program (`tf.vectorized_map` + `reduce_mean` in a `tf.function`).

Why: it is the least any runtime can take for `scale_map_mean_*` (the conformance cases'
computation), so tffexec's cost is reported as a ratio to it, measured in the same run.

    python benchmarks/floor_map_mean.py ARG.npz     # whole process: import TF, load, run once

As a script it reads the npz that `tffexec run` would read (key `value`, [N, 16] float32) and
prints the mean; `bench_columns.py` times the script against `tffexec run` of the same file.
"""
from __future__ import annotations

import sys


def floor_function():
    """The compiled floor: a [N, 16] float32 tensor -> the mean of tanh(2x + 1) over clients."""
    import tensorflow as tf  # noqa: PLC0415 - the whole point is timing this import too

    @tf.function(input_signature=[tf.TensorSpec([None, 16], tf.float32)], autograph=False)
    def map_mean(x):
        mapped = tf.vectorized_map(lambda row: tf.tanh(2.0 * row + 1.0), x)
        return tf.reduce_mean(mapped, axis=0)

    return map_mean


def main(argv: list[str]) -> int:
    import numpy as np  # noqa: PLC0415

    with np.load(argv[1]) as archive:
        x = archive["value"]
    print(floor_function()(x).numpy().tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
