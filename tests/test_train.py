"""The training loop end to end on CPU: run directory, baseline switch, exact resume, DDP, NaN stop, export, CLI.

Runs use the ``tiny`` preset (32 px, narrow) on a synthetic set of 4 training images per domain, with the LPIPS
content loss on a random AlexNet (``lpips_random_backbone``), so each iteration takes a fraction of a second.
Resume is checked for exact (bitwise) equality: on one CPU process every op is deterministic.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import smoothgan
from smoothgan.cli import app
from smoothgan.cli.train import TrainPreset
from smoothgan.config import PRESETS as MODEL_PRESETS
from smoothgan.errors import InputError
from smoothgan.models.stargan_v2 import build_networks
from smoothgan.trainer import checkpoint as ckpt_mod
from smoothgan.trainer import synth
from smoothgan.trainer import train as train_mod
from smoothgan.trainer.losses import ds_weight
from smoothgan.trainer.monitor import read_stats
from smoothgan.trainer.options import TRAIN_PRESETS, TrainOptions, preset_options

REPO = Path(__file__).resolve().parents[1]
DOMAINS = ("circle", "square")
STARGAN_TERMS = {f"{p}_{t}" for p in ("D/latent", "D/ref") for t in ("real", "fake", "reg")} | {
    f"{p}_{t}" for p in ("G/latent", "G/ref") for t in ("adv", "sty", "ds", "cyc")}
SMOOTHING_TERMS = {f"{p}_{t}" for p in ("G/latent", "G/ref") for t in ("kl", "tri", "lpips")}
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and with another busy process on a 2-core machine two
    threads made each iteration about 15x slower (spinning OpenMP workers); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train") / "shapes"
    return synth.generate(root, num_per_domain=6, img_size=32, seed=0, domains=DOMAINS, val_fraction=0.34)


@pytest.fixture(scope="module")
def options(dataset: Path) -> TrainOptions:
    return preset_options("tiny", dataset, lpips_random_backbone=True, device="cpu", total_iters=4, print_every=2,
                          save_every=2, sample_every=4, keep_last=0)


@pytest.fixture(scope="module")
def run(options: TrainOptions, tmp_path_factory: pytest.TempPathFactory) -> train_mod.RunResult:
    return train_mod.train(options, out=tmp_path_factory.mktemp("runs"))


def _flat(state: dict) -> dict[str, torch.Tensor]:
    return {f"{m}.{k}": v for m, values in state.items() for k, v in values.items()}


# --------------------------------------------------------------------------------------------------------------
# Options and presets


def test_options_json_round_trip_is_strict(options: TrainOptions, tmp_path: Path) -> None:
    path = tmp_path / "options.json"
    path.write_text(options.to_json())
    assert TrainOptions.from_json(path) == options
    values = options.to_dict()
    with pytest.raises(InputError, match="training options: unknown keys lamda_sty"):
        TrainOptions.from_dict({**values, "lamda_sty": 2})
    with pytest.raises(InputError, match=r"training options\.loss: unknown keys lambda_typo"):
        TrainOptions.from_dict({**values, "loss": {**values["loss"], "lambda_typo": 1}})
    with pytest.raises(InputError, match=r"training options\.batch_size must be an integer"):
        TrainOptions.from_dict({**values, "batch_size": "8"})
    with pytest.raises(InputError, match=r"training options\.loss\.lambda_sty must be a number"):
        TrainOptions.from_dict({**values, "loss": {**values["loss"], "lambda_sty": True}})
    assert TrainOptions.from_dict({**values, "model": "tiny"}).model == MODEL_PRESETS["tiny"].config
    with pytest.raises(InputError, match="needs a CUDA device"):
        options.replace(precision="bf16")
    with pytest.raises(InputError, match="--wing"):
        options.replace(model=MODEL_PRESETS["tiny-hpf"].config)
    with pytest.raises(InputError, match="not both"):
        options.replace(lpips_weights="alex.pth")


def test_presets_follow_the_official_hyper_parameters(tmp_path: Path) -> None:
    assert {p.value for p in TrainPreset} == set(TRAIN_PRESETS)
    smoothed = preset_options("celeba_hq", tmp_path, wing="wing.ckpt")  # SM train.sh (REFERENCE 4.7.5)
    assert (smoothed.batch_size, smoothed.loss.lambda_sty, smoothed.loss.lambda_lpips, smoothed.loss.lambda_tri,
            smoothed.loss.kl_start_iter, smoothed.loss.kl_iter, smoothed.model.w_hpf) == (4, 2.0, 1.0, 1.0, 40_000,
                                                                                          60_000, 1.0)
    assert smoothed.reference_mode == "smoothing" and not smoothed.baseline
    base = preset_options("afhq", tmp_path, baseline=True)  # SG README AFHQ (REFERENCE 4.6)
    assert (base.batch_size, base.loss.lambda_ds, base.loss.lambda_sty, base.model.w_hpf, base.loss.smoothing,
            base.reference_mode) == (8, 2.0, 1.0, 0.0, False, "official")
    assert (base.lr, base.f_lr, base.betas, base.weight_decay, base.ema_beta, base.seed) == (
        1e-4, 1e-6, (0.0, 0.99), 1e-4, 0.999, 777)
    short = smoothed.with_iters(10_000)  # schedules keep their share of the run
    assert (short.loss.ds_iter, short.loss.kl_start_iter, short.loss.kl_iter) == (10_000, 4000, 6000)
    assert smoothed.with_iters(10_000, scale_schedules=False).loss.ds_iter == 100_000


# --------------------------------------------------------------------------------------------------------------
# The iteration (REFERENCE 4.2, 4.4)


def test_ema_copies_start_from_default_init_and_steps_follow_the_official_order(options, dataset) -> None:
    resolved, _ = train_mod.resolve_data(options, check=False)
    trainer = train_mod.Trainer(resolved)
    torch.manual_seed(resolved.seed)
    default_init = build_networks(resolved.model, discriminator=True)  # what the EMA copies must equal
    for name, ema in trainer.nets_ema.items():
        for key, value in ema.state_dict().items():
            assert torch.equal(value, default_init[name].state_dict()[key]), key
        assert not all(torch.equal(a, b) for a, b in zip(ema.parameters(), trainer.nets[name].parameters()))
    lrs = {name: opt.param_groups[0]["lr"] for name, opt in trainer.optimizers.items()}
    assert lrs == {"generator": 1e-4, "mapping_network": 1e-6, "style_encoder": 1e-4, "discriminator": 1e-4}
    assert all(type(opt) is torch.optim.Adam and opt.param_groups[0]["weight_decay"] == 1e-4
               for opt in trainer.optimizers.values())

    calls: list[str] = []
    for name, opt in trainer.optimizers.items():
        step, zero = opt.step, opt.zero_grad
        opt.step = lambda *a, _n=name, _s=step, **k: (calls.append(_n), _s(*a, **k))[1]
        opt.zero_grad = lambda *a, _n=name, _z=zero, **k: (calls.append("zero"), _z(*a, **k))[1]
    before = {n: [p.clone() for p in m.parameters()] for n, m in trainer.nets_ema.items()}
    trainer.train_step(0)
    zero = ["zero"] * 4
    assert calls == [*zero, "discriminator", *zero, "discriminator", *zero, "generator", "mapping_network",
                     "style_encoder", *zero, "generator"]
    beta = resolved.ema_beta
    for name, ema in trainer.nets_ema.items():  # θ_ema = β θ_ema + (1 − β) θ after the iteration
        for old, new, theta in zip(before[name], ema.parameters(), trainer.nets[name].parameters()):
            torch.testing.assert_close(new, beta * old + (1 - beta) * theta, rtol=0, atol=1e-6)
    losses, bad = trainer.collect()
    assert bad is None and set(losses) == STARGAN_TERMS | SMOOTHING_TERMS


# --------------------------------------------------------------------------------------------------------------
# Runs


def test_run_writes_options_stats_samples_and_checkpoints(run: train_mod.RunResult, options: TrainOptions) -> None:
    run_dir = run.run_dir
    assert run_dir.name == "00000-tiny-smoothed-shapes-bs4"
    assert TrainOptions.from_json(run_dir / "options.json") == run.options
    assert run.options.domains == DOMAINS
    stats = read_stats(run_dir)
    assert [s["step"] for s in stats] == [2, 4]
    for tick in stats:
        assert set(tick["losses"]) == STARGAN_TERMS | SMOOTHING_TERMS
        assert all(math.isfinite(v) for v in tick["losses"].values())
        assert tick["images_per_sec"] > 0 and tick["sec_per_iter"] > 0
        assert tick["lambda_ds"] == ds_weight(tick["step"] - 1, options.loss.lambda_ds, options.loss.ds_iter)
    assert [s["kl_weight"] for s in stats] == [0.0, 0.25]  # kl_start_iter 2, kl_iter 4: ramps after step 3
    assert list(run_dir.glob("events.out.tfevents.*"))
    latent = Image.open(run_dir / "samples" / "step-000004-latent.png")
    assert latent.size == (32 * (1 + 2 * options.sample_latents), 32 * options.sample_sources)
    interp = Image.open(run_dir / "samples" / "step-000004-interp.png")
    assert interp.size == (32 * (1 + options.interp_steps), 32 * options.sample_sources)
    names = [p.name for p in ckpt_mod.list_checkpoints(run_dir)]
    assert names == ["step-000002", "step-000004"] and run.last_checkpoint.name == "step-000004"
    files = {p.name for p in run.last_checkpoint.iterdir()}
    assert files == {"checkpoint.json", "nets.safetensors", "nets_ema.safetensors", "state.pt"}
    assert not list((run_dir / "checkpoints").glob(".*"))  # no staging leftovers
    state = ckpt_mod.read_checkpoint(run_dir).training_state()  # weights_only=True load
    assert state["step"] == 4 and len(state["rng"]) == 1 and state["loaders"]["source"]["batches"] >= 0


def test_resume_continues_exactly(run: train_mod.RunResult, options: TrainOptions, tmp_path: Path) -> None:
    resumed = train_mod.train(options, out=tmp_path, resume=run.run_dir / "checkpoints" / "step-000002")
    original, again = read_stats(run.run_dir), read_stats(resumed.run_dir)
    assert [s["step"] for s in again] == [4]
    assert again[0]["losses"] == original[1]["losses"]  # bitwise: same batches, latents and weights
    a, b = ckpt_mod.read_checkpoint(run.last_checkpoint), ckpt_mod.read_checkpoint(resumed.last_checkpoint)
    for ema in (False, True):
        left, right = _flat(a.networks(ema)), _flat(b.networks(ema))
        assert left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)
    opt_a, opt_b = a.training_state()["optimizers"], b.training_state()["optimizers"]
    for name in opt_a:
        for sa, sb in zip(opt_a[name]["state"].values(), opt_b[name]["state"].values()):
            assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert json.loads((resumed.run_dir / "run.json").read_text())["start_step"] == 2


def test_baseline_has_no_smoothing_terms_and_keep_last_prunes(options: TrainOptions, tmp_path: Path) -> None:
    base = preset_options("tiny", options.data, baseline=True, device="cpu", total_iters=3, print_every=1,
                          save_every=1, keep_last=2, sample_every=10)
    assert not base.uses_lpips
    result = train_mod.train(base, out=tmp_path)
    stats = read_stats(result.run_dir)
    assert all(set(s["losses"]) == STARGAN_TERMS and s["kl_weight"] == 0.0 for s in stats)
    assert [p.name for p in ckpt_mod.list_checkpoints(result.run_dir)] == ["step-000002", "step-000003"]
    assert (result.run_dir / "samples" / "step-000003-latent.png").is_file()  # the last step always samples


@pytest.mark.parametrize("every_step", [False, True])
def test_non_finite_loss_stops_with_the_step_and_the_last_good_checkpoint(
    options: TrainOptions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every_step: bool
) -> None:
    real = train_mod.generator_loss

    def poisoned(*args, **kwargs):
        loss, terms = real(*args, **kwargs)
        if kwargs["step"] == 2:  # the third iteration
            terms = {**terms, "adv": terms["adv"] * float("nan")}
        return loss, terms

    monkeypatch.setattr(train_mod, "generator_loss", poisoned)
    broken = options.replace(check_every_step=every_step, sample_every=100)
    with pytest.raises(train_mod.TrainingError) as info:
        train_mod.train(broken, out=tmp_path)
    message = str(info.value)
    assert "non-finite loss (G/latent_adv, G/ref_adv) at step 3" in message
    assert f"(noticed at step {3 if every_step else 4})" in message
    assert message.endswith(str(tmp_path / "00000-tiny-smoothed-shapes-bs4" / "checkpoints" / "step-000002"))
    assert [p.name for p in ckpt_mod.list_checkpoints(tmp_path / "00000-tiny-smoothed-shapes-bs4")] == [
        "step-000002"]


def test_two_process_gloo_ddp_run(options: TrainOptions, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO),
                                                                                os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "smoothgan", "train", options.data, "--preset", "tiny", "--lpips-random-backbone",
               "--device", "cpu", "--iters", "2", "--print-every", "1", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()  # only rank 0 writes
    info = json.loads((run_dir / "run.json").read_text())
    assert info["world_size"] == 2
    stats = read_stats(run_dir)
    assert [s["step"] for s in stats] == [1, 2] and all(math.isfinite(v) for v in stats[-1]["losses"].values())
    ckpt = ckpt_mod.read_checkpoint(run_dir)
    assert ckpt.step == 2 and ckpt.meta["world_size"] == 2 and len(ckpt.training_state()["rng"]) == 2
    assert done.stdout.count("step 2/2") == 1  # one status line per tick, from rank 0


# --------------------------------------------------------------------------------------------------------------
# Export


def test_export_bundle_translates(run: train_mod.RunResult, tmp_path: Path) -> None:
    bundle = ckpt_mod.export_bundle(run.last_checkpoint, tmp_path / "bundle")
    assert bundle.domains == DOMAINS and bundle.config == run.options.model
    assert bundle.provenance["step"] == 4 and bundle.provenance["kind"].startswith("smoothgan training")
    ema = _flat(ckpt_mod.read_checkpoint(run.last_checkpoint).networks(ema=True))
    arrays = bundle.load_arrays()
    assert arrays.keys() == ema.keys() and all(np.array_equal(arrays[k], ema[k].numpy()) for k in ema)
    translator = smoothgan.load(bundle.path)
    result = translator.translate(np.full((40, 48, 3), 128, np.uint8), "square", num=2)
    assert result.images.shape == (1, 2, 32, 32, 3)
    renamed = ckpt_mod.export_bundle(run.run_dir, tmp_path / "renamed", domains=["round", "boxy"])
    assert renamed.domains == ("round", "boxy")
    with pytest.raises(InputError, match="domain name"):
        ckpt_mod.export_bundle(run.run_dir, tmp_path / "bad", domains=["one"])


def test_hpf_run_uses_fan_masks_freezes_unused_shortcuts_and_exports_the_fan(options, tmp_path: Path) -> None:
    from conftest import randomize

    from smoothgan.models.fan import FAN

    wing = tmp_path / "wing.ckpt"
    torch.save({"state_dict": randomize(FAN(), 3).state_dict()}, wing)
    hpf = preset_options("tiny", options.data, baseline=True, device="cpu", total_iters=1, batch_size=2,
                         model=MODEL_PRESETS["tiny-hpf"].config, wing=str(wing), sample_sources=2,
                         sample_latents=1, interp_steps=2)
    result = train_mod.train(hpf, out=tmp_path / "runs")
    trained = ckpt_mod.read_checkpoint(result.last_checkpoint).networks()["generator"]
    initial = train_mod.Trainer(result.options).nets["generator"].state_dict()  # same seed: same He init
    shortcuts = [k for k in initial if k.startswith("decode.") and "conv1x1" in k]
    assert shortcuts and all(torch.equal(trained[k], initial[k]) for k in shortcuts)  # skipped with w_hpf > 0
    assert not torch.equal(trained["from_rgb.weight"], initial["from_rgb.weight"])
    bundle = ckpt_mod.export_bundle(result.last_checkpoint, tmp_path / "bundle")
    assert any(k.startswith("fan.") for k in bundle.load_arrays())
    out = smoothgan.load(bundle.path).translate(np.full((32, 32, 3), 90, np.uint8), "circle")
    assert out.images.shape == (1, 1, 32, 32, 3)


# --------------------------------------------------------------------------------------------------------------
# CLI


def test_cli_dry_run_prints_options_and_dataset_report(dataset: Path) -> None:
    result = runner.invoke(app, ["train", str(dataset), "--preset", "tiny", "--lpips-random-backbone", "--iters",
                                 "16", "--batch-size", "2", "--device", "cpu", "--dry-run"])
    assert result.exit_code == 0, result.output
    resolved, end = json.JSONDecoder().raw_decode(result.stdout)
    options = TrainOptions.from_dict(resolved)
    assert (options.batch_size, options.total_iters, options.loss.ds_iter, options.domains) == (2, 16, 16, DOMAINS)
    assert options.lpips_random_backbone
    assert "2 domains, 8 images" in result.stdout[end:] and "device: cpu" in result.stdout[end:]
    assert "RANDOM AlexNet" in result.output
    no_alexnet = runner.invoke(app, ["train", str(dataset), "--preset", "tiny", "--lpips-weights", "missing.pth",
                                     "--device", "cpu", "--dry-run"])
    assert no_alexnet.exit_code == 2 and "missing.pth not found" in no_alexnet.output
    missing_wing = runner.invoke(app, ["train", str(dataset), "--preset", "celeba_hq", "--dry-run"])
    assert missing_wing.exit_code == 2 and "pass --wing wing.ckpt" in missing_wing.output
    assert "Traceback" not in missing_wing.output


def test_cli_resume_takes_the_run_options_unless_told_otherwise(run: train_mod.RunResult) -> None:
    step2 = str(run.run_dir / "checkpoints" / "step-000002")
    result = runner.invoke(app, ["train", run.options.data, "--resume", step2, "--dry-run"])
    assert result.exit_code == 0, result.output
    resolved, end = json.JSONDecoder().raw_decode(result.stdout)
    assert TrainOptions.from_dict(resolved) == run.options
    assert f"would resume from {step2} (step 2)" in result.stdout[end:]
    other = runner.invoke(app, ["train", run.options.data, "--resume", step2, "--preset", "tiny", "--baseline",
                                "--device", "cpu", "--dry-run"])
    assert json.JSONDecoder().raw_decode(other.stdout)[0]["loss"]["smoothing"] is False


def test_cli_train_runs_and_prints_status_lines(dataset: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(dataset), "--preset", "tiny", "--baseline", "--iters", "2",
                                 "--device", "cpu", "--out", str(tmp_path), "--name", "cli"])
    assert result.exit_code == 0, result.output
    assert "step 2/2" in result.stdout and "img/s" in result.stdout
    assert (tmp_path / "00000-cli" / "checkpoints" / "step-000002" / "checkpoint.json").is_file()


def test_cli_train_with_the_papers_smoothing_form(dataset: Path, tmp_path: Path) -> None:
    """--style-reg paper --triplet paper: stored in options.json, and the encoded-style triplet runs in a step."""
    result = runner.invoke(app, ["train", str(dataset), "--preset", "tiny", "--lpips-random-backbone", "--iters",
                                 "2", "--style-reg", "paper", "--triplet", "paper", "--device", "cpu", "--out",
                                 str(tmp_path), "--name", "paper"])
    assert result.exit_code == 0, result.output
    options = TrainOptions.from_json(tmp_path / "00000-paper" / "options.json")
    assert (options.loss.style_reg, options.loss.triplet) == ("paper", "paper")
    ticks = [json.loads(line) for line in (tmp_path / "00000-paper" / "stats.jsonl").read_text().splitlines()]
    assert all(np.isfinite(tick["losses"]["G/latent_tri"]) for tick in ticks)


def test_cli_data_synth(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    result = runner.invoke(app, ["data", "synth", str(out), "--per-domain", "3", "--img-size", "16", "--domains",
                                 "circle,diamond", "--val-fraction", "0.34"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "train").iterdir()) == ["circle", "diamond"]
    assert Image.open(out / "train" / "circle" / "00000.png").size == (16, 16)
    again = runner.invoke(app, ["data", "synth", str(out)])
    assert again.exit_code == 2 and again.output.strip().splitlines()[-1].startswith("error:")


def test_cli_import_accepts_a_training_checkpoint(run: train_mod.RunResult, tmp_path: Path) -> None:
    result = runner.invoke(app, ["import", str(run.last_checkpoint), "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "circle, square" in result.output
    assert smoothgan.load(tmp_path / "b").domains == DOMAINS
    not_a_checkpoint = runner.invoke(app, ["import", str(tmp_path), "--out", str(tmp_path / "c")])
    assert not_a_checkpoint.exit_code == 3 and "neither a training checkpoint" in not_a_checkpoint.output


def test_shapes32_preset_fits_the_synthetic_set_and_keeps_the_official_schedule_shape(tmp_path: Path) -> None:
    from smoothgan.trainer.synth import DEFAULT_DOMAINS

    assert MODEL_PRESETS["shapes32"].domains == DEFAULT_DOMAINS
    smoothed = preset_options("shapes32", tmp_path)
    base = preset_options("shapes32", tmp_path, baseline=True)
    assert smoothed.model.img_size == 32 and smoothed.model.num_domains == len(DEFAULT_DOMAINS)
    # kl / style regularisation from 40% to 100% of the run, λ_ds decays over all of it (REFERENCE 4.5, 4.7.2)
    loss = smoothed.loss
    assert (loss.kl_start_iter, loss.kl_start_iter + loss.kl_iter, loss.ds_iter) == (
        0.4 * smoothed.total_iters, smoothed.total_iters, smoothed.total_iters)
    assert base.loss.ds_iter == base.total_iters and not base.loss.smoothing and smoothed.loss.smoothing
    assert smoothed.batch_size == base.batch_size == 8
