"""``smoothgan align`` end to end through Typer's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from smoothgan.cli import app

skimage_data = pytest.importorskip("skimage.data")
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage_data.astronaut()).save(folder / "astronaut [1].png")
    Image.fromarray(skimage_data.chelsea()).save(folder / "cat.png")
    return folder


def test_align_writes_crops_and_json(photos, tmp_path):
    result = run("align", photos / "astronaut [1].png", "--out", tmp_path, "--size", 128)
    assert result.exit_code == 0, result.output
    assert "astronaut [1].png: 1 face(s)" in result.output  # brackets printed as given, not read as markup
    crop = np.asarray(Image.open(tmp_path / "astronaut [1]_face0.png"))
    assert crop.shape == (128, 128, 3)
    record = json.loads((tmp_path / "astronaut [1].json").read_text())
    assert record["size"] == 128 and (record["width"], record["height"]) == (512, 512)
    (face,) = record["faces"]
    assert np.array(face["quad"]).shape == (4, 2) and np.array(face["landmarks"]).shape == (5, 2)
    assert 0.5 < face["score"] <= 1.0


def test_no_face_fails_that_file_only(photos, tmp_path):
    result = run("align", photos / "cat.png", photos / "astronaut [1].png", "--out", tmp_path)
    assert result.exit_code == 2
    assert "no face found in" in result.output and "cat.png" in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "astronaut [1]_face0.png").is_file() and not (tmp_path / "cat.json").exists()


def test_allow_none(photos, tmp_path):
    result = run("align", photos / "cat.png", "--out", tmp_path, "--allow-none")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cat.json").read_text())["faces"] == []


def test_bad_files_are_one_line_errors(photos, tmp_path):
    (tmp_path / "in").mkdir()
    fake = tmp_path / "in" / "fake.png"
    fake.write_text("not an image")
    one_pixel = tmp_path / "in" / "dot.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(one_pixel)
    result = run("align", fake, tmp_path / "in" / "missing.png", one_pixel, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "fake.png" in result.output and "missing.png" in result.output and "no face found in" in result.output


def test_max_faces_and_duplicate_names(photos, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(skimage_data.astronaut()).save(other / "astronaut [1].png")
    result = run("align", photos / "astronaut [1].png", other / "astronaut [1].png", "--out", tmp_path / "out",
                 "--max-faces", 1)
    assert result.exit_code == 2
    assert "same name" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["astronaut [1].json", "astronaut [1]_face0.png"]
    assert run("align", photos / "cat.png", "--out", tmp_path, "--max-faces", 0).exit_code != 0
