"""``preprocessing.align`` in bundles: what ``smoothgan import`` records, and how bundles without it read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import official_checkpoint, random_networks
from typer.testing import CliRunner

from smoothgan.bundle import load_bundle, save_bundle
from smoothgan.cli import app
from smoothgan.config import get_preset
from smoothgan.errors import BundleError, InputError

runner = CliRunner()


def _import(tmp_path: Path, preset: str, *extra: str) -> dict:
    spec = get_preset(preset)
    ckpt = official_checkpoint(tmp_path / f"{preset}.ckpt", random_networks(spec.config))
    out = tmp_path / f"bundle-{preset}-{'-'.join(extra) or 'default'}"
    result = runner.invoke(app, ["import", str(ckpt), "--domains", "a,b", "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return json.loads((out / "smoothgan.json").read_text())["preprocessing"]


@pytest.mark.parametrize("preset, extra, expected", [
    ("tiny-hpf", (), "face"),  # a FAN: a CelebA-HQ-style model, trained on aligned faces
    ("tiny", (), "none"),
    ("tiny-hpf", ("--align", "none"), "none"),
    ("tiny", ("--align", "face"), "face"),
])
def test_import_records_alignment(tmp_path: Path, preset: str, extra: tuple[str, ...], expected: str) -> None:
    assert _import(tmp_path, preset, *extra)["align"] == expected


def test_bundles_without_align_read_as_none(tiny_bundle, tmp_path: Path) -> None:
    meta = json.loads((tiny_bundle.path / "smoothgan.json").read_text())
    meta["preprocessing"].pop("align", None)
    copy = tmp_path / "old"
    copy.mkdir()
    (copy / "weights.safetensors").write_bytes((tiny_bundle.path / "weights.safetensors").read_bytes())
    (copy / "smoothgan.json").write_text(json.dumps(meta))
    assert load_bundle(copy).preprocessing["align"] == "none"
    meta["preprocessing"]["align"] = "faces"
    (copy / "smoothgan.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="align must be one of none, face"):
        load_bundle(copy)


def test_save_bundle_refuses_unknown_alignment(tmp_path: Path) -> None:
    spec = get_preset("tiny")
    with pytest.raises(InputError, match="align"):
        save_bundle(tmp_path / "b", random_networks(spec.config), spec.config, spec.domains,
                    preprocessing={"align": "eyes"})
    assert not (tmp_path / "b").exists()


def test_bad_align_option_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["import", str(tmp_path / "x.ckpt"), "--domains", "a,b", "--out",
                                 str(tmp_path / "b"), "--align", "eyes"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "--align" in result.output
