"""Which ops of a graph create TensorFlow resources, and how each call gets fresh ones.

TFF's runtime runs every call of a `tensorflow` computation from fresh resources (its sessions'
resource containers are cleared after each call), so a hash table filled, a variable assigned or
a queue fed by one client's call is never seen by the next. TensorFlow itself keeps a resource
made by an op with a `shared_name` (or a kernel-private one) in the process's resource manager
for as long as the compiled function lives, so calling one imported graph twice would share them.

What creates a resource is read from TensorFlow's op registry, not from node attributes: an op
whose output is a resource handle (`DT_RESOURCE`) or a reference, and whose inputs are neither
(so `Assign` or `Identity`, which pass an existing one on, do not count; nor do random ops, which
are stateful but create no resource). Of those, the ones whose op definition has a `shared_name`
attribute are NAMED: their resource outlives the call. The others (`StackV2`, `TensorArrayV3`,
`TemporaryVariable`, the `Anonymous*` ops) live in the call's own step container or are
reference-counted by the call's tensors, so they are fresh for every call already.

Named resources are made per-call in one of two ways (`plan`):

* ANONYMOUS (fast, the common case): a top-level `VarHandleOp` gets TensorFlow's anonymous shared
  name, and the hash tables `HashTableV2`, `MutableHashTableV2`, `MutableHashTableOfTensorsV2`
  and `MutableDenseHashTableV2` become their `Anonymous*` forms. Each execution of the op then
  makes a new resource, released when the call's last tensor referring to it is gone, so one
  imported graph serves every call, concurrent calls included. A top-level node runs exactly once
  per call, so sharing within the call is unchanged, unless two nodes name the same resource
  (then they are left named).
* PER CALL (correct, slower): any other named resource (queues, accumulators, ref variables,
  iterators, mutexes, a named resource inside a library function, whose sharing across the
  function's invocations within one call must be kept, or two nodes naming one resource) makes
  the graph run on a freshly imported instance for each call; the resources it named are
  destroyed after the call where TensorFlow allows it (a resource handle the call returns).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Iterable, Optional

#: TensorFlow's `ResourceHandle::ANONYMOUS_NAME`: a `VarHandleOp` with this shared name makes a
#: new reference-counted variable each time it runs.
ANONYMOUS_NAME = b"cd2c89b7-88b7-44c8-ad83-06c2a9158347"

#: Named table ops and their anonymous forms (same inputs and attributes, minus the naming ones).
ANONYMOUS_TABLES = {
    "HashTableV2": "AnonymousHashTable",
    "MutableHashTableV2": "AnonymousMutableHashTable",
    "MutableHashTableOfTensorsV2": "AnonymousMutableHashTableOfTensors",
    "MutableDenseHashTableV2": "AnonymousMutableDenseHashTable",
}


def _op_def(op: str):
    from tensorflow.python.framework import op_def_registry  # noqa: PLC0415 - TF loads lazily
    return op_def_registry.get(op)


@functools.lru_cache(maxsize=None)
def creates_resource(op: str) -> bool:
    """Whether the op makes a resource: a resource or ref output and no resource or ref input.

    An op TensorFlow does not know counts (it cannot run anyway; the cautious answer is free).
    """
    from tensorflow.core.framework import types_pb2  # noqa: PLC0415 - TF loads lazily

    op_def = _op_def(op)
    if op_def is None:
        return True

    def holds_resource(arg) -> bool:
        return arg.is_ref or arg.type == types_pb2.DT_RESOURCE

    return (any(holds_resource(a) for a in op_def.output_arg)
            and not any(holds_resource(a) for a in op_def.input_arg))


@functools.lru_cache(maxsize=None)
def _attr_names(op: str) -> frozenset[str]:
    op_def = _op_def(op)
    return frozenset(a.name for a in op_def.attr) if op_def is not None else frozenset()


def creates_named_resource(op: str) -> bool:
    """Whether the op makes a resource that outlives the call (see the module docstring)."""
    return creates_resource(op) and (
        _op_def(op) is None or "shared_name" in _attr_names(op))


def restarts_seeded_stream(node) -> bool:
    """Whether `node` is a stateful random op with a seed written in the graph.

    Such an op draws from a stream that its kernel keeps across executions; TFF's runtime builds
    fresh kernels for every call, so every call (every client) draws the stream's first values.
    Its graph therefore runs on a fresh instance per call, like a graph with named resources.
    An op without a seed (seed = seed2 = 0) draws a fresh random seed per kernel in TFF: there,
    continuing one stream (seeded by `--seed` or at random) is as good and much cheaper.
    """
    op_def = _op_def(node.op)
    if op_def is None or not op_def.is_stateful or not {"seed", "seed2"} <= _attr_names(node.op):
        return False
    return bool(node.attr["seed"].i or node.attr["seed2"].i)


def _resource_key(node) -> tuple:
    """What names the node's resource in the resource manager (container, name)."""
    container = node.attr["container"].s if "container" in node.attr else b""
    name = node.attr["shared_name"].s if "shared_name" in node.attr else b""
    sharing = "use_node_name_sharing" in node.attr and node.attr["use_node_name_sharing"].b
    if not name and sharing:
        name = node.name.encode()
    if not name and node.op != "VarHandleOp":
        return (container, b"private", node.name.encode())  # private to the node's kernel
    return (container, name)


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one graph's calls get fresh resources.

    anonymous: top-level nodes to turn anonymous. per_call: whether each call needs its own
    imported instance. handles: top-level tensors holding named resource handles (destroyed after
    a per-call instance's call). library_per_instance: whether each imported instance needs its
    own copy of the library functions (see `library_per_instance`).
    """

    anonymous: frozenset[str]
    per_call: bool
    handles: tuple[str, ...]
    library_per_instance: bool

    @property
    def stateless(self) -> bool:
        """Whether one imported instance may serve every call (concurrent ones included)."""
        return not self.per_call


def library_per_instance(graph_def) -> bool:
    """Whether every imported instance needs library functions of its own.

    Library function names are made unique per content (`tf_library`) so that instances of
    equal graphs share one copy in TensorFlow's process-wide function library. That is only
    right when the bodies are the same for every instance: a body holding a shared name (which
    each instance makes unique, so two instances never share a resource) or a seeded stateful
    random op (whose kernels must be fresh per call, restarting the stream as in TFF) differs per
    instance, so such a library is renamed uniquely for each instance instead.
    """
    return any("shared_name" in node.attr or restarts_seeded_stream(node)
               for function in graph_def.library.function for node in function.node_def)


def plan(graph_def) -> Plan:
    """The plan for `graph_def` (a TensorFlow GraphDef, library functions included)."""
    from tensorflow.core.framework import types_pb2  # noqa: PLC0415 - TF loads lazily

    named = [n for n in graph_def.node if creates_named_resource(n.op)]
    per_call = any(creates_named_resource(n.op) or restarts_seeded_stream(n)
                   for f in graph_def.library.function for n in f.node_def)
    per_call = per_call or any(restarts_seeded_stream(n) for n in graph_def.node)
    keys: dict[tuple, int] = {}
    for node in named:
        key = _resource_key(node)
        keys[key] = keys.get(key, 0) + 1
    anonymous = set()
    handles = []
    for node in named:
        if (node.op == "VarHandleOp" or node.op in ANONYMOUS_TABLES) and keys[_resource_key(node)] == 1:
            anonymous.add(node.name)
            continue
        per_call = True
        op_def = _op_def(node.op)
        for index, arg in enumerate(op_def.output_arg if op_def is not None else ()):
            if arg.type == types_pb2.DT_RESOURCE and not arg.number_attr and not arg.type_list_attr:
                handles.append(f"{node.name}:{index}")
    return Plan(frozenset(anonymous), per_call, tuple(handles) if per_call else (),
                library_per_instance(graph_def))


def make_anonymous(graph_def, names: Iterable[str]) -> None:
    """Rewrites the named top-level nodes of `graph_def` (a copy) to their anonymous forms."""
    names = set(names)
    for node in graph_def.node:
        if node.name not in names:
            continue
        if node.op == "VarHandleOp":
            node.attr["shared_name"].s = ANONYMOUS_NAME
            continue
        node.op = ANONYMOUS_TABLES[node.op]
        keep = _attr_names(node.op)
        for attr in [a for a in node.attr if a not in keep and not a.startswith("_")]:
            del node.attr[attr]


def destroy(tf, handles: Optional[list]) -> None:
    """Destroys the resources behind `handles` (eager resource tensors), missing ones ignored."""
    for handle in handles or ():
        tf.raw_ops.DestroyResourceOp(resource=handle, ignore_lookup_error=True)
