"""Bad bundles and bad import targets: every case one line naming the file and key, nothing a user owns touched.

Three groups: ``smoothgan.json`` mutated key by key (wrong types, values, structure), ``weights.safetensors``
damaged or replaced (header, names, truncation, provenance through the sha256 cache), and ``--out`` targets that
are not a bundle (a file, a link, a folder of other things) for every writer (official import, training
checkpoint import, synthetic data). Permissions under umask 022 and 077 close the file.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import official_checkpoint, random_networks
from typer.testing import CliRunner

from smoothgan.bundle import CONFIG_FILE, WEIGHTS_FILE, ModelBundle, load_bundle, save_bundle
from smoothgan.cli import app
from smoothgan.config import get_preset
from smoothgan.errors import BundleError, InputError, SmoothganError
from smoothgan.fileio import atomic_dir, cached_sha256
from smoothgan.trainer import synth

TINY = get_preset("tiny")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash cache in a temporary folder, so tests neither read nor fill the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def one_line(exc: SmoothganError, *fragments: str) -> None:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text, text
    for fragment in fragments:
        assert fragment in text, text


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), to prove a failed call changed nothing."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def copy_of(tiny_bundle: ModelBundle, tmp_path: Path) -> Callable[[], Path]:
    def make() -> Path:
        target = tmp_path / "copy"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(tiny_bundle.path, target)
        return target

    return make


# ------------------------------------------------------------------------------------------- smoothgan.json
Mutation = Callable[[dict[str, Any]], Any]


class Replace:
    """A mutation result that replaces the whole document."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _set(path: str, value: Any) -> Mutation:
    def edit(meta: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = meta
        for key in parents:
            node = node[key]
        node[last] = value

    return edit


def _drop(path: str) -> Mutation:
    def edit(meta: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = meta
        for key in parents:
            node = node[key]
        del node[last]

    return edit


JSON_CASES: list[tuple[str, Mutation, str]] = [
    # the document and its marker
    ("not-an-object", lambda m: Replace([1, 2]), "not a smoothgan bundle description"),
    ("null-document", lambda m: Replace(None), "not a smoothgan bundle description"),
    ("string-document", lambda m: Replace("smoothgan-bundle"), "not a smoothgan bundle description"),
    ("format-missing", _drop("format"), "not a smoothgan bundle description"),
    ("format-other", _set("format", "onnx"), "not a smoothgan bundle description"),
    ("version-string", _set("format_version", "1"), "format version '1'"),
    ("version-bool", _set("format_version", True), "format version True"),
    ("version-future", _set("format_version", 99), "format version 99"),
    ("version-missing", _drop("format_version"), "format version None"),
    ("unknown-top-key", _set("colour", "blue"), "unknown keys colour"),
    ("smoothgan-version-int", _set("smoothgan_version", 1), "smoothgan_version must be a string"),
    ("config-missing", _drop("config"), "missing keys config"),
    ("domains-missing", _drop("domains"), "missing keys domains"),
    ("weights-missing", _drop("weights"), "missing keys weights"),
    # config
    ("config-null", _set("config", None), "config must be an object, got null"),
    ("config-list", _set("config", [32]), "config must be an object"),
    ("config-string", _set("config", "tiny"), "config must be an object"),
    ("img-size-string", _set("config.img_size", "32"), "config.img_size must be an integer, got a string ('32')"),
    ("img-size-bool", _set("config.img_size", True), "config.img_size must be an integer, got a boolean"),
    ("img-size-float", _set("config.img_size", 32.0), "config.img_size must be an integer"),
    ("img-size-null", _set("config.img_size", None), "config.img_size must be an integer, got null"),
    ("img-size-negative", _set("config.img_size", -32), "img_size must be a power of two"),
    ("img-size-not-power", _set("config.img_size", 48), "power of two"),
    ("img-size-huge", _set("config.img_size", 2**40), "img_size must be <= 1024"),
    ("img-size-enormous", _set("config.img_size", 10**400), "img_size must be <= 1024"),
    ("num-domains-zero", _set("config.num_domains", 0), "num_domains must be >= 1"),
    ("num-domains-huge", _set("config.num_domains", 10**6), "num_domains must be <= 1000"),
    ("style-dim-negative", _set("config.style_dim", -1), "style_dim must be >= 1"),
    ("latent-dim-list", _set("config.latent_dim", [8]), "config.latent_dim must be an integer, got a list"),
    ("mapping-dim-huge", _set("config.mapping_dim", 10**9), "mapping_dim must be <= 8192"),
    ("base-dim-negative", _set("config.base_dim", -8), "base_dim must be >= 0"),
    ("w-hpf-string", _set("config.w_hpf", "1"), "config.w_hpf must be a number"),
    ("w-hpf-bool", _set("config.w_hpf", False), "config.w_hpf must be a number, got a boolean"),
    ("w-hpf-negative", _set("config.w_hpf", -1.0), "w_hpf must be >= 0"),
    ("w-hpf-huge", _set("config.w_hpf", 1e300), "w_hpf must be <= 100"),
    ("config-unknown-key", _set("config.colour", "blue"), "config: unknown keys colour"),
    # domains
    ("domains-ints", _set("domains", [1, 2]), "domains[0] must be a string, got a number (1)"),
    ("domains-string", _set("domains", "ab"), "domains must be a list of domain names"),
    ("domains-null", _set("domains", None), "domains must be a list of domain names, got null"),
    ("domains-duplicate", _set("domains", ["a", "a"]), "domain names must be unique; repeated: a"),
    ("domains-too-few", _set("domains", ["a"]), "1 domain names for 2 domains"),
    ("domains-too-many", _set("domains", ["a", "b", "c"]), "3 domain names for 2 domains"),
    ("domains-empty-name", _set("domains", ["a", ""]), "domain names must be non-empty"),
    ("domains-comma", _set("domains", ["a,b", "c"]), "without commas"),
    ("domains-nested", _set("domains", [["a"], "b"]), "domains[0] must be a string, got a list"),
    # preprocessing
    ("preprocessing-null", _set("preprocessing", None), "preprocessing must be an object, got null"),
    ("preprocessing-string", _set("preprocessing", "crop"), "preprocessing must be an object"),
    ("fit-unknown", _set("preprocessing.fit", "zoom"), "preprocessing: fit must be one of crop, stretch"),
    ("fit-int", _set("preprocessing.fit", 1), "preprocessing.fit must be a string"),
    ("range-other", _set("preprocessing.range", [0.0, 1.0]), "range must be [-1.0, 1.0]"),
    ("range-short", _set("preprocessing.range", [-1.0]), "preprocessing.range must be a list of 2"),
    ("resample-other", _set("preprocessing.resample", "nearest"), "resample must be 'bilinear-antialias'"),
    ("preprocessing-unknown", _set("preprocessing.gamma", 2.2), "preprocessing: unknown keys gamma"),
    # weights table
    ("weights-string", _set("weights", "weights.safetensors"), "weights must be an object, got a string"),
    ("weights-null", _set("weights", None), "weights must be an object, got null"),
    ("weights-list", _set("weights", []), "weights must be an object, got a list"),
    ("weights-file-other", _set("weights.file", "../x.bin"), "file must be 'weights.safetensors'"),
    ("weights-sha-short", _set("weights.sha256", "abc"), "sha256 must be 64 lowercase hex digits"),
    ("weights-sha-int", _set("weights.sha256", 123), "weights.sha256 must be a string"),
    ("weights-sha-missing", _drop("weights.sha256"), "weights: missing keys sha256"),
    ("weights-dtype", _set("weights.dtype", "int8"), "dtype must be one of float32, float16"),
    ("weights-unknown", _set("weights.bits", 32), "weights: unknown keys bits"),
    # provenance and artefact records
    ("provenance-null", _set("provenance", None), "provenance must be an object, got null"),
    ("provenance-list", _set("provenance", ["x"]), "provenance must be an object"),
    ("provenance-name-int", _set("provenance.name", 5), "provenance.name must be a string"),
    ("provenance-notes-string", _set("provenance.notes", "hi"), "provenance.notes must be a list"),
    ("provenance-notes-ints", _set("provenance.notes", [1]), "provenance.notes[0] must be a string"),
    ("artifacts-list", _set("artifacts", []), "artifacts must be an object of artefact kinds"),
    ("artifacts-kind-list", _set("artifacts", {"onnx": []}), "artifacts.onnx must be an object of artefact records"),
    ("artifacts-record-string", _set("artifacts", {"onnx": {"generator-fp32": "onnx/g.onnx"}}),
     "artifacts.onnx.generator-fp32 must be an object"),
    ("artifacts-path-escapes", _set("artifacts", {"onnx": {"g": {"path": "../../etc/passwd"}}}),
     "must be a relative path inside the bundle"),
    ("artifacts-path-absolute", _set("artifacts", {"onnx": {"g": {"path": "/etc/passwd"}}}),
     "must be a relative path inside the bundle"),
    ("artifacts-path-int", _set("artifacts", {"onnx": {"g": {"path": 5}}}), "artifacts.onnx.g.path must be a string"),
]


@pytest.mark.parametrize("mutate,expected", [c[1:] for c in JSON_CASES], ids=[c[0] for c in JSON_CASES])
def test_mutated_bundle_json_is_one_clear_error(copy_of: Callable[[], Path], mutate: Mutation, expected: str) -> None:
    root = copy_of()
    meta = json.loads((root / CONFIG_FILE).read_text())
    changed = mutate(meta)
    (root / CONFIG_FILE).write_text(json.dumps(changed.value if isinstance(changed, Replace) else meta))
    before = snapshot(root)
    with pytest.raises(BundleError) as caught:
        load_bundle(root)
    one_line(caught.value, expected)
    if "format" not in expected:
        one_line(caught.value, str(root / CONFIG_FILE))
    assert snapshot(root) == before


RAW_CASES: list[tuple[str, Callable[[str], bytes], str]] = [
    ("not-utf8", lambda text: text.encode("utf-16"), "is not UTF-8 text"),
    ("latin1-byte", lambda text: text.replace('"a"', '"\xe9"').encode("latin-1"), "is not UTF-8 text (byte 0xe9"),
    ("truncated-json", lambda text: text[: len(text) // 2].encode(), "is not valid JSON"),
    ("empty", lambda text: b"", "is not valid JSON"),
    ("nan", lambda text: text.replace('"w_hpf": 0.0', '"w_hpf": NaN').encode(), "NaN is not a number JSON allows"),
    ("infinity", lambda text: text.replace('"w_hpf": 0.0', '"w_hpf": Infinity').encode(), "Infinity is not a number"),
    ("duplicate-key", lambda text: text.replace('"img_size": 32', '"img_size": 32, "img_size": 64').encode(),
     "duplicate key 'img_size'"),
    ("deep-nesting", lambda text: text.replace('"artifacts": {}', '"artifacts": ' + "[" * 100000 + "]" * 100000)
     .encode(), "is not valid JSON"),
]


@pytest.mark.parametrize("damage,expected", [c[1:] for c in RAW_CASES], ids=[c[0] for c in RAW_CASES])
def test_undecodable_bundle_json_is_one_clear_error(copy_of: Callable[[], Path], damage: Callable[[str], bytes],
                                                    expected: str) -> None:
    root = copy_of()
    text = json.dumps(json.loads((root / CONFIG_FILE).read_text()), indent=2)
    (root / CONFIG_FILE).write_bytes(damage(text))
    with pytest.raises(BundleError) as caught:
        load_bundle(root)
    one_line(caught.value, expected, str(root / CONFIG_FILE))


# ------------------------------------------------------------------------------------------- weights file
def _header(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + length]), raw[8 + length:]


def _write_header(path: Path, header: dict[str, Any], data: bytes) -> None:
    blob = json.dumps(header).encode()
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + data)


def _rename_tensor(old: str, new: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        header, data = _header(path)
        header[new] = header.pop(old)
        _write_header(path, header, data)

    return damage


def _drop_module(module: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        header, data = _header(path)
        _write_header(path, {k: v for k, v in header.items() if not k.startswith(module + ".")}, data)

    return damage


WEIGHT_CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("missing", lambda p: p.unlink(), "has no weights.safetensors"),
    ("a-folder", lambda p: (p.unlink(), p.mkdir()), "has no weights.safetensors"),
    ("empty", lambda p: p.write_bytes(b""), "is not a safetensors file"),
    ("short", lambda p: p.write_bytes(b"\x01\x02"), "is not a safetensors file"),
    ("huge-header-length", lambda p: p.write_bytes((1 << 62).to_bytes(8, "little") + b"{}"),
     "is not a safetensors file"),
    ("header-not-json", lambda p: p.write_bytes((4).to_bytes(8, "little") + b"\xff\xfe{}"), "header is not JSON"),
    ("header-list", lambda p: _write_header(p, [], b""), "header is not an object"),  # type: ignore[arg-type]
    ("truncated", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "is truncated"),
    ("bad-offsets", lambda p: _write_header(p, {"generator.x": {"dtype": "F32", "shape": [1], "data_offsets": "x"}},
                                            b""), "malformed header entry"),
    ("key-without-dot", _rename_tensor("generator.from_rgb.weight", "from_rgb_weight"),
     "tensor 'from_rgb_weight' is not named <network>.<parameter>"),
    ("unknown-network", _rename_tensor("generator.from_rgb.weight", "critic.from_rgb.weight"),
     "tensor 'critic.from_rgb.weight'"),
    ("no-generator", _drop_module("generator"), "has no weights for generator"),
    ("no-style-encoder", _drop_module("style_encoder"), "has no weights for style_encoder"),
]


@pytest.mark.parametrize("damage,expected", [c[1:] for c in WEIGHT_CASES], ids=[c[0] for c in WEIGHT_CASES])
def test_damaged_weights_are_one_clear_error(copy_of: Callable[[], Path], damage: Callable[[Path], None],
                                             expected: str) -> None:
    root = copy_of()
    damage(root / WEIGHTS_FILE)
    with pytest.raises(BundleError) as caught:
        load_bundle(root)
    one_line(caught.value, expected)


def test_hpf_bundle_without_fan_weights_is_refused(tiny_hpf_bundle: ModelBundle, tmp_path: Path) -> None:
    root = tmp_path / "hpf"
    shutil.copytree(tiny_hpf_bundle.path, root)
    _drop_module("fan")(root / WEIGHTS_FILE)
    with pytest.raises(BundleError) as caught:
        load_bundle(root)
    one_line(caught.value, "has no weights for fan")


def test_replaced_weights_are_refused_with_the_rebuild_commands(copy_of: Callable[[], Path], tmp_path: Path) -> None:
    root = copy_of()
    other = save_bundle(tmp_path / "other", random_networks(TINY.config, seed=5), TINY.config, TINY.domains)
    shutil.copyfile(other.weights_path, root / WEIGHTS_FILE)
    with pytest.raises(BundleError) as caught:
        load_bundle(root)
    one_line(caught.value, str(root / WEIGHTS_FILE), "smoothgan import", "smoothgan export")
    assert load_bundle(root, verify=False).weights_sha256 != other.weights_sha256  # the recorded one, unchecked


def test_in_place_edit_with_the_old_mtime_is_still_caught(copy_of: Callable[[], Path]) -> None:
    """The cache is keyed by (device, inode, size, mtime, ctime): restoring the mtime does not fool it."""
    root = copy_of()
    weights = root / WEIGHTS_FILE
    old = weights.stat()
    os.utime(weights, ns=(old.st_atime_ns - 10**10, old.st_mtime_ns - 10**10))  # old enough to be cached
    assert load_bundle(root).weights_sha256 == cached_sha256(weights)  # now cached
    before = weights.stat()
    with open(weights, "r+b") as handle:  # flip one byte of tensor data, same size, same inode
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 0xFF]))
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(BundleError, match="is not the file this bundle was made with"):
        load_bundle(root)


def test_a_replacement_killed_between_its_renames_is_restored_on_load(copy_of: Callable[[], Path]) -> None:
    root = copy_of()
    aside = root.parent / f".{root.name}.999999999.old-abc123"  # a PID that cannot run
    os.replace(root, aside)
    assert load_bundle(root).path == root and not aside.exists()


# ------------------------------------------------------------------------------------------- import targets
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An official-format checkpoint and a training checkpoint (tiny preset)."""
    from smoothgan.trainer.checkpoint import capture_rng, save_checkpoint
    from smoothgan.trainer.options import TrainOptions

    root = tmp_path_factory.mktemp("ckpts")
    official = official_checkpoint(root / "tiny_nets_ema.ckpt", random_networks(TINY.config, seed=3))
    options = TrainOptions(data=str(root / "data"), model="tiny", domains=("a", "b"), preset="tiny")
    nets = random_networks(TINY.config, seed=4)
    training = save_checkpoint(root / "run" / "checkpoints", 10, options, nets, nets, {}, [capture_rng()], {})
    return {"official": official, "training": training}


def _target_file(out: Path) -> None:
    out.write_text("my thesis")


def _target_folder(out: Path) -> None:
    out.mkdir()
    (out / "thesis.txt").write_text("my thesis")


def _target_link(out: Path) -> None:
    real = out.parent / "real-bundle"
    if not real.exists():
        save_bundle(real, random_networks(TINY.config), TINY.config, TINY.domains)
    out.symlink_to(real, target_is_directory=True)


def _target_bundle_plus_file(out: Path) -> None:
    save_bundle(out, random_networks(TINY.config), TINY.config, TINY.domains)
    (out / "thesis.txt").write_text("my thesis")


def _target_other_json(out: Path) -> None:
    out.mkdir()
    (out / CONFIG_FILE).write_text(json.dumps({"format": "something-else", "format_version": 1}))
    (out / "data.bin").write_bytes(b"\x00" * 10)


def _target_broken_json(out: Path) -> None:
    out.mkdir()
    (out / CONFIG_FILE).write_text("{ not json")


def _target_json_link(out: Path) -> None:
    bundle = save_bundle(out.parent / "elsewhere", random_networks(TINY.config), TINY.config, TINY.domains)
    out.mkdir()
    (out / CONFIG_FILE).symlink_to(bundle.path / CONFIG_FILE)


def _target_dangling_link(out: Path) -> None:
    out.symlink_to(out.parent / "nowhere")


def _target_under_a_file(out: Path) -> Path:
    out.write_text("my thesis")
    return out / "bundle"


TARGETS: list[tuple[str, Callable[[Path], Any], str]] = [
    ("a-file", _target_file, "exists and is not a folder"),
    ("a-folder-of-other-files", _target_folder, "is not a smoothgan bundle"),
    ("a-link-to-a-bundle", _target_link, "is a symbolic link"),
    ("a-dangling-link", _target_dangling_link, "is a symbolic link"),
    ("a-bundle-holding-user-files", _target_bundle_plus_file, "holds files that are not part of a bundle (thesis.txt)"),
    ("other-json-format", _target_other_json, "is not a smoothgan bundle"),
    ("broken-json", _target_broken_json, "is not a smoothgan bundle"),
    ("marker-is-a-link", _target_json_link, "is not a smoothgan bundle"),
    ("inside-a-file", _target_under_a_file, "is not a folder"),
]


def _state(parent: Path) -> dict[str, Any]:
    """Names, link targets and file bytes under ``parent`` (links not followed)."""
    found: dict[str, Any] = {}
    for path in sorted(parent.rglob("*")):
        key = path.relative_to(parent).as_posix()
        if path.is_symlink():
            found[key] = ("link", os.readlink(path))
        elif path.is_file():
            found[key] = path.read_bytes()
        else:
            found[key] = "dir"
    return found


@pytest.mark.parametrize("source", ["official", "training"])
@pytest.mark.parametrize("make,expected", [t[1:] for t in TARGETS], ids=[t[0] for t in TARGETS])
def test_import_overwrite_never_replaces_what_is_not_a_bundle(checkpoints: dict[str, Path], tmp_path: Path,
                                                              source: str, make: Callable[[Path], Any],
                                                              expected: str) -> None:
    out = make(tmp_path / "out") or tmp_path / "out"
    before = _state(tmp_path)
    args = ["import", str(checkpoints[source]), "--out", str(out), "--overwrite"]
    if source == "official":
        args += ["--domains", "a,b"]
    result = runner.invoke(app, args)
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], result.output
    assert _state(tmp_path) == before  # nothing touched, no staging left behind


@pytest.mark.parametrize("source", ["official", "training"])
def test_import_replaces_a_bundle_only_with_overwrite_and_atomically(checkpoints: dict[str, Path], tmp_path: Path,
                                                                     source: str) -> None:
    out = tmp_path / "out"
    old = save_bundle(out, random_networks(TINY.config, seed=9), TINY.config, TINY.domains)
    (out / "onnx").mkdir()
    (out / "onnx" / "generator-fp32.onnx").write_bytes(b"stale graph")
    args = ["import", str(checkpoints[source]), "--out", str(out)] + (
        ["--domains", "a,b"] if source == "official" else [])
    refused = runner.invoke(app, args)
    assert refused.exit_code != 0 and "already exists" in refused.output
    assert load_bundle(out).weights_sha256 == old.weights_sha256
    done = runner.invoke(app, args + ["--overwrite"])
    assert done.exit_code == 0, done.output
    new = load_bundle(out)
    assert new.weights_sha256 != old.weights_sha256 and not (out / "onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old one removed, no staging left


def test_an_empty_folder_is_a_fine_target(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    result = runner.invoke(app, ["import", str(checkpoints["official"]), "--domains", "a,b", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_bundle(out).domains == ("a", "b")


@pytest.mark.parametrize("make,expected", [t[1:] for t in TARGETS[:5]], ids=[t[0] for t in TARGETS[:5]])
def test_synthetic_data_never_replaces_user_files(tmp_path: Path, make: Callable[[Path], None], expected: str) -> None:
    out = tmp_path / "out"
    make(out)
    before = _state(tmp_path)
    with pytest.raises(InputError) as caught:
        synth.generate(out, num_per_domain=2, img_size=16, overwrite=True)
    one_line(caught.value)
    assert _state(tmp_path) == before


def test_synthetic_data_with_an_added_image_is_not_replaced(tmp_path: Path) -> None:
    root = synth.generate(tmp_path / "s", num_per_domain=2, img_size=16, val_fraction=0.0)
    (root / "train" / "circle" / "my-drawing.png").write_bytes(b"png")
    with pytest.raises(InputError, match="did not write .train/circle/my-drawing.png"):
        synth.generate(root, num_per_domain=3, img_size=16, overwrite=True)
    assert (root / "train" / "circle" / "my-drawing.png").read_bytes() == b"png"


def test_a_failed_write_leaves_the_old_bundle_and_no_staging(tiny_bundle: ModelBundle, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "b"
    shutil.copytree(tiny_bundle.path, out)
    before = snapshot(out)
    import safetensors.torch

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(OSError):
        save_bundle(out, random_networks(TINY.config), TINY.config, TINY.domains, overwrite=True)
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["b"]


# ------------------------------------------------------------------------------------------- permissions
@pytest.mark.parametrize("umask,dir_mode,file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600),
                                                      (0o002, 0o775, 0o664)])
def test_written_files_follow_the_umask(tmp_path: Path, umask: int, dir_mode: int, file_mode: int) -> None:
    from smoothgan.trainer.checkpoint import capture_rng, save_checkpoint
    from smoothgan.trainer.options import TrainOptions

    old = os.umask(umask)
    try:
        nets = random_networks(TINY.config)
        bundle = save_bundle(tmp_path / "bundle", nets, TINY.config, TINY.domains)
        bundle.record_artifact("onnx", "x", {"path": "onnx/x.onnx"})  # rewrites smoothgan.json in place
        options = TrainOptions(data=str(tmp_path), model="tiny", domains=("a", "b"))
        ckpt = save_checkpoint(tmp_path / "ckpts", 1, options, nets, nets, {}, [capture_rng()], {})
        data = synth.generate(tmp_path / "data", num_per_domain=1, img_size=8, val_fraction=0.0)
        with atomic_dir(tmp_path / "plain") as staging:
            (staging / "f").write_text("x")
    finally:
        os.umask(old)
    for root in (bundle.path, ckpt, data, tmp_path / "plain"):
        assert stat.S_IMODE(root.stat().st_mode) == dir_mode, root
        for path in root.rglob("*"):
            want = dir_mode if path.is_dir() else file_mode
            assert stat.S_IMODE(path.stat().st_mode) == want, path


def test_save_bundle_refuses_bad_domain_names_before_writing(tmp_path: Path) -> None:
    for domains, expected in [(("a", "a"), "repeated: a"), (("a",), "1 domain names for 2"), (("a", ""), "non-empty"),
                              (("a", 3), "must be a string")]:
        with pytest.raises(InputError) as caught:
            save_bundle(tmp_path / "b", random_networks(TINY.config), TINY.config, domains)  # type: ignore[arg-type]
        one_line(caught.value, expected)
    assert list(tmp_path.iterdir()) == []


def test_bundle_errors_are_the_cli_one_liner(copy_of: Callable[[], Path]) -> None:
    root = copy_of()
    meta = json.loads((root / CONFIG_FILE).read_text())
    meta["config"]["img_size"] = "32"
    (root / CONFIG_FILE).write_text(json.dumps(meta))
    result = runner.invoke(app, ["info", str(root)])
    assert result.exit_code == BundleError.exit_code
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: {root / CONFIG_FILE}: config.img_size must be an integer, got a string ('32')"]


def test_graphs_of_replaced_weights_never_run(tmp_path: Path, photo: Path) -> None:
    """The demo bundle ships ONNX graphs stamped with its weights' sha256: after the weights are swapped, translate
    refuses (one line, the rebuild commands) instead of running the old graphs and writing a wrong sidecar."""
    pytest.importorskip("onnxruntime")
    from safetensors.numpy import load_file, save_file

    from smoothgan.bundle import EMBEDDED_BUNDLE

    copy = tmp_path / "demo"
    shutil.copytree(EMBEDDED_BUNDLE, copy)
    arrays = load_file(str(copy / WEIGHTS_FILE))
    arrays = {k: (v * 1.01).astype(v.dtype) if v.dtype.kind == "f" else v for k, v in arrays.items()}
    save_file(arrays, str(copy / WEIGHTS_FILE))
    out = tmp_path / "out"
    domain = load_bundle(EMBEDDED_BUNDLE).domains[1]
    result = runner.invoke(app, ["translate", str(photo), "--domain", domain, "--model", str(copy), "--backend",
                                 "onnxruntime", "--out", str(out)])
    assert result.exit_code == BundleError.exit_code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "is not the file this bundle was made with" in lines[0], result.output
    assert "smoothgan export" in lines[0] and not out.exists()
