"""What a run leaves to look at: the run directory, per-tick statistics and sample grids (stylegan3-like).

Layout::

    runs/<NNNNN>-<name>/
      options.json       the resolved TrainOptions (reloadable with ``smoothgan train --options``)
      run.json           dataset report, world size, versions, resume source
      stats.jsonl        one JSON object per tick (:class:`TickStats`)
      events.out.tfevents.*   the same scalars for TensorBoard (when tensorboard is installed)
      samples/step-<NNNNNN>-latent.png   rows: validation sources; columns: source, then per target domain
                                         ``sample_latents`` fixed latents through the EMA mapping network
      samples/step-<NNNNNN>-interp.png   rows: sources; frames: lerp from the source's own style (EMA style
                                         encoder) to a fixed latent style of the next domain, both ends included
      checkpoints/step-<NNNNNN>/         see smoothgan.trainer.checkpoint
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from smoothgan import images
from smoothgan.errors import DataError

log = logging.getLogger(__name__)


def make_run_dir(out: str | os.PathLike[str], name: str) -> Path:
    """Create ``out/<NNNNN>-<name>`` with the next free run number (as stylegan3)."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "run"
    for _ in range(100):  # another process may take the same number: try the next one
        ids = [int(m.group(1)) for p in root.iterdir() if (m := re.match(r"^(\d+)-", p.name))]
        run_dir = root / f"{max(ids, default=-1) + 1:05d}-{safe}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise OSError(f"cannot create a run directory in {root}")


@dataclass
class TickStats:
    """One status line: means over the tick's iterations (all processes) and speed."""

    step: int  # iterations done
    total_iters: int
    losses: dict[str, float]
    sec_per_iter: float
    images_per_sec: float
    lambda_ds: float
    kl_weight: float
    elapsed_s: float
    peak_gpu_mem_gb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values.update(values.pop("extra"))
        if self.peak_gpu_mem_gb is None:
            values.pop("peak_gpu_mem_gb")
        return values

    def status_line(self) -> str:
        """A compact one-line summary (the CLI colours it)."""
        d = sum(v for k, v in self.losses.items() if k.startswith("D/") and not k.endswith("reg")) / 2
        g = self.losses.get("G/latent_adv", float("nan"))
        mem = f"  mem {self.peak_gpu_mem_gb:.2f} GB" if self.peak_gpu_mem_gb is not None else ""
        return (f"step {self.step}/{self.total_iters}  {self.images_per_sec:.1f} img/s  {self.sec_per_iter:.3f} s/it"
                f"  D {d:.3f}  G_adv {g:.3f}  cyc {self.losses.get('G/latent_cyc', float('nan')):.3f}"
                f"  λds {self.lambda_ds:.3f}  kl {self.kl_weight:.3f}{mem}")


class StatsWriter:
    """Appends ticks to ``stats.jsonl`` and, when tensorboard is importable, to TensorBoard events."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = run_dir / "stats.jsonl"
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:  # tensorboard is an optional extra
                log.info("tensorboard not available (%s): stats.jsonl only", exc)
            else:
                self._tb = SummaryWriter(str(run_dir))

    def write(self, tick: TickStats) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(tick.to_dict()) + "\n")
        if self._tb is not None:
            for key, value in tick.losses.items():
                self._tb.add_scalar(f"Loss/{key}", value, tick.step)
            for key in ("sec_per_iter", "images_per_sec", "lambda_ds", "kl_weight", "peak_gpu_mem_gb"):
                value = getattr(tick, key)
                if value is not None:
                    self._tb.add_scalar(f"Progress/{key}", value, tick.step)
            self._tb.flush()

    def add_image(self, tag: str, image: np.ndarray, step: int) -> None:
        if self._tb is not None:
            self._tb.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_stats(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The ticks of a run's ``stats.jsonl``; a torn last line (a run killed mid-write) is left out."""
    path = Path(run_dir) / "stats.jsonl"
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    ticks = []
    for number, line in enumerate(lines):
        try:
            ticks.append(json.loads(line))
        except json.JSONDecodeError:
            if number != len(lines) - 1:
                raise DataError(f"{path}: line {number + 1} is not JSON") from None
    return ticks


# ----------------------------------------------------------------------------------------------------------------
# Samples (REFERENCE 4.2 step 8: debug images from the EMA networks on a fixed validation batch)


def _to_uint8(x: Tensor) -> list[np.ndarray]:
    """[B, 3, H, W] in [-1, 1] -> list of uint8 [H, W, 3] (clamped, round half up as torchvision save_image)."""
    x = ((x.detach().float().cpu() + 1) / 2).clamp(0, 1) * 255 + 0.5
    return list(x.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())


@dataclass
class SampleBatch:
    """The fixed inputs of every sample grid: validation sources, their domains and fixed latents."""

    x: Tensor  # [N, 3, H, W]
    y: Tensor  # [N]
    z: Tensor  # [sample_latents, latent_dim]
    num_domains: int
    interp_steps: int


@torch.no_grad()
def render_samples(
    nets_ema: Mapping[str, torch.nn.Module], batch: SampleBatch, masks_fn: Any = None
) -> dict[str, np.ndarray]:
    """Grids ``{"latent": ..., "interp": ...}`` as uint8 [H, W, 3]; no global RNG is touched."""
    generator, mapping, encoder = (nets_ema[k] for k in ("generator", "mapping_network", "style_encoder"))
    device = next(generator.parameters()).device
    x, y, z = batch.x.to(device), batch.y.to(device), batch.z.to(device)
    n, k, num_z = x.shape[0], batch.num_domains, z.shape[0]
    masks = masks_fn(x) if masks_fn is not None else None
    columns = [x]
    for domain in range(k):
        for j in range(num_z):
            s = mapping(z[j : j + 1].expand(n, -1), torch.full((n,), domain, dtype=torch.long, device=device))
            columns.append(generator(x, s, masks))
    tiles = [tile for row in zip(*(_to_uint8(c) for c in columns)) for tile in row]
    latent = images.make_grid(tiles, ncols=len(columns))

    s_src = encoder(x, y)  # [N, D]
    s_trg = mapping(z[:1].expand(n, -1), (y + 1) % k)  # the next domain, first fixed latent
    steps = batch.interp_steps
    alphas = torch.arange(steps, dtype=torch.float32, device=device) / (steps - 1)  # both ends (quirk 18)
    frames = [generator(x, torch.lerp(s_src, s_trg, a), masks) for a in alphas]
    tiles = [x_i for row in zip(*(_to_uint8(f) for f in [x, *frames])) for x_i in row]
    interp = images.make_grid(tiles, ncols=steps + 1)
    return {"latent": latent, "interp": interp}


def save_samples(folder: Path, step: int, grids: Mapping[str, np.ndarray]) -> list[Path]:
    paths = []
    for kind, grid in grids.items():
        path = folder / f"step-{step:06d}-{kind}.png"
        images.save_image(path, grid)
        paths.append(path)
    return paths


__all__ = ["SampleBatch", "StatsWriter", "TickStats", "make_run_dir", "read_stats", "render_samples",
           "save_samples"]
