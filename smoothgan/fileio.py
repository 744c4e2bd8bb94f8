"""Atomic file and folder writes and hashing, shared by every writer (bundles, checkpoints, images, results).

A crash mid-write never leaves a half-written file or folder: data goes to a hidden staging path in the same
directory and is renamed into place (``os.replace`` is atomic on POSIX and Windows). Staging names carry the
writer's PID, so the next writer can tell leftovers of a killed process (removed, or restored when they hold the
only copy of a replaced folder) from the work of a process still running. What we write follows the umask like
any file a user creates (``mkstemp``/``mkdtemp`` alone would leave 0600 files and 0700 folders).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_UMASK_LOCK = threading.Lock()
_STAGING = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<kind>tmp|staging|old)-[A-Za-z0-9_]+(?P<suffix>\.[^/]*)?$")


def current_umask() -> int:
    """The process umask (read by setting and restoring it, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _apply_umask(path: Path, directory: bool) -> None:
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def clean_stale(parent: str | os.PathLike[str], name: str) -> list[Path]:
    """Remove staging leftovers of ``parent/name`` written by processes that no longer run.

    A folder renamed aside (``old``) while its replacement was being moved in is restored when ``name`` itself
    is missing (the writer died between the two renames), so a kill never loses the previous version.
    Returns the paths removed or restored.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return []
    touched = []
    for entry in sorted(parent.iterdir()):
        match = _STAGING.match(entry.name)
        if not match or match["name"] != name or _pid_alive(int(match["pid"])):
            continue
        target = parent / name
        if match["kind"] == "old" and not target.exists() and not target.is_symlink():
            os.replace(entry, target)
            log.warning("restored %s from an interrupted replacement", target)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        touched.append(entry)
    return touched


def _staging_prefix(target: Path, kind: str) -> str:
    return f".{target.name}.{os.getpid()}.{kind}-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``, on error deleted."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target.parent, target.name)
    fd, tmp_name = tempfile.mkstemp(prefix=_staging_prefix(target, "tmp"), suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            _apply_umask(tmp, directory=False)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty staging folder next to ``path``; on success it replaces ``path`` whole, on error it is removed.

    An existing ``path`` is renamed aside first and removed only after the new folder is in place, so at every
    moment ``path`` is either the complete old folder or the complete new one. Callers decide whether ``path`` may
    be replaced at all (see :func:`smoothgan.bundle.save_bundle`); this only makes the replacement atomic.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target.parent, target.name)
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(target, "staging"), dir=target.parent))
    try:
        yield staging
        _apply_umask(staging, directory=True)
        if target.exists() or target.is_symlink():
            aside = Path(tempfile.mkdtemp(prefix=_staging_prefix(target, "old"), dir=target.parent))
            aside.rmdir()
            os.replace(target, aside)
            os.replace(staging, target)
            if aside.is_dir() and not aside.is_symlink():
                shutil.rmtree(aside, ignore_errors=True)
            else:
                aside.unlink(missing_ok=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write pretty JSON (sorted keys off, so the writer's order is kept) atomically."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
