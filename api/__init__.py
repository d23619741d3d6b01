"""tffexec: run serialized TensorFlow Federated computations in-process.

Python API (imported lazily, so `import tffexec` stays instant):

- `tffexec.run(computation, arg=None, *, clients=None, stack=None, seed=None)` runs a computation
  (a path, bytes, a `Computation` proto or a federated-language computation) and returns the
  result in tffexec's Python representation (see `tffexec.formats`).
- `tffexec.Runner(config)` keeps stacks and imported graphs across many runs; `Runner.run` is
  `Runner.call(Runner.prepare(...))`, and a `Prepared` (checked, converted, client count settled)
  may be called many times.
- `tffexec.StackConfig` describes the stack (the same object the CLI builds from its flags).
- `tffexec.install_context(config=None)` makes tffexec federated-language's default execution
  context, so traced federated-language computations run on tffexec when called.
- `tffexec.load_value(path_or_bytes, type=None, *, fmt=None)` reads a value file (.pb, .json or
  .npz: by extension, else sniffed) into that representation; `type` (a federated-language type
  or `Type` proto) is needed for npz and plain JSON, which do not say their type.
- `tffexec.save_value(value, path, type=None, *, fmt=None)` writes one (format by extension),
  atomically; a `.pb` is byte-identical to TFF's `serialize_value`. `type` may be omitted for
  arrays, scalars, `Struct`s of them and sequences.

- `tffexec.tensorflow.computation`: write TensorFlow computations without TFF (a decorator like
  `tff.tensorflow.computation`); importing `tffexec.tensorflow` installs tffexec's context.
- `tffexec.save(comp, path)` writes a computation as a `Computation` file that TFF 0.87 and
  `tffexec run` load (graphs made TF 2.14-importable, or refused naming what TF 2.14 lacks);
  `tffexec.load(path)` reads one back as a callable computation.

The argument of `run`/`Runner.run` may also be a path as an `os.PathLike` (`pathlib.Path`): the
file is read with `load_value` against the parameter type. A `str` or `bytes` argument is a
value, never a path, because a computation's parameter may be a string.
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "run": ("tffexec.runner", "run"),
    "Runner": ("tffexec.runner", "Runner"),
    "install_context": ("tffexec.context", "install_context"),
    "StackConfig": ("tffexec.factories.config", "StackConfig"),
    "load_value": ("tffexec.value_files", "load_value"),
    "save_value": ("tffexec.value_files", "save_value"),
    "save": ("tffexec.saving", "save"),
    "load": ("tffexec.saving", "load"),
    "tensorflow": ("tffexec.tensorflow", None),
    "ClientColumns": ("tffexec.formats.columns", "ClientColumns"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib  # noqa: PLC0415

        module, attribute = _LAZY[name]
        imported = importlib.import_module(module)
        return imported if attribute is None else getattr(imported, attribute)
    raise AttributeError(f"module 'tffexec' has no attribute {name!r}")


__all__ = ["run", "Runner", "StackConfig", "install_context", "load_value", "save_value",
           "save", "load", "tensorflow", "ClientColumns", "__version__"]


def __dir__() -> list[str]:
    """The public names (the lazy ones included, which `globals()` does not hold yet)."""
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
