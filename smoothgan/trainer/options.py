"""Training options: one frozen dataclass = the run's ``options.json``, strict on load, plus named presets.

Defaults are the official StarGAN v2 argparse values (REFERENCE 4.4, 4.6). Presets (:data:`TRAIN_PRESETS`) name a
model architecture and two hyper-parameter sets, one per variant:

- ``smoothed`` (default): the smoothing repo's ``train.sh`` (REFERENCE 4.7.5): batch 4, λ_sty 2, λ_lpips 1,
  λ_kl 1 ramped from 40k to 100k, λ_tri 1 (the argparse default: ``train.sh`` never defines ``LAMBDA_TRI``,
  REFERENCE 8.2), reference partners re-drawn on every access (REFERENCE 4.1);
- ``baseline``: plain StarGAN v2 (smoothing terms off; SG README values: batch 8, λ_sty 1, λ_ds 1 CelebA-HQ /
  2 AFHQ, fixed reference partners).

There are no official smoothing hyper-parameters for AFHQ (REFERENCE 4.6): ``afhq`` smoothed uses ``train.sh``'s
values with AFHQ's architecture (w_hpf 0) and AFHQ's λ_ds 2; that choice is ours.

Where the official code and the papers differ (REFERENCE 4.9) the code is the default and the paper is an option:

- style regularisation: ``loss.style_reg="code"`` (mean of squares of s_trg and s_org, REFERENCE 4.7.2) or
  ``"paper"`` (Eq. 3, E||s||², alternating real/generated codes);
- triplet: ``loss.triplet="code"`` (mapping-network outputs only in the steps that train M and E, REFERENCE
  4.7.1) or ``"paper"`` (Eq. 1 on both kinds of style code: the mean of the code's term and a triplet on
  encoded real images, E(x_ref) / E(x_ref2) / E(x_real), in the latent step where E is trained);
- λ_ds and the kl weight are closed-form functions of the step (REFERENCE 4.5, 4.7.2), so a resumed run continues
  them; the official loop restarts both on resume (REFERENCE 4.8, 8.6);
- ``reference_mode``: ``"official"`` (StarGAN v2: fixed partner per reference) or ``"smoothing"`` (re-drawn);
- the EMA networks start from PyTorch's default init, not from the He-initialised weights (REFERENCE 4.4, 8.7):
  kept as the code does; it only shows in early samples.

``batch_size`` is the global batch: with N processes each draws ``batch_size / N`` images per step and DDP
averages the gradients, so ``--batch-size 8`` on 8 GPUs optimises the same objective as the official batch 8.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from smoothgan.config import PRESETS as MODEL_PRESETS
from smoothgan.config import ModelConfig, strict_from_dict
from smoothgan.errors import InputError
from smoothgan.fileio import read_json

FORMAT = "smoothgan-train-options"
FORMAT_VERSION = 1
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
REFERENCE_MODES: tuple[str, ...] = ("official", "smoothing")  # smoothgan.trainer.data.REFERENCE_MODES (no torch)
STYLE_REGS: tuple[str, ...] = ("code", "paper")
TRIPLETS: tuple[str, ...] = ("code", "paper")


@dataclass(frozen=True)
class LossWeights:
    """Loss weights and schedules; defaults are the official argparse defaults (REFERENCE 4.6, 4.7.5).

    ``smoothing=False`` gives the plain StarGAN v2 objective (no kl, triplet or LPIPS terms, whatever their
    weights). ``style_reg`` picks the code's style regularisation ("code", REFERENCE 4.7.2) or the paper's Eq. 3
    ("paper", see :func:`style_regularization_paper`); both use the :func:`kl_weight` schedule. ``triplet``
    picks the code's triplet on mapping outputs ("code") or the paper's on mapping outputs and encoded real
    images ("paper", see :func:`generator_loss`).
    """

    lambda_reg: float = 1.0
    lambda_sty: float = 1.0
    lambda_ds: float = 1.0
    lambda_cyc: float = 1.0
    ds_iter: int = 100_000
    smoothing: bool = True
    lambda_tri: float = 1.0
    triplet_margin: float = 0.1
    lambda_kl: float = 1.0
    init_lambda_kl: float = 0.0
    kl_start_iter: int = 40_000
    kl_iter: int = 60_000
    lambda_lpips: float = 0.0
    style_reg: Literal["code", "paper"] = "code"
    triplet: Literal["code", "paper"] = "code"

    def __post_init__(self) -> None:
        problems = [
            f"{f.name} must be >= 0, got {getattr(self, f.name)}"
            for f in dataclasses.fields(self)
            if f.type in ("float", "int") and getattr(self, f.name) < 0
        ]
        if self.ds_iter <= 0 or self.kl_iter <= 0:
            problems.append(f"ds_iter and kl_iter must be > 0, got {self.ds_iter} and {self.kl_iter}")
        if self.style_reg not in STYLE_REGS:
            problems.append(f"style_reg must be one of {', '.join(STYLE_REGS)}, got {self.style_reg!r}")
        if self.triplet not in TRIPLETS:
            problems.append(f"triplet must be one of {', '.join(TRIPLETS)}, got {self.triplet!r}")
        if problems:
            raise InputError("invalid loss weights: " + "; ".join(problems))

    @classmethod
    def baseline(cls, **changes: Any) -> LossWeights:
        """Plain StarGAN v2 (the smoothing terms off), with optional overrides."""
        return cls(smoothing=False, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LossWeights:
        """Build from JSON: unknown keys and wrong types are errors (a typo must not become a default)."""
        return strict_from_dict(cls, values, "loss settings", InputError)


@dataclass(frozen=True)
class TrainOptions:
    """Everything a training run depends on; ``options.json`` in the run directory is :meth:`to_dict`."""

    data: str  # root holding train/<domain>/ (and val/<domain>/ for samples)
    model: ModelConfig  # or a model preset name, resolved on construction
    preset: str = "custom"
    loss: LossWeights = field(default_factory=LossWeights)
    domains: tuple[str, ...] = ()  # domain names in index order; filled from data/train by resolve_domains()
    batch_size: int = 8  # global batch (all processes together)
    total_iters: int = 100_000
    lr: float = 1e-4  # generator, style encoder, discriminator
    f_lr: float = 1e-6  # mapping network
    betas: tuple[float, float] = (0.0, 0.99)
    weight_decay: float = 1e-4  # coupled L2 (torch.optim.Adam), every parameter
    ema_beta: float = 0.999
    randcrop_prob: float = 0.5
    reference_mode: str = "official"
    seed: int = 777
    precision: str = "fp32"  # "bf16": autocast on CUDA; R1 and FAN masks stay fp32
    compile: bool = False  # torch.compile generator, mapping network, style encoder (not D: R1 double backward)
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N" (under torchrun each process uses cuda:LOCAL_RANK)
    num_workers: int = 4
    print_every: int = 10
    sample_every: int = 5000
    save_every: int = 10_000
    keep_last: int = 3  # checkpoints kept; 0 keeps all
    check_every_step: bool = False  # NaN/inf check after every step (one host sync per step)
    sample_sources: int = 8
    sample_latents: int = 3
    interp_steps: int = 8
    wing: str | None = None  # wing.ckpt (FAN) for w_hpf > 0
    lpips_weights: str | None = None  # AlexNet ImageNet state dict for the LPIPS content loss
    lpips_random_backbone: bool = False  # smoke tests only: LPIPS with a random AlexNet
    name: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.model, str):  # a model preset name (smoothgan.config.PRESETS or a training preset)
            object.__setattr__(self, "model", _model_preset(self.model))
        problems = []
        for key in ("batch_size", "total_iters", "print_every", "sample_every", "save_every", "sample_sources",
                    "sample_latents"):
            if getattr(self, key) < 1:
                problems.append(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("keep_last", "num_workers", "lr", "f_lr", "weight_decay"):
            if getattr(self, key) < 0:
                problems.append(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.interp_steps < 2:
            problems.append(f"interp_steps must be >= 2, got {self.interp_steps}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            problems.append(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not 0.0 <= self.ema_beta <= 1.0:
            problems.append(f"ema_beta must be in [0, 1], got {self.ema_beta}")
        if not 0.0 <= self.randcrop_prob <= 1.0:
            problems.append(f"randcrop_prob must be in [0, 1], got {self.randcrop_prob}")
        if self.reference_mode not in REFERENCE_MODES:
            problems.append(f"reference_mode must be one of {', '.join(REFERENCE_MODES)}, got {self.reference_mode!r}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not (self.device in ("cpu", "cuda") or (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            problems.append(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.precision == "bf16" and self.device == "cpu":
            problems.append("precision bf16 (autocast) needs a CUDA device")
        if self.domains and len(self.domains) != self.model.num_domains:
            problems.append(f"{len(self.domains)} domain names for a model with {self.model.num_domains} domains")
        if self.model.w_hpf > 0 and not self.wing:
            problems.append(
                f"w_hpf = {self.model.w_hpf:g} needs the FAN landmark network for its masks: pass --wing wing.ckpt"
            )
        if self.lpips_weights and self.lpips_random_backbone:
            problems.append("pass either lpips_weights or lpips_random_backbone, not both")
        if problems:
            raise InputError("invalid training options: " + "; ".join(problems))

    # -- derived ------------------------------------------------------------------------------------------------

    @property
    def baseline(self) -> bool:
        """Plain StarGAN v2 (no smoothing terms)."""
        return not self.loss.smoothing

    @property
    def uses_lpips(self) -> bool:
        return self.loss.smoothing and self.loss.lambda_lpips > 0

    @property
    def train_dir(self) -> Path:
        return Path(self.data) / "train"

    @property
    def val_dir(self) -> Path:
        return Path(self.data) / "val"

    def default_name(self) -> str:
        variant = "baseline" if self.baseline else "smoothed"
        return f"{self.preset}-{variant}-{Path(self.data).name or 'data'}-bs{self.batch_size}"

    def replace(self, **changes: Any) -> TrainOptions:
        return dataclasses.replace(self, **changes)

    def with_iters(self, total_iters: int, scale_schedules: bool = True) -> TrainOptions:
        """Another run length; schedules keep their fraction of the run unless ``scale_schedules`` is False.

        Officially λ_ds decays over the whole run (ds_iter = total_iters) and the kl weight ramps from 40% to 100%
        of it (REFERENCE 4.5, 4.7.2); scaling keeps those shapes for shorter or longer runs.
        """
        if not scale_schedules or total_iters == self.total_iters:
            return self.replace(total_iters=total_iters)
        ratio = total_iters / self.total_iters

        def scaled(value: int) -> int:
            return max(1, round(value * ratio))

        loss = dataclasses.replace(
            self.loss, ds_iter=scaled(self.loss.ds_iter), kl_iter=scaled(self.loss.kl_iter),
            kl_start_iter=round(self.loss.kl_start_iter * ratio),
        )
        return self.replace(total_iters=total_iters, loss=loss)

    @classmethod
    def resolve(cls, data: str | os.PathLike[str], *, preset: str | None = None,
                options_file: str | os.PathLike[str] | None = None, resume_options: TrainOptions | None = None,
                baseline: bool = False, iters: int | None = None, scale_schedules: bool = True,
                style_reg: str | None = None, triplet: str | None = None, **overrides: Any) -> TrainOptions:
        """The options of a run from what a user gives (the ``smoothgan train`` command line), in one place.

        Start from ``options_file``, else from ``resume_options`` (those stored with the checkpoint being
        resumed, used when no ``preset`` is named), else from ``preset`` (default ``small``); then ``overrides``
        (``None`` values are ignored), ``baseline``, ``style_reg``, ``triplet`` and ``iters``. Without an explicit ``device`` a fresh run uses CUDA when it is available.
        """
        if preset is not None and options_file is not None:
            raise InputError("pass either --options or --preset, not both")
        overrides = {key: value for key, value in overrides.items() if value is not None}
        base = None  # options to start from instead of a preset: a JSON file, or the checkpoint being resumed
        if options_file is not None:
            base = cls.from_json(options_file)
        elif preset is None and resume_options is not None:
            base = resume_options
        if "device" not in overrides and base is None:
            overrides["device"] = default_device()
        if base is not None:
            loss = dataclasses.replace(base.loss, smoothing=False) if baseline else base.loss
            options = base.replace(data=str(data), loss=loss, domains=(), **overrides)
        else:
            options = preset_options(preset or "small", data, baseline=baseline, **overrides)
        loss_forms = {key: value for key, value in (("style_reg", style_reg), ("triplet", triplet)) if value}
        if loss_forms:
            options = options.replace(loss=dataclasses.replace(options.loss, **loss_forms))
        if iters is not None:
            options = options.with_iters(iters, scale_schedules=scale_schedules)
        return options

    # -- JSON ---------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["model"] = self.model.to_dict()
        values["loss"] = self.loss.to_dict()
        values["domains"] = list(self.domains)
        values["betas"] = list(self.betas)
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **values}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainOptions:
        """Strict: unknown keys are an error; ``model`` may be a config dict or a model preset name."""
        values = dict(values)
        fmt, version = values.pop("format", FORMAT), values.pop("format_version", FORMAT_VERSION)
        if fmt != FORMAT or version != FORMAT_VERSION:
            raise InputError(f"not smoothgan training options (format {fmt!r} version {version!r})")
        if "data" not in values or "model" not in values:
            raise InputError("training options need at least 'data' and 'model'")
        if isinstance(values["model"], str):  # a model preset name
            values["model"] = _model_preset(values["model"]).to_dict()
        return strict_from_dict(cls, values, "training options", InputError)  # nested model and loss too

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> TrainOptions:
        values = read_json(path, InputError)
        if not isinstance(values, dict):
            raise InputError(f"{path} does not hold a JSON object of training options")
        return cls.from_dict(values)


def default_device() -> str:
    """``cuda`` when PyTorch sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _model_preset(name: str) -> ModelConfig:
    if name in MODEL_PRESETS:
        return MODEL_PRESETS[name].config
    if name in TRAIN_PRESETS:
        return MODEL_PRESETS[TRAIN_PRESETS[name].model].config
    raise InputError(f"unknown model preset {name!r}; known: {', '.join(MODEL_PRESETS)}")


# ----------------------------------------------------------------------------------------------------------------
# Presets


@dataclass(frozen=True)
class TrainPreset:
    """A named training setup: model preset (``smoothgan.config.PRESETS``) and options per variant."""

    model: str
    description: str
    common: Mapping[str, Any]
    smoothed: Mapping[str, Any]  # "loss" holds LossWeights fields
    baseline: Mapping[str, Any]


# SM train.sh (REFERENCE 4.7.5) and SG README (REFERENCE 4.6); shared: R1 1, cycle 1, 100k iterations.
_SM_LOSS = {"lambda_sty": 2.0, "lambda_ds": 1.0, "lambda_lpips": 1.0, "lambda_kl": 1.0, "init_lambda_kl": 0.0,
            "lambda_tri": 1.0, "triplet_margin": 0.1, "kl_start_iter": 40_000, "kl_iter": 60_000}
_SM = {"batch_size": 4, "reference_mode": "smoothing", "print_every": 40, "num_workers": 2}
_SG = {"batch_size": 8, "reference_mode": "official", "print_every": 10, "num_workers": 4}
_OFFICIAL = {"total_iters": 100_000, "sample_every": 5000, "save_every": 10_000}

TRAIN_PRESETS: dict[str, TrainPreset] = {
    "celeba_hq": TrainPreset(
        "smoothed-celeba_hq", "CelebA-HQ 256px, w_hpf 1 (needs --wing); official hyper-parameters", _OFFICIAL,
        smoothed={**_SM, "loss": _SM_LOSS},
        baseline={**_SG, "loss": {"lambda_sty": 1.0, "lambda_ds": 1.0}},
    ),
    "afhq": TrainPreset(
        "smoothed-afhq", "AFHQ 256px, w_hpf 0; official StarGAN v2 values, smoothing values of train.sh", _OFFICIAL,
        smoothed={**_SM, "loss": {**_SM_LOSS, "lambda_ds": 2.0}},
        baseline={**_SG, "loss": {"lambda_sty": 1.0, "lambda_ds": 2.0}},
    ),
    "small": TrainPreset(
        "small", "64px narrow model for the synthetic data set (smoothgan data synth)",
        {"total_iters": 20_000, "sample_every": 1000, "save_every": 2000, "print_every": 50, "num_workers": 2,
         "batch_size": 8},
        smoothed={"reference_mode": "smoothing",
                  "loss": {**_SM_LOSS, "ds_iter": 20_000, "kl_start_iter": 8000, "kl_iter": 12_000}},
        baseline={"loss": {"ds_iter": 20_000}},
    ),
    # Measured on the shared 2-core CPU (EXPERIMENTS.md, "Plan for the converged ablation"): 0.38 s/it at batch 8
    # (small at 32 px: 0.77, small at 64 px: 3.0, tiny at 32 px: 0.17 at batch 4), so 24k iterations take ~2.5 h.
    "shapes32": TrainPreset(
        "shapes32", "32px model for the converged CPU ablation (smoothgan data synth --img-size 32; ~2.5 h)",
        {"total_iters": 24_000, "sample_every": 2000, "save_every": 1000, "print_every": 200, "num_workers": 0,
         "batch_size": 8, "keep_last": 3},
        smoothed={"reference_mode": "smoothing",
                  "loss": {**_SM_LOSS, "ds_iter": 24_000, "kl_start_iter": 9600, "kl_iter": 14_400}},
        baseline={"loss": {"ds_iter": 24_000}},
    ),
    "tiny": TrainPreset(
        "tiny", "32px unit-test model (seconds per run on a CPU)",
        {"total_iters": 8, "batch_size": 4, "print_every": 2, "sample_every": 4, "save_every": 4, "keep_last": 2,
         "num_workers": 0, "sample_sources": 4, "sample_latents": 2, "interp_steps": 4},
        smoothed={"reference_mode": "smoothing",
                  "loss": {**_SM_LOSS, "ds_iter": 8, "kl_start_iter": 2, "kl_iter": 4}},
        baseline={"loss": {"ds_iter": 8}},
    ),
}


def preset_options(preset: str, data: str | os.PathLike[str], baseline: bool = False,
                   **overrides: Any) -> TrainOptions:
    """Options of a training preset for ``data``; ``overrides`` replace option fields (``loss`` a LossWeights)."""
    try:
        spec = TRAIN_PRESETS[preset]
    except KeyError:
        raise InputError(f"unknown training preset {preset!r}; known: {', '.join(TRAIN_PRESETS)}") from None
    values: dict[str, Any] = {**spec.common, **(spec.baseline if baseline else spec.smoothed)}
    loss_values = dict(values.pop("loss", {}))
    loss = LossWeights(smoothing=not baseline, **loss_values)
    values.update(data=str(data), model=MODEL_PRESETS[spec.model].config, preset=preset, loss=loss)
    values.update(overrides)
    return TrainOptions(**values)


__all__ = ["FORMAT", "LossWeights", "PRECISIONS", "STYLE_REGS", "TRAIN_PRESETS", "TrainOptions", "TrainPreset", "preset_options"]
