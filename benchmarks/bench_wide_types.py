"""Time `tffexec validate` on computations whose types hold a struct of 10^4, 10^5 and 10^6
elements: the type walkers must be linear (issue 15 §2, "wide types validate in seconds").

The computation is `(arg -> federated_map(<(x -> x), arg>))` with `arg: {<e0=int32,...>}@CLIENTS`:
the wide type appears at the signature, the intrinsic, the call and both lambdas, as in a TFF
computation over a wide model. Each size runs the installed CLI in a fresh process
(`python -m tffexec validate comp.pb --clients 2`), so start-up is included; median of `--runs`.
Usage:

    .venv/bin/python benchmarks/bench_wide_types.py [--sizes 10000,100000,1000000] [--runs 1]
"""
from __future__ import annotations

import argparse
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from federated_language.proto import computation_pb2 as pb

MAP = "federated_map"


def wide_struct(n: int) -> pb.Type:
    """`<e0=int32,...,e{n-1}=int32>` as a Type proto, built on the proto directly."""
    struct = pb.Type()
    elements = struct.struct.element
    for i in range(n):
        element = elements.add(name=f"e{i}")
        element.value.tensor.dtype = 3  # DT_INT32
    return struct


def wide_computation(n: int) -> pb.Computation:
    """`(arg -> federated_map(<(x -> x), arg>))` over `{<e0..e{n-1}=int32>}@CLIENTS`."""
    member = wide_struct(n)
    at_clients = pb.Type()
    at_clients.federated.member.CopyFrom(member)
    at_clients.federated.placement.value.uri = "clients"
    identity_type = _function_type(member, member)

    identity = pb.Computation(type=identity_type)
    getattr(identity, "lambda").parameter_name = "x"
    getattr(identity, "lambda").result.reference.name = "x"
    getattr(identity, "lambda").result.type.CopyFrom(member)

    argument = pb.Computation(type=at_clients)
    argument.reference.name = "arg"
    pair = pb.Computation()
    pair.type.struct.element.add().value.CopyFrom(identity_type)
    pair.type.struct.element.add().value.CopyFrom(at_clients)
    pair.struct.element.add().value.CopyFrom(identity)
    pair.struct.element.add().value.CopyFrom(argument)

    intrinsic = pb.Computation(type=_function_type(pair.type, at_clients))
    intrinsic.intrinsic.uri = MAP
    call = pb.Computation(type=at_clients)
    call.call.function.CopyFrom(intrinsic)
    call.call.argument.CopyFrom(pair)

    root = pb.Computation(type=_function_type(at_clients, at_clients))
    getattr(root, "lambda").parameter_name = "arg"
    getattr(root, "lambda").result.CopyFrom(call)
    return root


def _function_type(parameter: pb.Type, result: pb.Type) -> pb.Type:
    function = pb.Type()
    function.function.parameter.CopyFrom(parameter)
    function.function.result.CopyFrom(result)
    return function


def time_validate(comp_path: pathlib.Path, runs: int,
                  python: str = sys.executable) -> tuple[float, float]:
    """Median (wall seconds, CPU seconds) of `validate` on `comp_path` in a fresh process (exit
    0 required). CPU time is shown too: on a loaded machine the wall time mostly measures the
    other processes."""
    seconds, cpu = [], []
    command = [python, "-m", "tffexec", "validate", str(comp_path), "--clients", "2",
               "--max-computation-bytes", str(2**31 - 1)]
    for _ in range(runs):
        start, used = time.perf_counter(), _children_cpu()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, check=False)
        seconds.append(time.perf_counter() - start)
        cpu.append(_children_cpu() - used)
        if done.returncode != 0:
            raise SystemExit(f"validate exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return statistics.median(seconds), statistics.median(cpu)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--tffexec-python", default=sys.executable,
                        help="Python whose `-m tffexec` is timed (e.g. an older checkout's venv)")
    args = parser.parse_args()
    print(f"{'elements':>10} {'comp MB':>8} {'wall s':>8} {'cpu s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            path = pathlib.Path(tmp) / f"wide_{n}.pb"
            path.write_bytes(wide_computation(n).SerializeToString())
            wall, cpu = time_validate(path, args.runs, args.tffexec_python)
            print(f"{n:>10,} {path.stat().st_size / 1e6:>8.1f} {wall:>8.2f} {cpu:>8.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
