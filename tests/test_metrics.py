"""Metric library: PS arithmetic, LPIPS wrapper, FID, diversity; hand-computed expectations, CPU, no network.

LPIPS and Inception run with random backbones here (no ImageNet weights offline); the lpips package ships its
linear weights, so only the torchvision backbone is random.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from smoothgan.errors import BackendError, InputError
from smoothgan.metrics import ps
from smoothgan.metrics.diversity import (
    arcface_crop,
    content_distance,
    identity_similarity,
    pairwise_diversity,
    sequence_distances,
)
from smoothgan.metrics.fid import (
    INCEPTION_FILE,
    InceptionFeatures,
    extract_features,
    feature_statistics,
    fid_from_features,
    fid_from_images,
    frechet_distance,
)
from smoothgan.metrics.lpips import ALEXNET_FILE, PerceptualDistance

# ---------------------------------------------------------------------------------------------------- PS


def _gini_mean_abs_difference(x: np.ndarray) -> float:
    """Textbook O(n^2) Gini: sum_ij |x_i - x_j| / (2 n^2 mean); algebraically equal to the sorted-rank form."""
    n = x.size
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * n * n * x.mean()))


def test_gini_matches_mean_absolute_difference_form() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 19, 100):
        x = rng.exponential(size=n)
        assert ps.gini(x) == pytest.approx(_gini_mean_abs_difference(x), abs=1e-12)


def test_gini_extremes() -> None:
    assert ps.gini([0.3] * 7) == pytest.approx(0.0, abs=1e-15)
    assert ps.gini([0.0] * 4) == 0.0  # all-zero counts as equal, no division by zero
    for n in (2, 4, 19):
        one_hot = np.zeros(n)
        one_hot[n // 2] = 2.5
        assert ps.gini(one_hot) == pytest.approx((n - 1) / n, abs=1e-15)


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]], [1.0, -0.1], [1.0, math.nan]])
def test_gini_rejects_bad_input(bad: list) -> None:
    with pytest.raises(InputError):
        ps.gini(bad)


def test_even_steps_are_perfectly_uniform() -> None:
    steps = np.full(19, 0.05)
    metric = ps.smoothness_from_distances(steps, end=0.95, mode="metric")
    assert metric.uniformity == 1.0
    assert metric.alignment == pytest.approx(1.0, abs=1e-12)
    assert metric.ps == pytest.approx(1.0, abs=1e-12)
    official = ps.smoothness_from_distances(steps, end=0.95, mode="official")
    assert official.uniformity == pytest.approx(1.0, abs=1e-6)
    assert official.alignment == pytest.approx(0.95 / (0.95 + 19e-6), abs=1e-12)


def test_one_abrupt_step() -> None:
    # Everything happens in one of 4 steps: Gini = (n - 1) / n = 3/4 -> U = 1/4; straight path -> A = 1.
    r = ps.smoothness_from_distances([0.0, 0.0, 1.0, 0.0], end=1.0, mode="metric")
    assert r.uniformity == pytest.approx(0.25, abs=1e-12)
    assert r.alignment == pytest.approx(1.0, abs=1e-12)
    assert r.ps == pytest.approx(2 * 0.25 * 1.0 / 1.25, abs=1e-12)  # 0.4


def test_detour_lowers_alignment() -> None:
    r = ps.smoothness_from_distances([1.0, 1.0, 1.0, 1.0], end=2.0, mode="metric")
    assert r.alignment == pytest.approx(0.5, abs=1e-12)
    assert r.uniformity == 1.0
    assert r.ps == pytest.approx(2 / 3, abs=1e-12)


def test_harmonic_mean_on_hand_numbers() -> None:
    # steps [1, 3]: Gini = (-1*1 + 1*3) / (2*4) = 0.25 -> U = 0.75; A = 2/4 = 0.5; PS = 2*0.375/1.25 = 0.6
    r = ps.smoothness_from_distances([1.0, 3.0], end=2.0, mode="metric")
    assert (r.uniformity, r.alignment) == (pytest.approx(0.75), pytest.approx(0.5))
    assert r.ps == pytest.approx(0.6, abs=1e-12)
    # A = 0 (frames end where they started) -> PS = 0 although U > 0
    assert ps.smoothness_from_distances([1.0, 1.0], end=0.0, mode="metric").ps == 0.0


def test_official_alignment_is_capped_at_one() -> None:
    # squared LPIPS breaks the triangle inequality: end 0.5 > sum 0.2
    r = ps.smoothness_from_distances([0.1, 0.1], end=0.5, mode="official")
    assert r.alignment == 1.0
    assert r.ps == pytest.approx(2 * r.uniformity / (1 + r.uniformity))


def test_official_epsilon_quirk_matches_hand_computation() -> None:
    # d + 1e-6 = [0.100001, 0.300001], sum 0.400002 (the epsilon also enters the alignment sum)
    r = ps.smoothness_from_distances([0.1, 0.3], end=0.35, mode="official")
    u = 1.0 - (0.300001 - 0.100001) / (2 * 0.400002)
    a = 0.35 / 0.400002
    assert r.uniformity == pytest.approx(u, rel=1e-12)
    assert r.alignment == pytest.approx(a, rel=1e-12)
    assert r.ps == pytest.approx(2 * a * u / (a + u), rel=1e-12)
    assert r.alignment != pytest.approx(0.875, rel=1e-7)  # without the quirk it would be 0.35 / 0.4
    m = ps.smoothness_from_distances([0.1, 0.3], end=0.35, mode="metric")
    assert (m.alignment, m.uniformity) == (pytest.approx(0.875, rel=1e-12), pytest.approx(0.75, rel=1e-12))


def test_metric_mode_degenerate_and_invalid() -> None:
    still = ps.smoothness_from_distances([0.0, 0.0, 0.0], end=0.0, mode="metric")
    assert (still.uniformity, still.alignment, still.ps) == (1.0, 0.0, 0.0)  # the official limit values
    assert ps.smoothness_from_distances([1.0, 1.0], end=2.0 + 1e-12, mode="metric").alignment == 1.0
    with pytest.raises(InputError, match="expected one of official, metric, paper"):
        ps.smoothness_from_distances([1.0], end=1.0, mode="fancy")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        ps.smoothness_from_distances([1.0], end=-1.0)


def test_paper_mode_does_not_clip_alignment() -> None:
    # end 0.5 > path 0.2 (not a metric): paper keeps A = 2.5 (so PS = 2 * 2.5 * 1 / 3.5 > 1), the others cap at 1
    paper = ps.smoothness_from_distances([0.1, 0.1], end=0.5, mode="paper")
    assert (paper.alignment, paper.uniformity) == (pytest.approx(2.5, rel=1e-12), 1.0)
    assert paper.ps == pytest.approx(5 / 3.5, rel=1e-12)
    assert ps.smoothness_from_distances([0.1, 0.1], end=0.5, mode="metric").alignment == 1.0
    assert ps.smoothness_from_distances([0.1, 0.1], end=0.5, mode="official").alignment == 1.0
    # below 1 and on degenerate input, paper's per-sequence values equal metric's (same distance, no epsilon)
    for steps, end in (([0.1, 0.3], 0.35), ([0.0, 0.0, 0.0], 0.0), ([1.0, 3.0], 2.0)):
        assert ps.smoothness_from_distances(steps, end, mode="paper") == ps.smoothness_from_distances(
            steps, end, mode="metric")


def test_mode_table_drives_the_modes() -> None:
    assert list(ps.PS_MODES) == ["official", "metric", "paper"]
    assert {name: (m.distance, m.alignment, m.aggregation) for name, m in ps.PS_MODES.items()} == {
        "official": ("squared", "cap", "mean_of_ps"),
        "metric": ("sqrt", "clip", "mean_of_ps"),
        "paper": ("sqrt", "raw", "ps_of_means"),
    }
    assert ps.PS_MODES["official"].epsilon == ps.OFFICIAL_EPSILON and ps.PS_MODES["paper"].epsilon == 0.0


def test_paper_ps_is_harmonic_mean_of_expectations_on_hand_sequences() -> None:
    # jump: all change in one of 4 steps, straight -> A = 1, U = 1 - 3/4 = 1/4, per-sequence HM = 0.4
    # wander: 4 equal steps ending 1 from the start -> A = 1/4, U = 1, per-sequence HM = 0.4
    jump = ps.smoothness_from_distances([0.0, 0.0, 0.0, 1.0], end=1.0, mode="paper")
    wander = ps.smoothness_from_distances([1.0, 1.0, 1.0, 1.0], end=1.0, mode="paper")
    assert (jump.alignment, jump.uniformity) == (1.0, 0.25) and (wander.alignment, wander.uniformity) == (0.25, 1.0)
    # E[A] = E[U] = 5/8 -> paper PS = 5/8; the mean of per-sequence harmonic means is 0.4
    paper = ps.summarize([jump, wander], "paper")
    assert paper.mean == pytest.approx(0.625, abs=1e-15) and paper.count == 2
    assert ps.summarize([jump, wander], "metric").mean == pytest.approx(0.4, abs=1e-15)


def test_issue_two_contrasting_sequences_give_0538_vs_0141() -> None:
    # The issue's pair was not published; this pair of 20-frame sequences reproduces its numbers exactly.
    # jump: 18 steps of 1 and one of 750 on a straight path (end 768): A = 1,
    #   Gini = (sum_{i<=18} (2i - 20) + 18 * 750) / (19 * 768) = 13482 / 14592 -> U = 1110 / 14592 = 185 / 2432
    # wander: 19 equal steps whose end lies 19 * 185 / 2432 from the start: A = 185 / 2432, U = 1
    u = 185 / 2432
    jump = ps.smoothness_from_distances([1.0] * 18 + [750.0], end=768.0, mode="paper")
    wander = ps.smoothness_from_distances([1.0] * 19, end=19 * u, mode="paper")
    assert (jump.alignment, jump.uniformity) == (pytest.approx(1.0, abs=1e-15), pytest.approx(u, abs=1e-15))
    assert (wander.alignment, wander.uniformity) == (pytest.approx(u, abs=1e-15), 1.0)
    paper = ps.summarize([jump, wander], "paper").mean  # HM(E[A], E[U]) = (1 + u) / 2 = 2617 / 4864
    mean_of_hm = ps.summarize([jump, wander], "metric").mean  # 2u / (1 + u) = 370 / 2617 for both
    assert paper == pytest.approx(2617 / 4864, abs=1e-14) and round(paper, 3) == 0.538
    assert mean_of_hm == pytest.approx(370 / 2617, abs=1e-14) and round(mean_of_hm, 3) == 0.141


def test_paper_interval_is_the_delta_method() -> None:
    # U = 1 everywhere, A = (0.2, 0.4, 0.6): PS = HM(0.4, 1) = 0.8 / 1.4 = 4/7; dPS/dA = 2 U^2 / (A + U)^2 = 50/49,
    # so the linearised values have std 50/49 * 0.2 = 10/49 and the half-width is t(2) * (10/49) / sqrt(3)
    results = [ps.smoothness_from_distances([1.0, 1.0], end=2 * a, mode="paper") for a in (0.2, 0.4, 0.6)]
    s = ps.summarize(results, "paper")
    assert s.mean == pytest.approx(4 / 7, abs=1e-14) and s.std == pytest.approx(10 / 49, abs=1e-14)
    half = 4.302653 * (10 / 49) / math.sqrt(3)
    assert (s.ci95_low, s.ci95_high) == (pytest.approx(4 / 7 - half, abs=1e-6), pytest.approx(4 / 7 + half, abs=1e-6))
    single = ps.summarize(results[:1], "paper")
    assert single.mean == pytest.approx(2 * 0.2 / 1.2) and math.isnan(single.std) and math.isnan(single.ci95_low)
    with pytest.raises(InputError):
        ps.summarize([], "paper")


def test_paper_ps_is_never_below_the_mean_of_per_sequence_values() -> None:
    # the harmonic mean is concave (Jensen): HM(E[A], E[U]) >= E[HM(A, U)], strictly for mixed sequences
    rng = np.random.default_rng(0)
    results = []
    for _ in range(500):
        steps = rng.gamma(rng.uniform(0.2, 5.0), size=19)
        results.append(ps.smoothness_from_distances(steps, end=steps.sum() * rng.uniform(0.05, 1.0), mode="paper"))
    paper, mean_of_hm = ps.summarize(results, "paper"), ps.summarize(results, "metric")
    assert paper.mean > mean_of_hm.mean + 0.01
    a = np.mean([r.alignment for r in results])
    u = np.mean([r.uniformity for r in results])
    assert paper.mean == pytest.approx(2 * a * u / (a + u), rel=1e-12)
    assert paper.ci95_low < paper.mean < paper.ci95_high


def test_aggregate_t_interval() -> None:
    s = ps.aggregate([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt(5 / 3)
    half = 3.182446 * std / 2  # t_{0.975, 3} * std / sqrt(4)
    assert (s.mean, s.count) == (2.5, 4)
    assert s.std == pytest.approx(std, rel=1e-12)
    assert (s.ci95_low, s.ci95_high) == (pytest.approx(2.5 - half, rel=1e-6), pytest.approx(2.5 + half, rel=1e-6))
    single = ps.aggregate([0.7])
    assert single.mean == 0.7 and math.isnan(single.std) and math.isnan(single.ci95_low)
    with pytest.raises(InputError):
        ps.aggregate([])
    with pytest.raises(InputError):
        ps.aggregate([0.5, math.nan])


@pytest.mark.parametrize(
    ("df", "quantile"),  # scipy.stats.t.ppf(0.975, df), rounded to 6 decimals
    [(1, 12.706205), (2, 4.302653), (9, 2.262157), (10, 2.228139), (19, 2.093024), (30, 2.042272),
     (50, 2.008559), (100, 1.983972), (1000, 1.962339)],
)
def test_t_quantiles(df: int, quantile: float) -> None:
    assert ps._t975(df) == pytest.approx(quantile, abs=1e-5)


def test_interpolation_alphas() -> None:
    a = ps.interpolation_alphas(20)
    assert a.dtype == np.float32 and a.shape == (20,)
    assert a[0] == 0.0 and a[-1] == 1.0
    np.testing.assert_allclose(a, np.arange(20) / 19, rtol=0, atol=1e-7)
    assert np.all(np.diff(a) > 0)
    assert ps.interpolation_alphas(2).tolist() == [0.0, 1.0]
    for bad in (1, 0, 2.5, True):
        with pytest.raises(InputError):
            ps.interpolation_alphas(bad)  # type: ignore[arg-type]


def test_ps_module_does_not_import_torch() -> None:
    code = "import sys, smoothgan.metrics, smoothgan.metrics.ps; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ------------------------------------------------------------------------------------------------- LPIPS


@pytest.fixture(scope="module")
def lpips_nets() -> dict[str, PerceptualDistance]:
    """One random-backbone LPIPS per mode, sharing the same backbone weights."""
    torch.manual_seed(0)
    nets = {"squared": PerceptualDistance("squared", random_backbone=True)}
    for mode in ("sqrt", "abs"):
        nets[mode] = PerceptualDistance(mode, random_backbone=True)
        nets[mode].load_state_dict(nets["squared"].state_dict())
    return nets


def _images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def test_lpips_shape_zero_symmetry(lpips_nets: dict[str, PerceptualDistance]) -> None:
    x, y = _images(4, 1), _images(4, 2)
    with torch.no_grad():
        for mode, net in lpips_nets.items():
            d = net(x, y)
            assert d.shape == (4,), mode
            assert torch.all(d > 0), mode
            assert net(x, x).abs().max() <= 1e-6, mode
            torch.testing.assert_close(net(y, x), d, rtol=0, atol=1e-6)


def test_lpips_squared_equals_package_and_sqrt(lpips_nets: dict[str, PerceptualDistance]) -> None:
    import lpips

    x, y = _images(3, 3), _images(3, 4)
    reference = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)  # lins from the package
    reference.net.load_state_dict(lpips_nets["squared"].net.net.state_dict())
    with torch.no_grad():
        squared = lpips_nets["squared"](x, y)
        torch.testing.assert_close(squared, reference(x, y).flatten(), rtol=0, atol=1e-7)
        torch.testing.assert_close(lpips_nets["sqrt"](x, y) ** 2, squared, rtol=1e-5, atol=1e-8)
    for lin in lpips_nets["abs"].net.lins:  # non-negative weights are what makes the abs mode a pseudo-metric
        assert float(lin.model[1].weight.min()) >= 0.0


def test_lpips_abs_triangle_inequality(lpips_nets: dict[str, PerceptualDistance]) -> None:
    net = lpips_nets["abs"]
    x, y, z = _images(6, 5), _images(6, 6), _images(6, 7)
    y = 0.5 * x + 0.5 * y  # include near triples, where violations would show first
    with torch.no_grad():
        assert torch.all(net(x, z) <= net(x, y) + net(y, z) + 1e-6)
        assert torch.all(net(y, x) <= net(y, z) + net(z, x) + 1e-6)


def test_lpips_gradients_reach_images_not_weights(lpips_nets: dict[str, PerceptualDistance]) -> None:
    net = lpips_nets["squared"]
    net.train()  # a parent switching to training mode must not enable the Dropout layers
    assert not net.training
    x = _images(2, 8).requires_grad_(True)
    y = _images(2, 9)
    loss = net(x, y).mean()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())
    with torch.no_grad():
        assert torch.equal(net(x, y), net(x, y))  # deterministic: dropout inactive


def test_lpips_backbone_from_file(tmp_path: Path, lpips_nets: dict[str, PerceptualDistance]) -> None:
    # torchvision AlexNet keys: features.{0,3,6,8,10}.{weight,bias} (lpips holds them as slice{k}.{i}.*)
    g = torch.Generator().manual_seed(1)
    random_net = lpips_nets["squared"]
    state = {
        f"features.{key.partition('.')[2]}": torch.randn(value.shape, generator=g)
        for key, value in random_net.net.net.state_dict().items()
    }
    state["classifier.1.weight"] = torch.zeros(2, 2)  # a full AlexNet state dict: the classifier is ignored
    path = tmp_path / "alexnet.pth"
    torch.save(state, path)
    net = PerceptualDistance(backbone_weights=path)
    assert net.describe() == f"alexnet ({path})"
    assert torch.equal(net.net.net.slice3[1].weight, state["features.6.weight"])
    assert random_net.describe() == "alexnet (random init)"

    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(InputError, match="unexpected key"):
        PerceptualDistance(backbone_weights=bad)


def test_lpips_missing_weights_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="not found"):
        PerceptualDistance(backbone_weights=tmp_path / "nope.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(BackendError) as info:
        PerceptualDistance()
    message = str(info.value)
    assert ALEXNET_FILE in message and str(tmp_path / "hub" / "checkpoints" / ALEXNET_FILE) in message
    with pytest.raises(InputError):
        PerceptualDistance(mode="l2")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------- FID


def test_frechet_distance_closed_forms() -> None:
    mu, sigma = np.array([0.5, -1.0, 2.0]), np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.1], [0.0, 0.1, 0.5]])
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    # diagonal: |mu1 - mu2|^2 + sum_k (s1 + s2 - 2 sqrt(s1 s2)) = 1 + (1 + 4 - 4) + (4 + 9 - 12) = 3
    fid = frechet_distance(np.array([0.0, 1.0]), np.diag([1.0, 4.0]), np.array([1.0, 1.0]), np.diag([4.0, 9.0]))
    assert fid == pytest.approx(3.0, abs=1e-9)
    # 1-D: (3 - 1)^2 + (2 + 8 - 2 * 4) = 6
    assert frechet_distance(np.array([1.0]), np.array([[2.0]]), np.array([3.0]), np.array([[8.0]])) == (
        pytest.approx(6.0, abs=1e-9)
    )
    singular = np.diag([1.0, 0.0])  # rank-deficient covariance stays finite
    assert frechet_distance(mu[:2], singular, mu[:2], singular) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(InputError):
        frechet_distance(mu, sigma, mu[:2], sigma[:2, :2])


def test_feature_statistics_unbiased() -> None:
    x = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]])
    mu, sigma = feature_statistics(torch.from_numpy(x).float())
    np.testing.assert_allclose(mu, [2.0, 2.0])
    np.testing.assert_allclose(sigma, [[4.0, 3.0], [3.0, 3.0]], atol=1e-12)  # divides by N - 1 = 2
    with pytest.raises(InputError):
        feature_statistics(np.zeros((1, 4)))


def test_fid_with_stand_in_extractor_grows_with_shift() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3, bias=False)  # linear extractor: a constant shift c moves every feature by c * sum(w)
    extractor = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    real = torch.randn(64, 3, 8, 8)
    assert fid_from_images(real, real, extractor, batch_size=16) == pytest.approx(0.0, abs=1e-6)
    per_unit = float((conv.weight.detach().sum(dim=(1, 2, 3)).double() ** 2).sum())
    fids = [fid_from_images(real, real + c, extractor, batch_size=16) for c in (0.1, 0.2, 0.4, 0.8)]
    assert all(a < b for a, b in zip(fids, fids[1:]))
    for c, fid in zip((0.1, 0.2, 0.4, 0.8), fids):
        assert fid == pytest.approx(c * c * per_unit, rel=1e-3)
    feats = extract_features(iter(real.split(10)), extractor)
    assert feats.shape == (64, 6)
    assert fid_from_features(feats, feats) == pytest.approx(0.0, abs=1e-6)


def test_inception_features_from_weights_file(tmp_path: Path) -> None:
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    path = tmp_path / "inception.pth"
    state = inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith(("AuxLogits.", "fc."))}, path)  # unused heads
    net = InceptionFeatures(weights=path)
    assert str(path) in net.describe()
    with torch.no_grad():
        feats = net(_images(2, 0, size=64))
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()


def test_inception_missing_or_wrong_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="not found"):
        InceptionFeatures(weights=tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 3, 3)}, wrong)
    with pytest.raises(InputError, match="inception_v3"):
        InceptionFeatures(weights=wrong)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(BackendError, match=INCEPTION_FILE):
        InceptionFeatures()


# --------------------------------------------------------------------------------------------- diversity


def _l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().mean(dim=(1, 2, 3))  # [B]


def test_pairwise_diversity_hand_value() -> None:
    # outputs[m, b] is a constant image with value v[m][b]; the L1 distance of two constants is |v1 - v2|
    v = torch.tensor([[0.0, 0.0], [0.2, 0.4], [0.6, -0.2]])
    outputs = v[:, :, None, None, None].expand(3, 2, 3, 4, 4)
    # pairs: (0,1) -> mean(0.2, 0.4) = 0.3; (0,2) -> mean(0.6, 0.2) = 0.4; (1,2) -> mean(0.4, 0.6) = 0.5
    assert pairwise_diversity(outputs, _l1) == pytest.approx(0.4, abs=1e-6)
    with pytest.raises(InputError):
        pairwise_diversity(outputs[:1], _l1)


def test_content_distance_and_sequence_distances() -> None:
    src = torch.zeros(2, 3, 4, 4)
    out = torch.stack([torch.full((3, 4, 4), 0.5), torch.full((3, 4, 4), -0.25)])
    torch.testing.assert_close(content_distance(src, out, _l1), torch.tensor([0.5, 0.25]))
    frames = torch.tensor([0.0, 0.1, 0.3, 0.2])[:, None, None, None].expand(4, 3, 2, 2)
    consecutive, end = sequence_distances(frames, _l1)
    np.testing.assert_allclose(consecutive, [0.1, 0.2, 0.1], atol=1e-6)
    assert end == pytest.approx(0.2, abs=1e-6)
    r = ps.smoothness_from_distances(consecutive, end, mode="metric")
    assert r.alignment == pytest.approx(0.5, abs=1e-5)  # path 0.4, net change 0.2


def test_identity_similarity_cosines() -> None:
    src = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0], [3.0, 4.0, 0.0]])[:, :, None, None]
    out = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, -3.0], [6.0, 8.0, 0.0]])[:, :, None, None]
    sim = identity_similarity(src, out, lambda x: x.flatten(1))
    torch.testing.assert_close(sim, torch.tensor([1 / math.sqrt(2), -1.0, 1.0]))


def test_arcface_crop_region() -> None:
    images = torch.zeros(1, 3, 256, 256)
    images[:, :, 35:223, 32:220] = 1.0  # the 188x188 face region
    crop = arcface_crop(images)
    assert crop.shape == (1, 3, 112, 112) and torch.all(crop == 1.0)
    with pytest.raises(InputError):
        arcface_crop(torch.zeros(1, 3, 128, 128))
