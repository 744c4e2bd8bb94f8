"""The embedded demo model: loads without --model, and `smoothgan demo` runs end to end on the bundled samples."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from smoothgan.bundle import EMBEDDED_BUNDLE, SAMPLES_DIR, load_bundle
from smoothgan.cli import app

runner = CliRunner()


def test_embedded_bundle_is_small_fp16_and_the_default(monkeypatch) -> None:
    monkeypatch.delenv("SMOOTHGAN_MODEL", raising=False)
    bundle = load_bundle(None)
    assert bundle.is_embedded and bundle.weights_dtype == "float16"
    assert (EMBEDDED_BUNDLE / "weights.safetensors").stat().st_size < 8 * 2**20
    assert len(list(SAMPLES_DIR.glob("*.png"))) >= len(bundle.domains)


def test_translate_without_model_uses_the_embedded_one_and_says_so(tmp_path: Path) -> None:
    sample = sorted(SAMPLES_DIR.glob("*.png"))[0]
    domain = load_bundle(EMBEDDED_BUNDLE).domains[-1]
    result = runner.invoke(app, ["translate", str(sample), "--domain", domain, "--out", str(tmp_path)],
                           env={"SMOOTHGAN_MODEL": ""})
    assert result.exit_code == 0, result.output
    assert "using the embedded demo model" in result.output


def test_demo_writes_translations_and_interpolations(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--steps", "20"])
    assert result.exit_code == 0, result.output
    bundle = load_bundle(EMBEDDED_BUNDLE)
    samples = sorted(SAMPLES_DIR.glob("*.png"))
    interps = sorted(tmp_path.glob("*-interp-*"))
    assert len(interps) == len(samples)
    assert len(list(interps[0].glob("frame_*.png"))) == 20 and (interps[0] / "animation.gif").exists()
    sidecar = json.loads((interps[0] / "sidecar.json").read_text())
    assert sidecar["model_sha256"] == bundle.weights_sha256 and sidecar["steps"] == 20
    assert len(list(tmp_path.glob("*-to-*"))) == len(samples) * (len(bundle.domains) - 1)
