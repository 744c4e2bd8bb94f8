"""``translate --align [--paste-back]``: faces of real photos translated in the folder pipeline, pasted back.

The photos are scikit-image's public-domain ones (astronaut: one face; chelsea: a cat, no human face). The model
is the tiny random test bundle: what is checked is the pipeline (which pixels change, names, manifest), not the
translation's quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import random_networks
from PIL import Image
from typer.testing import CliRunner

from smoothgan import images
from smoothgan.bundle import save_bundle
from smoothgan.cli import app
from smoothgan.config import get_preset
from smoothgan.errors import InputError
from smoothgan.translator import load

skimage_data = pytest.importorskip("skimage.data")
DATA = Path(skimage_data.__file__).parent
ASTRONAUT, CHELSEA = DATA / "astronaut.png", DATA / "chelsea.png"
runner = CliRunner()


@pytest.fixture(scope="module")
def face_bundle(tmp_path_factory: pytest.TempPathFactory):
    """The tiny model recorded as a face model (what `smoothgan import --align face` writes)."""
    spec = get_preset("tiny")
    return save_bundle(tmp_path_factory.mktemp("bundles") / "faces", random_networks(spec.config, 3), spec.config,
                       spec.domains, {"name": "tiny faces"}, preprocessing={"align": "face"})


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _quad_mask(quad: list, shape: tuple[int, int], grow: float = 1.1) -> np.ndarray:
    """Pixels inside the face's quad grown by ``grow`` around its centre (the feathered paste stays inside)."""
    pts = np.asarray(quad, dtype=np.float64)
    centre = pts.mean(0)
    pts = centre + (pts - centre) * grow
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
    inside = np.ones(shape, bool)
    for a, b in zip(pts, np.roll(pts, -1, axis=0)):
        cross = (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0])
        inside &= cross <= 0
    if not inside.any():  # the other winding
        inside = np.ones(shape, bool)
        for a, b in zip(pts, np.roll(pts, -1, axis=0)):
            inside &= (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0]) >= 0
    return inside


def test_paste_back_changes_only_the_face(tiny_bundle, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with load(tiny_bundle.path, backend="torch") as translator:
        summary = translator.translate_folder([ASTRONAUT], out, "b", steps=3, align=True, paste_back=True)
    assert summary.done == 1 and summary.failed == 0
    original = images.load(ASTRONAUT)
    (record,) = _manifest(out)
    assert record["status"] == "ok" and len(record["faces"]) == 1 and record["options"]["paste_back"] is True
    inside = _quad_mask(record["faces"][0]["quad"], original.shape[:2])
    frames = sorted((out / "astronaut").glob("frame_*.png"))
    assert len(frames) == 3
    for frame_path in frames:
        frame = np.asarray(Image.open(frame_path))
        assert frame.shape == original.shape  # the full-size photo, one per frame
        assert np.array_equal(frame[~inside], original[~inside])  # colour outside the face untouched
        assert np.abs(frame[inside].astype(int) - original[inside]).mean() > 5  # the face was replaced
    sidecar = json.loads((out / "astronaut" / "sidecar.json").read_text())
    assert sidecar["paste_back"] is True and len(sidecar["faces"]) == 1
    strip = Image.open(out / "astronaut" / "strip.png")
    assert strip.size == (512 * 4, 512)  # source photo + 3 frames


def test_faces_without_paste_back_are_crops_named_per_face(tiny_bundle, tmp_path: Path) -> None:
    two = tmp_path / "two.png"
    photo = images.load(ASTRONAUT)
    Image.fromarray(np.concatenate([photo, photo[:, ::-1]], axis=1)).save(two)  # two faces side by side
    out = tmp_path / "out"
    result = runner.invoke(app, ["translate", str(two), "--domain", "b", "--num", "2", "--model",
                                 str(tiny_bundle.path), "--align", "on", "--layout", "flat", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (record,) = _manifest(out)
    assert len(record["faces"]) == 2
    assert record["outputs"] == ["two_face0_b_0.png", "two_face0_b_1.png", "two_face1_b_0.png", "two_face1_b_1.png"]
    for name in record["outputs"]:
        assert Image.open(out / name).size == (32, 32)  # the model's crop size


def test_align_auto_follows_the_bundle(face_bundle, tiny_bundle, tmp_path: Path) -> None:
    for bundle, expected in ((face_bundle, (32, 32)), (tiny_bundle, (32, 32))):
        out = tmp_path / bundle.path.name
        result = runner.invoke(app, ["translate", str(ASTRONAUT), "--domain", "b", "--model", str(bundle.path),
                                     "--out", str(out), "--layout", "flat"])
        assert result.exit_code == 0, result.output
        (record,) = _manifest(out)
        assert ("faces" in record) == (bundle is face_bundle)
        assert record["outputs"] == (["astronaut_face0_b.png"] if bundle is face_bundle else ["astronaut_b.png"])
        assert Image.open(out / record["outputs"][0]).size == expected
    off = tmp_path / "off"
    result = runner.invoke(app, ["translate", str(ASTRONAUT), "--domain", "b", "--model", str(face_bundle.path),
                                 "--out", str(off), "--layout", "flat", "--align", "off"])
    assert result.exit_code == 0 and "faces" not in _manifest(off)[0]


def test_no_face_is_one_line_and_the_other_photos_finish(tiny_bundle, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["translate", str(ASTRONAUT), str(CHELSEA), "--domain", "b", "--model",
                                 str(tiny_bundle.path), "--align", "on", "--paste-back", "--out", str(out),
                                 "--keep-going", "--quiet"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: 1 of 2 input(s) failed")
    records = {Path(r["input"]).name: r for r in _manifest(out)}
    assert records["astronaut.png"]["status"] == "ok"
    assert records["chelsea.png"]["status"] == "error" and "no face found" in records["chelsea.png"]["error"]
    with load(tiny_bundle.path, backend="torch") as translator, pytest.raises(InputError, match="no face found"):
        translator.translate_folder([CHELSEA], tmp_path / "strict", "b", align=True)


@pytest.mark.parametrize("args, needle", [
    (["--paste-back"], "--paste-back needs face alignment"),
    (["--align", "on", "--max-faces", "0"], "--max-faces"),
    (["--align", "sideways"], "--align"),
])
def test_bad_align_options_are_one_line(tiny_bundle, tmp_path: Path, args: list[str], needle: str) -> None:
    result = runner.invoke(app, ["translate", str(ASTRONAUT), "--domain", "b", "--model", str(tiny_bundle.path),
                                 "--out", str(tmp_path / "o"), *args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and lines[-1].startswith("error:") and needle in lines[-1], result.output
    assert not (tmp_path / "o").exists()


def test_resume_skips_aligned_photos(tiny_bundle, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["translate", str(ASTRONAUT), "--domain", "b", "--model", str(tiny_bundle.path), "--align", "on",
            "--paste-back", "--out", str(out), "--resume"]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "skipped 1 already done" in again.output
