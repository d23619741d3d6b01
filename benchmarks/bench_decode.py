"""Time to decode a `{int32}@CLIENTS` argument of 10^4, 10^5 and 10^6 scalar members, and to
validate a struct type of as many elements: the linear-time claims of the bounded-read work.

Each size is timed end to end as the CLI reads an argument (`tffexec.formats.loading` on the
file's bytes, then the client count), median of `--runs`. Usage:

    .venv/bin/python benchmarks/bench_decode.py [--sizes 10000,100000,1000000] [--runs 3]
        [--clients-only]
"""
from __future__ import annotations

import argparse
import statistics
import time

import federated_language as fl
import numpy as np


def clients_value_bytes(n: int) -> bytes:
    """A serialized `{int32}@CLIENTS` Value of `n` scalar members, laid out as TFF writes one
    (built on the proto directly: encoding a million members is not what is timed)."""
    from tffexec.formats.values import value_to_proto  # noqa: PLC0415

    template = value_to_proto([np.int32(0)], fl.FederatedType(np.int32, fl.CLIENTS))
    member = template.federated.value[0]
    for _ in range(n - 1):
        template.federated.value.add().CopyFrom(member)
    for i, m in enumerate(template.federated.value):
        m.array.int32_list.value[0] = i % 1000
    return template.SerializeToString()


def struct_value_bytes(n: int) -> bytes:
    """A serialized struct Value of `n` named int32 scalars (built on the proto directly)."""
    from tffexec.formats.protos import executor_pb2  # noqa: PLC0415

    value = executor_pb2.Value()
    for i in range(n):
        element = value.struct.element.add(name=f"e{i}")
        element.value.array.CopyFrom(_scalar_array(i))
    return value.SerializeToString()


def _scalar_array(i: int):
    from tffexec.formats.arrays import array_to_proto  # noqa: PLC0415

    return array_to_proto(np.int32(i % 1000))


def time_load(data: bytes, type_hint, runs: int, *, max_clients: int) -> float:
    """Median seconds of loading `data` as the CLI does (limits raised to let it in)."""
    from tffexec.formats import loading, normalize  # noqa: PLC0415
    from tffexec import policy as policy_lib  # noqa: PLC0415

    policy = policy_lib.Policy(max_clients=max_clients)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        value = loading.load_value(data, type_hint, name="bench.pb", policy=policy)
        normalize.infer_clients(value, type_hint)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients-only", action="store_true",
                        help="time only the clients value (the struct column prints -)")
    args = parser.parse_args()
    print(f"{'members':>10} {'clients s':>10} {'struct s':>10}")
    for n in (int(s) for s in args.sizes.split(",")):
        clients = time_load(clients_value_bytes(n), fl.FederatedType(np.int32, fl.CLIENTS),
                            args.runs, max_clients=n)
        if args.clients_only:
            print(f"{n:>10,} {clients:>10.2f} {'-':>10}", flush=True)
            continue
        int32 = fl.TensorType(np.int32)
        struct_type = fl.StructType([(f"e{i}", int32) for i in range(n)])
        struct = time_load(struct_value_bytes(n), struct_type, args.runs, max_clients=1)
        print(f"{n:>10,} {clients:>10.2f} {struct:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
