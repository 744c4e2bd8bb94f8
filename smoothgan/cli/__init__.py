"""The ``smoothgan`` command line: one Typer app; each command family lives in its own module.

Commands stay thin: they parse options, call the Python API and show progress. Heavy packages (torch,
onnxruntime) are imported inside command bodies, so ``smoothgan --version`` starts fast.
"""

from __future__ import annotations

from smoothgan.cli.app import app, main
from smoothgan.cli import model as _model  # noqa: F401  (registers import/info)
from smoothgan.cli import translate as _translate  # noqa: F401  (registers translate)
from smoothgan.cli import export as _export  # noqa: F401  (registers export)
from smoothgan.cli import bench as _bench  # noqa: F401  (registers bench)
from smoothgan.cli import train as _train  # noqa: F401  (registers train, data synth)
from smoothgan.cli import eval as _eval  # noqa: F401  (registers eval)
from smoothgan.cli import demo as _demo  # noqa: F401  (registers demo)
from smoothgan.cli import align as _align  # noqa: F401  (registers align)
from smoothgan.cli import serve as _serve  # noqa: F401  (registers serve, batch)

__all__ = ["app", "main"]
