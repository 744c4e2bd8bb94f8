"""smoothgan.trainer.losses: every term against hand-computed values or an independent formula."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from smoothgan.errors import InputError
from smoothgan.trainer import losses as L

# --------------------------------------------------------------------------------------------------------------
# Single terms


def test_adv_loss_matches_hand_computed_bce() -> None:
    logits = torch.tensor([0.0, 2.0, -1.0])
    ones = sum(math.log1p(math.exp(-v)) for v in (0.0, 2.0, -1.0)) / 3
    zeros = sum(math.log1p(math.exp(v)) for v in (0.0, 2.0, -1.0)) / 3
    assert L.adv_loss(logits, 1.0).item() == pytest.approx(ones, rel=1e-6)
    assert L.adv_loss(logits, 0.0).item() == pytest.approx(zeros, rel=1e-6)
    assert L.adv_loss(logits.to(torch.bfloat16), 1.0).dtype == torch.float32


def test_r1_of_a_linear_discriminator_is_half_the_squared_weight_norm() -> None:
    torch.manual_seed(0)
    w = torch.randn(3, 4, 4, requires_grad=True)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    d_out = (x * w).flatten(1).sum(1)  # D(x) = <w, x>, so dD/dx = w for every sample
    penalty = L.r1_penalty(d_out, x)
    assert penalty.item() == pytest.approx(0.5 * w.pow(2).sum().item(), rel=1e-6)
    (grad_w,) = torch.autograd.grad(penalty, w)  # create_graph: the penalty is differentiable in D's weights
    torch.testing.assert_close(grad_w, w.detach())


def test_r1_double_backprop_through_a_nonlinear_discriminator() -> None:
    a = torch.tensor(1.5, requires_grad=True)
    x = torch.tensor([[1.0, 2.0], [0.0, -3.0]], requires_grad=True)  # B = 2, "CHW" = 2 elements
    d_out = a * x.pow(2).sum(1)  # dD/dx = 2 a x  ->  R1 = 0.5 * mean_b 4 a^2 |x_b|^2 = a^2 * (5 + 9)
    penalty = L.r1_penalty(d_out, x)
    assert penalty.item() == pytest.approx(1.5**2 * 14, rel=1e-6)
    (grad_a,) = torch.autograd.grad(penalty, a)
    assert grad_a.item() == pytest.approx(2 * 1.5 * 14, rel=1e-6)


def test_r1_is_fp32_for_a_low_precision_discriminator_output() -> None:
    x = torch.ones(2, 1, 2, 2, requires_grad=True)
    d_out = (x.to(torch.bfloat16) * 3).flatten(1).sum(1)
    penalty = L.r1_penalty(d_out, x)
    assert penalty.dtype == torch.float32
    assert penalty.item() == pytest.approx(0.5 * 4 * 9)


def test_l1_terms_and_the_diversity_detach() -> None:
    a = torch.tensor([[1.0, -2.0], [0.5, 0.0]], requires_grad=True)
    b = torch.tensor([[0.0, 1.0], [0.5, 2.0]], requires_grad=True)
    expected = (1 + 3 + 0 + 2) / 4
    assert L.style_reconstruction_loss(a, b).item() == pytest.approx(expected)
    assert L.cycle_loss(a, b).item() == pytest.approx(expected)
    ds = L.diversity_loss(a, b)
    assert ds.item() == pytest.approx(expected)
    ds.backward()
    assert b.grad is None and a.grad is not None


# --------------------------------------------------------------------------------------------------------------
# Schedules


def _official_ds(lambda_ds: float, ds_iter: int, steps: int) -> list[float]:
    """The official mutable decay (REFERENCE 4.5), simulated."""
    used, lam = [], lambda_ds
    for _ in range(steps):
        used.append(lam)
        if lam > 0:
            lam -= lambda_ds / ds_iter
    return used


def _official_kl(lambda_kl: float, w0: float, start: int, length: int, steps: int) -> list[float]:
    """The official mutable KL warm-up (REFERENCE 4.7.2), simulated."""
    used, w = [], w0
    for i in range(steps):
        used.append(w)
        if lambda_kl > w and i + 1 > start:
            w += lambda_kl / length
    return used


def test_ds_weight_closed_form_at_specific_steps() -> None:
    assert L.ds_weight(0, 1.0, 100_000) == 1.0
    assert L.ds_weight(50_000, 1.0, 100_000) == pytest.approx(0.5)
    assert L.ds_weight(25_000, 2.0, 100_000) == pytest.approx(1.5)  # AFHQ lambda_ds = 2
    assert L.ds_weight(99_999, 1.0, 100_000) == pytest.approx(1e-5)
    assert L.ds_weight(100_000, 1.0, 100_000) == 0.0
    assert L.ds_weight(250_000, 1.0, 100_000) == 0.0


def test_ds_weight_equals_the_uninterrupted_official_loop() -> None:
    official = _official_ds(2.0, 8, 20)
    for step, value in enumerate(official):
        assert L.ds_weight(step, 2.0, 8) == pytest.approx(max(value, 0.0), abs=1e-9)


def test_kl_weight_default_schedule() -> None:
    w = lambda step: L.kl_weight(step, 1.0, 0.0, 40_000, 60_000)  # noqa: E731
    assert [w(s) for s in (0, 39_999, 40_000)] == [0.0, 0.0, 0.0]  # iterations 0..40,000: 40,001 zeros
    assert w(40_001) == pytest.approx(1 / 60_000)
    assert w(70_000) == pytest.approx(0.5)
    assert w(99_999) == pytest.approx(1 - 1 / 60_000)
    assert w(100_000) == pytest.approx(1.0)
    assert w(500_000) == pytest.approx(1.0)


@pytest.mark.parametrize(("lambda_kl", "w0", "start", "length"), [(1.0, 0.0, 5, 3), (1.0, 0.4, 2, 4), (2.0, 3.0, 0, 5)])
def test_kl_weight_equals_the_uninterrupted_official_loop(lambda_kl: float, w0: float, start: int, length: int) -> None:
    official = _official_kl(lambda_kl, w0, start, length, 20)
    for step, value in enumerate(official):
        assert L.kl_weight(step, lambda_kl, w0, start, length) == pytest.approx(value, abs=1e-9), step


# --------------------------------------------------------------------------------------------------------------
# Smoothing terms


def test_triplet_hand_values_one_dimension() -> None:
    a, p, n = (torch.tensor([[v]]) for v in (0.0, 2.0, 1.0))
    one = torch.ones(1)
    # d(a, p) = |0 - 2 + 1e-6|, d(a, n) = |0 - 1 + 1e-6| -> 1.999999 - 0.999999 + 0.1
    assert L.triplet_loss(a, p, n, one).item() == pytest.approx(1.1, abs=1e-6)
    assert L.triplet_loss(a, n, p, one).item() == 0.0  # -1 + 0.1 < 0
    assert L.triplet_loss(a, n, p, one, margin=1.5).item() == pytest.approx(0.5, abs=1e-6)


def test_triplet_masked_mean_equals_torch_on_selected_rows() -> None:
    torch.manual_seed(1)
    a, p, n = (torch.randn(6, 8) for _ in range(3))
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    sel = mask.bool()
    reference = nn.TripletMarginLoss(margin=0.1, p=2, eps=1e-6)(a[sel], p[sel], n[sel])
    torch.testing.assert_close(L.triplet_loss(a, p, n, mask), reference)
    full = nn.TripletMarginLoss(margin=0.3)(a, p, n)
    torch.testing.assert_close(L.triplet_loss(a, p, n, torch.ones(6), margin=0.3), full)


def test_triplet_with_no_selected_row_is_zero_with_finite_gradient() -> None:
    a = torch.randn(4, 5, requires_grad=True)
    p, n = torch.randn(4, 5), torch.randn(4, 5)
    loss = L.triplet_loss(a, p, n, torch.zeros(4))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(a.grad).all() and (a.grad == 0).all()


def test_style_regularization_code_and_paper() -> None:
    s_trg = torch.full((2, 3), 2.0)
    s_org = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert L.style_regularization(s_trg, s_org).item() == pytest.approx(4 + 1 / 6)
    assert L.style_regularization_paper(torch.tensor([[1.0, 2.0], [3.0, 0.0]])).item() == pytest.approx(7.0)


def test_content_loss_accepts_per_pair_and_batch_mean_lpips() -> None:
    x0, x1 = torch.zeros(3, 3, 4, 4), torch.ones(3, 3, 4, 4)
    scale = torch.arange(1.0, 4.0).view(3, 1, 1, 1)

    def per_pair(a: Tensor, b: Tensor) -> Tensor:
        return (a - b).abs().mean((1, 2, 3), keepdim=True) * scale  # [B, 1, 1, 1] like lpips.LPIPS

    def batch_mean(a: Tensor, b: Tensor) -> Tensor:
        return per_pair(a, b).mean()

    assert L.content_loss(x0, x1, per_pair).item() == pytest.approx(2.0)
    assert L.content_loss(x0, x1, batch_mean).item() == pytest.approx(2.0)


# --------------------------------------------------------------------------------------------------------------
# LossWeights


def test_loss_weights_defaults_and_strict_json() -> None:
    w = L.LossWeights()
    assert (w.lambda_reg, w.lambda_sty, w.lambda_ds, w.lambda_cyc, w.ds_iter) == (1, 1, 1, 1, 100_000)
    assert (w.lambda_tri, w.triplet_margin, w.lambda_kl, w.init_lambda_kl) == (1, 0.1, 1, 0)
    assert (w.kl_start_iter, w.kl_iter, w.lambda_lpips, w.smoothing) == (40_000, 60_000, 0, True)
    assert L.LossWeights.from_dict(w.to_dict()) == w
    assert L.LossWeights.baseline().smoothing is False
    with pytest.raises(InputError, match="lamda_sty"):
        L.LossWeights.from_dict({"lamda_sty": 2})
    with pytest.raises(InputError, match="lambda_cyc"):
        L.LossWeights(lambda_cyc=-1)
    with pytest.raises(InputError, match="ds_iter"):
        L.LossWeights(ds_iter=0)


# --------------------------------------------------------------------------------------------------------------
# Assembled losses with tiny stand-in networks

K, D, LAT, S = 3, 4, 3, 8  # domains, style dim, latent dim, image side


class Heads(nn.Module):
    """Per-domain linear heads picked by y (the official multi-head layout)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_in, K * n_out)
        self.n_out = n_out

    def forward(self, h: Tensor, y: Tensor) -> Tensor:
        out = self.fc(h.flatten(1)).view(-1, K, self.n_out)
        return out[torch.arange(len(y)), y]


class Gen(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.fc = nn.Linear(D, 3)
        self.calls: list[object] = []

    def forward(self, x: Tensor, s: Tensor, masks: object = None) -> Tensor:
        self.calls.append(masks)
        return torch.tanh(self.conv(x) + self.fc(s)[:, :, None, None])


class Disc(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.heads = Heads(3 * S * S, 1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.heads(x, y)[:, 0]


@pytest.fixture
def setup() -> dict:
    torch.manual_seed(0)
    gen, mapping, encoder, disc = Gen(), Heads(LAT, D), Heads(3 * S * S, D), Disc()
    nets = L.LossNets(generator=gen, mapping_network=mapping, style_encoder=encoder, discriminator=disc)
    batch = {
        "x_real": torch.rand(4, 3, S, S) * 2 - 1,
        "y_org": torch.tensor([0, 1, 2, 0]),
        "y_trg": torch.tensor([1, 1, 0, 2]),
    }
    extra = {
        "z_trgs": (torch.randn(4, LAT), torch.randn(4, LAT)),
        "x_refs": (torch.rand(4, 3, S, S) * 2 - 1, torch.rand(4, 3, S, S) * 2 - 1),
    }
    return {"nets": nets, "batch": batch, **extra}


def _total_check(total: Tensor, terms: dict[str, Tensor], w: L.LossWeights, step: int) -> Tensor:
    base = terms["adv"] + w.lambda_sty * terms["sty"] - L.ds_weight(step, w.lambda_ds, w.ds_iter) * terms["ds"]
    return base + w.lambda_cyc * terms["cyc"]


@pytest.mark.parametrize("mode", ["latent", "reference"])
def test_baseline_switch_removes_exactly_the_smoothing_terms(setup: dict, mode: str) -> None:
    nets, batch = setup["nets"], setup["batch"]
    style = {"z_trgs": setup["z_trgs"]} if mode == "latent" else {"x_refs": setup["x_refs"]}
    lpips = lambda a, b: (a - b).pow(2).mean((1, 2, 3), keepdim=True)  # noqa: E731
    nets = L.LossNets(**{**nets.__dict__, "lpips": lpips})
    step = 70_000  # kl weight 0.5, ds weight 0.3
    smooth_w = L.LossWeights(lambda_lpips=2.0, lambda_sty=2.0)
    base_w = L.LossWeights.baseline(lambda_lpips=2.0, lambda_sty=2.0)

    base_total, base = L.generator_loss(nets, **batch, **style, weights=base_w, step=step)
    smooth_total, smooth = L.generator_loss(nets, **batch, **style, weights=smooth_w, step=step)

    assert set(base) == {"adv", "sty", "ds", "cyc"}
    assert set(smooth) == {"adv", "sty", "ds", "cyc", "kl", "tri", "lpips"}
    for key in base:
        torch.testing.assert_close(base[key], smooth[key])
    torch.testing.assert_close(base_total, _total_check(base_total, base, base_w, step))
    extra = 0.5 * smooth["kl"] + 1.0 * smooth["tri"] + 2.0 * smooth["lpips"]
    torch.testing.assert_close(smooth_total - base_total, extra)
    assert all(v.ndim == 0 and not v.requires_grad and torch.isfinite(v) for v in smooth.values())


def test_kl_term_is_off_before_its_ramp(setup: dict) -> None:
    nets, batch = setup["nets"], setup["batch"]
    baseline = L.LossWeights.baseline()
    base_total, _ = L.generator_loss(nets, **batch, z_trgs=setup["z_trgs"], weights=baseline, step=40_000)
    total, terms = L.generator_loss(nets, **batch, z_trgs=setup["z_trgs"], step=40_000)
    assert terms["kl"] > 0
    torch.testing.assert_close(total - base_total, terms["tri"])


def test_triplet_and_kl_use_the_documented_styles(setup: dict) -> None:
    nets, batch = setup["nets"], setup["batch"]
    x_real, y_org, y_trg = batch["x_real"], batch["y_org"], batch["y_trg"]
    mask = (y_trg != y_org).float()
    s_org = nets.style_encoder(x_real, y_org)

    z, z2 = setup["z_trgs"]
    _, terms = L.generator_loss(nets, **batch, z_trgs=(z, z2), step=80_000)
    s_trg, s_trg2 = nets.mapping_network(z, y_trg), nets.mapping_network(z2, y_trg)
    s_neg = nets.mapping_network(z, y_org)  # the same latent through the source domain's head
    torch.testing.assert_close(terms["tri"], L.triplet_loss(s_trg, s_trg2, s_neg, mask).detach())
    torch.testing.assert_close(terms["kl"], L.style_regularization(s_trg, s_org).detach())

    r, r2 = setup["x_refs"]
    _, terms = L.generator_loss(nets, **batch, x_refs=(r, r2), step=80_000)
    s_trg, s_trg2 = nets.style_encoder(r, y_trg), nets.style_encoder(r2, y_trg)
    torch.testing.assert_close(terms["tri"], L.triplet_loss(s_trg, s_trg2, s_org, mask).detach())

    paper = L.LossWeights(style_reg="paper")
    _, even = L.generator_loss(nets, **batch, z_trgs=(z, z2), step=80_000, weights=paper)
    _, odd = L.generator_loss(nets, **batch, z_trgs=(z, z2), step=80_001, weights=paper)
    torch.testing.assert_close(even["kl"], L.style_regularization_paper(s_org).detach())
    s_trg = nets.mapping_network(z, y_trg)
    torch.testing.assert_close(odd["kl"], L.style_regularization_paper(s_trg).detach())


def test_paper_triplet_adds_encoded_real_styles_in_the_latent_step(setup: dict) -> None:
    nets, batch = setup["nets"], setup["batch"]
    x_real, y_org, y_trg = batch["x_real"], batch["y_org"], batch["y_trg"]
    mask = (y_trg != y_org).float()
    z, z2 = setup["z_trgs"]
    r, r2 = setup["x_refs"]
    paper = L.LossWeights(triplet="paper")
    _, terms = L.generator_loss(nets, **batch, z_trgs=(z, z2), weights=paper, triplet_refs=(r, r2))
    code = L.triplet_loss(nets.mapping_network(z, y_trg), nets.mapping_network(z2, y_trg),
                          nets.mapping_network(z, y_org), mask)
    real = L.triplet_loss(nets.style_encoder(r, y_trg), nets.style_encoder(r2, y_trg),
                          nets.style_encoder(x_real, y_org), mask)
    assert real.item() > 0  # the check below would not see a dropped term otherwise
    torch.testing.assert_close(terms["tri"], (0.5 * (code + real)).detach())
    # the reference step is the code's in both forms (only G is stepped there)
    _, ref_paper = L.generator_loss(nets, **batch, x_refs=(r, r2), weights=paper)
    _, ref_code = L.generator_loss(nets, **batch, x_refs=(r, r2))
    torch.testing.assert_close(ref_paper["tri"], ref_code["tri"])
    with pytest.raises(ValueError, match="triplet_refs"):
        L.generator_loss(nets, **batch, z_trgs=(z, z2), weights=paper)


def test_paper_triplet_trains_the_style_encoder_through_the_references(setup: dict) -> None:
    """Only the triplet weight differs: the gradient on E from the encoded-reference triplet must show up."""
    nets, batch = setup["nets"], setup["batch"]
    refs = setup["x_refs"]
    grads = []
    for triplet in ("code", "paper"):
        weights = L.LossWeights(triplet=triplet, lambda_tri=1.0)
        no_tri = L.LossWeights(triplet=triplet, lambda_tri=0.0)
        per_weight = []
        for w in (weights, no_tri):
            nets.style_encoder.zero_grad(set_to_none=True)
            total, _ = L.generator_loss(nets, **batch, z_trgs=setup["z_trgs"], weights=w, triplet_refs=refs)
            total.backward()
            per_weight.append(torch.cat([p.grad.flatten() for p in nets.style_encoder.parameters()
                                         if p.grad is not None]))
        grads.append((per_weight[0] - per_weight[1]).abs().sum().item())
    assert grads[0] == pytest.approx(0.0, abs=1e-6)  # the code's triplet never reaches E in the latent step
    assert grads[1] > 1e-6


def test_triplet_is_zero_when_every_row_keeps_its_domain(setup: dict) -> None:
    nets, batch = setup["nets"], dict(setup["batch"])
    batch["y_trg"] = batch["y_org"].clone()
    total, terms = L.generator_loss(nets, **batch, z_trgs=setup["z_trgs"])
    assert terms["tri"].item() == 0.0
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in nets.mapping_network.parameters())


def test_generator_loss_trains_the_right_networks(setup: dict) -> None:
    nets, batch = setup["nets"], setup["batch"]
    total, _ = L.generator_loss(nets, **batch, z_trgs=setup["z_trgs"], step=90_000)
    total.backward()
    for net in (nets.generator, nets.mapping_network, nets.style_encoder):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert not batch["x_real"].requires_grad


def test_masks_reach_the_generator_and_cycle_masks_come_from_the_fake(setup: dict) -> None:
    nets, batch = setup["nets"], setup["batch"]
    seen: list[Tensor] = []

    def masks_fn(x: Tensor) -> tuple[str, int]:
        seen.append(x)
        assert not torch.is_grad_enabled()
        return ("masks", len(seen))

    nets = L.LossNets(**{**nets.__dict__, "masks_fn": masks_fn})
    nets.generator.calls.clear()
    L.generator_loss(nets, **batch, z_trgs=setup["z_trgs"], masks=("given", 0))
    assert nets.generator.calls == [("given", 0), ("given", 0), ("masks", 1)]  # x_fake, x_fake2, x_rec
    nets.generator.calls.clear()
    L.discriminator_loss(nets, **batch, z_trg=setup["z_trgs"][0])  # no masks given: computed from x_real
    assert nets.generator.calls == [("masks", 2)]
    torch.testing.assert_close(seen[-1], batch["x_real"])


def test_discriminator_loss_assembles_real_fake_and_r1(setup: dict) -> None:
    nets, batch = setup["nets"], setup["batch"]
    w = L.LossWeights(lambda_reg=3.0)
    for style in ({"z_trg": setup["z_trgs"][0]}, {"x_ref": setup["x_refs"][0]}):
        total, terms = L.discriminator_loss(nets, **batch, **style, weights=w)
        assert set(terms) == {"real", "fake", "reg"}
        torch.testing.assert_close(total.detach(), terms["real"] + terms["fake"] + 3.0 * terms["reg"])
        # D is linear in x per domain: R1 = 0.5 * mean_b |w_{y_b}|^2
        weight = nets.discriminator.heads.fc.weight.view(K, -1)
        expected = 0.5 * weight[batch["y_org"]].pow(2).sum(1).mean()
        torch.testing.assert_close(terms["reg"], expected.detach())
        total.backward()
        assert all(p.grad is not None for p in nets.discriminator.parameters())
        assert all(p.grad is None for p in nets.generator.parameters())  # the fake side runs without grad
    assert not batch["x_real"].requires_grad  # R1 used a detached copy (quirk 17)


def test_assembled_losses_reject_ambiguous_inputs(setup: dict) -> None:
    nets, batch = setup["nets"], setup["batch"]
    with pytest.raises(ValueError, match="exactly one"):
        L.generator_loss(nets, **batch, z_trgs=setup["z_trgs"], x_refs=setup["x_refs"])
    with pytest.raises(ValueError, match="exactly one"):
        L.discriminator_loss(nets, **batch)
    with pytest.raises(ValueError, match="LPIPS"):
        L.generator_loss(nets, **batch, z_trgs=setup["z_trgs"], weights=L.LossWeights(lambda_lpips=1.0))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_content_loss_with_the_lpips_package() -> None:
    lpips = pytest.importorskip("lpips")
    net = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()  # random backbone: no download
    torch.manual_seed(0)
    x0, x1 = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    per_pair = net(x0, x1)
    assert per_pair.shape == (2, 1, 1, 1)
    torch.testing.assert_close(L.content_loss(x0, x1, net), per_pair.mean())
    assert L.content_loss(x0, x0, net).item() == pytest.approx(0.0, abs=1e-6)
