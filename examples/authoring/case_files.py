"""What the authoring examples share: where to write, and a computation with its argument.

`save_case` writes the pair `tffexec run comp.pb arg.pb` (and TFF 0.87) reads: the computation
(`tffexec.save`) and its argument as a value of the computation's parameter type
(`tffexec.save_value`).
"""
import pathlib
import sys

import tffexec


def output_folder(script: str, default_name: str) -> pathlib.Path:
    """The folder given on the command line, else `default_name` next to `script`."""
    return pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(script).with_name(
        default_name)


def save_case(comp, argument, outdir: pathlib.Path) -> None:
    """Writes OUTDIR/comp.pb and OUTDIR/arg.pb."""
    outdir.mkdir(parents=True, exist_ok=True)
    tffexec.save(comp, outdir / "comp.pb")
    tffexec.save_value(argument, outdir / "arg.pb", type=comp.type_signature.parameter)
