"""kill -9 at random moments of ``smoothgan import --overwrite``: the old bundle or the new one, never neither.

A helper process imports smoothgan and torch once (no torch op runs before forking, so forking is safe) and forks
one child per trial that runs the real CLI entry point (``smoothgan.cli.main``); the helper kills the child with
SIGKILL after a random delay drawn over a whole uninterrupted run, so every phase (reading the checkpoint, writing
the staging folder, the swap, removing the old folder) is hit across the trials. After each kill the bundle must
load (its weights match its sha256) and be the old or the new one; the next, uninterrupted run must leave no
hidden staging entries behind.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import official_checkpoint, random_networks

from smoothgan.bundle import load_bundle
from smoothgan.config import get_preset

TINY = get_preset("tiny")
TRIALS_PER_SOURCE = 12  # x 2 sources = 24 kills

HELPER = r"""
import json, os, signal, sys, time
import safetensors.torch, torch  # imported once, before any fork; no torch op runs in this process
import smoothgan.bundle, smoothgan.models.checkpoints, smoothgan.trainer.checkpoint
from smoothgan.cli import main

for line in sys.stdin:
    job = json.loads(line)
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        code = 0
        try:
            main(job["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        os._exit(code)
    status, seen = 0, None
    watch = job.get("watch")
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        now = time.perf_counter()
        if watch and seen is None and any(n.startswith(watch[1]) for n in os.listdir(watch[0])):
            seen = now  # the writer's staging folder appeared: the dangerous phase has begun
        if now - start >= job["delay"] or (seen is not None and now - seen >= job["after"]):
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.001)
    code = os.waitstatus_to_exitcode(status)
    killed = code == -signal.SIGKILL  # not when the child had already finished as the signal was sent
    print(json.dumps({"killed": killed, "code": code, "seconds": time.perf_counter() - start}), flush=True)
"""


class Helper:
    """The forking helper: ``run(argv, delay)`` -> whether the child was killed, its exit code and duration."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", HELPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)

    def run(self, argv: list[str], delay: float, watch: tuple[Path, str] | None = None,
            after: float = 0.0) -> dict[str, Any]:
        """Run the CLI in a forked child; kill it ``delay`` s after its start, or ``after`` s after an entry
        named ``watch[1]*`` appears in folder ``watch[0]`` (whichever comes first)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        job = {"argv": argv, "delay": delay, "after": after, "watch": [str(watch[0]), watch[1]] if watch else None}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the kill helper died"
        return json.loads(line)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Helper]:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path_factory.mktemp("cache")), "SMOOTHGAN_MODEL": "",
           "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    started = Helper(env)
    yield started
    started.close()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[list[str]]]:
    """Two official checkpoints and two training checkpoints, as the CLI arguments that import each."""
    from smoothgan.trainer.checkpoint import capture_rng, save_checkpoint
    from smoothgan.trainer.options import TrainOptions

    root = tmp_path_factory.mktemp("sources")
    official, training = [], []
    for seed in (1, 2):
        ckpt = official_checkpoint(root / f"tiny-{seed}.ckpt", random_networks(TINY.config, seed=seed))
        official.append([str(ckpt), "--domains", "a,b"])
        options = TrainOptions(data=str(root / "data"), model="tiny", domains=("a", "b"), preset="tiny")
        nets = random_networks(TINY.config, seed=10 + seed)
        folder = save_checkpoint(root / f"run-{seed}" / "checkpoints", seed, options, nets, nets, {},
                                 [capture_rng()], {})
        training.append([str(folder)])
    return {"official": official, "training": training}


def hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.mark.slow  # about 25 s on two shared cores
@pytest.mark.parametrize("source", ["official", "training"])
def test_kill_during_import_leaves_the_old_or_the_new_bundle(helper: Helper, sources: dict[str, list[list[str]]],
                                                             tmp_path: Path, source: str) -> None:
    out = tmp_path / "bundle"
    variants = sources[source]

    def argv(index: int) -> list[str]:
        return ["import", *variants[index], "--out", str(out), "--overwrite"]

    first = helper.run(argv(0), delay=120.0)
    assert not first["killed"] and first["code"] == 0, first
    shas = {0: load_bundle(out).weights_sha256}
    second = helper.run(argv(1), delay=120.0)
    assert not second["killed"] and second["code"] == 0, second
    shas[1] = load_bundle(out).weights_sha256
    assert shas[0] != shas[1] and hidden(tmp_path) == []
    duration = max(first["seconds"], second["seconds"])
    rng = random.Random(f"kill-{source}")
    current, kills, left = 1, 0, 0
    for trial in range(TRIALS_PER_SOURCE):
        target = 1 - current
        if trial % 2:  # a random moment of the whole run
            done = helper.run(argv(target), delay=rng.uniform(0.0, duration * 1.1))
        else:  # a random moment once the staging folder exists: writing, swapping, removing the old one
            done = helper.run(argv(target), delay=120.0, watch=(tmp_path, f".{out.name}."),
                              after=rng.uniform(0.0, 0.012))
        kills += done["killed"]
        left += bool(hidden(tmp_path))
        bundle = load_bundle(out)  # complete and loadable: the weights match the recorded sha256
        assert bundle.weights_sha256 in (shas[current], shas[target]), f"trial {trial}: a third state"
        if not done["killed"]:
            assert done["code"] == 0 and bundle.weights_sha256 == shas[target] and hidden(tmp_path) == []
        current = 0 if bundle.weights_sha256 == shas[0] else 1
        # the next run: uninterrupted, it replaces the bundle and cleans what the killed one left behind
        following = 1 - current
        again = helper.run(argv(following), delay=120.0)
        assert not again["killed"] and again["code"] == 0, again
        assert load_bundle(out).weights_sha256 == shas[following]
        assert hidden(tmp_path) == [], f"trial {trial}: leftovers after the next run"
        current = following
    assert kills >= TRIALS_PER_SOURCE // 2  # most trials really were killed mid-way
    assert left >= 1  # and some of them mid-write (the case the cleaning is for)


def test_replacement_without_an_atomic_exchange_keeps_the_old_folder_until_the_new_is_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where renameat2(RENAME_EXCHANGE) is missing (other OSes, some file systems): two renames, old aside first."""
    from smoothgan import fileio

    monkeypatch.setattr(fileio, "_exchange", lambda a, b: False)
    seen: list[list[str]] = []
    real_replace = os.replace

    def spying_replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        seen.append(sorted(p.name for p in tmp_path.iterdir()))

    monkeypatch.setattr(fileio.os, "replace", spying_replace)
    target = tmp_path / "folder"
    target.mkdir()
    (target / "old").write_text("old")
    with fileio.atomic_dir(target) as staging:
        (staging / "new").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new"] and sorted(p.name for p in tmp_path.iterdir()) == ["folder"]
    assert any(name.startswith(".folder.") and ".old-" in name for name in seen[0])  # the old one renamed aside first


def test_a_writer_killed_between_the_renames_is_undone_by_the_next_one(tmp_path: Path) -> None:
    from smoothgan import fileio

    target = tmp_path / "folder"
    aside = tmp_path / ".folder.999999999.old-abc"  # the old folder, renamed aside by a writer that died
    aside.mkdir()
    (aside / "old").write_text("old")
    staging = tmp_path / ".folder.999999999.staging-def"  # and its half-written replacement
    staging.mkdir()
    assert fileio.clean_stale(tmp_path, "folder") and (target / "old").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]
