"""The training loop: StarGAN v2 + smoothing, one iteration exactly as REFERENCE 4.2, with EMA, bf16, DDP.

:class:`Trainer` owns the networks, EMA copies, optimizers and loaders and runs one iteration
(:meth:`Trainer.train_step`); :func:`train` adds the run directory, ticks, samples and checkpoints. Options and
presets: :mod:`smoothgan.trainer.options` (its docstring lists where we follow the code and where the paper is
an option); processes, devices, data resolution, pre-flight checks: :mod:`smoothgan.trainer.runtime`;
checkpoints and bundle export: :mod:`smoothgan.trainer.checkpoint`; files of a run: :mod:`smoothgan.trainer.monitor`.

How REFERENCE 4.x maps to code:

- 4.1 data: :func:`smoothgan.trainer.sampling.make_train_loaders` (two class-balanced streams per rank); latents
  z_trg, z_trg2 from torch's global RNG on the training device, seeded per rank.
- 4.2 order: masks once per iteration, D latent, D reference, G latent (steps G, M, E), G reference (steps G
  only), EMA; every backward preceded by zeroing all four optimizers' gradients (:meth:`Trainer.train_step`).
- 4.3 / 4.7 losses: :mod:`smoothgan.trainer.losses`; 4.5 / 4.7.2 schedules are functions of the step.
- 4.4: Adam (coupled weight decay) per network, lr 1e-4 and f_lr 1e-6 for the mapping network; He init of the
  four trained networks AFTER deep-copying the EMA networks (so EMA copies start from PyTorch's default init, as
  the official code); EMA of parameters only (not buffers), β = ema_beta, after every iteration.
- 4.8 resume: networks, EMA, optimizers, step, RNG states and loader positions (exact continuation).
- quirk 15: losses are accumulated as detached device tensors and synchronised once per tick; a NaN/inf in any
  loss is located to its iteration without a per-step host sync. quirk 16: R1 in fp32 (losses.r1_penalty); FAN
  masks outside autocast. quirk 17: R1 differentiates a detached copy of x_real.

Multi-GPU: ``torchrun --nproc_per_node 8 -m smoothgan train DATA --preset celeba_hq --wing wing.ckpt``
(or ``torchrun --nproc_per_node 8 --no-python smoothgan train ...``): one process per GPU, NCCL on CUDA and gloo
on CPU, G/M/E/D wrapped in DistributedDataParallel, ``batch_size`` split evenly over the processes, per-rank data
streams and latents, only rank 0 writes. The unused ``conv1x1`` shortcut weights of w_hpf > 0 decoders (REFERENCE
quirk 4) are frozen, so DDP needs no unused-parameter search (the official Adam never updates them either).
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import Tensor, nn

from smoothgan import __version__
from smoothgan.errors import CheckpointError, DataError, InputError, SmoothganError
from smoothgan.fileio import write_json_atomic
from smoothgan.trainer.checkpoint import (
    CHECKPOINTS_DIR,
    Checkpoint,
    capture_rng,
    prune_checkpoints,
    read_checkpoint,
    restore_rng,
    save_checkpoint,
)
from smoothgan.trainer.losses import LossNets, discriminator_loss, ds_weight, generator_loss, kl_weight
from smoothgan.trainer.monitor import SampleBatch, StatsWriter, TickStats, make_run_dir, render_samples, save_samples
from smoothgan.trainer.options import TrainOptions
from smoothgan.trainer.runtime import (
    DistInfo,
    device_for,
    init_process_group,
    preflight,
    rank_seed,
    resolve_data,
    seed_all,
)

log = logging.getLogger(__name__)

TRAINED = ("generator", "mapping_network", "style_encoder", "discriminator")
EMA_MODULES = ("generator", "mapping_network", "style_encoder")
_NO_BAD_STEP = 2**62
_DDP_ARGS = set(inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters)


class TrainingError(SmoothganError):
    """Training cannot go on (non-finite losses, diverged processes)."""

    exit_code = 1


# ----------------------------------------------------------------------------------------------------------------
# Networks, optimizers and one iteration


def _freeze_unused(generator: nn.Module) -> None:
    """With w_hpf > 0 decoder blocks skip their conv1x1 shortcut (REFERENCE quirk 4): never trained, so frozen."""
    for block in getattr(generator, "decode", []):
        if getattr(block, "w_hpf", 0) > 0 and hasattr(block, "conv1x1"):
            block.conv1x1.requires_grad_(False)


class Trainer:
    """Networks, EMA copies, optimizers, loaders and one iteration of REFERENCE 4.2. Writes no files."""

    def __init__(self, options: TrainOptions, dist: DistInfo = DistInfo(), device: torch.device | None = None):
        from smoothgan.models.stargan_v2 import build_networks, he_init
        from smoothgan.trainer.sampling import make_train_loaders

        o = self.options = options
        self.dist = dist
        self.device = device or device_for(options, dist)
        if not o.domains:
            raise InputError("options.domains is empty: resolve the data set first (resolve_data)")
        if o.batch_size % dist.world_size:
            raise InputError(f"batch_size {o.batch_size} is not divisible by the {dist.world_size} processes")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True  # as the official solver

        # REFERENCE 4.1 / 4.4: seed, build, EMA copies BEFORE He init, He init of the four trained networks.
        seed_all(o.seed)  # the same on every rank: identical EMA copies everywhere
        nets = build_networks(o.model, discriminator=True)
        self.nets_ema: dict[str, nn.Module] = {name: copy.deepcopy(nets[name]) for name in EMA_MODULES}
        for net in nets.values():
            net.apply(he_init)
        _freeze_unused(nets["generator"])
        self.nets: dict[str, nn.Module] = {name: net.to(self.device).train() for name, net in nets.items()}
        for net in self.nets_ema.values():
            net.to(self.device).eval().requires_grad_(False)
        self.fan = self._build_fan()
        self.lpips = self._build_lpips()

        # REFERENCE 4.4: Adam with coupled L2 weight decay, per network; f_lr for the mapping network.
        self.optimizers = {
            name: torch.optim.Adam([p for p in net.parameters() if p.requires_grad],
                                   lr=o.f_lr if name == "mapping_network" else o.lr, betas=tuple(o.betas),
                                   weight_decay=o.weight_decay)
            for name, net in self.nets.items()
        }
        self.batch_per_rank = o.batch_size // dist.world_size
        self.loaders = make_train_loaders(
            o.train_dir, o.model.img_size, self.batch_per_rank, seed=o.seed, randcrop_prob=o.randcrop_prob,
            reference_mode=o.reference_mode, num_workers=o.num_workers, rank=dist.rank,
            world_size=dist.world_size, pin_memory=self.device.type == "cuda",
        )
        wrapped = {name: self._wrap(name, net) for name, net in self.nets.items()}
        self.loss_nets = LossNets(
            wrapped["generator"], wrapped["mapping_network"], wrapped["style_encoder"], wrapped["discriminator"],
            masks_fn=self.masks if self.fan is not None else None, lpips=self.lpips,
        )
        self._ema_pairs = [(list(self.nets_ema[n].parameters()), list(self.nets[n].parameters()))
                           for n in EMA_MODULES]
        self._keys: list[str] | None = None
        self._sums: Tensor | None = None
        self._count = 0
        self._first_bad = torch.full((), _NO_BAD_STEP, dtype=torch.long, device=self.device)
        seed_all(rank_seed(o.seed, dist.rank))  # latents: one stream per rank

    def _build_fan(self) -> nn.Module | None:
        if not self.options.model.uses_masks:
            return None
        from smoothgan.models.checkpoints import load_fan

        return load_fan(None, self.options.wing, self.options.wing).to(self.device).eval().requires_grad_(False)

    def _build_lpips(self) -> nn.Module | None:
        o = self.options
        if not o.uses_lpips:
            return None
        from smoothgan.metrics.lpips import PerceptualDistance

        if o.lpips_random_backbone and self.dist.is_main:
            log.warning("LPIPS content loss uses a RANDOM AlexNet backbone (--lpips-random-backbone): it is not "
                        "LPIPS; use this only for smoke tests")
        return PerceptualDistance("squared", o.lpips_weights, o.lpips_random_backbone).to(self.device)

    def _wrap(self, name: str, net: nn.Module) -> nn.Module:
        """DDP across processes, then optionally torch.compile (not D: R1 needs double backward)."""
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # buffers (the high-pass kernel) are constants: no per-forward broadcast
            no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in _DDP_ARGS
                       else {"broadcast_buffers": False})
            net = DistributedDataParallel(net, device_ids=device_ids, **no_sync)
        if self.options.compile and name != "discriminator":
            net = torch.compile(net)
        return net

    def masks(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """FAN masks of x, no grad, in fp32 even under autocast (REFERENCE 4.2 step 1, 4.3)."""
        assert self.fan is not None
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            return self.fan.get_heatmap(x.float())

    def _autocast(self) -> AbstractContextManager[Any]:
        bf16 = self.options.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)

    def _backward_and_step(self, loss: Tensor, step_modules: tuple[str, ...]) -> None:
        for optimizer in self.optimizers.values():  # "zero the gradients of all four optimizers" (4.2)
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for name in step_modules:
            self.optimizers[name].step()

    def train_step(self, step: int) -> None:
        """One iteration (0-based ``step``) in the order of REFERENCE 4.2; losses are kept for :meth:`collect`."""
        o, weights, nets = self.options, self.options.loss, self.loss_nets
        x_real, y_org = (t.to(self.device, non_blocking=True) for t in next(self.loaders.source))
        x_ref, x_ref2, y_trg = (t.to(self.device, non_blocking=True) for t in next(self.loaders.reference))
        z_trg = torch.randn(x_real.shape[0], o.model.latent_dim, device=self.device)  # [B, latent_dim]
        z_trg2 = torch.randn(x_real.shape[0], o.model.latent_dim, device=self.device)
        # 1. masks of x_real, once per iteration, reused by the four steps
        masks = self.masks(x_real) if self.fan is not None else None
        # 2. D, latent-guided: step D
        with self._autocast():
            loss, d_latent = discriminator_loss(nets, x_real, y_org, y_trg, z_trg=z_trg, masks=masks,
                                                weights=weights)
        self._backward_and_step(loss, ("discriminator",))
        # 3. D, reference-guided: step D
        with self._autocast():
            loss, d_ref = discriminator_loss(nets, x_real, y_org, y_trg, x_ref=x_ref, masks=masks, weights=weights)
        self._backward_and_step(loss, ("discriminator",))
        # 4. G, latent-guided: step generator, mapping network and style encoder (4.7.4)
        with self._autocast():
            triplet_refs = (x_ref, x_ref2) if weights.smoothing and weights.triplet == "paper" else None
            loss, g_latent = generator_loss(nets, x_real, y_org, y_trg, z_trgs=(z_trg, z_trg2), masks=masks,
                                            weights=weights, step=step, triplet_refs=triplet_refs)
        self._backward_and_step(loss, ("generator", "mapping_network", "style_encoder"))
        # 5. G, reference-guided: step the generator only (what reaches E or M is discarded, 4.3 / 4.7.4)
        with self._autocast():
            loss, g_ref = generator_loss(nets, x_real, y_org, y_trg, x_refs=(x_ref, x_ref2), masks=masks,
                                         weights=weights, step=step)
        self._backward_and_step(loss, ("generator",))
        # 6. EMA of parameters (not buffers) of G, M, E
        self.update_ema()
        # 7. λ_ds and the kl weight are functions of the step (losses.ds_weight / kl_weight): nothing to decay.
        self._record(step, {"D/latent_": d_latent, "D/ref_": d_ref, "G/latent_": g_latent, "G/ref_": g_ref})

    @torch.no_grad()
    def update_ema(self) -> None:
        """θ_ema ← β·θ_ema + (1 − β)·θ (REFERENCE 4.4)."""
        for ema_params, params in self._ema_pairs:
            torch._foreach_lerp_(ema_params, params, 1.0 - self.options.ema_beta)

    # -- asynchronous loss bookkeeping (quirk 15) --------------------------------------------------------------

    def _record(self, step: int, groups: Mapping[str, Mapping[str, Tensor]]) -> None:
        terms = {prefix + key: value for prefix, values in groups.items() for key, value in values.items()}
        if self._keys is None:
            self._keys = list(terms)
        vector = torch.stack([terms[key].float() for key in self._keys])  # [num_terms], stays on the device
        self._sums = vector if self._sums is None else self._sums + vector
        self._count += 1
        bad = ~torch.isfinite(vector).all()
        self._first_bad = torch.where(bad, torch.minimum(self._first_bad, torch.full_like(self._first_bad, step)),
                                      self._first_bad)

    def collect(self) -> tuple[dict[str, float], int | None]:
        """Mean losses since the last call (over all processes) and the first non-finite 0-based step, if any.

        The only host synchronisation of the loop (plus one all_reduce per tick with several processes).
        """
        if self._sums is None or self._keys is None:
            return {}, None
        means = self._sums / self._count
        first_bad = self._first_bad.clone()
        if self.dist.world_size > 1:
            torch_dist.all_reduce(means)
            means /= self.dist.world_size
            torch_dist.all_reduce(first_bad, op=torch_dist.ReduceOp.MIN)
        values, bad = means.tolist(), int(first_bad.item())
        self._sums, self._count = None, 0
        return dict(zip(self._keys, values)), (None if bad == _NO_BAD_STEP else bad)

    def pending_bad_step(self) -> int | None:
        """For ``check_every_step``: the first non-finite step so far, over all processes (one host sync)."""
        first_bad = self._first_bad.clone()
        if self.dist.world_size > 1:
            torch_dist.all_reduce(first_bad, op=torch_dist.ReduceOp.MIN)
        bad = int(first_bad.item())
        return None if bad == _NO_BAD_STEP else bad

    # -- checkpoints -------------------------------------------------------------------------------------------

    def ema_modules(self) -> dict[str, nn.Module]:
        modules = dict(self.nets_ema)
        if self.fan is not None:
            modules["fan"] = self.fan
        return modules

    def rng_states(self) -> list[dict[str, Any]]:
        """Every process's RNG states, in rank order (a collective call with several processes)."""
        state = capture_rng()
        if self.dist.world_size == 1:
            return [state]
        gathered: list[Any] = [None] * self.dist.world_size
        torch_dist.all_gather_object(gathered, state)
        return gathered

    def check_replicas(self) -> None:
        """With several processes: every rank must hold the same weights (DDP keeps them bitwise equal)."""
        if self.dist.world_size == 1:
            return
        sums = torch.stack([torch.stack([p.detach().double().sum(), p.detach().double().abs().sum()])
                            for net in (*self.nets.values(), *self.nets_ema.values()) for p in net.parameters()])
        gathered = [torch.empty_like(sums) for _ in range(self.dist.world_size)]
        torch_dist.all_gather(gathered, sums)
        if not all(torch.allclose(g, gathered[0], rtol=1e-6, atol=1e-9) for g in gathered):
            raise TrainingError("the training processes hold different weights (DDP replicas diverged)")

    def load_checkpoint(self, ckpt: Checkpoint) -> int:
        """Restore everything from ``ckpt``; returns its step (iterations done)."""
        from smoothgan.models.checkpoints import load_state_strict

        o, theirs = self.options, ckpt.options
        if theirs.model != o.model or tuple(theirs.domains) != tuple(o.domains):
            raise CheckpointError(
                f"{ckpt.path} was trained with {theirs.model} on domains {', '.join(theirs.domains)}; this run has "
                f"{o.model} on {', '.join(o.domains)}"
            )
        ignore = {"total_iters", "print_every", "sample_every", "save_every", "keep_last", "num_workers", "name",
                  "device", "compile", "check_every_step", "data"}
        changed = [k for k, v in o.to_dict().items() if k not in ignore and theirs.to_dict().get(k) != v]
        if changed:
            log.warning("resuming %s with changed options: %s", ckpt.path, ", ".join(changed))
        for name, state in ckpt.networks().items():
            if name not in self.nets:
                raise CheckpointError(f"{ckpt.path} has unexpected network {name}")
            load_state_strict(self.nets[name], state, f"checkpoint {name}")
        for name, state in ckpt.networks(ema=True).items():
            target = self.ema_modules().get(name)
            if target is None:
                raise CheckpointError(f"{ckpt.path} has unexpected EMA network {name}")
            load_state_strict(target, state, f"checkpoint EMA {name}")
        state = ckpt.training_state()
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.loaders.source.load_state_dict(state["loaders"]["source"])
        self.loaders.reference.load_state_dict(state["loaders"]["reference"])
        rng = state["rng"]
        if len(rng) == self.dist.world_size:
            restore_rng(rng[self.dist.rank])
        else:
            log.warning("checkpoint has RNG states of %d processes, this run has %d: latents are reseeded",
                        len(rng), self.dist.world_size)
            seed_all(rank_seed(o.seed + ckpt.step, self.dist.rank))
        return ckpt.step


# ----------------------------------------------------------------------------------------------------------------
# The run


@dataclass
class RunResult:
    """Where a finished run left its files."""

    run_dir: Path | None  # None on ranks other than 0
    step: int
    last_checkpoint: Path | None
    options: TrainOptions


def _sample_batch(options: TrainOptions) -> SampleBatch:
    """The fixed debug inputs (REFERENCE 4.1): a shuffled batch of val (train if val is unusable), fixed latents."""
    from smoothgan.trainer.sampling import make_eval_loader

    root = options.val_dir
    try:
        loader = make_eval_loader(root, options.model.img_size, options.sample_sources, shuffle=True,
                                  seed=options.seed, domains=options.domains)
    except DataError as exc:
        log.warning("samples come from the training images: %s", exc)
        root = options.train_dir
        loader = make_eval_loader(root, options.model.img_size, options.sample_sources, shuffle=True,
                                  seed=options.seed, domains=options.domains)
    x, y = next(iter(loader))
    z = torch.randn(options.sample_latents, options.model.latent_dim,
                    generator=torch.Generator().manual_seed(options.seed))
    return SampleBatch(x, y, z, options.model.num_domains, options.interp_steps)


def train(
    options: TrainOptions,
    out: str | os.PathLike[str] = "runs",
    resume: str | os.PathLike[str] | None = None,
    progress: Callable[[TickStats], None] | None = None,
) -> RunResult:
    """Train from ``options`` (or continue ``resume``: a checkpoint or run directory) into ``out/<NNNNN>-<name>``.

    Under torchrun every process calls this; rank 0 writes the run directory. Raises TrainingError when a loss
    becomes non-finite, naming the iteration and the last good checkpoint.
    """
    dist = DistInfo.from_env()
    device = device_for(options, dist)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns_group = init_process_group(dist, device)
    if not dist.is_main:
        logging.getLogger("smoothgan").setLevel(logging.WARNING)
    try:
        return _run(options, dist, device, out, resume, progress)
    finally:
        if owns_group:
            torch_dist.destroy_process_group()


def _run(options: TrainOptions, dist: DistInfo, device: torch.device, out: str | os.PathLike[str],
         resume: str | os.PathLike[str] | None, progress: Callable[[TickStats], None] | None) -> RunResult:
    preflight(options)
    options, report = resolve_data(options, check=dist.is_main)
    ckpt = read_checkpoint(resume) if resume is not None else None
    trainer = Trainer(options, dist, device)
    start = trainer.load_checkpoint(ckpt) if ckpt is not None else 0
    last_checkpoint = ckpt.path if ckpt is not None else None
    o = options
    if start >= o.total_iters:
        log.warning("checkpoint step %d >= total_iters %d: nothing to train", start, o.total_iters)
        return RunResult(None, start, last_checkpoint, o)

    run_dir = writer = samples = None
    if dist.is_main:
        run_dir = make_run_dir(out, o.name or o.default_name())
        write_json_atomic(run_dir / "options.json", o.to_dict())
        run_info = {"world_size": dist.world_size, "device": str(device), "smoothgan_version": __version__,
                    "torch_version": torch.__version__, "command": sys.argv, "start_step": start,
                    "resumed_from": str(ckpt.path) if ckpt else None,
                    "dataset": report.to_dict() if report is not None else None}
        write_json_atomic(run_dir / "run.json", run_info)
        writer = StatsWriter(run_dir)
        samples = _sample_batch(o)
        log.info("run directory %s (%s, %d process(es), start at step %d)", run_dir, device, dist.world_size, start)

    started = tick_start = time.perf_counter()
    tick_steps = 0
    try:
        for step in range(start, o.total_iters):
            trainer.train_step(step)
            done, tick_steps = step + 1, tick_steps + 1
            last = done == o.total_iters
            save = done % o.save_every == 0 or last
            if o.check_every_step and (bad := trainer.pending_bad_step()) is not None:
                _raise_non_finite(trainer.collect()[0], bad, done, last_checkpoint)
            if done % o.print_every == 0 or save:
                losses, bad = trainer.collect()
                if bad is not None:
                    _raise_non_finite(losses, bad, done, last_checkpoint)
                tick = _tick(o, losses, done, tick_steps, tick_start, started, device)
                if writer is not None:
                    writer.write(tick)
                    log.info(tick.status_line())
                    if progress is not None:
                        progress(tick)
                tick_steps = 0
            if save:
                trainer.check_replicas()
                rng = trainer.rng_states()
                if run_dir is not None:
                    last_checkpoint = save_checkpoint(
                        run_dir / CHECKPOINTS_DIR, done, o, trainer.nets, trainer.ema_modules(),
                        trainer.optimizers, rng,
                        {"source": trainer.loaders.source.state_dict(),
                         "reference": trainer.loaders.reference.state_dict()},
                    )
                    prune_checkpoints(run_dir / CHECKPOINTS_DIR, o.keep_last)
            if writer is not None and samples is not None and (done % o.sample_every == 0 or last):
                grids = render_samples(trainer.nets_ema, samples, trainer.masks if trainer.fan is not None else None)
                save_samples(run_dir / "samples", done, grids)
                writer.add_image("samples/latent", grids["latent"], done)
            if tick_steps == 0:
                tick_start = time.perf_counter()  # checkpoints and samples do not count as training time
    finally:
        if writer is not None:
            writer.close()
    return RunResult(run_dir, o.total_iters, last_checkpoint, o)


def _tick(o: TrainOptions, losses: dict[str, float], done: int, steps: int, tick_start: float, started: float,
          device: torch.device) -> TickStats:
    seconds = max(time.perf_counter() - tick_start, 1e-9)
    memory = None
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    w = o.loss
    kl = kl_weight(done - 1, w.lambda_kl, w.init_lambda_kl, w.kl_start_iter, w.kl_iter) if w.smoothing else 0.0
    return TickStats(
        step=done, total_iters=o.total_iters, losses=losses, sec_per_iter=seconds / steps,
        images_per_sec=o.batch_size * steps / seconds, lambda_ds=ds_weight(done - 1, w.lambda_ds, w.ds_iter),
        kl_weight=kl, elapsed_s=time.perf_counter() - started, peak_gpu_mem_gb=memory,
    )


def _raise_non_finite(losses: Mapping[str, float], bad: int, done: int, last_checkpoint: Path | None) -> None:
    names = [k for k, v in losses.items() if not np.isfinite(v)]
    where = f"last good checkpoint: {last_checkpoint}" if last_checkpoint else "no checkpoint saved yet"
    raise TrainingError(
        f"non-finite loss ({', '.join(names) or 'see stats'}) at step {bad + 1} (noticed at step {done}); training "
        f"stopped, {where}"
    )


__all__ = ["DistInfo", "RunResult", "Trainer", "TrainingError", "preflight", "resolve_data", "train"]
