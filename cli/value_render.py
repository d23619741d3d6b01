"""Pretty (Rich) rendering of a result value for people at a terminal.

Why summaries: a FedAvg model has tens of thousands of floats and a per-client result one member
per client; printing them all buries the answer. Large tensors show their type, shape, first and
last items and min/mean/max; per-client values show the client count (and, for sequences, the
element counts) and the first few clients. `--full` prints everything. Machine-readable output is
`--format json`, never this.
"""
from __future__ import annotations

import federated_language
import numpy as np
from federated_language.common_libs import structure
from rich.markup import escape
from rich.tree import Tree

from tffexec.formats.columns import ClientColumns

SUMMARY_THRESHOLD = 20  # items; above this a tensor is summarised unless --full
MAX_CLIENTS_SHOWN = 10
EDGE_ITEMS = 3
MAX_SEQUENCE_ELEMENTS_SHOWN = 5


def render(value, type_spec, *, full: bool = False, label: str = "result") -> Tree:
    """A Rich tree of `value` (tffexec's Python representation) of type `type_spec`."""
    root = Tree(f"[bold]{label}[/bold]: {escape(str(type_spec))}")
    _add(root, None, value, type_spec, full)
    return root


def _add(tree: Tree, key: str | None, value, type_spec, full: bool) -> None:
    """Adds `key: value` under `tree` (or the value alone when key is None)."""
    prefix = f"{escape(key)}: " if key is not None else ""
    if isinstance(type_spec, federated_language.FederatedType):
        placement = f"@{type_spec.placement.uri.upper()}"
        if type_spec.all_equal:
            if _is_container(type_spec.member):
                _add(tree.add(f"{prefix}[dim]{placement}[/dim]"), None, value, type_spec.member,
                     full)
            else:
                tree.add(f"{prefix}{_leaf(value, type_spec.member, full, suffix=placement)}")
            return
        branch = tree.add(f"{prefix}{_clients_label(value, type_spec)}")
        for i, member in enumerate(value):
            if i == MAX_CLIENTS_SHOWN and not full:
                branch.add(f"[dim]… {len(value) - i} more clients (--full shows all)[/dim]")
                break
            _add(branch, f"client {i}", member, type_spec.member, full)
        return
    if isinstance(type_spec, federated_language.StructType):
        node = tree.add(prefix.rstrip(": ") or "struct") if key is not None else tree
        for i, ((name, member_type), (_, member)) in enumerate(
                zip(type_spec.items(), structure.iter_elements(value))):
            _add(node, name if name else f"[{i}]", member, member_type, full)
        return
    if isinstance(type_spec, federated_language.SequenceType):
        elements = value.elements()
        node = tree.add(f"{prefix}sequence of {len(elements)} element"
                        f"{'' if len(elements) == 1 else 's'} of {escape(str(type_spec.element))}")
        limit = len(elements) if full else MAX_SEQUENCE_ELEMENTS_SHOWN
        for i, element in enumerate(elements[:limit]):
            _add(node, f"[{i}]", element, type_spec.element, full)
        if len(elements) > limit:
            node.add(f"[dim]… {len(elements) - limit} more elements (--full shows all)[/dim]")
        return
    tree.add(f"{prefix}{_leaf(value, type_spec, full)}")


def _clients_label(value, type_spec) -> str:
    count = len(value)
    text = f"{count} client{'' if count == 1 else 's'} [dim]{escape(str(type_spec))}[/dim]"
    if isinstance(type_spec.member, federated_language.SequenceType) and count:
        lengths = [len(member.elements()) for member in value]
        text += f", elements per client: {_range(lengths)}"
    elif isinstance(value, ClientColumns):
        pass  # one shape for every client, by construction: no member is looked at
    elif isinstance(type_spec.member, federated_language.TensorType) and count:
        shapes = {np.shape(member) for member in value}
        if len(shapes) > 1:
            text += f", {len(shapes)} different shapes"
    return text


def _range(numbers: list[int]) -> str:
    low, high = min(numbers), max(numbers)
    return str(low) if low == high else f"{low}..{high} (total {sum(numbers)})"


def _is_container(type_spec) -> bool:
    return isinstance(type_spec, (federated_language.StructType, federated_language.FederatedType,
                                  federated_language.SequenceType))


def _leaf(value, type_spec, full: bool, suffix: str = "") -> str:
    if isinstance(type_spec, federated_language.TensorType):
        return _tensor_text(value, type_spec, full, suffix)
    return f"[dim]{escape(str(type_spec))}{suffix}[/dim]"


def _tensor_text(value, type_spec, full: bool, suffix: str) -> str:
    array = np.asarray(value)
    type_text = f"[dim]{escape(str(type_spec))}{suffix}[/dim]"
    if array.dtype == object or array.dtype.kind in "SU":
        array = np.vectorize(_text, otypes=[object])(array) if array.size else array
    if full or array.size <= SUMMARY_THRESHOLD:
        with np.printoptions(threshold=np.inf if full else 1000, linewidth=120,
                             precision=8 if full else 6):
            body = np.array2string(array, separator=", ") if array.ndim else _item(array.item())
        return f"{escape(body)}  {type_text}"
    flat = array.reshape(-1)
    head = ", ".join(_item(x) for x in flat[:EDGE_ITEMS])
    tail = ", ".join(_item(x) for x in flat[-EDGE_ITEMS:])
    shape = "×".join(str(d) for d in array.shape)
    text = f"{type_text} shape {shape}: [{escape(head)}, …, {escape(tail)}] ({array.size:,} items"
    stats = _stats(array)
    return text + (f"; {stats})" if stats else ")")


def _stats(array: np.ndarray) -> str:
    if array.dtype.kind not in "iufb" or not array.size:
        return ""
    data = array.astype(np.float64)
    finite = data[np.isfinite(data)]
    if not finite.size:
        return "no finite values"
    text = f"min {_item(finite.min())}, mean {_item(finite.mean())}, max {_item(finite.max())}"
    if finite.size != data.size:
        text += f", {data.size - finite.size} non-finite"
    return text


def _text(x) -> object:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else x


def _item(x) -> str:
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.6g}"
    if isinstance(x, (bytes, str)):
        return repr(_text(x))
    return str(x)
