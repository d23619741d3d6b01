"""Versions of tffexec and the libraries it runs on, read from package metadata.

Nothing here imports those libraries: `tffexec --version` must stay instant, and TensorFlow alone
takes seconds to import.
"""
from __future__ import annotations

import importlib.metadata
import platform

NOT_INSTALLED = "not installed"

#: (label, distribution names tried in order). TensorFlow ships as `tensorflow` or
#: `tensorflow-cpu`; either provides the same `tensorflow` module.
COMPONENTS = (
    ("tffexec", ("tffexec",)),
    ("TensorFlow", ("tensorflow", "tensorflow-cpu")),
    ("federated-language", ("federated-language",)),
    ("numpy", ("numpy",)),
    ("protobuf", ("protobuf",)),
)

#: Optional extras: (label, distribution, the extra that installs it, what it enables). A bug
#: report should say whether they are there, since `--stack ray` and `--plot` need them.
EXTRAS = (
    ("ray", "ray", "ray", "--stack ray"),
    ("matplotlib", "matplotlib", "plot", "iterate --plot"),
)


def distribution_version(*names: str) -> str:
    """The version of the first installed distribution among `names`, else "not installed"."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return NOT_INSTALLED


def versions() -> dict[str, str]:
    """Label -> version for tffexec, its dependencies, the optional extras, Python and the OS."""
    out = {label: distribution_version(*names) for label, names in COMPONENTS}
    if out["tffexec"] == NOT_INSTALLED:  # running from a source tree that was never installed
        from tffexec import __version__

        out["tffexec"] = __version__
    for label, distribution, extra, enables in EXTRAS:
        version = distribution_version(distribution)
        out[label] = (f"{version} ({enables})" if version != NOT_INSTALLED else
                      f"{NOT_INSTALLED} (optional, for {enables}: pip install 'tffexec[{extra}]')")
    out["Python"] = f"{platform.python_version()} ({platform.python_implementation()})"
    out["OS"] = f"{platform.system()} {platform.release()} {platform.machine()}".strip()
    return out


def version_text() -> str:
    """The `tffexec --version` output: one `label version` line per component."""
    items = versions()
    width = max(len(label) for label in items)
    return "\n".join(f"{label:<{width}}  {version}" for label, version in items.items())
