"""The Typer app, shared option types and the one-line error handling every command uses."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from typing import Annotated, Any, NoReturn, Optional, TypeVar

import typer
from typer.core import TyperGroup

try:  # Typer >= 0.2x vendors Click as typer._click; older releases use the click package
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - depends on the installed Typer
    from click import exceptions as click_errors
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from smoothgan import __version__
from smoothgan.backends import BACKEND_CHOICES, DEVICES, PRECISIONS
from smoothgan.errors import SmoothganError

class OneLineErrorGroup(TyperGroup):
    """The root command group: usage errors (bad option values, unknown options) print one line, not a box.

    Click/Typer would print a usage panel of five or more lines; scripts and logs want ``error: ...`` and the
    exit code (2 for usage errors), like every other failure of the CLI.
    """

    def main(self, args: Optional[Sequence[str]] = None, prog_name: Optional[str] = None,
             complete_var: Optional[str] = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as exc:  # Typer's rich help is already printed; plain help is not
            if exc.format_message().strip():
                typer.echo(exc.format_message())
            sys.exit(0)
        except click_errors.UsageError as exc:
            command_path = exc.ctx.command_path if exc.ctx is not None else "smoothgan"
            err_console.print(Text.assemble(("error: ", "bold red"), one_line(exc.format_message()),
                                            f" (see '{command_path} --help')"))
            sys.exit(exc.exit_code)
        except click_errors.ClickException as exc:
            err_console.print(Text.assemble(("error: ", "bold red"), one_line(exc.format_message())))
            sys.exit(exc.exit_code)
        except typer.Abort:
            err_console.print(Text.assemble(("error: ", "bold red"), "interrupted"))
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrorGroup,
    name="smoothgan",
    help="Smoothed StarGAN v2: translate, interpolate, import, export, benchmark, train and evaluate.",
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)
T = TypeVar("T")
PIPE_WIDTH = 1000  # columns when output is not a terminal: tables keep their natural width in logs and pipes


def _console(stderr: bool) -> Console:
    """A console that never interprets text as Rich markup (paths like ``IMG [edited].png`` print as they are).

    In a terminal Rich uses its width; piped (CI logs, ``| tee``) it would squeeze tables to 80 columns and
    cut numbers to ``…``, so there the width is wide enough for any table's natural size.
    """
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(stderr=stderr, soft_wrap=True, markup=False, highlight=False, emoji=False, width=width)


console = _console(stderr=False)
err_console = _console(stderr=True)


def choice_enum(name: str, values: Iterable[str]) -> type[Enum]:
    """A ``str`` Enum for Typer choices built from one of the library's tables (never re-declared here)."""
    return Enum(name, {value: value for value in values}, type=str)  # type: ignore[return-value]


BackendName = choice_enum("BackendName", BACKEND_CHOICES)
Device = choice_enum("Device", DEVICES)
Precision = choice_enum("Precision", PRECISIONS)


ModelOption = Annotated[
    Optional[str],
    typer.Option("--model", "-m", envvar="SMOOTHGAN_MODEL", help="Bundle directory (or $SMOOTHGAN_MODEL)."),
]
BackendOption = Annotated[BackendName, typer.Option(
    "--backend", "-b", help="Inference engine; auto: the fastest one installed with artefacts for the device.")]
DeviceOption = Annotated[Device, typer.Option("--device", "-d", help="Where the backend runs.")]
PrecisionOption = Annotated[Precision, typer.Option("--precision", help="Numeric precision of the backend.")]
BatchOption = Annotated[int, typer.Option("--batch-size", min=1, help="Largest batch sent to the engine.")]


def one_line(message: object) -> str:
    """A message on one line (newlines and tabs become spaces, runs of spaces collapse)."""
    return " ".join(str(message).split())


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: <message>`` on one line to stderr and exit with ``code`` (the text is never markup)."""
    err_console.print(Text.assemble(("error: ", "bold red"), one_line(message)))
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print ``warning: <message>`` on one line to stderr."""
    err_console.print(Text.assemble(("warning: ", "bold yellow"), one_line(message)))


def command(*args: Any, typer_app: Optional[typer.Typer] = None,
            **kwargs: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """``app.command`` (or a sub-app's) plus the error policy: SmoothganError -> one line on stderr, its code."""

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> T:
            try:
                return fn(*a, **kw)
            except SmoothganError as exc:
                fail(str(exc), exc.exit_code)
            except KeyboardInterrupt:
                fail("interrupted", 130)
            except MemoryError:
                fail("out of memory: use a smaller --batch-size (or fewer --steps / --num)", 1)
            except OSError as exc:  # disk full, permission denied, a path that vanished: the user's environment
                where = f"{exc.filename}: " if exc.filename else ""
                fail(f"{where}{exc.strerror or exc}", 1)
            raise AssertionError("unreachable")

        return (typer_app or app).command(*args, **kwargs)(wrapper)

    return decorate


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A rich progress bar (on stderr) that is silent for a single item or when disabled."""
    if not enabled or total <= 1:
        yield lambda advance=1: None
        return
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda advance=1: progress.advance(task, advance)


@contextmanager
def open_translator(model: Optional[str], backend: Enum, device: Enum, precision: Enum,
                    max_batch: int = 64) -> Iterator[Any]:
    """Load a Translator for a command and close it afterwards (the TensorRT-RTX runtime cache is saved then)."""
    from smoothgan.translator import load

    with load(model, backend=backend.value, device=device.value, precision=precision.value,
              max_batch=max_batch) as translator:
        yield translator


def announce(translator: Any) -> None:
    """Say (on stderr) which model runs on which backend: what ``--backend auto`` chose is never a guess.

    Commands call it once their arguments are checked, so a bad argument still prints one line only.
    """
    what = (f"the embedded demo model ({translator.bundle.name}, domains {', '.join(translator.domains)}; pass "
            "--model for your own)" if translator.bundle.is_embedded else f"model {translator.bundle.name}")
    err_console.print(f"using {what} on {translator.backend.describe()}")


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
