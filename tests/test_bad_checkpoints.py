"""Bad checkpoints: every unreadable, malformed or malicious file is one line in our words, and nothing runs.

Official-format files (``*_nets_ema.ckpt``, ``wing.ckpt``) go through ``torch.load(weights_only=True)``; the
message never repeats torch's advice to load unsafely and names the globals a refused pickle wanted to call.
Training checkpoints (folders) are checked through their marker and safetensors files. The CLI turns each into
``error: ...`` on one line, a non-zero exit and no output folder.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import official_checkpoint, random_networks
from typer.testing import CliRunner

from smoothgan.cli import app
from smoothgan.config import get_preset
from smoothgan.errors import CheckpointError, SmoothganError
from smoothgan.models import checkpoints as ckpt_mod
from smoothgan.models.checkpoints import import_official, load_torch_file, read_wing

TINY = get_preset("tiny")
TINY_HPF = get_preset("tiny-hpf")
runner = CliRunner()
PWNED = "smoothgan-pwned-marker"


def one_line(exc: SmoothganError, *fragments: str) -> None:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text, text
    assert "weights_only" not in text and "trusted source" not in text, text  # never torch's unsafe advice
    for fragment in fragments:
        assert fragment in text, text


class _Call:
    """A pickle that calls ``func(*args)`` when loaded: what a malicious checkpoint does."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A valid tiny official checkpoint, its raw bytes and its loaded dict."""
    path = official_checkpoint(tmp_path_factory.mktemp("good") / "tiny.ckpt", random_networks(TINY.config))
    return {"path": path, "bytes": path.read_bytes(), "data": torch.load(path, weights_only=True)}


def _torch(obj: Any, **kwargs: Any) -> Callable[[Path, dict[str, Any]], None]:
    return lambda path, good: torch.save(obj(good) if callable(obj) else obj, path, **kwargs)


def _pickle(obj: Any, protocol: int) -> Callable[[Path, dict[str, Any]], None]:
    return lambda path, good: path.write_bytes(pickle.dumps(obj(good) if callable(obj) else obj, protocol=protocol))


def _bytes(make: Callable[[bytes], bytes]) -> Callable[[Path, dict[str, Any]], None]:
    return lambda path, good: path.write_bytes(make(good["bytes"]))


def _edited(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path, dict[str, Any]], None]:
    def write(path: Path, good: dict[str, Any]) -> None:
        data = {name: dict(state) for name, state in good["data"].items()}
        edit(data)
        torch.save(data, path)

    return write


def _zip_without_pickle(path: Path, good: dict[str, Any]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/version", "3")


def _plain_zip(path: Path, good: dict[str, Any]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")


def _evil(tmp: Path) -> _Call:
    return _Call(os.system, f"touch {tmp / PWNED}")


FILE_CASES: list[tuple[str, Callable[[Path, dict[str, Any]], None], str]] = [
    # not a checkpoint at all
    ("text", lambda p, g: p.write_text("hello, I am a text file\n"), "not a PyTorch checkpoint"),
    ("empty", lambda p, g: p.write_bytes(b""), "the file is empty, not a PyTorch checkpoint"),
    ("json", lambda p, g: p.write_text(json.dumps({"generator": {}})), "not a PyTorch checkpoint"),
    ("png-bytes", lambda p, g: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64), "not a PyTorch checkpoint"),
    ("one-byte", lambda p, g: p.write_bytes(b"\x80"), "truncated or corrupt PyTorch checkpoint"),
    ("pickle-garbage", lambda p, g: p.write_bytes(b"\x80\x02" + os.urandom(64)), "cannot read checkpoint"),
    ("zip-magic-garbage", lambda p, g: p.write_bytes(b"PK\x03\x04" + b"\x00" * 100),
     "truncated or corrupt PyTorch zip archive"),
    ("plain-zip", _plain_zip, "a zip archive, but not a PyTorch checkpoint"),
    ("zip-without-pickle", _zip_without_pickle, "not a PyTorch checkpoint"),
    # truncated and damaged real checkpoints
    ("truncated-10", _bytes(lambda b: b[: len(b) // 10]), "truncated or corrupt PyTorch zip archive"),
    ("truncated-50", _bytes(lambda b: b[: len(b) // 2]), "truncated or corrupt PyTorch zip archive"),
    ("truncated-99", _bytes(lambda b: b[:-200]), "truncated or corrupt PyTorch zip archive"),
    ("tail-zeroed", _bytes(lambda b: b[:-1000] + b"\x00" * 1000), "truncated or corrupt PyTorch zip archive"),
    # malicious pickles: refused, named, nothing runs
    ("evil-legacy-proto2", lambda p, g: p.write_bytes(pickle.dumps({"generator": _evil(p.parent)}, protocol=2)),
     "refused: the file contains code (posix.system)"),
    ("evil-legacy-proto4", lambda p, g: p.write_bytes(pickle.dumps({"generator": _evil(p.parent)}, protocol=4)),
     "refused: the file contains code (posix.system)"),
    ("evil-zip", lambda p, g: torch.save({"generator": _evil(p.parent)}, p),
     "refused: the file contains code (posix.system)"),
    ("evil-nested-in-state", lambda p, g: torch.save({**g["data"], "fan": {"x": _evil(p.parent)}}, p),
     "refused: the file contains code (posix.system)"),
    ("evil-eval", lambda p, g: torch.save({"generator": _Call(eval, "1+1")}, p),
     "refused: the file contains code (builtins.eval)"),
    ("evil-exec-legacy", lambda p, g: p.write_bytes(pickle.dumps(_Call(exec, "x=1"), protocol=2)),
     "refused: the file contains code (builtins.exec)"),
    ("evil-getattr", lambda p, g: torch.save(_Call(getattr, "text", "upper"), p),
     "refused: the file contains code (builtins.getattr)"),
    ("arbitrary-object", lambda p, g: p.write_bytes(pickle.dumps({"generator": Path("/etc")}, protocol=4)),
     "refused: the file contains code (pathlib.PosixPath)"),
    # a PyTorch file, but not a StarGAN v2 checkpoint
    ("a-list", _torch([1, 2, 3]), "not an official StarGAN v2 checkpoint"),
    ("an-int", _torch(7), "not an official StarGAN v2 checkpoint"),
    ("none", _torch(None), "not an official StarGAN v2 checkpoint"),
    ("a-tensor", _torch(torch.zeros(3)), "not an official StarGAN v2 checkpoint"),
    ("int-keys-top", _torch({1: 2, 3: 4}), "not an official StarGAN v2 checkpoint"),
    ("empty-dict", _torch({}), "found nothing"),
    ("modules-are-lists", _torch({"generator": [], "mapping_network": [], "style_encoder": []}),
     "not an official StarGAN v2 checkpoint"),
    ("missing-style-encoder", _edited(lambda d: d.pop("style_encoder")), "expected entries generator"),
    ("int-keys-in-state", _edited(lambda d: d.update(generator={1: torch.zeros(1)})),
     "generator has a non-string key 1 (int)"),
    ("tuple-key-in-state", _edited(lambda d: d["mapping_network"].update({(1, 2): torch.zeros(1)})),
     "mapping_network has a non-string key (1, 2)"),
    ("list-value", _edited(lambda d: d["generator"].update({"from_rgb.weight": [1.0, 2.0]})),
     "generator entry 'from_rgb.weight' is a list, not a tensor"),
    ("nested-dict-value", _edited(lambda d: d["style_encoder"].update({"shared": {"0": torch.zeros(1)}})),
     "style_encoder entry 'shared' is a dict, not a tensor"),
    ("string-value", _edited(lambda d: d["generator"].update({"from_rgb.bias": "zeros"})),
     "is a str, not a tensor"),
    ("none-value", _edited(lambda d: d["generator"].update({"from_rgb.bias": None})), "is a NoneType, not a tensor"),
    ("bad-group-index", _edited(lambda d: d["mapping_network"].update({"unshared.x.weight": torch.zeros(1)})),
     "key names or shapes do not fit"),
    ("scalar-shapes", _edited(lambda d: d["mapping_network"].update({"shared.0.weight": torch.tensor(1.0)})),
     "not a StarGAN v2 checkpoint"),
    ("no-unshared", _edited(lambda d: d.update(mapping_network={})), "not a StarGAN v2 checkpoint"),
    ("too-many-encoder-blocks",
     _edited(lambda d: d["style_encoder"].update({f"shared.{i}.w": torch.zeros(1) for i in range(40)})),
     "a style encoder with"),
    ("missing-tensor", _edited(lambda d: d["generator"].pop("to_rgb.2.bias")), "generator: missing to_rgb.2.bias"),
    ("misshaped-tensor", _edited(lambda d: d["generator"].update({"to_rgb.2.bias": torch.zeros(5)})),
     "wrong shape to_rgb.2.bias"),
]


@pytest.mark.parametrize("write,expected", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_bad_checkpoint_files_are_one_line(good: dict[str, Any], tmp_path: Path,
                                           write: Callable[[Path, dict[str, Any]], None], expected: str) -> None:
    path = tmp_path / "bad.ckpt"
    write(path, good)
    with pytest.raises(CheckpointError) as caught:
        import_official(path)
    one_line(caught.value, expected)
    assert not (tmp_path / PWNED).exists()


HPF_CASES: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("filter-wrong-shape", lambda d: d["generator"].update({"hpf.filter": torch.zeros(2)}),
     "hpf.filter has shape (2,)"),
    ("filter-zero", lambda d: d["generator"].update({"hpf.filter": torch.zeros(3, 3)}), "w_hpf must be a finite"),
    ("filter-negative", lambda d: d["generator"].update({"hpf.filter": -d["generator"]["hpf.filter"]}),
     "w_hpf must be >= 0"),
    ("filter-int", lambda d: d["generator"].update({"hpf.filter": torch.ones(3, 3, dtype=torch.int64)}),
     "not the 3x3 high-pass kernel"),
    ("no-fan-no-wing", lambda d: d.pop("fan"), "pass --wing wing.ckpt"),
    ("fan-int-keys", lambda d: d.update(fan={0: torch.zeros(1)}), "fan has a non-string key 0"),
]


@pytest.fixture(scope="module")
def good_hpf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = official_checkpoint(tmp_path_factory.mktemp("hpf") / "hpf.ckpt", random_networks(TINY_HPF.config))
    return {"path": path, "data": torch.load(path, weights_only=True)}


@pytest.mark.parametrize("edit,expected", [c[1:] for c in HPF_CASES], ids=[c[0] for c in HPF_CASES])
def test_bad_hpf_checkpoints_are_one_line(good_hpf: dict[str, Any], tmp_path: Path,
                                          edit: Callable[[dict[str, Any]], Any], expected: str) -> None:
    data = {name: dict(state) for name, state in good_hpf["data"].items()}
    edit(data)
    torch.save(data, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError) as caught:
        import_official(tmp_path / "bad.ckpt")
    one_line(caught.value, expected)


WING_CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("text", lambda p: p.write_text("wing"), "not a PyTorch checkpoint"),
    ("no-state-dict", lambda p: torch.save({"weights": {}}, p), "is not a wing.ckpt"),
    ("state-dict-list", lambda p: torch.save({"state_dict": [1]}, p), "is not a wing.ckpt"),
    ("int-keys", lambda p: torch.save({"state_dict": {5: torch.zeros(1)}}, p), "state_dict has a non-string key 5"),
    ("evil", lambda p: torch.save({"state_dict": _evil(p.parent)}, p), "refused: the file contains code (posix.system)"),
    ("wrong-network", lambda p: torch.save({"state_dict": {"conv.weight": torch.zeros(1)}}, p), "fan: missing"),
]


@pytest.mark.parametrize("write,expected", [c[1:] for c in WING_CASES], ids=[c[0] for c in WING_CASES])
def test_bad_wing_files_are_one_line(good_hpf: dict[str, Any], tmp_path: Path, write: Callable[[Path], None],
                                     expected: str) -> None:
    data = {name: dict(state) for name, state in good_hpf["data"].items() if name != "fan"}
    torch.save(data, tmp_path / "nofan.ckpt")
    wing = tmp_path / "wing.ckpt"
    write(wing)
    with pytest.raises(CheckpointError) as caught:
        import_official(tmp_path / "nofan.ckpt", wing=wing)
    one_line(caught.value, expected)
    assert not (tmp_path / PWNED).exists()


def test_paths_that_are_not_readable_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "folder.ckpt"
    folder.mkdir()
    cases = [
        (tmp_path / "missing.ckpt", "checkpoint not found"),
        (folder, "it is a folder, not a checkpoint file"),
        (tmp_path / ("x" * 300 + ".ckpt"), "file name too long"),
        (tmp_path / "missing-dir" / "a.ckpt", "checkpoint not found"),
    ]
    fifo = tmp_path / "fifo.ckpt"
    os.mkfifo(fifo)
    cases.append((fifo, "not a regular file"))
    for path, expected in cases:
        with pytest.raises(CheckpointError) as caught:
            load_torch_file(path)
        one_line(caught.value, expected)
    locked = tmp_path / "locked.ckpt"
    locked.write_bytes(b"PK\x03\x04")

    def denied(*args: Any, **kwargs: Any) -> io.BufferedReader:
        raise PermissionError(13, "Permission denied", str(locked))

    monkeypatch.setattr(ckpt_mod, "open", denied, raising=False)  # root can read anything: simulate the refusal
    with pytest.raises(CheckpointError) as caught:
        load_torch_file(locked)
    one_line(caught.value, "permission denied")


def test_a_legacy_checkpoint_still_loads(good: dict[str, Any], tmp_path: Path) -> None:
    """The released StarGAN v2 files predate torch's zip format: the pickle magic must stay accepted."""
    legacy = tmp_path / "legacy.ckpt"
    torch.save(good["data"], legacy, _use_new_zipfile_serialization=False)
    assert legacy.read_bytes()[:1] == b"\x80"
    assert import_official(legacy).config == TINY.config


def test_read_wing_refuses_a_non_dict(tmp_path: Path) -> None:
    torch.save([1, 2], tmp_path / "wing.ckpt")
    with pytest.raises(CheckpointError) as caught:
        read_wing(tmp_path / "wing.ckpt")
    one_line(caught.value, "is not a wing.ckpt")


# --------------------------------------------------------------------------------------- training checkpoints
@pytest.fixture()
def training(tmp_path: Path) -> Path:
    from smoothgan.trainer.checkpoint import capture_rng, save_checkpoint
    from smoothgan.trainer.options import TrainOptions

    options = TrainOptions(data=str(tmp_path / "data"), model="tiny", domains=("a", "b"), preset="tiny")
    nets = random_networks(TINY.config, seed=2)
    return save_checkpoint(tmp_path / "run" / "checkpoints", 4, options, nets, nets, {}, [capture_rng()], {})


def _marker(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        meta = json.loads((folder / "checkpoint.json").read_text())
        edit(meta)
        (folder / "checkpoint.json").write_text(json.dumps(meta))

    return damage


def _rename_ema_key(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "nets_ema.safetensors"))
    tensors["nodot"] = tensors.pop("generator.from_rgb.weight")
    save_file(tensors, str(folder / "nets_ema.safetensors"))


TRAINING_CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("marker-not-json", lambda f: (f / "checkpoint.json").write_text("{"), "is not valid JSON"),
    ("marker-not-utf8", lambda f: (f / "checkpoint.json").write_bytes(b"\xff\xfe{}"), "is not UTF-8 text"),
    ("marker-list", lambda f: (f / "checkpoint.json").write_text("[]"), "is not a smoothgan training checkpoint"),
    ("marker-other-format", _marker(lambda m: m.update(format="x")), "is not a smoothgan training checkpoint"),
    ("marker-version", _marker(lambda m: m.update(format_version=2)), "has format version 2"),
    ("step-string", _marker(lambda m: m.update(step="4")), "step must be a non-negative integer"),
    ("step-negative", _marker(lambda m: m.update(step=-1)), "step must be a non-negative integer"),
    ("domains-ints", _marker(lambda m: m.update(domains=[1, 2])), "domains[0] must be a string"),
    ("options-null", _marker(lambda m: m.update(options=None)), "options must be an object"),
    ("options-typo", _marker(lambda m: m["options"].update(lamda_sty=1)), "bad training options"),
    ("options-model-bad", _marker(lambda m: m["options"].update(model={"img_size": "32"})), "bad training options"),
    ("ema-missing", lambda f: (f / "nets_ema.safetensors").unlink(), "cannot read"),
    ("ema-garbage", lambda f: (f / "nets_ema.safetensors").write_bytes(b"garbage!" * 4), "cannot read"),
    ("ema-key-without-dot", _rename_ema_key, "tensor 'nodot' is not named <network>.<parameter>"),
]


@pytest.mark.parametrize("damage,expected", [c[1:] for c in TRAINING_CASES], ids=[c[0] for c in TRAINING_CASES])
def test_bad_training_checkpoints_fail_the_cli_in_one_line(training: Path, tmp_path: Path,
                                                            damage: Callable[[Path], None], expected: str) -> None:
    damage(training)
    out = tmp_path / "bundle"
    result = runner.invoke(app, ["import", str(training), "--out", str(out)])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], result.output
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


CLI_CASES = ["text", "empty", "truncated-50", "evil-zip", "evil-legacy-proto4", "int-keys-in-state", "a-list"]


@pytest.mark.parametrize("name", CLI_CASES)
def test_bad_checkpoints_fail_the_cli_in_one_line(good: dict[str, Any], tmp_path: Path, name: str) -> None:
    write, expected = next(c[1:] for c in FILE_CASES if c[0] == name)
    path = tmp_path / "bad.ckpt"
    write(path, good)
    out = tmp_path / "bundle"
    result = runner.invoke(app, ["import", str(path), "--domains", "a,b", "--out", str(out)])
    assert result.exit_code == CheckpointError.exit_code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], result.output
    assert "Traceback" not in result.output and "weights_only" not in result.output
    assert not out.exists() and not (tmp_path / PWNED).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
