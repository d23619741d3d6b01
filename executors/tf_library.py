"""Library function names that are unique per content, so many graphs can share one process.

TensorFlow keeps one function library per process (the eager context's). Importing a GraphDef
adds its library functions there by name, and a second function with the same name but another
body is refused ("Attempting to add a duplicate function ... definitions differ"). Names such as
`__inference_update_state_5027` come from a counter in the process that traced them, so
unrelated computations — or the `comp.pb` and TFF-compiled `native_comp.pb` forms of one
computation — carry same-named functions with different bodies.

Before a graph is imported we therefore rename every library function to its name plus a digest
of its content: its own body (as it will be imported) and the bodies of every library function it
reaches (by call op, function-valued attribute, a `*_function_name` reference or its registered
gradient). Every reference is renamed consistently, so identical functions keep identical names
and bodies (TensorFlow shares them) and different ones get different names (they coexist).
Renaming changes no op, so results are bit-identical.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Iterator

# Hex digits of the content digest appended to a function name (64 bits: collisions between
# different functions of the same name are not a practical concern).
DIGEST_HEX = 16


def content_names(graph_def) -> dict[str, str]:
    """Maps each library function name of `graph_def` to its name + content digest.

    `graph_def` is a TensorFlow `GraphDef` message (or any message with its field names). The
    digest covers the function's serialized body and, transitively, those of the functions it
    references, so it is the same for the same function in any graph.
    """
    library = graph_def.library
    names = {function.signature.name for function in library.function}
    if not names:
        return {}
    body_digest = {function.signature.name: hashlib.sha256(
        function.SerializeToString(deterministic=True)).hexdigest()
        for function in library.function}
    gradients = {g.function_name: g.gradient_func for g in library.gradient}
    edges: dict[str, set[str]] = {}
    for function in library.function:
        name = function.signature.name
        refs = set(_function_references(function.node_def, names))
        refs.update(_string_references(function.attr.values(), names))
        if gradients.get(name) in names:
            refs.add(gradients[name])
        refs.discard(name)
        edges[name] = refs
    renames = {}
    for name in names:
        closure = _reachable(name, edges)
        hasher = hashlib.sha256()
        for member in sorted(closure):
            hasher.update(f"{member}\0{body_digest[member]}\0".encode())
        renames[name] = f"{name}_{hasher.hexdigest()[:DIGEST_HEX]}"
    return renames


def rename(graph_def, renames: dict[str, str]) -> None:
    """Renames library functions and every reference to them, in place."""
    if not renames:
        return
    _rename_nodes(graph_def.node, renames)
    library = graph_def.library
    for function in library.function:
        function.signature.name = renames.get(function.signature.name, function.signature.name)
        _rename_nodes(function.node_def, renames)
        for value in function.attr.values():
            _rename_string(value, renames)
    for gradient in library.gradient:
        gradient.function_name = renames.get(gradient.function_name, gradient.function_name)
        gradient.gradient_func = renames.get(gradient.gradient_func, gradient.gradient_func)


def make_unique(graph_def) -> dict[str, str]:
    """`rename(graph_def, content_names(graph_def))`; returns the renames."""
    renames = content_names(graph_def)
    rename(graph_def, renames)
    return renames


# -- references ----------------------------------------------------------------------------------
def _function_references(nodes: Iterable, names: set[str]) -> Iterator[str]:
    """Library functions that `nodes` call: as their op, or through function-valued attributes."""
    for node in nodes:
        if node.op in names:
            yield node.op
        for value in node.attr.values():
            for name in _attr_functions(value):
                if name in names:
                    yield name


def _attr_functions(value) -> Iterator[str]:
    """Function names in an AttrValue (`func`, `list.func`, and attributes nested in them)."""
    kind = value.WhichOneof("value")
    if kind == "func":
        yield value.func.name
        for nested in value.func.attr.values():
            yield from _attr_functions(nested)
    elif kind == "list":
        for func in value.list.func:
            yield func.name
            for nested in func.attr.values():
                yield from _attr_functions(nested)


def _string_references(values: Iterable, names: set[str]) -> Iterator[str]:
    """Library functions named by string attributes of a FunctionDef (e.g.
    `forward_function_name`/`backward_function_name` on gradient pairs)."""
    for value in values:
        if value.WhichOneof("value") == "s":
            text = value.s.decode("utf-8", "replace")
            if text in names:
                yield text


def _reachable(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen = {start}
    stack = [start]
    while stack:
        for callee in edges[stack.pop()]:
            if callee not in seen:
                seen.add(callee)
                stack.append(callee)
    return seen


# -- renaming ------------------------------------------------------------------------------------
def _rename_nodes(nodes: Iterable, renames: dict[str, str]) -> None:
    for node in nodes:
        if node.op in renames:
            node.op = renames[node.op]
        for value in node.attr.values():
            _rename_attr(value, renames)


def _rename_attr(value, renames: dict[str, str]) -> None:
    kind = value.WhichOneof("value")
    if kind == "func":
        _rename_name_attr_list(value.func, renames)
    elif kind == "list":
        for func in value.list.func:
            _rename_name_attr_list(func, renames)


def _rename_name_attr_list(func, renames: dict[str, str]) -> None:
    func.name = renames.get(func.name, func.name)
    for nested in func.attr.values():
        _rename_attr(nested, renames)


def _rename_string(value, renames: dict[str, str]) -> None:
    if value.WhichOneof("value") == "s":
        text = value.s.decode("utf-8", "replace")
        if text in renames:
            value.s = renames[text].encode()
