"""Pretty (Rich) rendering of a result value for people at a terminal.

Large tensors are summarised (shape, dtype, first and last items); `--full` prints everything.
Per-client values show the client count and each client's member.
"""
from __future__ import annotations

import federated_language
import numpy as np
from federated_language.common_libs import structure
from rich.tree import Tree

_SUMMARY_THRESHOLD = 20  # items; above this a tensor is summarised unless --full
_MAX_CLIENTS_SHOWN = 10


def _tensor_text(value, type_spec, full: bool) -> str:
    array = np.asarray(value)
    dtype = str(type_spec.dtype) if hasattr(type_spec, "dtype") else str(array.dtype)
    if array.dtype == object:
        array = np.vectorize(lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else b,
                             otypes=[object])(array) if array.size else array
    if full or array.size <= _SUMMARY_THRESHOLD:
        with np.printoptions(threshold=np.inf if full else 1000, linewidth=120):
            body = np.array2string(array, separator=", ") if array.ndim else repr(array.item())
        return f"{body}  [dim]{_type_name(type_spec)}[/dim]"
    flat = array.reshape(-1)
    head = ", ".join(_item(x) for x in flat[:3])
    tail = ", ".join(_item(x) for x in flat[-3:])
    return f"[dim]{_type_name(type_spec)}[/dim] [{head}, …, {tail}] ({array.size} items, {dtype})"


def _item(x) -> str:
    return f"{x:.6g}" if isinstance(x, (float, np.floating)) else str(x)


def _type_name(type_spec) -> str:
    return str(type_spec)


def render(value, type_spec, *, full: bool = False, label: str = "result") -> Tree:
    """A Rich tree of `value` (tffexec's Python representation) of type `type_spec`."""
    root = Tree(f"[bold]{label}[/bold]: {type_spec}")
    _add(root, value, type_spec, full)
    return root


def _add(tree: Tree, value, type_spec, full: bool) -> None:
    if isinstance(type_spec, federated_language.FederatedType):
        if type_spec.all_equal:
            _add(tree, value, type_spec.member, full)
            return
        branch = tree.add(f"{len(value)} clients")
        for i, member in enumerate(value):
            if i == _MAX_CLIENTS_SHOWN and not full:
                branch.add(f"… {len(value) - i} more clients (--full shows all)")
                break
            _add(branch.add(f"client {i}"), member, type_spec.member, full) \
                if _is_container(type_spec.member) else \
                branch.add(f"client {i}: {_leaf(member, type_spec.member, full)}")
        return
    if isinstance(type_spec, federated_language.StructType):
        for i, ((name, member_type), (_, member)) in enumerate(
                zip(type_spec.items(), structure.iter_elements(value))):
            key = name if name else f"[{i}]"
            if _is_container(member_type):
                _add(tree.add(f"{key}"), member, member_type, full)
            else:
                tree.add(f"{key}: {_leaf(member, member_type, full)}")
        return
    tree.add(_leaf(value, type_spec, full))


def _is_container(type_spec) -> bool:
    return isinstance(type_spec, (federated_language.StructType, federated_language.FederatedType))


def _leaf(value, type_spec, full: bool) -> str:
    if isinstance(type_spec, federated_language.SequenceType):
        elements = value.elements()
        return f"sequence of {len(elements)} elements of {type_spec.element}"
    if isinstance(type_spec, federated_language.TensorType):
        return _tensor_text(value, type_spec, full)
    return f"{type_spec}"
