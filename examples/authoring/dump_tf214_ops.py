"""Dumps TensorFlow 2.14's op registry (the TF of TFF 0.87) into `tf214_ops.json.gz`, once.

Run under the TFF 0.87 environment (TensorFlow 2.14), from the repository root:

    $PEER/bin/python examples/authoring/dump_tf214_ops.py > /tmp/dump.log 2>&1

It writes `formats/data/tf214_ops.json.gz`: {"tensorflow_version": ..., "ops": {op name:
{attr name: default as a serialized-then-hex AttrValue, or null when the attr has no default}}}.
`tffexec.formats.tf214_compat` reads it at save time to make graphs TF 2.14 can import.
"""
import gzip
import json
import pathlib

import tensorflow as tf
from tensorflow.core.framework import op_def_pb2
from tensorflow.python.client import pywrap_tf_session

OUT = pathlib.Path(__file__).resolve().parents[2] / "formats" / "data" / "tf214_ops.json.gz"


def main() -> None:
    op_list = op_def_pb2.OpList.FromString(
        pywrap_tf_session.TF_GetBuffer(pywrap_tf_session.TF_GetAllOpList()))
    ops = {}
    for op in sorted(op_list.op, key=lambda o: o.name):
        ops[op.name] = {attr.name: (attr.default_value.SerializeToString(deterministic=True).hex()
                                    if attr.HasField("default_value") else None)
                        for attr in op.attr}
    document = {"tensorflow_version": tf.__version__, "ops": ops}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    OUT.write_bytes(gzip.compress(text, mtime=0))
    print(f"{len(ops)} ops of TensorFlow {tf.__version__} -> {OUT}")


if __name__ == "__main__":
    main()
