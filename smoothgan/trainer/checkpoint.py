"""Training checkpoints: atomic, exactly resumable, and exportable to a bundle.

Layout of ``RUN/checkpoints/step-<NNNNNN>/`` (NNNNNN = iterations done)::

    checkpoint.json        marker: format, step, the run's TrainOptions, domains, world size, versions
    nets.safetensors       generator.*, mapping_network.*, style_encoder.*, discriminator.* (trained networks)
    nets_ema.safetensors   generator.*, mapping_network.*, style_encoder.* (EMA) and fan.* when w_hpf > 0
    state.pt               optimizers, RNG states (torch CPU/CUDA, numpy, python; one set per process) and the
                           two data loader positions; plain tensors and containers, read with weights_only=True

A checkpoint is written into a temporary sibling folder and renamed into place, so a crash never leaves a
half-written one. The official solver restores networks and optimizers only (REFERENCE 4.8); restoring RNGs and
loader positions as well makes a resumed run continue exactly as the uninterrupted one.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from smoothgan import __version__
from smoothgan.config import check_value, describe
from smoothgan.errors import CheckpointError, InputError, SmoothganError
from smoothgan.fileio import atomic_dir, clean_stale, read_marker, remove_tree
from smoothgan.trainer.options import TrainOptions

if TYPE_CHECKING:
    from smoothgan.bundle import ModelBundle

log = logging.getLogger(__name__)

FORMAT = "smoothgan-train-checkpoint"
FORMAT_VERSION = 1
MARKER = "checkpoint.json"
NETS_FILE = "nets.safetensors"
EMA_FILE = "nets_ema.safetensors"
STATE_FILE = "state.pt"
CHECKPOINTS_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d+)$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def is_checkpoint(path: str | os.PathLike[str]) -> bool:
    """True for a directory holding the checkpoint marker."""
    return (Path(path) / MARKER).is_file()


def list_checkpoints(folder: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints in ``folder`` (a run directory or its ``checkpoints/``), oldest first."""
    root = Path(folder)
    if (root / CHECKPOINTS_DIR).is_dir():
        root = root / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and is_checkpoint(p)]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint directory, or the latest checkpoint of a run directory; CheckpointError otherwise."""
    target = Path(path)
    if is_checkpoint(target):
        return target
    if not target.exists():
        raise CheckpointError(f"checkpoint or run directory not found: {target}")
    found = list_checkpoints(target)
    if not found:
        raise CheckpointError(f"{target} is neither a training checkpoint (no {MARKER}) nor a run with checkpoints")
    return found[-1]


# ----------------------------------------------------------------------------------------------------------------
# RNG states as plain tensors (loadable with weights_only=True)


def capture_rng() -> dict[str, Any]:
    """This process's torch (CPU and CUDA), numpy and python RNG states."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            log.warning("checkpoint has CUDA RNG states for %d devices, this machine has %d: not restored",
                        len(cuda), torch.cuda.device_count())


# ----------------------------------------------------------------------------------------------------------------
# Save / load


def _flat_state(modules: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": value.detach().cpu().contiguous().clone()
            for name, module in modules.items() for key, value in module.state_dict().items()}


def _grouped(tensors: Mapping[str, torch.Tensor], file: Path) -> dict[str, dict[str, torch.Tensor]]:
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        module, dot, name = key.partition(".")
        if not dot or not module or not name:
            raise CheckpointError(f"{file}: tensor {key!r} is not named <network>.<parameter>")
        grouped.setdefault(module, {})[name] = value
    return grouped


def save_checkpoint(
    folder: str | os.PathLike[str],
    step: int,
    options: TrainOptions,
    nets: Mapping[str, nn.Module],
    nets_ema: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    rng: Sequence[Mapping[str, Any]],
    loaders: Mapping[str, Mapping[str, int]],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``folder/step-<step>`` atomically; ``rng`` holds one state per process (rank order)."""
    from safetensors.torch import save_file

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    clean_stale(root)  # staging leftovers of killed runs, whatever step they were writing
    target = root / checkpoint_name(step)
    with atomic_dir(target) as staging:  # re-saving a step (after a resume) replaces it whole
        save_file(_flat_state(nets), str(staging / NETS_FILE), metadata={"format": FORMAT})
        save_file(_flat_state(nets_ema), str(staging / EMA_FILE), metadata={"format": FORMAT})
        state = {
            "step": step,
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            "rng": list(rng),
            "loaders": {name: dict(value) for name, value in loaders.items()},
        }
        torch.save(state, staging / STATE_FILE)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "step": step,
            "domains": list(options.domains),
            "world_size": len(rng),
            "smoothgan_version": __version__,
            "torch_version": torch.__version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **dict(extra or {}),
            "options": options.to_dict(),
        }
        (staging / MARKER).write_text(json.dumps(meta, indent=2) + "\n")  # last: marks the folder complete
    return target


def prune_checkpoints(folder: str | os.PathLike[str], keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (0 keeps all); returns what was deleted."""
    if keep_last <= 0:
        return []
    doomed = list_checkpoints(folder)[:-keep_last]
    for path in doomed:
        remove_tree(path)  # renamed aside first: a kill never leaves a half-deleted checkpoint under its name
    return doomed


@dataclass
class Checkpoint:
    """A checkpoint read back: metadata, options, network states and (on demand) the training state."""

    path: Path
    meta: dict[str, Any]
    options: TrainOptions

    @property
    def step(self) -> int:
        return self.meta["step"]

    def networks(self, ema: bool = False) -> dict[str, dict[str, torch.Tensor]]:
        """Per-network state dicts of the trained (or EMA) networks."""
        from safetensors.torch import load_file

        from safetensors import SafetensorError

        file = self.path / (EMA_FILE if ema else NETS_FILE)
        try:
            tensors = load_file(str(file))
        except (OSError, SafetensorError) as exc:  # missing, unreadable or corrupt
            raise CheckpointError(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
        return _grouped(tensors, file)

    def training_state(self) -> dict[str, Any]:
        """Optimizers, RNG states and loader positions (``torch.load(weights_only=True)``)."""
        from smoothgan.models.checkpoints import load_torch_file

        state = load_torch_file(self.path / STATE_FILE)
        if not isinstance(state, dict) or {"optimizers", "rng", "loaders"} - set(state):
            raise CheckpointError(f"{self.path / STATE_FILE} is not a smoothgan training state")
        return state


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Open a checkpoint directory (or a run directory's latest checkpoint) and validate its marker."""
    folder = resolve_checkpoint(path)
    marker = folder / MARKER
    meta = read_marker(marker, FORMAT, FORMAT_VERSION, CheckpointError, "a smoothgan training checkpoint marker")
    step = meta.get("step")
    if type(step) is not int or step < 0:
        raise CheckpointError(f"{marker}: step must be a non-negative integer, got {describe(step)}")
    if "domains" in meta:
        check_value(meta["domains"], tuple[str, ...], f"{marker}: domains", CheckpointError)
    if not isinstance(meta.get("options"), dict):
        raise CheckpointError(f"{marker}: options must be an object (the run's training options), got "
                              f"{describe(meta.get('options'))}")
    try:
        options = TrainOptions.from_dict(meta["options"])
    except SmoothganError as exc:
        raise CheckpointError(f"{marker}: bad training options: {exc}") from None
    return Checkpoint(folder, meta, options)


# ----------------------------------------------------------------------------------------------------------------
# Export


def export_bundle(
    checkpoint_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    domains: Sequence[str] | None = None,
    overwrite: bool = False,
    name: str | None = None,
    align: str | None = None,
) -> ModelBundle:
    """Write the EMA networks (+ FAN) of a training checkpoint as a bundle; domain names from the run's data.

    ``checkpoint_dir`` may also be a run directory (its latest checkpoint is used). ``domains`` overrides the
    stored names (same count, index order). ``align`` is recorded in the bundle's preprocessing (default:
    ``"face"`` for models with a FAN, ``"none"`` otherwise; see :func:`smoothgan.models.checkpoints.import_to_bundle`).
    """
    from smoothgan.bundle import check_replaceable, save_bundle
    from smoothgan.fileio import sha256_file
    from smoothgan.models.loading import load_networks

    check_replaceable(out, overwrite)  # before reading weights: refuse a target we may not replace right away
    ckpt = read_checkpoint(checkpoint_dir)
    config = ckpt.options.model
    names = tuple(domains) if domains else tuple(ckpt.meta.get("domains") or ckpt.options.domains)
    if len(names) != config.num_domains:
        raise InputError(f"{len(names)} domain name(s) for a model with {config.num_domains} domains; give them "
                         "in index order (sorted training folder names)")
    states = ckpt.networks(ema=True)
    networks = load_networks(config, states, "cpu", source=str(ckpt.path / EMA_FILE))
    provenance = {
        "name": name or Path(out).name,
        "source": str(ckpt.path),
        "source_sha256": sha256_file(ckpt.path / EMA_FILE),
        "kind": "smoothgan training checkpoint (EMA networks)",
        "step": ckpt.step,
        "preset": ckpt.options.preset,
        "variant": "baseline" if ckpt.options.baseline else "smoothed",
        "notes": [f"EMA weights after {ckpt.step} iterations"],
    }
    if align is None:
        align = "face" if config.uses_masks else "none"
    return save_bundle(out, networks, config, names, provenance, overwrite=overwrite, preprocessing={"align": align})


__all__ = [
    "CHECKPOINTS_DIR",
    "MARKER",
    "Checkpoint",
    "capture_rng",
    "checkpoint_name",
    "export_bundle",
    "is_checkpoint",
    "list_checkpoints",
    "prune_checkpoints",
    "read_checkpoint",
    "resolve_checkpoint",
    "restore_rng",
    "save_checkpoint",
]
