"""The Typer app, shared option types and the one-line error handling every command uses."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from smoothgan import __version__
from smoothgan.errors import SmoothganError

app = typer.Typer(
    name="smoothgan",
    help="Smoothed StarGAN v2: translate, interpolate, import, export, benchmark, train and evaluate.",
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


class BackendName(str, Enum):
    torch = "torch"
    onnxruntime = "onnxruntime"
    tensorrt = "tensorrt"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


ModelOption = Annotated[
    Optional[str],
    typer.Option("--model", "-m", envvar="SMOOTHGAN_MODEL", help="Bundle directory (or $SMOOTHGAN_MODEL)."),
]
BackendOption = Annotated[BackendName, typer.Option("--backend", "-b", help="Inference engine.")]
DeviceOption = Annotated[Device, typer.Option("--device", "-d", help="Where the backend runs.")]
PrecisionOption = Annotated[Precision, typer.Option("--precision", help="Numeric precision of the backend.")]
BatchOption = Annotated[int, typer.Option("--batch-size", min=1, help="Largest batch sent to the engine.")]


def fail(message: str, code: int = 1) -> None:
    """Print one line to stderr and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def command(*args: Any, typer_app: Optional[typer.Typer] = None,
            **kwargs: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """``app.command`` (or a sub-app's) plus the error policy: SmoothganError -> one line on stderr, its code."""

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> T:
            try:
                return fn(*a, **kw)
            except SmoothganError as exc:
                fail(str(exc).replace("\n", " "), exc.exit_code)
            except KeyboardInterrupt:
                fail("interrupted", 130)
            raise AssertionError("unreachable")

        return (typer_app or app).command(*args, **kwargs)(wrapper)

    return decorate


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A rich progress bar (on stderr) that is silent for a single item or when disabled."""
    if not enabled or total <= 1:
        yield lambda advance=1: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda advance=1: progress.advance(task, advance)


def split_list(value: Optional[str]) -> list[str]:
    """'a, b,c' -> ['a', 'b', 'c'] (empty items dropped)."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"smoothgan {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log library details.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def main(argv: Optional[Iterable[str]] = None) -> None:
    """Console-script entry point."""
    app(args=list(argv) if argv is not None else sys.argv[1:], prog_name="smoothgan")
