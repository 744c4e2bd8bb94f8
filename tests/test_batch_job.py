"""smoothgan batch: a Ray Data actor pool over ~50 files with corrupt ones, outputs equal to direct Translator calls,
original relative names, the folder job's manifest, and reruns that skip what is done."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from smoothgan.translator import load

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

COUNT = 50


@pytest.fixture(scope="module")
def local_ray() -> Any:
    """One private local Ray for the module (2 CPUs, actors with half a CPU each, as on the CI machine)."""
    from smoothgan.serving.cluster import init_ray

    started = init_ray(None, num_cpus=2)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(COUNT):
        folder = root / ("cats" if i % 2 else "dogs/big")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (36 + i % 5, 44, 3), dtype=np.uint8)).save(folder / f"p{i:02d}.png")
    (root / "not-an-image.png").write_text("hello")  # refused by the header check, on the driver
    good = (root / "cats" / "p01.png").read_bytes()
    (root / "cats" / "truncated.png").write_bytes(good[: len(good) // 2])  # header fine, pixels cut: in an actor
    return root


def manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_batch_job_outputs_manifest_and_rerun(local_ray: Any, photos: Path, tmp_path: Path,
                                              tiny_bundle: Any) -> None:
    from smoothgan.serving.ray_data import run_batch

    out = tmp_path / "out"
    seen: list[dict[str, Any]] = []
    summary = run_batch(photos, out, "b", model=str(tiny_bundle.path), backend="torch", seed=4, actors=2,
                        batch_size=8, progress=lambda s, record: seen.append(record))
    assert (summary.total, summary.done, summary.failed, summary.skipped) == (COUNT + 2, COUNT, 2, 0)
    records = manifest(out)
    assert len(records) == len(seen) == COUNT + 2
    bad = {Path(r["input"]).name: r["error"] for r in records if r["status"] != "ok"}
    assert set(bad) == {"not-an-image.png", "truncated.png"}
    assert all(error and "\n" not in error for error in bad.values())
    translator = load(tiny_bundle.path, backend="torch")
    for record in records:
        if record["status"] != "ok":
            continue
        source = Path(record["input"])
        relative = source.relative_to(photos).with_suffix("")
        assert record["outputs"] == [f"{relative.as_posix()}_b.png"]  # original relative name, flat layout
        assert record["seed"] == 4 and record["domain"] == "b" and record["backend"] == "torch"
        got = np.asarray(Image.open(out / record["outputs"][0]))
        want = translator.translate(source, "b", seed=4).images[0, 0]
        assert int(np.abs(got.astype(int) - want).max()) <= 1

    first = out / "dogs" / "big" / "p00_b.png"
    stamp = first.stat().st_mtime_ns
    (out / "cats" / "p01_b.png").unlink()
    again = run_batch(photos, out, "b", model=str(tiny_bundle.path), backend="torch", seed=4, actors=2,
                      batch_size=8)
    assert (again.done, again.skipped, again.failed) == (1, COUNT - 1, 2)  # only the deleted one is redone
    assert first.stat().st_mtime_ns == stamp and (out / "cats" / "p01_b.png").is_file()
    records = manifest(out)
    assert len(records) == COUNT + 2 and sum(r["status"] == "ok" for r in records) == COUNT

    other = run_batch(photos, out, "a", model=str(tiny_bundle.path), backend="torch", seed=4, actors=1,
                      batch_size=16, keep_going=True)
    assert other.done == COUNT and other.skipped == 0  # another domain is another job


def test_batch_cli(local_ray: Any, photos: Path, tmp_path: Path, tiny_bundle: Any) -> None:
    from typer.testing import CliRunner

    from smoothgan.cli import app

    out = tmp_path / "cli-out"
    args = ["batch", str(photos / "dogs"), str(out), "--model", str(tiny_bundle.path), "--domain", "a",
            "--backend", "torch", "--actors", "1", "--batch-size", "4", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"translated {COUNT // 2}, skipped 0 already done, failed 0" in result.output
    assert len(list((out / "big").glob("*_a.png"))) == COUNT // 2
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and f"skipped {COUNT // 2} already done" in result.output
    result = CliRunner().invoke(app, ["batch", str(photos / "not-an-image.png"), str(out), "--model",
                                      str(tiny_bundle.path), "--domain", "a", "--backend", "torch"])
    assert result.exit_code == 2 and "1 of 1 input(s) failed" in result.output
    result = CliRunner().invoke(app, ["batch", str(photos), str(out), "--model", str(tiny_bundle.path),
                                      "--domain", "zebra"])
    assert result.exit_code == 2 and "zebra" in result.output
    assert not os.path.exists(out / "zebra")
