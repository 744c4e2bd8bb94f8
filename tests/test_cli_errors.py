"""The CLI's error policy across commands: one line on stderr, a non-zero exit, no traceback, no markup.

Part of the bad-input corpus (with test_bad_bundles, test_bad_checkpoints, test_translate_cli, test_jobs, ...):
every case here is something a user typed or a file a user owns, and each asserts the exact outcome.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smoothgan.cli import app

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], env={"SMOOTHGAN_MODEL": ""})


def assert_one_line_error(result, *needles: str, code: int | None = None) -> str:
    """Exactly one non-empty output line, starting with 'error:', containing every needle."""
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], result.output
    return lines[0]


USAGE_ERRORS = [
    (("translate", "x.png", "--domain", "a", "--steps", "abc"), "--steps"),
    (("translate", "x.png", "--domain", "a", "--num", "1.5"), "--num"),
    (("translate", "x.png", "--domain", "a", "--seed", "ten"), "--seed"),
    (("translate", "x.png", "--domain", "a", "--backend", "tensorflow"), "--backend"),
    (("translate", "x.png", "--domain", "a", "--device", "tpu"), "--device"),
    (("translate", "x.png", "--domain", "a", "--precision", "fp8"), "--precision"),
    (("translate", "x.png", "--domain", "a", "--no-such-option"), "--no-such-option"),
    (("translate",), "Missing"),
    (("translate", "x.png"), "--domain"),
    (("no-such-command",), "no-such-command"),
    (("train", "data", "--preset", "huge"), "--preset"),
    (("train", "data", "--style-reg", "neither"), "--style-reg"),
    (("train", "data", "--triplet", "neither"), "--triplet"),
    (("train", "data", "--precision", "fp64"), "--precision"),
    (("train", "data", "--iters", "many"), "--iters"),
    (("data", "synth", "out", "--img-size", "big"), "--img-size"),
    (("import",), "Missing"),
    (("bench", "--device", "quantum"), "--device"),
    (("eval", "--batch-size", "x"), "--batch-size"),
]


@pytest.mark.parametrize("args, needle", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_usage_errors_are_one_line_with_exit_2(args: tuple[str, ...], needle: str) -> None:
    line = assert_one_line_error(invoke(*args), needle, code=2)
    assert "--help" in line  # says where to look, in the same line


def test_the_console_script_prints_one_line_too() -> None:
    done = subprocess.run([sys.executable, "-c", "from smoothgan.cli import main; main()", "translate", "x.png",
                           "--domain", "a", "--steps", "abc"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: Invalid value for '--steps'") and line.endswith(
        "(see 'smoothgan translate --help')"), done.stderr


@pytest.mark.parametrize("name", ["IMG_0001 [edited]", "weird [/] name", "[bold red]x[/]", "a[/b]c", "[link=x]y"])
def test_user_text_is_never_rich_markup(tmp_path: Path, name: str) -> None:
    missing = tmp_path / name
    line = assert_one_line_error(invoke("info", missing))
    assert str(missing) in line  # shown exactly as given: brackets kept, no style applied, no crash


def test_tables_keep_full_values_when_piped(tiny_bundle) -> None:
    result = invoke("info", tiny_bundle.path)
    assert result.exit_code == 0, result.output
    assert tiny_bundle.weights_sha256 in result.output  # 64 hex digits on one line, not cut to '…'
    assert "…" not in result.output


def test_train_names_the_missing_data_folder_first(tmp_path: Path) -> None:
    # no LPIPS weights here either: the data folder is the likelier mistake and is reported first
    assert_one_line_error(invoke("train", tmp_path / "nowhere", "--preset", "tiny", "--device", "cpu"),
                          "nowhere", "train/<domain>")


def test_os_errors_are_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert_one_line_error(invoke("data", "synth", blocker / "sub", "--per-domain", "2", "--img-size", "16"),
                          "a-file")


def test_options_and_preset_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    options = tmp_path / "options.json"
    options.write_text("{}")
    assert_one_line_error(invoke("train", tmp_path, "--preset", "tiny", "--options", options), "--options")


def test_bad_training_options_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    for text, needle in (("not json", "not valid JSON"), ("[1, 2]", "JSON object"), ('{"data": 1}', "need"),
                         ('{"data": "d", "model": "tiny", "seed": "7"}', "seed must be an integer")):
        options = tmp_path / "options.json"
        options.write_text(text)
        assert_one_line_error(invoke("train", tmp_path, "--options", options), needle)


def test_info_shows_a_bundle_whose_weights_changed_and_warns(tiny_bundle, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "changed"
    shutil.copytree(tiny_bundle.path, copy)
    weights = copy / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    result = invoke("info", copy)
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert "warning:" in result.output and tiny_bundle.weights_sha256 in result.output
    assert "smoothgan export --model" in result.output
    assert invoke("info", tiny_bundle.path).output.count("warning:") == 0
