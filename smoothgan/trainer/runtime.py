"""Processes, devices, seeds and pre-flight checks of a training run (used by :mod:`smoothgan.trainer.train`).

Multi-process runs are started by torchrun, which sets RANK / WORLD_SIZE / LOCAL_RANK (and the rendezvous
address) for every process: NCCL on CUDA (process k uses cuda:LOCAL_RANK), gloo on CPU.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist

from smoothgan.errors import DataError, InputError
from smoothgan.trainer.options import TrainOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistInfo:
        """RANK / WORLD_SIZE / LOCAL_RANK as set by torchrun."""
        try:
            return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                       int(os.environ.get("LOCAL_RANK", 0)))
        except ValueError as exc:
            raise InputError(f"bad torchrun environment: {exc}") from None


def device_for(options: TrainOptions, dist: DistInfo) -> torch.device:
    """The training device of this process (cuda:LOCAL_RANK under torchrun)."""
    if options.device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError(f"device {options.device} requested but CUDA is not available (use --device cpu)")
    if dist.world_size > 1:
        return torch.device("cuda", dist.local_rank)
    return torch.device(options.device if ":" in options.device else "cuda:0")


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rank_seed(seed: int, rank: int) -> int:
    """Seed of the latent stream of ``rank`` (drawn after the networks are built with ``seed``)."""
    return int(np.random.SeedSequence([seed, rank, 1]).generate_state(1, np.uint32)[0])


def require_train_dir(options: TrainOptions) -> None:
    """The data folder must exist before anything else is checked or built (it is the likeliest mistake)."""
    if not options.train_dir.is_dir():
        raise DataError(f"{options.train_dir} not found: the data folder must hold train/<domain>/<images> "
                        "(and val/<domain>/<images> for samples)")


def resolve_data(options: TrainOptions, check: bool = True) -> tuple[TrainOptions, Any]:
    """Scan ``DATA/train``: domain names (sorted folders) and the model's num_domains follow the data set.

    Returns the completed options and the :class:`~smoothgan.trainer.data.DatasetReport` (None if not ``check``).
    """
    from smoothgan.trainer.data import check_dataset, scan_domains

    require_train_dir(options)
    report = None
    if check:
        report = check_dataset(options.train_dir, options.model.img_size)
        domains = tuple(report.domains)
    else:
        domains = tuple(scan_domains(options.train_dir))
    if options.domains and tuple(options.domains) != domains:
        raise DataError(f"{options.train_dir} has domains {', '.join(domains)}, the options name "
                        f"{', '.join(options.domains)}")
    model = options.model
    if model.num_domains != len(domains):
        log.info("model num_domains set to %d from the data set (preset had %d)", len(domains), model.num_domains)
        model = replace(model, num_domains=len(domains))
    return options.replace(domains=domains, model=model), report


def preflight(options: TrainOptions) -> list[str]:
    """Check the files and devices a run needs before anything is built; one line per finding for reports."""
    from smoothgan.metrics.lpips import ALEXNET_FILE, hub_checkpoint_path

    require_train_dir(options)
    dist = DistInfo.from_env()
    if options.batch_size % dist.world_size:
        raise InputError(f"batch_size {options.batch_size} is not divisible by the {dist.world_size} processes")
    lines = [f"device: {device_for(options, dist)}, {dist.world_size} process(es), "
             f"{options.batch_size // dist.world_size} images per process and step"]
    if options.wing:
        if not Path(options.wing).is_file():
            raise InputError(f"wing file not found: {options.wing}")
        lines.append(f"FAN masks: {options.wing}")
    if not options.uses_lpips:
        lines.append("LPIPS content loss: off")
    elif options.lpips_random_backbone:
        lines.append("LPIPS content loss: RANDOM AlexNet backbone (smoke tests only)")
    else:
        path = Path(options.lpips_weights) if options.lpips_weights else hub_checkpoint_path(ALEXNET_FILE)
        if not path.is_file():
            raise InputError(f"the LPIPS content loss needs AlexNet ImageNet weights: {path} not found; pass "
                             f"--lpips-weights PATH ({ALEXNET_FILE}) or, for smoke tests only, "
                             "--lpips-random-backbone")
        lines.append(f"LPIPS content loss: AlexNet from {path}")
    return lines



def init_process_group(dist: DistInfo, device: torch.device) -> bool:
    """Join the torchrun job (NCCL on CUDA, gloo on CPU); False when single-process or already joined."""
    if dist.world_size == 1 or torch_dist.is_initialized():
        return False
    torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


__all__ = ["DistInfo", "device_for", "init_process_group", "preflight", "rank_seed", "require_train_dir",
           "resolve_data", "seed_all"]
