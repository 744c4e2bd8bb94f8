"""Atomic file and folder writes and hashing, shared by every writer (bundles, checkpoints, images, results).

A crash mid-write never leaves a half-written file or folder: data goes to a hidden staging path in the same
directory and is renamed into place (``os.replace`` is atomic on POSIX and Windows). Staging names carry the
writer's PID, so the next writer can tell leftovers of a killed process (removed, or restored when they hold the
only copy of a replaced folder) from the work of a process still running. What we write follows the umask like
any file a user creates (``mkstemp``/``mkdtemp`` alone would leave 0600 files and 0700 folders): a staged
folder's whole tree is given the umask's modes before it is moved into place.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

from smoothgan.errors import SmoothganError

log = logging.getLogger(__name__)

_UMASK_LOCK = threading.Lock()
_STAGING = re.compile(r"^\.(?P<name>.+)\.(?:(?P<host>[0-9a-f]{6})-)?(?P<pid>\d+)\.(?P<kind>tmp|staging|old)-[A-Za-z0-9_]+"
                      r"(?P<suffix>\.[^/]*)?$")
# Staging names carry a short hash of the host name beside the PID: on a folder shared between machines (NFS),
# a PID says nothing about another host's processes, so their staging is left alone unless it is older than
# FOREIGN_STALE_S (a writer of ours never takes that long between creating and renaming a staging path).
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
FOREIGN_STALE_S = 24 * 3600


def current_umask() -> int:
    """The process umask: from ``/proc/self/status`` where Linux has it (no race with threads creating files),
    else by setting and restoring it under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        log.debug("no /proc/self/status umask; reading it with os.umask")
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _apply_umask(path: Path, directory: bool) -> None:
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def _apply_umask_tree(root: Path) -> None:
    """Give a staged folder and everything in it the modes a plain write would have (some writers, such as
    safetensors' ``save_file`` and ``mkstemp``, create 0600 files whatever the umask)."""
    mask = current_umask()
    os.chmod(root, 0o777 & ~mask)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o777 & ~mask)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                executable = os.stat(path).st_mode & 0o100
                os.chmod(path, (0o777 if executable else 0o666) & ~mask)


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


def is_staging_name(name: str) -> bool:
    """True for the hidden names :func:`atomic_path`, :func:`atomic_dir` and :func:`remove_tree` use."""
    return _STAGING.match(name) is not None


def _remove(path: Path) -> None:
    """Remove a file, a link or a whole folder (what a staging name may hold)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _is_stale(entry: Path, match: re.Match[str]) -> bool:
    """A staging path of a dead process of this host, or of another host and older than :data:`FOREIGN_STALE_S`."""
    if match["host"] in (None, _HOST):  # ours (or written before names had a host)
        return not _pid_alive(int(match["pid"]))
    try:
        return time.time() - entry.lstat().st_mtime > FOREIGN_STALE_S
    except OSError:
        return False


def clean_stale(parent: str | os.PathLike[str], name: Optional[str] = None) -> list[Path]:
    """Remove staging leftovers of ``parent/name`` (any name when None) written by processes that no longer run.

    A folder renamed aside (``old``) while its replacement was being moved in is restored when ``name`` itself
    is missing (the writer died between the two renames), so a kill never loses the previous version.
    Returns the paths removed or restored.
    """
    parent = Path(parent)
    try:
        entries = sorted(parent.iterdir()) if parent.is_dir() else []
    except OSError as exc:  # unreadable folder: nothing we may clean
        log.debug("cannot list %s for stale staging: %s", parent, exc)
        return []
    touched = []
    for entry in entries:
        match = _STAGING.match(entry.name)
        if not match or (name is not None and match["name"] != name) or not _is_stale(entry, match):
            continue
        target = parent / match["name"]
        try:
            if match["kind"] == "old" and not target.exists() and not target.is_symlink():
                os.replace(entry, target)
                log.warning("restored %s from an interrupted replacement", target)
            else:
                _remove(entry)
        except OSError as exc:  # a read-only folder, say: leave it for a writer that may clean it
            log.warning("cannot clean up %s: %s", entry, exc.strerror or exc)
            continue
        touched.append(entry)
    return touched


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    global _RENAMEAT2
    if _RENAMEAT2 is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _RENAMEAT2 = getattr(libc, "renameat2", False)
        except OSError:
            _RENAMEAT2 = False
    if not _RENAMEAT2:
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = _RENAMEAT2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if done != 0:
        log.debug("renameat2 exchange unavailable (%s); falling back to two renames", os.strerror(ctypes.get_errno()))
        return False
    return True


_RENAMEAT2: Any = None


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Delete a folder so that a kill mid-way never leaves it half-deleted under its own name.

    It is renamed to a hidden staging name first (atomic), then removed; a leftover is cleaned by
    :func:`clean_stale` on the next write into the same folder.
    """
    target = Path(path)
    doomed = Path(tempfile.mkdtemp(prefix=_staging_prefix(target, "staging"), dir=target.parent))
    doomed.rmdir()
    os.replace(target, doomed)
    _remove(doomed)


_CLEANED: set[tuple[int, int]] = set()  # (st_dev, st_ino) of folders this process already cleaned
_CLEANED_LOCK = threading.Lock()


def clean_stale_once(parent: Path) -> None:
    """:func:`clean_stale` for every name in ``parent``, once per folder per process.

    Writers call it before each write; listing a folder on every write made a folder job of 1,000 flat outputs
    slow down (2.7 ms per write with 64 files in the folder, 10.2 ms with 1,000). Leftovers of processes that die
    later are cleaned by the next process, as they would be anyway.
    """
    try:
        info = os.stat(parent)
    except OSError:
        return
    key = (info.st_dev, info.st_ino)
    with _CLEANED_LOCK:
        if key in _CLEANED:
            return
        _CLEANED.add(key)
    clean_stale(parent)


def target_entries(out: str | os.PathLike[str], hint: str = "choose another --out") -> Optional[list[str]]:
    """What a writer about to replace ``out`` finds there: None (nothing, and it can be created), else the sorted
    names in the folder (``[]`` when empty).

    A symbolic link, a file, a folder that cannot be listed, or a missing ``out`` under a file are refused with
    a one-line :class:`InputError` ending in ``hint``. Whether a non-empty folder may be replaced is the writer's
    rule (a bundle, a result folder, a synthetic data set), applied to the names returned.
    """
    from smoothgan.errors import InputError

    out = Path(out)
    if out.is_symlink():
        raise InputError(f"{out} is a symbolic link; refusing to replace it ({hint})")
    if not out.exists():
        ancestor = out.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise InputError(f"cannot create {out}: {ancestor} is not a folder")
        return None
    if not out.is_dir():
        raise InputError(f"{out} exists and is not a folder; refusing to replace it ({hint})")
    try:
        return sorted(p.name for p in out.iterdir())
    except OSError as exc:
        raise InputError(f"cannot list {out}: {exc.strerror or exc}") from None


def _staging_prefix(target: Path, kind: str) -> str:
    return f".{target.name}.{_HOST}-{os.getpid()}.{kind}-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``, on error deleted."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_once(target.parent)
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
def atomic_dir(path: str | os.PathLike[str],
               before_replace: Optional[Callable[[Path], None]] = None) -> Iterator[Path]:
    """Yield an empty staging folder next to ``path``; on success it replaces ``path`` whole, on error it is removed.

    An existing ``path`` is swapped with the staging folder in one step where the OS can (Linux
    ``renameat2(RENAME_EXCHANGE)``), else renamed aside first and removed only after the new folder is in place
    (:func:`clean_stale` restores it if a kill falls between the two renames); either way ``path`` is the complete
    old folder or the complete new one. Callers decide whether ``path`` may be replaced at all (see
    :func:`smoothgan.bundle.check_replaceable`); this only makes the replacement atomic. ``before_replace(path)``
    runs once the staging folder is complete, just before the swap: a last check that may raise to abort it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_once(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(target, "staging"), dir=target.parent))
    try:
        yield staging
        _apply_umask_tree(staging)
        if before_replace is not None:
            before_replace(target)
        if not (target.exists() or target.is_symlink()):
            os.replace(staging, target)
        elif not _exchange(staging, target):  # staging now holds the old folder, removed below
            aside = Path(tempfile.mkdtemp(prefix=_staging_prefix(target, "old"), dir=target.parent))
            aside.rmdir()
            os.replace(target, aside)
            os.replace(staging, target)
            _remove(aside)
    finally:
        if staging.exists() or staging.is_symlink():
            _remove(staging)


LOCK_NAME = ".smoothgan.lock"
"""The writer lock of a folder job's output folder (see :func:`folder_lock`)."""


def _try_lock(fd: int) -> bool:
    """Take an exclusive, non-blocking advisory lock on an open file; False when another holder has it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _lock_holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii", errors="replace").split()
    except OSError:
        return "another process"
    return f"pid {text[0]}" if text and text[0].isdigit() else "another process"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], hint: str = "wait for it to end or choose another --out"
                ) -> Iterator[None]:
    """Hold the exclusive writer lock of ``folder`` (which must exist) while a job writes into it.

    Two jobs writing into one folder would interleave manifest lines and overwrite each other's outputs; the
    second one instead gets a one-line :class:`InputError` naming the holder. The lock is an advisory ``flock``
    on ``folder/.smoothgan.lock`` (any other process or thread is refused), which the kernel drops when its
    holder dies, ``kill -9`` included, so nothing stale can block a later job. The file is removed at the end;
    a waiter that locked a file just removed notices the path is gone or new, and tries again.
    """
    from smoothgan.errors import InputError

    path = Path(folder) / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise InputError(f"cannot lock {folder}: {exc.strerror or exc}") from None
        if not _try_lock(fd):
            os.close(fd)
            raise InputError(f"{folder} is being written by another smoothgan job ({_lock_holder(path)}); {hint}")
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):  # Windows cannot remove an open file: it stays, unlocked
            path.unlink()
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write pretty JSON (sorted keys off, so the writer's order is kept) atomically."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())


MAX_JSON_BYTES = 16 << 20  # markers and metadata are a few KiB; anything this large is not one of ours


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def read_json(path: str | os.PathLike[str], error: type[SmoothganError]) -> Any:
    """Parse a JSON file we or the user wrote, strictly: UTF-8, no NaN/Infinity, no duplicate keys, not huge.

    Every problem is one ``error`` naming the file (and the line/column or byte where JSON says).
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise error(f"{path} is {path.stat().st_size} bytes, too large for a smoothgan JSON file")
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise error(f"{path} is not valid JSON: {exc}") from None


def read_marker(path: str | os.PathLike[str], fmt: str, version: int, error: type[SmoothganError],
                what: str) -> dict[str, Any]:
    """A JSON object whose ``format``/``format_version`` say it is ``fmt`` version ``version`` (our markers).

    ``what`` names the thing in errors ("a smoothgan bundle description").
    """
    path = Path(path)
    meta = read_json(path, error)
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise error(f"{path} is not {what} (no \"format\": \"{fmt}\")")
    found = meta.get("format_version")
    if type(found) is not int or found != version:
        raise error(f"{path} has format version {found!r}; this smoothgan reads {version}")
    return meta


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Full sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# Cost, measured 2026-11-30 on the dev box (2 shared cores, python 3.11 hashlib): the weights.safetensors of a
# 256px CelebA-HQ bundle (generator, mapping network, style encoder and FAN, fp32) is 293 MB; its full sha256
# takes 0.38-0.43 s (0.44 s after dropping it from the page cache), a cache hit (one stat, one 300-byte JSON
# read) 0.044 ms. So load_bundle checks the weights on every load and hashes only a file that changed.
_RACY_SECONDS = 2.0  # a file modified this recently may change again within its mtime tick: not cached


def cache_dir() -> Optional[Path]:
    """Per-user cache folder (``$XDG_CACHE_HOME/smoothgan`` or ``~/.cache/smoothgan``); None without a home."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # no HOME and no passwd entry (some containers)
            return None
    return Path(base) / "smoothgan"


def _stat_key(stat: os.stat_result) -> dict[str, int]:
    return {"dev": stat.st_dev, "ino": stat.st_ino, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "ctime_ns": stat.st_ctime_ns}


def cached_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, remembered per (device, inode, size, mtime, ctime) in the per-user cache.

    Any write or replacement changes one of those, so a changed file is always hashed again; ctime cannot be set
    back by ``touch`` or ``cp -p``. Files modified in the last two seconds are hashed but not cached (their mtime
    tick may not be over). An unwritable cache only costs the full hash.
    """
    path = Path(path)
    before = os.stat(path)
    key = _stat_key(before)
    folder = cache_dir()
    entry = None
    if folder is not None:
        real = os.path.realpath(path)
        entry = folder / "sha256" / (hashlib.sha256(os.fsencode(real)).hexdigest()[:32] + ".json")
        try:
            stored = json.loads(entry.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            stored = None
        if (isinstance(stored, dict) and stored.get("key") == key and isinstance(stored.get("sha256"), str)
                and re.fullmatch(r"[0-9a-f]{64}", stored["sha256"])):
            return stored["sha256"]
    digest = sha256_file(path)
    after = os.stat(path)
    if entry is not None and _stat_key(after) == key and time.time() - after.st_mtime > _RACY_SECONDS:
        try:
            write_json_atomic(entry, {"path": os.path.realpath(path), "key": key, "sha256": digest})
        except OSError as exc:
            log.debug("cannot cache the sha256 of %s in %s: %s", path, entry.parent, exc)
    return digest
