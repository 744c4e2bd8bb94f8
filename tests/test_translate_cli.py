"""`smoothgan translate` as users run it: one-line argument errors, folder mode, user text printed as is, and
kill -9 at random moments followed by --resume (complete, correct outputs and manifest, no leftovers)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_images as _make_images
from PIL import Image
from typer.testing import CliRunner

from smoothgan.cli import app

runner = CliRunner()
CLI = [sys.executable, "-c", "from smoothgan.cli import main; main()"]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], env={"SMOOTHGAN_MODEL": "", "OMP_NUM_THREADS": "1"})


def make_images(root: Path, names: list[str], seed: int = 0) -> list[Path]:
    return _make_images(root, names, seed, size=(34, 40))


def last_line(output: str) -> str:
    return [line for line in output.strip().splitlines() if line.strip()][-1]


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    make_images(tmp_path / "in", ["a.png", "s/b.png"])
    return tmp_path / "in"


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps must be an integer from 2 to 1000 (frames, both ends included), got 0"),
    (["--steps", "1"], "--steps must be an integer from 2 to 1000"),
    (["--steps", "-3"], "--steps must be an integer from 2 to 1000"),
    (["--steps", "10000000"], "--steps must be an integer from 2 to 1000"),
    (["--num", "0"], "--num must be an integer from 1 to 1000 (latent styles per source), got 0"),
    (["--num", "-1"], "--num must be an integer from 1 to 1000"),
    (["--seed", "-5"], "--seed must be an integer from 0 to 4294967295, got -5"),
    (["--seed", "4294967296"], "--seed must be an integer from 0 to 4294967295"),
    (["--ref", "{photo}", "--num", "3"], "--num applies to latent styles only"),
    (["--ref", "{photo}", "--ref", "{photo}", "--steps", "3"], "give one reference, not 2"),
    (["--ref", "{tmp}/nope.png"], "cannot read reference image"),
    (["--batch-size", "0"], "--batch-size must be an integer from 1"),
    (["--batch-size", "-1"], "--batch-size must be an integer from 1"),
    (["--workers", "0"], "--workers must be an integer from 1"),
    (["--fps", "0"], "--fps must be positive"),
    (["--interp", "cubic", "--steps", "3"], "unknown interpolation mode 'cubic'"),
    (["--domain", "zebra"], "unknown domain 'zebra'"),
    (["--source-domain", "zebra", "--steps", "3"], "unknown domain 'zebra'"),
])
def test_bad_arguments_print_one_line_and_write_nothing(args, message, tiny_bundle, photo: Path,
                                                        tmp_path: Path) -> None:
    filled = [a.format(photo=photo, tmp=tmp_path) for a in args]
    if "--domain" not in filled:
        filled += ["--domain", "a"]
    result = invoke("translate", photo, *filled, "--model", tiny_bundle.path, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [(["--steps", "1"], "--steps must be"), (["--num", "0"], "--num must be")])
def test_demo_bad_arguments_are_one_line(args, message, tmp_path: Path) -> None:
    result = invoke("demo", *args, "--out", tmp_path / "demo")
    assert result.exit_code == 2 and last_line(result.output).startswith(f"error: {message}"), result.output
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("inputs, message", [
    (["{tmp}/missing.png"], "no such file or folder"),
    (["{tmp}/empty"], "no images"),
    (["{tmp}/*.gif"], "no images match"),
    (["{photo}", "{tmp}/notes.png"], "not an image"),
])
def test_bad_inputs_are_caught_before_anything_is_written(inputs, message, tiny_bundle, photo: Path,
                                                          tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.png").write_text("hello")
    filled = [a.format(photo=photo, tmp=tmp_path) for a in inputs]
    result = invoke("translate", *filled, "--domain", "a", "--model", tiny_bundle.path, "--out", tmp_path / "out")
    assert result.exit_code == 2 and message in last_line(result.output), result.output
    assert not (tmp_path / "out").exists()


def test_user_text_is_printed_as_is(tiny_bundle, tmp_path: Path) -> None:
    make_images(tmp_path / "in", ["IMG_0001 [edited].png", "x [/].png", "[bold]b.png"])
    (tmp_path / "in" / "[red]bad [/].png").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "in" / "[red]bad [/].png").write_text("not an image")  # folder "[red]bad [", file "].png"
    result = invoke("translate", tmp_path / "in", "--domain", "b", "--steps", "2", "--keep-going", "--model",
                    tiny_bundle.path, "--out", tmp_path / "out")
    assert "Traceback" not in result.output and result.exit_code == 2, result.output
    assert "IMG_0001 [edited]: source domain" in result.output
    assert "x [/]: source domain" in result.output and "[bold]b: source domain" in result.output
    assert "[red]bad [/].png" in result.output
    assert (tmp_path / "out" / "IMG_0001 [edited]" / "strip.png").is_file()


def test_keep_going_exit_code_and_last_line(tiny_bundle, folder: Path, tmp_path: Path) -> None:
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    result = invoke("translate", folder, "--domain", "b", "--keep-going", "--layout", "flat", "--model",
                    tiny_bundle.path, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert last_line(result.output) == f"error: 1 of 3 input(s) failed; see {tmp_path / 'out' / 'manifest.jsonl'}"
    lines = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["status"] for r in lines) == ["error", "ok", "ok"]
    without = invoke("translate", folder, "--domain", "b", "--model", tiny_bundle.path, "--out", tmp_path / "o2")
    assert without.exit_code == 2 and "broken.png" in last_line(without.output)
    assert not (tmp_path / "o2").exists()


def test_progress_shows_images_per_second_and_eta(tiny_bundle, folder: Path, tmp_path: Path) -> None:
    result = invoke("translate", folder, "--domain", "b", "--model", tiny_bundle.path, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    bar = next(line for line in result.output.splitlines() if line.startswith("translating"))
    assert "2/2" in bar and " img/s, ETA 0:00:00" in bar


def test_quiet_flat_run_and_resume(tiny_bundle, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("translate", folder, "--domain", "b", "--num", "2", "--layout", "flat", "--model", tiny_bundle.path,
            "--out", out, "--quiet")
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert first.output.strip().splitlines() == [last_line(first.output)]  # only the summary
    assert "translated 2 of 2" in first.output
    assert {str(p.relative_to(out)) for p in out.rglob("*.png")} == {"a_b_0.png", "a_b_1.png", "s/b_b_0.png",
                                                                      "s/b_b_1.png"}
    again = invoke(*args, "--resume")
    assert again.exit_code == 0 and "translated 0, skipped 2 already done of 2" in again.output, again.output



def test_a_second_job_into_the_same_folder_is_one_line_and_writes_nothing(tiny_bundle, folder: Path,
                                                                          tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    code = ("import sys, time\nfrom smoothgan import fileio\nwith fileio.folder_lock(sys.argv[1]):\n"
            "    print('locked', flush=True)\n    time.sleep(120)\n")
    running = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert running.stdout is not None and running.stdout.readline().strip() == "locked"
        result = invoke("translate", folder, "--domain", "b", "--model", tiny_bundle.path, "--out", out)
    finally:
        running.kill()
        running.wait(timeout=30)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert f"is being written by another smoothgan job (pid {running.pid}); wait for it to end" in lines[0]
    assert [p.name for p in out.iterdir()] == [".smoothgan.lock"]  # the holder's file only: no output, no manifest


# ---- kill -9 at random moments, then --resume --------------------------------------------------------------------
def tree(root: Path) -> dict[str, Path]:
    """Every entry under ``root`` (files and folders, hidden ones included) by relative path."""
    return {str(p.relative_to(root)): p for p in root.rglob("*")}


def check_same_job(out: Path, ref: Path, context: str) -> None:
    got, want = tree(out), tree(ref)
    assert set(got) == set(want), f"{context}: extra {set(got) - set(want)}, missing {set(want) - set(got)}"
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]  # no torn line
    ref_lines = {r["input"]: r for r in map(json.loads, (ref / "manifest.jsonl").read_text().splitlines())}
    assert len(lines) == len(ref_lines) and {r["input"] for r in lines} == set(ref_lines), context
    for line in lines:
        assert line["status"] == "ok" and line["outputs"] == ref_lines[line["input"]]["outputs"], context
    for name, path in got.items():
        if path.suffix == ".png":
            a = np.asarray(Image.open(path)).astype(int)
            b = np.asarray(Image.open(want[name])).astype(int)
            assert a.shape == b.shape and np.abs(a - b).max() <= 1, f"{context}: {name}"
        elif path.name == "sidecar.json":
            assert json.loads(path.read_text()) == json.loads(want[name].read_text()), f"{context}: {name}"
        elif path.suffix == ".gif":
            assert Image.open(path).n_frames == Image.open(want[name]).n_frames, f"{context}: {name}"


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "SMOOTHGAN_MODEL": "", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(CLI + args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def manifest_lines(out: Path) -> int:
    try:
        return len((out / "manifest.jsonl").read_bytes().splitlines())
    except FileNotFoundError:
        return 0


def manifest_inode(out: Path) -> int:
    try:
        return (out / "manifest.jsonl").stat().st_ino
    except FileNotFoundError:
        return -1


def timed_run(args: list[str], out: Path, total: int) -> tuple[float, float]:
    """Run to the end; return (seconds until the job starts writing, seconds until its last manifest line)."""
    began = time.monotonic()
    proc = start(args)
    started = finished = None
    while proc.poll() is None:
        now = time.monotonic()
        if started is None and (out / "manifest.jsonl").exists():
            started = now
        if finished is None and manifest_lines(out) >= total:
            finished = now
        time.sleep(0.005)
    assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
    end = time.monotonic()
    started = started or end
    return started - began, (finished or end) - started


@pytest.mark.slow
@pytest.mark.parametrize("layout, extra, trials", [("flat", ["--num", "3"], 7), ("folders", ["--steps", "3"], 5)])
def test_kill_9_at_random_moments_then_resume(layout, extra, trials, tiny_bundle, tmp_path: Path) -> None:
    names = [f"d{i % 3}/img{i:02d}.png" for i in range(30)] + ["x/a.png", "a-1.png"]
    make_images(tmp_path / "in", names)
    base = ["translate", str(tmp_path / "in"), "--domain", "b", "--model", str(tiny_bundle.path), "--layout",
            layout, "--batch-size", "2", "--quiet", *extra]
    ref, out = tmp_path / "ref", tmp_path / "out"
    startup, job = timed_run(base + ["--out", str(ref)], ref, len(names))
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    mid_job = 0
    for trial in range(trials):
        before = manifest_inode(out)
        proc = start(base + ["--out", str(out), "--resume"])
        if trial % 4 == 3:  # now and then anywhere, start-up included
            time.sleep(rng.uniform(0, startup + job))
        else:  # mostly while results are being written: from this run's manifest rewrite on
            deadline = time.monotonic() + 120
            while proc.poll() is None and manifest_inode(out) == before and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, job))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = manifest_lines(out)
        if done >= len(names):  # the job got to its end first: check it, start over so later kills land mid-job
            check_same_job(out, ref, f"seed {seed}, trial {trial} (finished)")
            shutil.rmtree(out)
        elif done > 0:
            mid_job += 1
    final = start(base + ["--out", str(out), "--resume"])
    assert final.wait(timeout=300) == 0, final.stderr.read().decode() if final.stderr else ""
    check_same_job(out, ref, f"seed {seed}, after {trials} kills ({mid_job} in the middle of the job)")
    assert mid_job >= 1, f"seed {seed}: no kill landed while results were being written"
