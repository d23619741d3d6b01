"""Importing tffexec.formats or tffexec.checks must not import TensorFlow (it costs seconds per
CLI start), nor must importing the authoring helper `tffexec.tensorflow` (TF loads on use)."""
from __future__ import annotations

import pkgutil
import subprocess
import sys

import tffexec.checks
import tffexec.formats


def _assert_runs_in_a_fresh_interpreter(script: str) -> None:
    """Runs `script` in a new Python (nothing imported yet) and checks that it reached its end."""
    out = subprocess.run([sys.executable, "-c", script + "\nprint('ok')"], capture_output=True,
                         text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_importing_every_formats_and_checks_module_does_not_import_tensorflow():
    modules = sorted(m.name for package in (tffexec.formats, tffexec.checks)
                     for m in pkgutil.walk_packages(package.__path__, package.__name__ + "."))
    assert "tffexec.formats.sequences" in modules and "tffexec.checks.op_check" in modules
    modules += ["tffexec.policy", "tffexec.tensorflow"]
    script = "\n".join([f"import {m}" for m in modules] + [
        "import sys",
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))",
        "assert not heavy, heavy",
    ])
    _assert_runs_in_a_fresh_interpreter(script)


def test_reading_and_writing_sequence_values_does_not_import_tensorflow():
    """Sequences pass through as graph bytes; TensorFlow is needed only to look inside."""
    script = "\n".join([
        "import sys, pathlib",
        "import federated_language as fl, numpy as np",
        "from tffexec.formats import values",
        "from tffexec.formats.protos import executor_pb2",
        "t = fl.FederatedType(fl.SequenceType(fl.TensorType(np.int32)), fl.CLIENTS)",
        "pb = executor_pb2.Value()",
        "pb.federated.type.CopyFrom(t.to_proto().federated)",
        "seq = pb.federated.value.add().sequence",
        "seq.element_type.CopyFrom(fl.TensorType(np.int32).to_proto())",
        "seq.serialized_graph_def = b'opaque graph bytes'",
        "v, vt = values.value_from_proto(pb, t)",
        "assert values.value_to_proto(v, vt) == pb",
        "assert 'tensorflow' not in sys.modules",
    ])
    _assert_runs_in_a_fresh_interpreter(script)
