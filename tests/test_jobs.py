"""Folder jobs through the Python API: inputs, names, batching semantics, layouts, manifest, resume, keep-going."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import make_images
import torch
from PIL import Image

import smoothgan
from smoothgan import fileio, jobs
from smoothgan.errors import InputError


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model is fastest on one thread (and oversubscribed OpenMP on a busy 2-core machine is 80x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def translator(tiny_bundle):
    return smoothgan.load(tiny_bundle.path, max_batch=64)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / jobs.MANIFEST).read_text().splitlines()]


# ---- inputs and names --------------------------------------------------------------------------------------------
def test_folder_is_walked_recursively_sorted_with_mirrored_names(tmp_path: Path) -> None:
    make_images(tmp_path / "in", ["b.png", "sub/a.jpg", "sub/deeper/c.webp", "A.PNG"])
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    (tmp_path / "in" / ".hidden.png").write_bytes(b"")
    items = jobs.resolve_inputs([tmp_path / "in"])
    assert [str(i.name) for i in items] == ["A", "b", "sub/a", "sub/deeper/c"]
    assert all(i.error is None and i.path.is_absolute() for i in items)


def test_same_names_from_different_folders_and_separate_files_stay_distinct(tmp_path: Path) -> None:
    x, y, dash = make_images(tmp_path, ["x/a.png", "y/a.png", "a-1.png"])
    as_files = jobs.resolve_inputs([x, y, dash])
    assert sorted(str(i.name) for i in as_files) == ["a-1", "x/a", "y/a"]
    as_folder = jobs.resolve_inputs([tmp_path])
    assert sorted(str(i.name) for i in as_folder) == ["a-1", "x/a", "y/a"]


def test_clashing_stems_get_suffixes_that_no_other_input_has(tmp_path: Path) -> None:
    paths = make_images(tmp_path, ["a.png", "a.jpg", "a-2.png", "A.bmp", "b.png", "b/c.png", "manifest.jsonl.png"])
    names = [str(i.name) for i in jobs.resolve_inputs(paths)]
    assert len(set(n.casefold() for n in names)) == len(names) == 7
    assert "a-2" in names and names.count("a-2") == 1
    assert "b/c" in names and "b" not in names  # a file named like another output's folder is renamed
    assert "manifest.jsonl" not in names
    again = [str(i.name) for i in jobs.resolve_inputs(paths)]
    assert again == names  # deterministic, which resume relies on


def test_globs_duplicates_and_the_output_folder_excluded(tmp_path: Path) -> None:
    make_images(tmp_path / "in", ["a.png", "s/b.png", "s/c.jpg"])
    items = jobs.resolve_inputs([str(tmp_path / "in" / "**" / "*.png"), tmp_path / "in" / "a.png"])
    assert [str(i.name) for i in items] == ["a", "s/b"]
    make_images(tmp_path / "in" / "out", ["old_b.png"])
    items = jobs.resolve_inputs([tmp_path / "in"], exclude=tmp_path / "in" / "out")
    assert [str(i.name) for i in items] == ["a", "s/b", "s/c"]


def test_symlinks_out_of_the_tree_are_not_followed(tmp_path: Path) -> None:
    make_images(tmp_path / "tree", ["a.png"])
    make_images(tmp_path / "outside", ["secret.png", "dir/x.png"])
    (tmp_path / "tree" / "link-out.png").symlink_to(tmp_path / "outside" / "secret.png")
    (tmp_path / "tree" / "dir-out").symlink_to(tmp_path / "outside" / "dir")
    (tmp_path / "tree" / "link-in.png").symlink_to(tmp_path / "tree" / "a.png")
    (tmp_path / "tree" / "broken.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "tree" / "loop1.png").symlink_to(tmp_path / "tree" / "loop2.png")
    (tmp_path / "tree" / "loop2.png").symlink_to(tmp_path / "tree" / "loop1.png")
    (tmp_path / "tree" / "folder.png").mkdir()
    assert [str(i.name) for i in jobs.resolve_inputs([tmp_path / "tree"])] == ["a", "link-in"]
    glob = jobs.resolve_inputs([str(tmp_path / "tree" / "*.png")])  # what a shell would expand, less non-files
    assert [str(i.name) for i in glob] == ["a", "link-in", "link-out"]


@pytest.mark.parametrize("case, pattern", [
    ("missing", "no such file or folder"),
    ("empty", "no images"),
    ("noglob", "no images match"),
    ("corrupt", "not an image"),
    ("truncated", "truncated or corrupt"),
    ("loop", r"cannot open it \(Too many levels of symbolic links\)"),
])
def test_bad_inputs_are_one_line_errors_before_anything_is_written(case, pattern, tmp_path: Path,
                                                                   translator) -> None:
    good = make_images(tmp_path / "in", ["a.png", "b.png"])
    bad = {"missing": tmp_path / "nope.png", "empty": tmp_path / "empty", "noglob": str(tmp_path / "*.gif"),
           "corrupt": tmp_path / "in" / "c.png", "truncated": tmp_path / "in" / "d.png",
           "loop": tmp_path / "loop.png"}[case]
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "in" / "c.png").write_text("hello")
    (tmp_path / "in" / "d.png").write_bytes(good[0].read_bytes()[:20])
    with pytest.raises(InputError, match=pattern) as info:
        translator.translate_folder([*good, bad], tmp_path / "out", "b")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


# ---- results ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_streamed_results_match_one_image_translate(batch_size: int, tmp_path: Path, translator) -> None:
    paths = make_images(tmp_path, [f"i{k}.png" for k in range(5)])
    got = list(translator.iter_translate(paths, "b", num=2, seed=7, batch_size=batch_size))
    assert [r.input.path for r in got] == paths
    for item in got:
        alone = translator.translate(item.input.path, "b", num=2, seed=7, max_batch=1)
        diff = np.abs(item.result.images.astype(int) - alone.images.astype(int)).max()
        assert diff <= 1, diff
        np.testing.assert_array_equal(item.result.styles, alone.styles)
        assert item.result.metadata["input"] == str(item.input.path) and item.result.metadata["seed"] == 7


@pytest.fixture(scope="module")
def hpf_translator(tiny_hpf_bundle):
    return smoothgan.load(tiny_hpf_bundle.path, backend="torch")


@pytest.mark.parametrize("fixture", ["translator", "hpf_translator"])
def test_streamed_interpolations_match_one_image_interpolate(fixture: str, tmp_path: Path, request) -> None:
    translator = request.getfixturevalue(fixture)
    paths = make_images(tmp_path, [f"i{k}.png" for k in range(3)])
    for item in translator.iter_translate(paths, "a", steps=4, seed=2, batch_size=5):
        alone = translator.interpolate(item.input.path, "a", steps=4, seed=2)
        assert np.abs(item.result.images.astype(int) - alone.images.astype(int)).max() <= 1
        assert item.result.metadata["source_domains"] == alone.metadata["source_domains"]


def test_reference_styles_and_stopping_a_stream_early(tmp_path: Path, translator) -> None:
    paths = make_images(tmp_path, [f"i{k}.png" for k in range(6)])
    refs = paths[:2]
    stream = translator.iter_translate(paths, "b", ref=refs, batch_size=2)
    first = next(stream)
    alone = translator.translate(paths[0], "b", ref=refs)
    np.testing.assert_array_equal(first.result.styles, alone.styles)
    assert first.result.metadata["style"] == "reference" and first.result.images.shape[1] == 2
    stream.close()  # the decode pool shuts down, nothing hangs


def test_streaming_arrays_from_a_generator(translator) -> None:
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (28, 30, 3), dtype=np.uint8) for _ in range(5)]
    consumed = []

    def video():
        for i, frame in enumerate(frames):
            consumed.append(i)
            yield frame

    stream = translator.iter_translate(video(), "a", seed=5, batch_size=2, prefetch=2)
    first = next(stream)
    assert len(consumed) < len(frames)  # lazily consumed
    got = [first, *stream]
    assert [str(r.input.name) for r in got] == [f"array-{i}" for i in range(5)]
    for frame, item in zip(frames, got):
        alone = translator.translate(frame, "a", seed=5)
        assert np.abs(item.result.images.astype(int) - alone.images.astype(int)).max() <= 1
    batch = np.stack(frames)
    assert len(list(translator.iter_translate(batch, "a", batch_size=3))) == 5
    bad = [frames[0], frames[1].astype(np.float32) / 255, frames[2]]
    results = list(translator.iter_translate(bad, "a", keep_going=True))
    assert [r.ok for r in results] == [True, False, True] and "uint8" in results[1].error
    with pytest.raises(InputError, match="uint8"):
        list(translator.iter_translate(iter(bad), "a"))


def test_generator_calls_batch_across_images(tmp_path: Path, translator, monkeypatch) -> None:
    paths = make_images(tmp_path, [f"i{k}.png" for k in range(7)])
    calls: list[int] = []
    original = translator.backend.generate

    def counting(image, style, masks=None):
        calls.append(len(image))
        return original(image, style, masks)

    monkeypatch.setattr(translator.backend, "generate", counting)
    assert len(list(translator.iter_translate(paths, "b", num=2, batch_size=4))) == 7
    assert calls == [4, 4, 4, 2]  # two images (2 styles each) per call


def test_flat_layout_paths_and_manifest_fields(tmp_path: Path, translator) -> None:
    make_images(tmp_path / "in", ["x/a.png", "y/a.png", "a-1.png"])
    out = tmp_path / "out"
    summary = translator.translate_folder([tmp_path / "in"], out, "b", num=2, seed=3, layout="flat")
    assert (summary.total, summary.done, summary.failed) == (3, 3, 0)
    assert files_under(out) == {"manifest.jsonl", "a-1_b_0.png", "a-1_b_1.png", "x/a_b_0.png", "x/a_b_1.png",
                                "y/a_b_0.png", "y/a_b_1.png"}
    lines = manifest(out)
    assert len(lines) == 3
    line = next(r for r in lines if r["input"].endswith("x/a.png"))
    assert line["outputs"] == ["x/a_b_0.png", "x/a_b_1.png"] and line["status"] == "ok" and line["error"] is None
    assert line["domain"] == "b" and line["seed"] == 3 and line["backend"] == "torch"
    assert line["model_sha256"] == translator.bundle.weights_sha256
    one = translator.translate(tmp_path / "in" / "x" / "a.png", "b", num=2, seed=3)
    saved = np.asarray(Image.open(out / "x" / "a_b_1.png"))
    assert np.abs(saved.astype(int) - one.images[0, 1].astype(int)).max() <= 1


def test_folders_layout_and_a_rerun_replaces_result_folders_whole(tmp_path: Path, translator) -> None:
    make_images(tmp_path / "in", ["a.png", "s/b.png"])
    out = tmp_path / "out"
    translator.translate_folder([tmp_path / "in"], out, "b", steps=5)
    assert len(list((out / "s" / "b").glob("frame_*.png"))) == 5 and (out / "s" / "b" / "animation.gif").exists()
    translator.translate_folder([tmp_path / "in"], out, "b", steps=2, gif=False)
    assert sorted(p.name for p in (out / "a").iterdir()) == ["frame_000.png", "frame_001.png", "sidecar.json",
                                                              "strip.png"]
    sidecar = json.loads((out / "a" / "sidecar.json").read_text())
    assert sidecar["steps"] == 2 and sidecar["input"] == str(tmp_path / "in" / "a.png")
    assert not [p for p in out.rglob(".*")]  # no staging leftovers


def test_folders_that_are_not_results_are_never_replaced(tmp_path: Path, translator) -> None:
    make_images(tmp_path / "in", ["notes.png", "thesis.png"])
    out = tmp_path / "out"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "mine.txt").write_text("keep me")
    (out / "thesis").write_text("a file, not a folder")
    for name in ("notes", "thesis"):
        with pytest.raises(InputError, match="is not a result folder"):
            translator.translate_folder([tmp_path / "in" / f"{name}.png"], out, "b")
        with pytest.raises(InputError, match="is not a result folder"):
            translator.translate(tmp_path / "in" / f"{name}.png", "b").save(out / name)
    assert (out / "notes" / "mine.txt").read_text() == "keep me" and (out / "thesis").read_text().startswith("a")
    assert sorted(p.name for p in out.iterdir()) == ["notes", "thesis"]


def test_result_files_follow_the_umask(tmp_path: Path, translator) -> None:
    make_images(tmp_path / "in", ["a.png"])
    old = os.umask(0o022)
    try:
        translator.translate_folder([tmp_path / "in"], tmp_path / "out", "b", layout="folders")
    finally:
        os.umask(old)
    assert (tmp_path / "out" / "a").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out" / "a" / "strip.png").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "out" / "manifest.jsonl").stat().st_mode & 0o777 == 0o644


def test_keep_going_records_bad_files_and_goes_on(tmp_path: Path, translator) -> None:
    make_images(tmp_path / "in", ["a.png", "c.png"])
    (tmp_path / "in" / "b.png").write_text("not an image")
    good = (tmp_path / "in" / "a.png").read_bytes()
    (tmp_path / "in" / "d.png").write_bytes(good[: len(good) // 2])  # header fine, pixels cut
    out = tmp_path / "out"
    summary = translator.translate_folder([tmp_path / "in", tmp_path / "gone.png"], out, "a", layout="flat",
                                          keep_going=True)
    assert (summary.total, summary.done, summary.failed) == (5, 2, 3)
    status = {Path(r["input"]).name: r for r in manifest(out)}
    assert status["a.png"]["status"] == "ok" and status["c.png"]["status"] == "ok"
    for name, pattern in [("b.png", "not an image"), ("d.png", "truncated"), ("gone.png", "no such file")]:
        assert status[name]["status"] == "error" and pattern in status[name]["error"]
        assert "\n" not in status[name]["error"] and status[name]["outputs"] == []
    assert files_under(out) == {"manifest.jsonl", "in/a_a.png", "in/c_a.png"}  # common folder: tmp_path


def test_without_keep_going_a_decode_failure_stops_after_writing_what_is_done(tmp_path: Path, translator) -> None:
    make_images(tmp_path / "in", ["a.png", "b.png", "c.png"])
    good = (tmp_path / "in" / "b.png").read_bytes()
    (tmp_path / "in" / "b.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match="truncated"):
        translator.translate_folder([tmp_path / "in"], tmp_path / "out", "a", layout="flat", batch_size=1)
    assert [Path(r["input"]).name for r in manifest(tmp_path / "out")] == ["a.png"]


def test_resume_skips_what_is_done_and_redoes_the_rest(tmp_path: Path, translator, monkeypatch) -> None:
    make_images(tmp_path / "in", [f"i{k}.png" for k in range(4)])
    out = tmp_path / "out"
    translator.translate_folder([tmp_path / "in"], out, "b", layout="flat", seed=1)
    first = manifest(out)
    (out / "i2_b.png").unlink()  # an output lost: that input is redone
    with open(out / jobs.MANIFEST, "a") as handle:
        handle.write('{"input": "torn')  # what a kill in the middle of a line leaves
    calls: list[int] = []
    original = translator.backend.generate
    monkeypatch.setattr(translator.backend, "generate",
                        lambda image, style, masks=None: calls.append(len(image)) or original(image, style, masks))
    summary = translator.translate_folder([tmp_path / "in"], out, "b", layout="flat", seed=1, resume=True)
    assert (summary.done, summary.skipped) == (1, 3) and calls == [1]
    lines = manifest(out)
    assert len(lines) == 4 and {r["input"] for r in lines} == {r["input"] for r in first}
    # another seed is another job: nothing is skipped
    summary = translator.translate_folder([tmp_path / "in"], out, "b", layout="flat", seed=2, resume=True)
    assert summary.skipped == 0 and summary.done == 4


def test_resume_keeps_lines_of_inputs_not_named_again(tmp_path: Path, translator) -> None:
    a, b = make_images(tmp_path / "in", ["a.png", "b.png"])
    out = tmp_path / "out"
    translator.translate_folder([a, b], out, "b", layout="flat")
    translator.translate_folder([a], out, "b", layout="flat", resume=True)
    assert len(manifest(out)) == 2
    translator.translate_folder([b], out, "b", layout="flat")  # without resume: b redone, a's line kept
    lines = manifest(out)
    assert len(lines) == 2 and lines[-1]["input"] == str(b)



def test_a_job_into_a_folder_another_job_writes_is_refused_before_writing(tmp_path: Path, translator) -> None:
    a, b = make_images(tmp_path / "in", ["a.png", "b.png"])
    out = tmp_path / "out"
    translator.translate_folder([a], out, "b", layout="flat")
    before = {name: (out / name).read_bytes() for name in files_under(out)}
    with fileio.folder_lock(out):  # what a running job holds
        with pytest.raises(InputError, match="being written by another smoothgan job"):
            translator.translate_folder([a, b], out, "b", layout="flat")
        assert {name: (out / name).read_bytes() for name in files_under(out) - {fileio.LOCK_NAME}} == before
    translator.translate_folder([a, b], out, "b", layout="flat")  # once it ends, the folder is free again
    assert files_under(out) == {"manifest.jsonl", "a_b.png", "b_b.png"}


def test_a_plan_overtaken_by_another_job_is_refused(tmp_path: Path, translator) -> None:
    a, b = make_images(tmp_path / "in", ["a.png", "b.png"])
    out = tmp_path / "out"
    options = jobs.make_options(translator, "b")
    plan = jobs.plan_folder(translator, [a], out, options, layout="flat")
    translator.translate_folder([b], out, "b", layout="flat")  # finished between the plan and its run
    before = (out / jobs.MANIFEST).read_bytes()
    with pytest.raises(InputError, match="changed since this job was planned"):
        jobs.execute(translator, plan)
    assert (out / jobs.MANIFEST).read_bytes() == before and not (out / "a_b.png").exists()


# ---- argument validation (the library, so CLI and API agree) ----------------------------------------------------
@pytest.mark.parametrize("call, pattern", [
    (lambda t, x: t.translate(x, "a", seed=-5), "seed must be an integer from 0 to 4294967295, got -5"),
    (lambda t, x: t.translate(x, "a", seed=2**32), "seed must be"),
    (lambda t, x: t.translate(x, "a", seed=1.5), "seed must be"),
    (lambda t, x: t.translate(x, "a", num=0), "num must be an integer from 1 to 1000"),
    (lambda t, x: t.translate(x, "a", num=-1), "num must be"),
    (lambda t, x: t.translate(x, "a", num=1001), "num must be"),
    (lambda t, x: t.interpolate(x, "a", steps=1), "steps must be an integer from 2 to 1000"),
    (lambda t, x: t.interpolate(x, "a", steps=0), "steps must be"),
    (lambda t, x: t.interpolate(x, "a", steps=-3), "steps must be"),
    (lambda t, x: t.interpolate(x, "a", steps=10_000_000), "steps must be"),
    (lambda t, x: t.interpolate(x, "a", steps=3, mode="cubic"), "unknown interpolation mode"),
    (lambda t, x: t.interpolate(x, "a", steps=3, ref=[x, x]), "give one reference"),
    (lambda t, x: t.translate(x, "a", ref=x, num=3), "num applies to latent styles only"),
    (lambda t, x: t.translate(x, "a", max_batch=-1), "max_batch must be an integer from 1"),
    (lambda t, x: t.translate(x, "a", max_batch=0), "max_batch must be"),
    (lambda t, x: t.translate(x.astype(np.float32) / 255, "a"), "uint8 .* got float32 .*255"),
    (lambda t, x: t.translate(x[:, :, :2], "a"), "uint8 \\[H, W, 3\\]"),
    (lambda t, x: t.translate(x[0], "a"), "must be \\[H, W, 3\\]"),
    (lambda t, x: t.translate(x[None, None], "a"), "\\[H, W, 3\\] or \\[N, H, W, 3\\]"),
    (lambda t, x: t.translate([], "a"), "no input images given"),
    (lambda t, x: t.translate("/no/such.png", "a"), "no such file"),
    (lambda t, x: t.translate(x, "a", ref=[]), "no reference images"),
    (lambda t, x: t.translate(x, "zebra"), "unknown domain"),
    (lambda t, x: t.translate(7, "a"), "images must be paths, uint8 \\[H, W, 3\\] arrays or PIL images"),
    (lambda t, x: t.translate_folder([x], "/tmp/never", "a"), "inputs must be files, folders or glob patterns"),
    (lambda t, x: t.translate_folder([], "/tmp/never", "a"), "no inputs given"),
    (lambda t, x: t.translate_folder(["a.png"], "/tmp/never", "a", layout="grid"), "unknown layout 'grid'"),
    (lambda t, x: t.translate_folder(["a.png"], "/tmp/never", "a", fps=0), "fps must be positive"),
    (lambda t, x: list(t.iter_translate(7, "a")), "inputs must be paths, folders, globs or images"),
])
def test_bad_arguments_are_one_line_input_errors(call, pattern, translator) -> None:
    x = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    with pytest.raises(InputError, match=pattern) as info:
        call(translator, x)
    assert "\n" not in str(info.value)


def test_memory_limit_is_stated(translator, monkeypatch) -> None:
    monkeypatch.setattr("smoothgan.translator.memory_limit", lambda: 2**20)
    x = np.zeros((20, 24, 3), np.uint8)
    with pytest.raises(InputError, match=r"needs about .* GiB .* over the limit of 0.0 GiB"):
        translator.interpolate(x, "a", steps=1000)
    with pytest.raises(InputError, match="over the limit"):
        translator.translate_folder([], "/tmp/never", "a", steps=1000)


def test_loader_max_batch_is_checked(tiny_bundle) -> None:
    with pytest.raises(InputError, match="max_batch must be an integer from 1"):
        smoothgan.load(tiny_bundle.path, max_batch=0)
