"""Regenerates executor_pb2.py and tf_graph_pb2.py from the .proto files beside this script.

Run from anywhere: `python formats/protos/regenerate.py` (needs `grpcio-tools`). The imports of
federated-language's protos are resolved from the installed package's descriptors, so no .proto
source of federated-language is needed. The generated modules import `federated_language.proto`
for those messages and are rewritten to import this package's modules as `tffexec.formats.protos`.
"""
import pathlib
import re
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2
from google.protobuf import any_pb2
from federated_language.proto import computation_pb2

HERE = pathlib.Path(__file__).resolve().parent


def _descriptor_set(path: pathlib.Path) -> None:
    files = descriptor_pb2.FileDescriptorSet()
    seen = set()

    def add(fd):
        if fd.name in seen:
            return
        for dep in fd.dependencies:
            add(dep)
        seen.add(fd.name)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        files.file.append(proto)

    add(any_pb2.DESCRIPTOR)
    add(computation_pb2.DESCRIPTOR)
    path.write_bytes(files.SerializeToString())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        deps = pathlib.Path(tmp) / "deps.pb"
        _descriptor_set(deps)
        for name in ("executor.proto", "tf_graph.proto"):
            subprocess.run(
                [sys.executable, "-m", "grpc_tools.protoc", f"--descriptor_set_in={deps}",
                 f"--proto_path={HERE}", f"--python_out={HERE}", name],
                check=True,
            )
    for generated in HERE.glob("*_pb2.py"):
        text = generated.read_text()
        text = re.sub(r"^import (\w+_pb2)", r"from tffexec.formats.protos import \1", text,
                      flags=re.M)
        generated.write_text(text)
    print("regenerated", sorted(p.name for p in HERE.glob("*_pb2.py")))


if __name__ == "__main__":
    main()
