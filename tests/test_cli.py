"""The CLI end to end through Typer's runner: outputs, sidecars, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import official_checkpoint, random_networks
from PIL import Image
from typer.testing import CliRunner

from smoothgan import __version__
from smoothgan.cli import app
from smoothgan.config import get_preset

runner = CliRunner()


def invoke(*args: str, env: dict | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env or {"SMOOTHGAN_MODEL": ""})


def one_line_error(result, pattern: str) -> None:
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error:"), result.output
    assert pattern in " ".join(lines), result.output
    assert "Traceback" not in result.output


def test_version_is_fast_and_does_not_import_torch() -> None:
    code = "import sys; from smoothgan.cli import main; main(['--version'])"
    done = subprocess.run([sys.executable, "-c", code + "\n"], capture_output=True, text=True)
    assert done.stdout.strip() == f"smoothgan {__version__}"
    check = "import sys, smoothgan.cli; print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True).stdout.split() == [
        "False", "False"]


def test_interpolation_writes_frames_strip_gif_and_sidecar(tiny_hpf_bundle, photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke("translate", photo, "--domain", "b", "--steps", "20", "--model", tiny_hpf_bundle.path,
                    "--out", out, "--mp4")
    assert result.exit_code == 0, result.output
    folder = out / "photo"
    assert len(list(folder.glob("frame_*.png"))) == 20
    assert Image.open(folder / "strip.png").size == (32 * 21, 32)
    gif = Image.open(folder / "animation.gif")
    assert gif.n_frames >= 2 and (folder / "animation.mp4").stat().st_size > 0
    sidecar = json.loads((folder / "sidecar.json").read_text())
    assert sidecar["steps"] == 20 and sidecar["domain"] == "b" and sidecar["backend"] == "torch"
    assert sidecar["model_sha256"] == tiny_hpf_bundle.weights_sha256 and sidecar["input"] == str(photo)
    assert "source domain" in result.output


def test_latent_translation_of_many_images_uses_unique_folders(tiny_bundle, photo: Path, tmp_path: Path) -> None:
    other = tmp_path / "sub" / "photo.png"
    other.parent.mkdir()
    other.write_bytes(photo.read_bytes())
    out = tmp_path / "out"
    result = invoke("translate", photo, other, "--domain", "a", "--num", "3", "--seed", "7", "--model",
                    tiny_bundle.path, "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl", "photo", "sub"]  # mirrors the inputs
    assert (out / "sub" / "photo" / "sidecar.json").is_file()
    assert len(list((out / "photo").glob("frame_*.png"))) == 3 and not (out / "photo" / "animation.gif").exists()
    assert json.loads((out / "photo" / "sidecar.json").read_text())["seed"] == 7


def test_model_from_environment_and_reference_images(tiny_bundle, photo: Path, tmp_path: Path) -> None:
    result = invoke("translate", photo, "--domain", "b", "--ref", photo, "--out", tmp_path / "o",
                    env={"SMOOTHGAN_MODEL": str(tiny_bundle.path)})
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "photo" / "sidecar.json").read_text())["style"] == "reference"


def test_import_and_info(tmp_path: Path, photo: Path) -> None:
    spec = get_preset("tiny")
    ckpt = official_checkpoint(tmp_path / "100000_nets_ema.ckpt", random_networks(spec.config), prefix=True)
    result = invoke("import", ckpt, "--domains", "cat,dog", "--out", tmp_path / "bundle")
    assert result.exit_code == 0, result.output
    assert "domains cat, dog" in result.output
    info = invoke("info", tmp_path / "bundle", "--json")
    assert json.loads(info.output)["domains"] == ["cat", "dog"]
    assert invoke("info", tmp_path / "bundle").exit_code == 0
    again = invoke("import", ckpt, "--domains", "cat,dog", "--out", tmp_path / "bundle")
    one_line_error(again, "already exists")


@pytest.mark.parametrize(
    "args, pattern, code",
    [
        (["{missing}", "--domain", "a"], "no such file", 2),
        (["{notimage}", "--domain", "a"], "not an image", 2),
        (["{photo}", "--domain", "zebra"], "unknown domain 'zebra'; this model knows: a, b", 2),
        (["{photo}", "--domain", "a", "--model", "{tmp}"], "is not a smoothgan bundle", 3),
        (["{photo}", "--domain", "a", "--device", "cuda"], "cuda", 4),
    ],
)
def test_bad_input_gives_one_line_errors(args, pattern, code, tiny_bundle, photo: Path, tmp_path: Path) -> None:
    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    notimage = tmp_path / "notes.png"
    notimage.write_text("hello")
    names = {"missing": tmp_path / "missing.png", "notimage": notimage, "photo": photo, "tmp": tmp_path}
    filled = [a.format(**names) for a in args]
    if "--model" not in filled:
        filled += ["--model", str(tiny_bundle.path)]
    result = invoke("translate", *filled, "--out", tmp_path / "out")
    one_line_error(result, pattern)
    assert result.exit_code == code
    assert not (tmp_path / "out").exists()


def test_without_a_model_and_without_the_embedded_one(photo: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("smoothgan.bundle.EMBEDDED_BUNDLE", tmp_path / "missing")
    result = invoke("translate", photo, "--domain", "a", "--model", "", "--out", tmp_path / "out")
    one_line_error(result, "no model given")
    assert result.exit_code == 3


def test_bad_checkpoint_import_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00" * 10)
    one_line_error(invoke("import", bad, "--domains", "a,b", "--out", tmp_path / "b"), "cannot read checkpoint")
