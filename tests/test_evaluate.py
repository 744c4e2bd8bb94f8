"""The evaluation runner and ``smoothgan eval``: known answers, report contents, counts, one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from conftest import random_networks
from PIL import Image
from typer.testing import CliRunner

from smoothgan.backends.base import Backend, Masks
from smoothgan.bundle import ModelBundle, save_bundle
from smoothgan.cli import app
from smoothgan.config import get_preset
from smoothgan.errors import DataError, InputError
from smoothgan.metrics.evaluate import build_lpips, evaluate
from smoothgan.metrics.lpips import PerceptualDistance
from smoothgan.trainer import synth
from smoothgan.translator import Translator, load

runner = CliRunner()
SHAPES = ("square", "triangle")
NUM_VAL = 3  # per domain in the synthetic set below


def invoke(*args: object, env: Optional[dict] = None):
    return runner.invoke(app, [str(a) for a in args], env={"SMOOTHGAN_MODEL": "", **(env or {})})


def one_line_error(result, pattern: str) -> None:
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error:"), result.output
    assert pattern in " ".join(lines), result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def shape_bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    """The tiny architecture with the synthetic set's domain names (synth only renders named shapes)."""
    spec = get_preset("tiny")
    return save_bundle(tmp_path_factory.mktemp("eval") / "shapes", random_networks(spec.config, 3), spec.config,
                       SHAPES, {"name": "tiny-shapes", "kind": "random test weights"})


@pytest.fixture(scope="module")
def shape_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth.generate(tmp_path_factory.mktemp("eval") / "synth", num_per_domain=2 * NUM_VAL, img_size=32,
                          seed=1, domains=SHAPES, val_fraction=0.5)


@pytest.fixture(scope="module")
def lpips_random() -> PerceptualDistance:
    return build_lpips(random_backbone=True)


def plain_data(root: Path, domains=("a", "b"), per_domain: int = 2, splits=("val",)) -> Path:
    rng = np.random.default_rng(0)
    for split in splits:
        for domain in domains:
            (root / split / domain).mkdir(parents=True)
            for k in range(per_domain):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    root / split / domain / f"{k}.png")
    return root


def squared_pixel_distance(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Mean squared difference per pair: its square root (RMS) is a metric, like sqrt-LPIPS."""
    return ((x0 - x1) ** 2).flatten(1).mean(1)


def finite_leaves(obj) -> list[float]:
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in finite_leaves(x)]
    if isinstance(obj, list):
        return [v for x in obj for v in finite_leaves(x)]
    return [obj] if isinstance(obj, (int, float)) and not isinstance(obj, bool) else []


# ----------------------------------------------------------------------------------------------- the CLI


def test_cli_end_to_end_report_table_and_counts(shape_bundle, shape_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = invoke("eval", "--model", shape_bundle.path, "--data", shape_data, "--metrics", "ps,lpips,content",
                    "--num-outs", 3, "--lpips-random-backbone", "--out", out, "--batch-size", 32,
                    env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "ps_inter_20_official" in result.output and "square2triangle" in result.output
    assert "numbers not comparable with published LPIPS/PS" in result.output  # flagged with the table

    report = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    metrics = report["metrics"]
    expected = {f"{m}_{k}_20_{mode}" for m in ("ps", "alignment", "uniformity") for k in ("inter", "intra")
                for mode in ("official", "metric", "paper")}
    expected |= {"lpips_latent", "lpips_reference", "content_lpips_latent", "content_position_err",
                 "content_size_err", "content_rotation_err", "content_not_found"}
    assert set(metrics) == expected
    for key, value in metrics.items():
        assert math.isfinite(value["mean"]) and value["count"] > 0, key
        if key.startswith(("ps_", "alignment_", "uniformity_")):  # sqrt-LPIPS is a metric: paper A <= 1 too
            assert 0.0 <= value["mean"] <= 1.0 + 1e-6 and value["over"] == "sequences", key
            lo, hi = value["ci95"]
            assert lo <= value["mean"] <= hi, key
    assert all(math.isfinite(v) for v in finite_leaves(report["metrics"]))

    # counts: one inter sequence per (source, other domain), one intra per (source, every domain)
    assert metrics["ps_inter_20_official"]["count"] == 2 * NUM_VAL
    assert metrics["ps_intra_20_metric"]["count"] == 2 * 2 * NUM_VAL
    tasks = report["tasks"]
    assert set(tasks["ps_inter_20_metric"]) == {"square2triangle", "triangle2square"}
    assert set(tasks["ps_intra_20_metric"]) == {"square2square", "square2triangle", "triangle2square",
                                                "triangle2triangle"}
    assert all(v["count"] == NUM_VAL for v in tasks["ps_intra_20_official"].values())
    for kind in ("inter", "intra"):  # paper PS = harmonic mean of the mean A and mean U, overall and per task
        a, u = metrics[f"alignment_{kind}_20_paper"]["mean"], metrics[f"uniformity_{kind}_20_paper"]["mean"]
        assert metrics[f"ps_{kind}_20_paper"]["mean"] == pytest.approx(2 * a * u / (a + u), rel=1e-12)
        for task, value in tasks[f"ps_{kind}_20_paper"].items():
            a = tasks[f"alignment_{kind}_20_paper"][task]["mean"]
            u = tasks[f"uniformity_{kind}_20_paper"][task]["mean"]
            assert value["mean"] == pytest.approx(2 * a * u / (a + u), rel=1e-12), task
    assert list(metrics)[:3] == ["ps_inter_20_official", "ps_inter_20_metric", "ps_inter_20_paper"]
    assert all(v["count"] == NUM_VAL for v in tasks["lpips_reference"].values())
    assert metrics["content_not_found"]["count"] == 2 * NUM_VAL * 3  # every latent output of every task
    found = round((1 - metrics["content_not_found"]["mean"]) * 2 * NUM_VAL * 3)
    assert metrics["content_position_err"]["count"] == found
    # both shapes show a rotation, so every found output of both tasks has a rotation error, within half a period
    assert metrics["content_rotation_err"]["count"] == found
    assert all(0 <= v["mean"] <= 60 for v in tasks["content_rotation_err"].values())

    assert report["model"]["sha256"] == shape_bundle.weights_sha256
    assert report["runtime"] == {"backend": "torch", "device": "cpu", "precision": "fp32", "max_batch": 32,
                                 "metric_device": "cpu"}
    assert report["networks"]["lpips"] == "alexnet (random init)"
    assert report["networks"]["lpips_comparable_with_published"] is False
    assert any("not comparable" in w for w in report["warnings"])
    protocol = report["protocol"]
    assert (protocol["steps"], protocol["num_outs"], protocol["seed"], protocol["split"]) == (20, 3, 0, "val")
    assert protocol["ps_start"] == "source" and protocol["ps_inter"].startswith("E(x, y_src) -> M(z, y_trg)")
    assert set(protocol["ps_modes"]) == {"official", "metric", "paper"}
    assert report["data"]["sources"] == {"square": NUM_VAL, "triangle": NUM_VAL}
    assert report["data"]["synthetic_attributes"] is True
    assert report["timing"]["generated_images"] == 2 * NUM_VAL * (20 + 2 * 20 + 3 + 3)


@pytest.mark.parametrize(
    "args, pattern, code",
    [
        (["--data", "{tmp}/missing"], "evaluation data folder not found", 2),
        (["--data", "{synth}", "--model", "{tiny}"], "do not match the model's domains (a, b)", 2),
        (["--data", "{synth}", "--metrics", "ps,bleu"], "unknown metric(s) bleu", 2),
        (["--data", "{synth}", "--split", "test"], "evaluation data not found", 2),
        (["--data", "{synth}", "--metrics", "ps"], "--lpips-random-backbone", 4),
        (["--data", "{synth}", "--metrics", "fid"], "inception_v3_google-0cc3c7bd.pth", 4),
        (["--data", "{synth}", "--lpips-random-backbone", "--lpips-weights", "{tmp}/x.pth"], "not both", 2),
    ],
)
def test_cli_bad_input_gives_one_line_errors(args, pattern, code, shape_bundle, shape_data, tiny_bundle,
                                             tmp_path: Path) -> None:
    names = {"tmp": tmp_path, "synth": shape_data, "tiny": tiny_bundle.path}
    filled = [a.format(**names) for a in args]
    if "--model" not in filled:
        filled += ["--model", str(shape_bundle.path)]
    result = invoke("eval", *filled, "--out", tmp_path / "r.json", env={"TORCH_HOME": str(tmp_path / "hub")})
    one_line_error(result, pattern)
    assert result.exit_code == code
    assert not (tmp_path / "r.json").exists()
    if "--lpips-random-backbone" in pattern:  # the message names both ways out
        assert "--lpips-weights PATH" in result.output and "alexnet-owt-7be5be79.pth" in result.output


# ----------------------------------------------------------------------------------------------- Python API


def test_fid_with_a_stand_in_extractor(shape_bundle, shape_data: Path, lpips_random) -> None:
    def pooled(x: torch.Tensor) -> torch.Tensor:  # 12-d stand-in for the 2048-d Inception features
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)

    translator = load(shape_bundle.path)
    report = evaluate(translator, shape_data, ("fid", "lpips"), num_pairs=2, num_outs=3, lpips=lpips_random,
                      fid_extractor=pooled)
    assert set(report.metrics) == {"lpips_latent", "lpips_reference", "fid_latent", "fid_reference"}
    for mode in ("latent", "reference"):
        per_task = report.tasks[f"fid_{mode}"]
        assert set(per_task) == {"square2triangle", "triangle2square"}
        assert all(v.count == 2 * 3 and v.mean > 0 and math.isfinite(v.mean) for v in per_task.values())
        assert report.value(f"fid_{mode}") == pytest.approx(np.mean([v.mean for v in per_task.values()]))
        assert report.metrics[f"fid_{mode}"].count == 2 and report.metrics[f"fid_{mode}"].over.startswith("tasks")
    assert report.networks["inception"] == "custom (function)"
    assert any("custom feature extractor" in w for w in report.warnings)
    assert report.data["train"] == {"square": NUM_VAL, "triangle": NUM_VAL}


def test_numbers_do_not_depend_on_batch_size(shape_bundle, shape_data: Path, lpips_random) -> None:
    reports = [evaluate(load(shape_bundle.path, max_batch=b), shape_data, ("ps", "lpips"), steps=4, num_pairs=2,
                        num_outs=2, seed=5, lpips=lpips_random) for b in (1, 64)]
    assert reports[0].metrics.keys() == reports[1].metrics.keys()
    for key in reports[0].metrics:
        assert reports[0].value(key) == pytest.approx(reports[1].value(key), abs=2e-3), key
    other_seed = evaluate(load(shape_bundle.path), shape_data, ("ps",), steps=4, num_pairs=2, seed=6,
                          lpips=lpips_random)
    assert other_seed.value("ps_inter_4_metric") != reports[1].value("ps_inter_4_metric")


def test_masks_model_and_single_sequence_report(tiny_hpf_bundle, tmp_path: Path) -> None:
    data = plain_data(tmp_path / "data", per_domain=1)
    report = evaluate(load(tiny_hpf_bundle.path), data, ["ps"], steps=3,
                      lpips=squared_pixel_distance)
    assert report.metrics["ps_inter_3_official"].count == 2
    single = report.tasks["ps_inter_3_official"]["a2b"].to_dict()
    assert single["count"] == 1 and single["std"] is None and single["ci95"] is None  # NaN -> null
    assert report.model["w_hpf"] == 1.0
    assert report.networks["lpips"] == "custom (function)" and report.warnings
    json.loads(json.dumps(report.to_dict(), allow_nan=False))


class FakeBackend(Backend):
    """A generator whose output is ``pattern * f(style[0])``: E gives style[0] = 0, M gives style[0] = 1."""

    name = "fake"

    def __init__(self, config, jump: bool) -> None:
        super().__init__(config, "cpu", "fp32")
        self.jump = jump
        rng, shape = np.random.default_rng(0), (3, config.img_size, config.img_size)
        # pixels move 3-6 uint8 levels per step, with rounding errors that differ from pixel to pixel
        self.pattern = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 0.95, shape)

    def _run_mapping(self, latent: np.ndarray, domain: np.ndarray) -> np.ndarray:
        style = np.zeros((len(latent), self.config.style_dim), np.float32)
        style[:, 0] = 1.0
        style[:, 1:] = latent[:, :1]  # z moves the other components only, which G ignores
        return style

    def _run_encode(self, image: np.ndarray, domain: np.ndarray) -> np.ndarray:
        return np.zeros((len(image), self.config.style_dim), np.float32)

    def _run_generate(self, image: np.ndarray, style: np.ndarray, masks: Optional[Masks]) -> np.ndarray:
        v = style[:, 0].astype(np.float64)
        if self.jump:
            v = (v > 0.5).astype(np.float64)
        return (self.pattern[None] * v[:, None, None, None]).astype(np.float32)

    def _run_heatmap(self, image: np.ndarray) -> Masks:
        raise AssertionError("the tiny model uses no masks")


def test_linear_generator_has_perfect_smoothness(tiny_bundle, tmp_path: Path) -> None:
    translator = Translator(tiny_bundle, FakeBackend(tiny_bundle.config, jump=False), max_batch=16)
    report = evaluate(translator, plain_data(tmp_path / "d"), ("ps", "lpips"), num_outs=3,
                      lpips=squared_pixel_distance)
    # equal steps (up to uint8 rounding) along a straight line
    assert report.value("uniformity_inter_20_metric") > 0.995
    assert report.value("alignment_inter_20_metric") == pytest.approx(1.0, abs=5e-3)  # rounding adds detours
    assert report.value("ps_inter_20_metric") > 0.995
    assert report.value("alignment_inter_20_official") == 1.0  # squared distances: d_end = 19^2 d vs 19 d, capped
    assert report.value("ps_inter_20_official") > 0.995
    assert report.value("alignment_inter_20_paper") == pytest.approx(1.0, abs=5e-3)  # sqrt distances, not clipped
    assert report.value("ps_inter_20_paper") > 0.995
    # G ignores what z changes: intra-domain frames never move -> A = 0, U = 1, PS = 0; no diversity either
    for mode in ("official", "metric", "paper"):
        assert report.value(f"ps_intra_20_{mode}") == 0.0
        assert report.value(f"uniformity_intra_20_{mode}") == pytest.approx(1.0)
    assert report.value("lpips_latent") == 0.0 and report.value("lpips_reference") == 0.0
    assert report.runtime["backend"] == "fake"


def test_jumping_generator_scores_one_tenth(tiny_bundle, tmp_path: Path) -> None:
    translator = Translator(tiny_bundle, FakeBackend(tiny_bundle.config, jump=True), max_batch=7)
    report = evaluate(translator, plain_data(tmp_path / "d"), ["ps"], lpips=squared_pixel_distance)
    # all the change in one of 19 steps: Gini = 18/19, U = 1/19, A = 1, PS = 2 U / (1 + U) = 0.1
    assert report.value("uniformity_inter_20_metric") == pytest.approx(1 / 19)
    assert report.value("alignment_inter_20_metric") == pytest.approx(1.0)
    assert report.value("ps_inter_20_metric") == pytest.approx(0.1)
    # official mode: the in-place 1e-6 per step lifts U by about 18 * 1e-6 / d_jump
    assert 0.1 < report.value("ps_inter_20_official") == pytest.approx(0.1, abs=5e-4)
    # every sequence alike: the paper's HM(E[A], E[U]) = HM(1, 1/19) = 0.1 as well
    assert report.value("ps_inter_20_paper") == pytest.approx(0.1)


def test_latent_start_follows_the_papers_protocol(tiny_bundle, tmp_path: Path) -> None:
    # E gives style[0] = 0 and M style[0] = 1: from a latent start both ends have style[0] = 1, so the frames
    # never move (A = 0, U = 1, PS = 0), where the source start E(x, y_src) gives a perfect path (PS ~ 1)
    translator = Translator(tiny_bundle, FakeBackend(tiny_bundle.config, jump=False), max_batch=16)
    report = evaluate(translator, plain_data(tmp_path / "d"), ["ps"], steps=5, lpips=squared_pixel_distance,
                      ps_start="latent")
    assert not any(key.startswith(("ps_inter_5", "alignment_inter_5", "uniformity_inter_5")) for key in report.metrics)
    for mode in ("official", "metric", "paper"):
        assert report.value(f"ps_inter_latent_5_{mode}") == 0.0
        assert report.value(f"uniformity_inter_latent_5_{mode}") == pytest.approx(1.0)
        assert report.metrics[f"ps_inter_latent_5_{mode}"].count == 4  # 2 domains x 2 sources, one target each
    assert report.protocol["ps_start"] == "latent"
    assert report.protocol["ps_inter"].startswith("M(z', y_src) -> M(z, y_trg)")
    assert "ps_intra_5_paper" in report.metrics  # intra-domain is two latent styles either way
    source = evaluate(translator, plain_data(tmp_path / "d2"), ["ps"], steps=5, lpips=squared_pixel_distance)
    assert source.value("ps_inter_5_paper") > 0.99 and source.protocol["ps_start"] == "source"
    with pytest.raises(InputError, match="unknown ps_start 'random'; expected one of source, latent"):
        evaluate(translator, plain_data(tmp_path / "d3"), ["ps"], lpips=squared_pixel_distance, ps_start="random")


def test_cli_ps_start_latent(shape_bundle, shape_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = invoke("eval", "--model", shape_bundle.path, "--data", shape_data, "--metrics", "ps", "--steps", 3,
                    "--num-pairs", 1, "--ps-start", "latent", "--lpips-random-backbone", "--no-progress",
                    "--out", out, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["protocol"]["ps_start"] == "latent"
    assert {"ps_inter_latent_3_official", "ps_inter_latent_3_paper", "ps_intra_3_paper"} <= set(report["metrics"])
    assert "ps_inter_latent_3_paper" in result.output
    bad = invoke("eval", "--model", shape_bundle.path, "--data", shape_data, "--ps-start", "random")
    assert bad.exit_code == 2 and "random" in bad.output


def test_api_input_checks(shape_bundle, shape_data: Path, tmp_path: Path, lpips_random) -> None:
    translator = load(shape_bundle.path)
    with pytest.raises(InputError, match="num_outs must be an integer >= 2"):
        evaluate(translator, shape_data, ["lpips"], num_outs=1, lpips=lpips_random)
    with pytest.raises(InputError, match="squared LPIPS"):
        evaluate(translator, shape_data, ["ps"], lpips=PerceptualDistance("sqrt", random_backbone=True))
    with pytest.raises(InputError, match="unknown metric"):
        evaluate(translator, shape_data, [])
    with pytest.raises(InputError, match="FID needs at least 2 generated"):
        evaluate(translator, shape_data, ["fid"], num_pairs=1, num_outs=1, fid_extractor=lambda x: x.flatten(1))
    no_train = plain_data(tmp_path / "d", domains=SHAPES)
    with pytest.raises(DataError, match="train images"):
        evaluate(translator, no_train, ["fid"], fid_extractor=lambda x: x.flatten(1))
    (no_train / "val" / "triangle" / "0.png").unlink()
    (no_train / "val" / "triangle" / "1.png").unlink()
    with pytest.raises(DataError, match="no images in"):
        evaluate(translator, no_train, ["ps"], lpips=squared_pixel_distance)



def constant_judge(domains: tuple[str, ...], answer: int, val_accuracy: float = 1.0) -> "dc.DomainClassifier":
    """A judge that names domain ``answer`` for every image (zero head weights, one large bias): its accuracy on
    any translation is known by hand."""
    from smoothgan.metrics import domain_classifier as dc

    config = dc.ClassifierConfig(16, domains, (4,))
    net = dc.DomainClassifierNet(config)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([10.0 if k == answer else 0.0 for k in range(len(domains))]))
    return dc.DomainClassifier(config, net, val_accuracy, 50)


def test_domain_accuracy_is_the_share_of_outputs_judged_as_the_target(shape_bundle, shape_data: Path) -> None:
    translator = load(shape_bundle.path)
    report = evaluate(translator, shape_data, ["accuracy"], num_outs=2, judge=constant_judge(SHAPES, answer=0))
    outputs = NUM_VAL * 2  # per task: sources x num_outs
    for mode in ("latent", "reference"):
        key = f"domain_accuracy_{mode}"
        # the judge always says "square": every square2triangle output misses, every triangle2square one hits
        assert report.metrics[key].mean == 0.5 and report.metrics[key].count == 2 * outputs
        assert report.metrics[key].over == "outputs"
        assert {t: v.mean for t, v in report.tasks[key].items()} == {"square2triangle": 0.0, "triangle2square": 1.0}
    assert report.networks["judge"]["domains"] == list(SHAPES) and "accuracy" in report.protocol["metrics"]
    assert set(report.metrics) == {"domain_accuracy_latent", "domain_accuracy_reference"}


def test_the_judge_must_be_licensed_and_know_the_domains(shape_bundle, shape_data: Path, tmp_path: Path) -> None:
    translator = load(shape_bundle.path)
    with pytest.raises(InputError, match="the accuracy metric needs a judge"):
        evaluate(translator, shape_data, ["accuracy"])
    with pytest.raises(DataError, match="0.950 .* is below 0.98"):
        evaluate(translator, shape_data, ["accuracy"], judge=constant_judge(SHAPES, 0, val_accuracy=0.95))
    with pytest.raises(InputError, match="the judge knows domains circle, square, not triangle of the data"):
        evaluate(translator, shape_data, ["accuracy"], judge=constant_judge(("circle", "square"), 0))
    saved = constant_judge(SHAPES, 1).save(tmp_path / "judge")
    result = invoke("eval", "--model", shape_bundle.path, "--data", shape_data, "--judge", saved, "--metrics",
                    "accuracy", "--num-outs", "2", "--no-progress", "--out", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert metrics["domain_accuracy_latent"]["mean"] == 0.5 and metrics["domain_accuracy_reference"]["mean"] == 0.5
    missing = invoke("eval", "--model", shape_bundle.path, "--data", shape_data, "--metrics", "accuracy",
                     "--out", tmp_path / "r2.json")
    one_line_error(missing, "the accuracy metric needs a judge")
    assert not (tmp_path / "r2.json").exists()


def test_data_judge_trains_reports_each_epoch_and_exits_by_the_threshold(tmp_path: Path) -> None:
    from smoothgan.metrics import domain_classifier as dc

    data = synth.generate(tmp_path / "synth", num_per_domain=12, img_size=16, seed=3, domains=SHAPES,
                          val_fraction=0.25)
    result = invoke("data", "judge", data, "--out", tmp_path / "judge", "--img-size", "16", "--epochs", "2")
    judge = dc.load_domain_classifier(tmp_path / "judge")  # written either way, for inspection
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert [line.split(":")[0] for line in lines[:2]] == ["epoch 1/2", "epoch 2/2"]
    assert judge.val_count == 6 and judge.config.domains == SHAPES
    if judge.val_accuracy >= dc.MIN_VAL_ACCURACY:
        assert result.exit_code == 0 and "use it with: smoothgan eval --judge" in lines[-1]
    else:
        assert result.exit_code == 2 and lines[-1].startswith("error:") and "below 0.98" in lines[-1]
    again = invoke("data", "judge", data, "--out", tmp_path / "judge", "--img-size", "16", "--epochs", "1")
    one_line_error(again, "holds a judge already; pass --overwrite")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "keep.jpg").write_bytes(b"x")
    other = invoke("data", "judge", data, "--out", tmp_path / "photos", "--overwrite")
    one_line_error(other, "is not a judge folder")
    assert (tmp_path / "photos" / "keep.jpg").exists()
    one_line_error(invoke("data", "judge", tmp_path / "photos", "--out", tmp_path / "j2"), "train not found")

def test_package_reexports_stay_torch_free() -> None:
    import subprocess
    import sys

    code = ("import sys, smoothgan.metrics as m; m.Report; m.MetricValue; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
