"""fileio: atomic files and folders, staging leftovers of dead writers, what a writer finds at its target."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smoothgan import fileio
from smoothgan.errors import InputError

DEAD_PID = 999_999_999  # above pid_max on Linux: never a running process


def _leftover(folder: Path, name: str, host: str | None, pid: int, kind: str = "tmp") -> Path:
    tag = f"{host}-{pid}" if host else str(pid)
    path = folder / f".{name}.{tag}.{kind}-abc123"
    path.write_text("half written")
    return path


def test_atomic_path_writes_whole_files_with_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        fileio.write_bytes_atomic(tmp_path / "a" / "x.bin", b"data")
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "x.bin").read_bytes() == b"data"
    assert oct((tmp_path / "a" / "x.bin").stat().st_mode & 0o777) == oct(0o640)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.bin"]
    with pytest.raises(RuntimeError), fileio.atomic_path(tmp_path / "a" / "x.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("writer died")
    assert (tmp_path / "a" / "x.bin").read_bytes() == b"data"  # the old file, and no staging file
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.bin"]


def test_atomic_dir_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with fileio.atomic_dir(target) as staging:
        (staging / "one").write_text("1")
    with pytest.raises(RuntimeError), fileio.atomic_dir(target) as staging:
        (staging / "two").write_text("2")
        raise RuntimeError("writer died")
    assert [p.name for p in target.iterdir()] == ["one"]
    with fileio.atomic_dir(target) as staging:
        (staging / "two").write_text("2")
    assert [p.name for p in target.iterdir()] == ["two"]  # no stale entries from the old folder
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_clean_stale_knows_dead_live_and_foreign_writers(tmp_path: Path) -> None:
    dead_old_style = _leftover(tmp_path, "a.png", None, DEAD_PID)
    dead_ours = _leftover(tmp_path, "b.png", fileio._HOST, DEAD_PID)
    live_ours = _leftover(tmp_path, "c.png", fileio._HOST, os.getpid())
    foreign_fresh = _leftover(tmp_path, "d.png", "abcdef" if fileio._HOST != "abcdef" else "fedcba", DEAD_PID)
    foreign_old = _leftover(tmp_path, "e.png", "abcdef" if fileio._HOST != "abcdef" else "fedcba", DEAD_PID)
    past = time.time() - fileio.FOREIGN_STALE_S - 60
    os.utime(foreign_old, (past, past))
    (tmp_path / ".not-staging.txt").write_text("a user's hidden file")
    removed = fileio.clean_stale(tmp_path)
    assert sorted(removed) == sorted([dead_old_style, dead_ours, foreign_old])
    assert live_ours.exists() and foreign_fresh.exists() and (tmp_path / ".not-staging.txt").exists()


def test_clean_stale_restores_a_folder_left_aside_by_a_killed_replacement(tmp_path: Path) -> None:
    aside = tmp_path / f".bundle.{fileio._HOST}-{DEAD_PID}.old-xyz"
    aside.mkdir()
    (aside / "weights").write_text("the only copy")
    fileio.clean_stale(tmp_path, "bundle")
    assert (tmp_path / "bundle" / "weights").read_text() == "the only copy" and not aside.exists()


def test_target_entries(tmp_path: Path) -> None:
    assert fileio.target_entries(tmp_path / "new" / "deeper") is None
    (tmp_path / "empty").mkdir()
    assert fileio.target_entries(tmp_path / "empty") == []
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "b").write_text("")
    (tmp_path / "full" / "a").write_text("")
    assert fileio.target_entries(tmp_path / "full") == ["a", "b"]
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="exists and is not a folder"):
        fileio.target_entries(tmp_path / "file")
    with pytest.raises(InputError, match="is not a folder"):
        fileio.target_entries(tmp_path / "file" / "sub")
    (tmp_path / "link").symlink_to(tmp_path / "full")
    with pytest.raises(InputError, match="symbolic link"):
        fileio.target_entries(tmp_path / "link")


def test_folder_lock_refuses_a_second_writer_and_is_removed_after(tmp_path: Path) -> None:
    with fileio.folder_lock(tmp_path):
        assert (tmp_path / fileio.LOCK_NAME).read_text().split()[0] == str(os.getpid())
        with pytest.raises(InputError, match=rf"being written by another smoothgan job \(pid {os.getpid()}\)"):
            with fileio.folder_lock(tmp_path):
                pass  # pragma: no cover
    assert not (tmp_path / fileio.LOCK_NAME).exists()
    with fileio.folder_lock(tmp_path):
        pass


def test_folder_lock_of_a_killed_holder_blocks_nothing(tmp_path: Path) -> None:
    code = ("import sys, time\nfrom smoothgan import fileio\nwith fileio.folder_lock(sys.argv[1]):\n"
            "    print('locked', flush=True)\n    time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=rf"\(pid {holder.pid}\)"):
            with fileio.folder_lock(tmp_path):
                pass  # pragma: no cover
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert (tmp_path / fileio.LOCK_NAME).exists()  # kill -9 leaves the file, but the kernel dropped the lock
    with fileio.folder_lock(tmp_path):
        pass
    assert not (tmp_path / fileio.LOCK_NAME).exists()
