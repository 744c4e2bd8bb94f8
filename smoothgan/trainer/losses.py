"""StarGAN v2 losses and the smoothing additions, as small pure functions of tensors and callables.

Each term cross-references REFERENCE 4.3 (StarGAN v2), 4.5 (diversity schedule) and 4.7 (smoothing). What
differs from the official code, on purpose (REFERENCE 7, quirks 15-17):

- schedules are closed-form functions of the step, not mutated arguments, so a resumed run continues them;
- the triplet loss is a masked mean with a float mask, without a Python-side branch or boolean indexing;
- losses come back as detached scalar tensors (no ``.item()``), so the loop can log without a host sync;
- R1 differentiates a detached copy of the real batch and squares the gradient in fp32.

The assembled losses take the networks as callables (:class:`LossNets`), so they run with any module that
follows the official call signatures, or with tiny stand-ins in tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from smoothgan.trainer.options import LossWeights

Masks = Any  # whatever the generator takes as masks: None, or the FAN's (mask0, mask1) pair
Losses = dict[str, Tensor]

# ----------------------------------------------------------------------------------------------------------------
# Weights and schedules


def ds_weight(step: int, lambda_ds: float, ds_iter: int) -> float:
    """λ_ds used at 0-based iteration ``step``: λ0 · max(0, 1 − step / ds_iter) (REFERENCE 4.5).

    The official loop subtracts λ0 / ds_iter after every iteration and restarts from λ0 on resume (REFERENCE
    4.8); this closed form equals an uninterrupted official run (up to float accumulation) at any step, resumed
    or not.
    """
    return lambda_ds * max(0.0, 1.0 - step / ds_iter)


def kl_weight(step: int, lambda_kl: float, init_lambda_kl: float, kl_start_iter: int, kl_iter: int) -> float:
    """Style-regularisation weight used at 0-based iteration ``step`` (REFERENCE 4.7.2), in closed form.

    Official: w starts at ``init_lambda_kl``; after iteration i, if lambda_kl > w and i + 1 > kl_start_iter,
    w += lambda_kl / kl_iter. So iteration i sees max(0, i − kl_start_iter) increments, stopping at the first
    value >= lambda_kl (which may overshoot by less than one increment, as the official loop does). With the
    defaults: 0 for iterations 0..40,000 (40,001 iterations), then linear, 1.0 at iteration 100,000.
    """
    increments = max(0, step - kl_start_iter)
    if lambda_kl <= init_lambda_kl or lambda_kl <= 0:
        return init_lambda_kl
    increment = lambda_kl / kl_iter
    needed = math.ceil((lambda_kl - init_lambda_kl) / increment - 1e-9)
    return init_lambda_kl + increment * min(increments, needed)


# ----------------------------------------------------------------------------------------------------------------
# Terms


def adv_loss(logits: Tensor, target: float) -> Tensor:
    """Non-saturating GAN loss: BCE with logits against the constant ``target``, batch mean (REFERENCE 4.3)."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def r1_penalty(d_out_real: Tensor, x_real: Tensor) -> Tensor:
    """R1: 0.5 · mean over the batch of Σ_{c,h,w} (∂ΣD/∂x)², with create_graph (REFERENCE 4.3, quirk 16).

    ``x_real`` must require grad and ``d_out_real`` be computed from it. Summed and squared in fp32, so an
    autocast forward does not square half-precision gradients.
    """
    (grad,) = torch.autograd.grad(d_out_real.float().sum(), x_real, create_graph=True)
    return 0.5 * grad.float().pow(2).flatten(1).sum(1).mean()


def style_reconstruction_loss(s_pred: Tensor, s_target: Tensor) -> Tensor:
    """Mean |E(G(x, s), y) − s| over B × D (REFERENCE 4.3)."""
    return torch.mean(torch.abs(s_pred - s_target))


def diversity_loss(x_fake: Tensor, x_fake2: Tensor) -> Tensor:
    """Mean |x_fake − x_fake2| with x_fake2 detached, as the code (the paper has no detach; REFERENCE 4.9)."""
    return torch.mean(torch.abs(x_fake - x_fake2.detach()))


def cycle_loss(x_rec: Tensor, x_real: Tensor) -> Tensor:
    """Mean |G(G(x, s̃), ŝ) − x| over all elements (REFERENCE 4.3)."""
    return torch.mean(torch.abs(x_rec - x_real))


def triplet_loss(
    anchor: Tensor, positive: Tensor, negative: Tensor, mask: Tensor, margin: float = 0.1, eps: float = 1e-6
) -> Tensor:
    """Masked mean over rows of max(0, d(a, p) − d(a, n) + margin) (REFERENCE 4.7.1, quirk 15).

    d(u, v) = ||u − v + eps||₂ as torch ``TripletMarginLoss`` (p = 2, no swap). ``mask`` [B] is 1 for rows that
    take part (y_trg ≠ y_org in training), 0 otherwise; the result is Σ mask·l / max(1, Σ mask): the mean over
    selected rows, and 0 (with zero, finite gradients) when none is selected. No host sync, no shape change.
    """
    d_ap = torch.linalg.vector_norm(anchor - positive + eps, ord=2, dim=-1)  # [B]
    d_an = torch.linalg.vector_norm(anchor - negative + eps, ord=2, dim=-1)  # [B]
    per_row = torch.clamp_min(d_ap - d_an + margin, 0.0)
    mask = mask.to(per_row.dtype)
    return (mask * per_row).sum() / mask.sum().clamp_min(1.0)


def style_regularization(s_trg: Tensor, s_org: Tensor) -> Tensor:
    """The code's "kl" term: mean(s_trg²) + mean(s_org²), each over B × D elements (REFERENCE 4.7.2)."""
    return s_trg.pow(2).mean() + s_org.pow(2).mean()


def style_regularization_paper(s: Tensor) -> Tensor:
    """The paper's Eq. 3, E[||s||²₂]: squared L2 norm over style dims, mean over the batch (REFERENCE 4.9).

    The paper feeds alternating mini-batches of real-only codes E(x) and generated-only codes M(z, y);
    :func:`generator_loss` passes s_org on even steps and s_trg on odd ones. D times the code version's scale.
    """
    return s.pow(2).sum(dim=-1).mean()


def content_loss(x_real: Tensor, x_fake: Tensor, lpips_module: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Batch-mean LPIPS(x_real, x_fake) (REFERENCE 4.7.3); images [B, 3, H, W] in [-1, 1].

    ``lpips_module`` may return per-pair distances (``lpips.LPIPS``: [B, 1, 1, 1]; or [B]) or their batch mean
    (the repos' LPIPS: a scalar); either way the mean is returned.
    """
    return lpips_module(x_real, x_fake).mean()


# ----------------------------------------------------------------------------------------------------------------
# Assembled losses (REFERENCE 4.2, 4.3, 4.7)


@dataclass(frozen=True)
class LossNets:
    """The callables the losses need, with the official call signatures.

    generator(x [B,3,H,W], s [B,D], masks) -> [B,3,H,W]; mapping_network(z [B,L], y [B]) -> [B,D];
    style_encoder(x, y) -> [B,D]; discriminator(x, y) -> [B] logits; masks_fn(x) -> masks (the FAN heatmap,
    only when w_hpf > 0, else None); lpips(x0, x1) -> distances (only needed when lambda_lpips > 0).
    """

    generator: Callable[[Tensor, Tensor, Masks], Tensor]
    mapping_network: Callable[[Tensor, Tensor], Tensor]
    style_encoder: Callable[[Tensor, Tensor], Tensor]
    discriminator: Callable[[Tensor, Tensor], Tensor]
    masks_fn: Callable[[Tensor], Masks] | None = None
    lpips: Callable[[Tensor, Tensor], Tensor] | None = None


def _one_of(latent: Any, reference: Any, what: str) -> None:
    if (latent is None) == (reference is None):
        raise ValueError(f"{what}: pass exactly one of the latent and the reference inputs")


def _masks_for(nets: LossNets, x: Tensor, masks: Masks) -> Masks:
    """Masks as given, else from ``masks_fn`` (no grad: the FAN is a constant, REFERENCE 4.3), else None."""
    if masks is not None or nets.masks_fn is None:
        return masks
    with torch.no_grad():
        return nets.masks_fn(x)


def discriminator_loss(
    nets: LossNets,
    x_real: Tensor,
    y_org: Tensor,
    y_trg: Tensor,
    z_trg: Tensor | None = None,
    x_ref: Tensor | None = None,
    masks: Masks = None,
    weights: LossWeights = LossWeights(),
) -> tuple[Tensor, Losses]:
    """L_D = BCE(D(x), 1) + BCE(D(G(x, s̃)), 0) + λ_reg · R1 (REFERENCE 4.3); latent step if ``z_trg``.

    R1 differentiates a detached copy of ``x_real`` (quirk 17); the fake side runs without grad. Returns the
    total and detached terms {"real", "fake", "reg"}. Pass ``masks`` computed once per iteration (REFERENCE 4.2);
    when None and ``nets.masks_fn`` is set they are computed here.
    """
    _one_of(z_trg, x_ref, "discriminator_loss")
    masks = _masks_for(nets, x_real, masks)
    x_in = x_real.detach().requires_grad_(True)
    out = nets.discriminator(x_in, y_org)
    loss_real = adv_loss(out, 1.0)
    loss_reg = r1_penalty(out, x_in)

    with torch.no_grad():
        s_trg = nets.mapping_network(z_trg, y_trg) if z_trg is not None else nets.style_encoder(x_ref, y_trg)
        x_fake = nets.generator(x_real, s_trg, masks)
    loss_fake = adv_loss(nets.discriminator(x_fake, y_trg), 0.0)

    loss = loss_real + loss_fake + weights.lambda_reg * loss_reg
    return loss, {"real": loss_real.detach(), "fake": loss_fake.detach(), "reg": loss_reg.detach()}


def generator_loss(
    nets: LossNets,
    x_real: Tensor,
    y_org: Tensor,
    y_trg: Tensor,
    z_trgs: tuple[Tensor, Tensor] | None = None,
    x_refs: tuple[Tensor, Tensor] | None = None,
    masks: Masks = None,
    weights: LossWeights = LossWeights(),
    step: int = 0,
    triplet_refs: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Losses]:
    """L_G of StarGAN v2 plus, when ``weights.smoothing``, the smoothing terms (REFERENCE 4.3, 4.7).

    Latent step with ``z_trgs=(z_trg, z_trg2)``, reference step with ``x_refs=(x_ref, x_ref2)``. ``step`` is the
    0-based iteration; it sets λ_ds and the kl weight through the closed-form schedules. Order as SM:
    s_org = E(x_real, y_org) first; styles (latent: s_neg = M(z_trg, y_org); reference: s_neg = s_org); the
    StarGAN v2 terms; kl; triplet (rows with y_trg ≠ y_org); LPIPS. Returns the total and detached terms
    {"adv", "sty", "ds", "cyc"} plus {"kl", "tri"} with smoothing and "lpips" when lambda_lpips > 0.

    ``weights.triplet == "paper"`` (the paper's Eq. 1 on style codes of real images too) needs ``triplet_refs``
    = (x_ref, x_ref2), references of domain y_trg, in the latent step: the triplet is then the mean of the code's
    term on mapping outputs and one on encoded styles, anchor E(x_ref, y_trg), positive E(x_ref2, y_trg),
    negative E(x_real, y_org), so the style encoder is shaped where it is trained. The reference step's triplet
    is already on encoded styles (and inert: only G is stepped there), so it is the code's in both forms.
    """
    _one_of(z_trgs, x_refs, "generator_loss")
    masks = _masks_for(nets, x_real, masks)
    s_org = nets.style_encoder(x_real, y_org)  # not detached: cycle and kl terms
    if z_trgs is not None:
        z_trg, z_trg2 = z_trgs
        s_trg = nets.mapping_network(z_trg, y_trg)
        s_trg2 = nets.mapping_network(z_trg2, y_trg)
        s_neg = nets.mapping_network(z_trg, y_org) if weights.smoothing else None
    else:
        assert x_refs is not None
        x_ref, x_ref2 = x_refs
        s_trg = nets.style_encoder(x_ref, y_trg)
        s_trg2 = nets.style_encoder(x_ref2, y_trg)
        s_neg = s_org

    # StarGAN v2 (REFERENCE 4.3)
    x_fake = nets.generator(x_real, s_trg, masks)
    loss_adv = adv_loss(nets.discriminator(x_fake, y_trg), 1.0)
    loss_sty = style_reconstruction_loss(nets.style_encoder(x_fake, y_trg), s_trg)
    x_fake2 = nets.generator(x_real, s_trg2, masks).detach()
    loss_ds = diversity_loss(x_fake, x_fake2)
    masks_c = None
    if nets.masks_fn is not None:
        with torch.no_grad():
            masks_c = nets.masks_fn(x_fake)
    x_rec = nets.generator(x_fake, s_org, masks_c)
    loss_cyc = cycle_loss(x_rec, x_real)

    lam_ds = ds_weight(step, weights.lambda_ds, weights.ds_iter)
    loss = loss_adv + weights.lambda_sty * loss_sty - lam_ds * loss_ds + weights.lambda_cyc * loss_cyc
    terms = {"adv": loss_adv, "sty": loss_sty, "ds": loss_ds, "cyc": loss_cyc}
    if not weights.smoothing:
        return loss, {k: v.detach() for k, v in terms.items()}

    # Smoothing (REFERENCE 4.7.2): weight from the closed-form schedule; term added only once it is > 0.
    w_kl = kl_weight(step, weights.lambda_kl, weights.init_lambda_kl, weights.kl_start_iter, weights.kl_iter)
    if weights.style_reg == "code":
        loss_kl = style_regularization(s_trg, s_org)
    else:
        loss_kl = style_regularization_paper(s_org if step % 2 == 0 else s_trg)
    if w_kl > 0:
        loss = loss + w_kl * loss_kl
    # REFERENCE 4.7.1: anchor s_trg, positive s_trg2, negative s_neg over rows with y_trg != y_org
    mask = (y_trg != y_org).float()
    loss_tri = triplet_loss(s_trg, s_trg2, s_neg, mask, margin=weights.triplet_margin)
    if weights.triplet == "paper" and z_trgs is not None:
        if triplet_refs is None:
            raise ValueError("the paper's triplet needs triplet_refs=(x_ref, x_ref2) in the latent step")
        anchor, positive = (nets.style_encoder(x, y_trg) for x in triplet_refs)
        loss_tri_real = triplet_loss(anchor, positive, s_org, mask, margin=weights.triplet_margin)
        loss_tri = 0.5 * (loss_tri + loss_tri_real)
    loss = loss + weights.lambda_tri * loss_tri
    terms.update(kl=loss_kl, tri=loss_tri)
    # REFERENCE 4.7.3
    if weights.lambda_lpips > 0:
        if nets.lpips is None:
            raise ValueError("lambda_lpips > 0 needs an LPIPS network in LossNets.lpips")
        loss_lpips = content_loss(x_real, x_fake, nets.lpips)
        loss = loss + weights.lambda_lpips * loss_lpips
        terms["lpips"] = loss_lpips
    return loss, {k: v.detach() for k, v in terms.items()}
