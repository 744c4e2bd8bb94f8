"""Benchmarks: baseline row first, failures kept, accuracy column, result files; torch.compile parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from smoothgan.backends import create_backend
from smoothgan.bench import Variant, markdown_table, run_benchmarks, save_results, time_call
from smoothgan.artifacts import PSNR_CAP_DB, psnr_db
from smoothgan.cli import app


def test_psnr_hand_computed() -> None:
    reference = np.array([[-1.0, 1.0, 0.0]], np.float32)
    assert psnr_db(reference, reference + 0.02) == pytest.approx(10 * np.log10(4 / 0.0004))
    assert psnr_db(reference, reference) == PSNR_CAP_DB


def test_time_call_respects_minimum_runs_and_warmup() -> None:
    calls = []
    times = time_call(lambda: calls.append(1), budget_s=0.0, warmup=2, min_runs=3)
    assert len(times) == 3 and len(calls) == 5


def test_rows_have_the_eager_baseline_first_and_keep_failures(tiny_bundle, tmp_path: Path) -> None:
    variants = [Variant("torch", "cpu", "bf16"), Variant("tensorrt", "cpu", "fp16")]
    rows = run_benchmarks(tiny_bundle, variants, tasks=("latent", "interp20"), batches=(1, 2), budget_s=0.01,
                          model_name="tiny")
    assert [r.variant for r in rows[:3]] == ["torch fp32 eager"] * 3
    baseline = rows[0]
    assert baseline.speedup == 1.0 and baseline.psnr_db == PSNR_CAP_DB and baseline.runs >= 3
    bf16 = [r for r in rows if r.variant == "torch bf16"]
    assert len(bf16) == 3 and all(r.status == "ok" and 15 < r.psnr_db < 80 for r in bf16)
    interp = next(r for r in bf16 if r.task == "interp20")
    assert interp.batch == 1 and interp.images_per_s > 0
    trt = [r for r in rows if r.backend == "tensorrt"]
    assert len(trt) == 3 and all(r.status.startswith("unavailable") for r in trt)
    assert "unavailable" in markdown_table(rows)
    paths = save_results(rows, {"cpu": "test", "gpu": "none"}, tmp_path, "tiny-cpu", command="smoothgan bench")
    data = json.loads(paths["json"].read_text())
    assert len(data["rows"]) == len(rows) and data["command"] == "smoothgan bench"
    assert paths["md"].read_text().count("\n|") >= len(rows)


def test_bench_cli_writes_named_results(tiny_bundle, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "--model", str(tiny_bundle.path), "--backends", "torch",
                                      "--batches", "1", "--tasks", "latent", "--budget", "0", "--out",
                                      str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tiny-fp32-bs1-cpu.json").exists() and (tmp_path / "tiny-fp32-bs1-cpu.png").exists()
    bad = CliRunner().invoke(app, ["bench", "--model", str(tiny_bundle.path), "--tasks", "dance"])
    assert bad.exit_code != 0 and "unknown task(s) dance" in bad.output


def test_bench_cli_leaves_no_temporary_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default run (random weights, graphs exported for ONNX Runtime) works in a temporary folder that is
    removed afterwards, even when the run fails."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    result = CliRunner().invoke(app, ["bench", "--preset", "tiny", "--backends", "torch,onnxruntime",
                                      "--batches", "1", "--tasks", "latent", "--budget", "0", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "exporting ONNX fp32 graphs" in result.output
    rows = json.loads(next((tmp_path / "out").glob("*.json")).read_text())["rows"]
    assert {r["backend"] for r in rows if r["status"] == "ok"} == {"torch", "onnxruntime"}
    assert not list(scratch.glob("smoothgan-bench-*"))  # (torch may keep its own caches here)
    bad = CliRunner().invoke(app, ["bench", "--preset", "tiny", "--backends", "nothing", "--out",
                                   str(tmp_path / "out")])
    assert not list(scratch.glob("smoothgan-bench-*")), bad.output


@pytest.mark.slow
def test_compiled_torch_backend_matches_eager(tiny_bundle) -> None:
    eager = create_backend(tiny_bundle, "torch", "cpu", "fp32")
    compiled = create_backend(tiny_bundle, "torch", "cpu", "fp32", compile=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    s = rng.standard_normal((2, 16)).astype(np.float32)
    np.testing.assert_allclose(compiled.generate(x, s), eager.generate(x, s), atol=1e-4, rtol=0)


def test_folder_task_times_a_job_on_disk_beside_the_raw_rate(tiny_bundle, tmp_path: Path) -> None:
    rows = run_benchmarks(tiny_bundle, [Variant("torch", "cpu", "bf16")], tasks=("latent", "folder"),
                          batches=(8,), budget_s=0.0, model_name="tiny")
    folder = [r for r in rows if r.task == "folder"]
    assert [r.variant for r in folder] == ["torch fp32 eager", "torch bf16"]
    for row in folder:
        assert row.status == "ok" and row.images_per_s > 0 and row.runs >= 3
        # 64 images per job: a job is much longer than one raw batch of 8
        raw = next(r for r in rows if r.task == "latent" and r.variant == row.variant)
        assert row.median_ms > raw.median_ms
    assert folder[0].speedup == 1.0 and folder[1].speedup > 0


def test_align_task_reports_faces_and_consistency(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    result = CliRunner().invoke(app, ["bench", "--tasks", "align", "--budget", "0", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "align-cpu.json").read_text())
    assert {r["task"] for r in data["rows"]} == {"align", "paste"}
    assert all(r["status"] == "ok" and r["faces"] == r["expected_faces"] for r in data["rows"])
    assert data["consistency"]["found"] == data["consistency"]["photos"]
    assert data["consistency"]["median_corner_error_px"] < 4
