"""smoothgan.trainer.data and .sampling: scanning, checks, transforms, balanced resumable sampling, pairs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from smoothgan.errors import DataError
from smoothgan.trainer import data, sampling

SIZE = 16


def _write(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (SIZE, SIZE)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _colour(domain: int, index: int) -> tuple[int, int, int]:
    """Solid colours that survive crop/resize/flip and name their domain (red) and image (green)."""
    return (20 + 60 * domain, 5 * index, 128)


def _folder(root: Path, counts: dict[str, int]) -> Path:
    for d, (name, n) in enumerate(sorted(counts.items())):
        for i in range(n):
            _write(root / name / f"{i:03d}.png", _colour(d, i))
    return root


def _decode(images: torch.Tensor) -> list[tuple[int, int]]:
    """(domain, index) of each solid image in a [B, 3, H, W] batch in [-1, 1]."""
    rgb = ((images.mean((2, 3)) + 1) * 127.5).round().int().tolist()
    return [((r - 20) // 60, g // 5) for r, g, _ in rgb]


# --------------------------------------------------------------------------------------------------------------
# Scanning and checks


def test_scan_domains_is_plain_sorted_order_and_skips_hidden(tmp_path: Path) -> None:
    _folder(tmp_path, {n: 1 for n in ("b", "a", "B", "c10", "c9")})
    _write(tmp_path / ".cache" / "x.png", (0, 0, 0))
    (tmp_path / "stray.txt").write_text("not a domain")
    assert data.scan_domains(tmp_path) == ["B", "a", "b", "c10", "c9"]


def test_scan_domains_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        data.scan_domains(tmp_path / "missing")
    with pytest.raises(DataError, match="no domain folders"):
        data.scan_domains(tmp_path)
    _folder(tmp_path, {"cat": 2})
    (tmp_path / "dog").mkdir()
    _write(tmp_path / "dog" / ".hidden.png", (0, 0, 0))  # hidden files do not count
    with pytest.raises(DataError, match="without images.*dog"):
        data.scan_domains(tmp_path)


def test_list_domain_images_is_recursive_sorted_and_case_insensitive(tmp_path: Path) -> None:
    for name in ("b.PNG", "a.jpg", "sub/c.png", "notes.txt", ".d.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in data.list_domain_images(tmp_path)] == [
        "a.jpg",
        "b.PNG",
        "sub/c.png",
    ]


def test_check_dataset_reports_counts(tmp_path: Path) -> None:
    _folder(tmp_path, {"female": 3, "male": 2})
    (tmp_path / "README").write_text("x")
    report = data.check_dataset(tmp_path, img_size=SIZE)
    assert report.domains == ["female", "male"] and report.counts == {"female": 3, "male": 2}
    assert report.problems == [] and report.ignored == ["README"]
    text = str(report)
    assert "2 domains, 5 images" in text and "0: female" in text and "1: male" in text
    upscaled = data.check_dataset(tmp_path, img_size=2 * SIZE)
    assert upscaled.upscaled == 5 and "upscaled" in str(upscaled)


def test_check_dataset_fatal_problems(tmp_path: Path) -> None:
    _folder(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "empty").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"this is not a png")
    _write(tmp_path / "b" / "tiny.png", (1, 2, 3), size=(4, 6))
    with pytest.raises(DataError) as info:
        data.check_dataset(tmp_path, img_size=SIZE)
    message = str(info.value)
    assert "\n" not in message
    assert "empty domain(s): empty" in message
    assert "1 unreadable image(s)" in message and "broken.png" in message
    assert "smaller than 8px" in message and "tiny.png (4x6)" in message
    report = data.check_dataset(tmp_path, img_size=SIZE, raise_on_error=False)
    assert [Path(p).name for p, _ in report.unreadable] == ["broken.png"]
    assert [(Path(p).name, w, h) for p, w, h in report.too_small] == [("tiny.png", 4, 6)]
    assert data.check_dataset(tmp_path, SIZE, min_size=2, raise_on_error=False).too_small == []


def test_check_dataset_domain_count(tmp_path: Path) -> None:
    _folder(tmp_path, {"a": 1, "b": 1})
    with pytest.raises(DataError, match="2 domain folders, expected 3"):
        data.check_dataset(tmp_path, SIZE, num_domains=3)


# --------------------------------------------------------------------------------------------------------------
# Transforms


def test_eval_transform_resizes_and_normalises() -> None:
    img = Image.new("RGB", (40, 24), (255, 0, 51))
    x = data.eval_transform(SIZE)(img)
    assert x.shape == (3, SIZE, SIZE)
    torch.testing.assert_close(x[:, 0, 0], torch.tensor([1.0, -1.0, 51 / 127.5 - 1]))


def test_train_transform_is_reproducible_from_a_generator() -> None:
    arr = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    t = data.train_transform(SIZE, randcrop_prob=0.5)
    runs = [[t(img, torch.Generator().manual_seed(s)) for s in range(12)] for _ in range(2)]
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b)
    assert runs[0][0].shape == (3, SIZE, SIZE) and runs[0][0].min() >= -1 and runs[0][0].max() <= 1
    assert len({tuple(r.flatten()[:50].tolist()) for r in runs[0]}) > 2  # crops and flips differ by seed
    plain = data.train_transform(SIZE, randcrop_prob=0.0)
    outs = [plain(img, torch.Generator().manual_seed(s)) for s in range(8)]
    resized = data.eval_transform(SIZE)(img)
    for out in outs:  # without crops: the resized image, flipped or not
        assert torch.equal(out, resized) or torch.equal(out, resized.flip(-1))


def test_random_resized_crop_params_stay_in_range() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = data._random_resized_crop_params(30, 20, (0.8, 1.0), (0.9, 1.1), g)
        assert 0 <= top and top + h <= 20 and 0 <= left and left + w <= 30
        assert 0.8 * 600 * 0.85 <= h * w <= 600


# --------------------------------------------------------------------------------------------------------------
# Sampling


def test_balanced_sampler_draws_domains_equally_from_an_unbalanced_set() -> None:
    labels = [0] * 90 + [1] * 9 + [2] * 1
    sampler = sampling.BalancedSampler(labels, seed=0, num_samples=30_000)
    counts = Counter(labels[d.index] for d in sampler)
    assert all(abs(counts[c] / 30_000 - 1 / 3) < 0.015 for c in range(3)), counts
    official = sampling.weighted_random_sampler(labels, torch.Generator().manual_seed(0))
    assert len(official) == 100
    weights = sampling.class_balanced_weights(labels)
    torch.testing.assert_close(weights[[0, 90, 99]], torch.tensor([1 / 90, 1 / 9, 1.0], dtype=torch.float64))


def test_balanced_sampler_partners_share_the_domain() -> None:
    labels = [0, 1, 0, 2, 1, 0, 2, 2]
    sampler = sampling.BalancedSampler(labels, seed=1, num_samples=500)
    draws = list(sampler)
    assert all(labels[d.partner] == labels[d.index] for d in draws)
    assert len({d.partner for d in draws if d.index == 0}) == 3  # fresh partners: all three domain-0 images


def test_balanced_sampler_streams_depend_on_seed_rank_stream_and_epoch() -> None:
    labels = list(range(4)) * 10

    def first(seed: int = 0, rank: int = 0, stream: int = 0, epoch: int = 0) -> list[data.DrawnIndex]:
        s = sampling.BalancedSampler(labels, seed=seed, rank=rank, world_size=2, stream=stream)
        s.set_epoch(epoch)
        return list(s)

    base = first()
    assert len(base) == 20  # ceil(40 / world_size)
    assert first() == base
    assert all(first(**kw) != base for kw in ({"seed": 1}, {"rank": 1}, {"stream": 1}, {"epoch": 1}))
    with pytest.raises(DataError, match="rank"):
        sampling.BalancedSampler(labels, rank=2, world_size=2)


# --------------------------------------------------------------------------------------------------------------
# Datasets and loaders


def test_reference_pairs_are_same_domain_in_both_modes(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": 5, "b": 3, "c": 4})
    for mode in data.REFERENCE_MODES:
        loaders = sampling.make_train_loaders(root, SIZE, batch_size=4, seed=0, reference_mode=mode)
        partners: dict[tuple[int, int], set[tuple[int, int]]] = {}
        for _ in range(30):
            x_ref, x_ref2, y = next(loaders.reference)
            refs, refs2 = _decode(x_ref), _decode(x_ref2)
            assert [r[0] for r in refs] == y.tolist() == [r[0] for r in refs2]
            for r, r2 in zip(refs, refs2):
                partners.setdefault(r, set()).add(r2)
        counts = [len(v) for v in partners.values()]
        if mode == "official":
            assert max(counts) == 1  # the partner of each image is fixed for the whole run
        else:
            assert max(counts) > 1


def test_official_partners_are_a_permutation_within_each_domain(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": 6, "b": 5})
    ds = data.ReferenceDataset(root, data.eval_transform(SIZE), mode="official", seed=3)
    labels = torch.tensor(ds.targets)
    for members in ds.members:
        assert sorted(ds.fixed_partner[members].tolist()) == members.tolist()
    assert (labels[ds.fixed_partner] == labels).all()
    again = data.ReferenceDataset(root, data.eval_transform(SIZE), mode="official", seed=3)
    assert torch.equal(again.fixed_partner, ds.fixed_partner)


def test_source_batches_and_independent_streams(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": 8, "b": 2})
    loaders = sampling.make_train_loaders(root, SIZE, batch_size=4, seed=5)
    assert loaders.domains == ["a", "b"]
    ys_src, ys_ref = [], []
    for _ in range(10):
        x, y = next(loaders.source)
        assert x.shape == (4, 3, SIZE, SIZE) and y.dtype == torch.int64
        assert [d for d, _ in _decode(x)] == y.tolist()
        ys_src += y.tolist()
        ys_ref += next(loaders.reference)[2].tolist()
    assert ys_src != ys_ref
    assert 0.3 < np.mean(ys_src) < 0.7  # domain b (2 of 10 images) drawn about half the time


def _batches(loader: sampling.InfiniteLoader, n: int) -> list:
    return [next(loader) for _ in range(n)]


def _same(a: list, b: list) -> bool:
    return all(torch.equal(x, y) for batch_a, batch_b in zip(a, b) for x, y in zip(batch_a, batch_b))


def test_loader_state_round_trip_gives_the_same_next_batches(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": 7, "b": 5})  # 12 images, batch 4: 3 batches per epoch
    first = sampling.make_train_loaders(root, SIZE, batch_size=4, seed=1)
    _batches(first.source, 7)
    _batches(first.reference, 7)
    states = first.source.state_dict(), first.reference.state_dict()
    assert states[0]["epoch"] == 2 and states[0]["batches"] == 1
    expected = _batches(first.source, 4), _batches(first.reference, 4)

    resumed = sampling.make_train_loaders(root, SIZE, batch_size=4, seed=1)
    resumed.source.load_state_dict(states[0])
    resumed.reference.load_state_dict(states[1])
    assert _same(expected[0], _batches(resumed.source, 4))
    assert _same(expected[1], _batches(resumed.reference, 4))

    fresh = sampling.make_train_loaders(root, SIZE, batch_size=4, seed=1)
    assert not _same(expected[0], _batches(fresh.source, 4))
    other = sampling.make_train_loaders(root, SIZE, batch_size=2, seed=1)
    with pytest.raises(DataError, match="batch_size"):
        other.source.load_state_dict(states[0])


def test_stream_does_not_depend_on_workers_or_global_rng(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": 4, "b": 4})
    torch.manual_seed(0)
    serial = _batches(sampling.make_train_loaders(root, SIZE, batch_size=4, seed=2).source, 3)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    parallel = _batches(sampling.make_train_loaders(root, SIZE, batch_size=4, seed=2, num_workers=2).source, 3)
    assert _same(serial, parallel)
    assert torch.equal(torch.get_rng_state(), state)  # the trainer's global RNG is left alone


def test_ranks_draw_different_streams(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": 6, "b": 6})
    ranks = [sampling.make_train_loaders(root, SIZE, 2, seed=0, rank=r, world_size=2).source for r in range(2)]
    assert len(ranks[0].sampler) == 6
    assert not _same(_batches(ranks[0], 3), _batches(ranks[1], 3))


def test_tiny_sets_still_fill_a_batch(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": 1, "b": 2})
    loaders = sampling.make_train_loaders(root, SIZE, batch_size=8, seed=0)
    assert next(loaders.source)[0].shape[0] == 8
    sampler = sampling.BalancedSampler([0, 1, 1], num_samples=3)
    with pytest.raises(DataError, match="shorter than batch_size"):
        sampling.InfiniteLoader(loaders.source.loader.dataset, sampler, batch_size=8)


def test_eval_loader_and_domain_pinning(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": 3, "b": 2})
    loader = sampling.make_eval_loader(root, SIZE, batch_size=2)
    labels = torch.cat([y for _, y in loader]).tolist()
    assert labels == [0, 0, 0, 1, 1]
    with pytest.raises(DataError, match="expected"):
        data.ImageDomainDataset(root, data.eval_transform(SIZE), domains=["a", "c"])
    with pytest.raises(DataError, match="unknown reference mode"):
        data.ReferenceDataset(root, data.eval_transform(SIZE), mode="fresh")  # type: ignore[arg-type]


def test_unreadable_image_while_loading_names_the_file(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": 1})
    (root / "a" / "zz.png").write_bytes(b"garbage")
    ds = data.ImageDomainDataset(root, data.eval_transform(SIZE))
    with pytest.raises(DataError, match="zz.png"):
        ds[1]
