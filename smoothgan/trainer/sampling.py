"""Resumable class-balanced sampling and the training/eval loaders (REFERENCE 4.1).

- **Every random draw is part of one index stream.** :class:`BalancedSampler` draws, per epoch, the image
  indices, the reference partners and one augmentation seed per sample from a generator seeded by
  ``SeedSequence([seed + rank, stream, epoch])``. Datasets receive :class:`~smoothgan.trainer.data.DrawnIndex`
  tuples and run the augmentation from that seed, so a batch is a pure function of (seed, rank, stream, epoch,
  position): the same for any ``num_workers``, independent of torch's global RNG, and resumable from two integers
  (:meth:`InfiniteLoader.state_dict`). The official code uses the global RNGs instead.
- **DDP:** each rank draws its own class-balanced stream (rank enters the seed) of ``ceil(N / world_size)``
  samples per epoch, like ``DistributedSampler``'s epoch length; ranks consume batches in lockstep, so one loader
  state (saved by rank 0) restores every rank.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler

from smoothgan.errors import DataError
from smoothgan.trainer.data import (
    DrawnIndex,
    ImageDomainDataset,
    ReferenceDataset,
    ReferenceMode,
    eval_transform,
    train_transform,
)

log = logging.getLogger(__name__)

SOURCE_STREAM = 0
REFERENCE_STREAM = 1

def class_balanced_weights(labels: Sequence[int] | Tensor) -> Tensor:
    """Per-sample weight 1 / |domain of the sample| (float64), so every domain is drawn equally often."""
    y = torch.as_tensor(labels, dtype=torch.long)
    counts = torch.bincount(y).to(torch.float64)
    return 1.0 / counts[y]


def weighted_random_sampler(
    labels: Sequence[int] | Tensor, generator: torch.Generator | None = None
) -> WeightedRandomSampler:
    """The official sampler: torch WeightedRandomSampler, balanced weights, replacement, epoch = dataset size."""
    weights = class_balanced_weights(labels)
    return WeightedRandomSampler(weights, num_samples=len(weights), replacement=True, generator=generator)


class BalancedSampler(Sampler[DrawnIndex]):
    """Class-balanced sampling with replacement, per rank, as a pure function of (seed, rank, stream, epoch).

    Epoch ``e`` of rank ``r`` draws ``num_samples`` (default ``ceil(N / world_size)``) indices with weights
    1/|domain|, one uniform same-domain partner per index, and one augmentation seed per index, all from a torch
    generator seeded by ``SeedSequence([seed + r, stream, e])``. :meth:`set_epoch` and :meth:`set_start` (skip
    the first k draws) position the stream; :class:`InfiniteLoader` drives them.
    """

    def __init__(
        self,
        labels: Sequence[int] | Tensor,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        stream: int = SOURCE_STREAM,
        num_samples: int | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is outside world_size {world_size}")
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if self.labels.numel() == 0:
            raise DataError("cannot sample from an empty data set")
        self.weights = class_balanced_weights(self.labels)
        self.seed, self.rank, self.world_size, self.stream = int(seed), rank, world_size, stream
        self.num_samples = num_samples or math.ceil(len(self.labels) / world_size)
        # members of each label, concatenated: order[offsets[c] : offsets[c] + counts[c]]
        self._order = torch.argsort(self.labels, stable=True)
        self._counts = torch.bincount(self.labels)
        self._offsets = torch.cumsum(self._counts, 0) - self._counts
        self.epoch = 0
        self.start = 0

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` draws of the next iteration (resume inside an epoch)."""
        self.start = int(start)

    def _generator(self, epoch: int) -> torch.Generator:
        words = np.random.SeedSequence([self.seed + self.rank, self.stream, epoch]).generate_state(2, np.uint32)
        return torch.Generator().manual_seed(int(words[0]) << 31 ^ int(words[1]))

    def draw(self, epoch: int) -> tuple[Tensor, Tensor, Tensor]:
        """(indices, partners, augmentation seeds) of one epoch, each ``[num_samples]`` int64."""
        g = self._generator(epoch)
        index = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=g)
        label = self.labels[index]
        pick = torch.randint(0, 2**62, (self.num_samples,), generator=g) % self._counts[label]
        partner = self._order[self._offsets[label] + pick]
        seeds = torch.randint(0, 2**62, (self.num_samples,), generator=g)
        return index, partner, seeds

    def __iter__(self) -> Iterator[DrawnIndex]:
        start, self.start = self.start, 0
        index, partner, seeds = (t.tolist() for t in self.draw(self.epoch))
        for k in range(start, self.num_samples):
            yield DrawnIndex(index[k], partner[k], seeds[k])


class InfiniteLoader:
    """An endless batch iterator over a DataLoader with a :class:`BalancedSampler`; resumable from its state.

    Batches have exactly ``batch_size`` samples (``drop_last``). When an epoch ends the next one starts with the
    next epoch's draws. ``state_dict()`` holds (epoch, batches consumed in it) plus the settings that must
    match; after ``load_state_dict`` the next batch is the one the saved loader would have returned next.
    """

    def __init__(
        self,
        dataset: Dataset,
        sampler: BalancedSampler,
        batch_size: int,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        if len(sampler) < batch_size:
            raise DataError(f"an epoch of {len(sampler)} samples is shorter than batch_size {batch_size}")
        self.sampler, self.batch_size = sampler, batch_size
        self.dataset_len = len(dataset)  # type: ignore[arg-type]
        # A private generator: DataLoader draws worker base seeds from it instead of torch's global RNG.
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=num_workers > 0,
            generator=torch.Generator().manual_seed(sampler.seed + sampler.rank),
        )
        self.epoch = 0
        self.batches = 0
        self._iter: Iterator[Any] | None = None

    def __iter__(self) -> InfiniteLoader:
        return self

    def __next__(self) -> Any:
        while True:
            if self._iter is None:
                self.sampler.set_epoch(self.epoch)
                self.sampler.set_start(self.batches * self.batch_size)
                self._iter = iter(self.loader)
            try:
                batch = next(self._iter)
            except StopIteration:
                self.epoch, self.batches, self._iter = self.epoch + 1, 0, None
                continue
            self.batches += 1
            return batch

    def _settings(self) -> dict[str, int]:
        s = self.sampler
        return {
            "seed": s.seed,
            "stream": s.stream,
            "world_size": s.world_size,
            "num_samples": s.num_samples,
            "batch_size": self.batch_size,
            "dataset_len": self.dataset_len,
        }

    def state_dict(self) -> dict[str, int]:
        """Position of the stream (identical on every rank) and the settings it depends on."""
        return {"epoch": self.epoch, "batches": self.batches, **self._settings()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue the stream where ``state`` left it; DataError if it was saved under other settings."""
        mismatched = [k for k, v in self._settings().items() if state.get(k) != v]
        if mismatched:
            diffs = ", ".join(f"{k} {state.get(k)} != {self._settings()[k]}" for k in mismatched)
            raise DataError(f"loader state does not match this loader: {diffs}")
        self.epoch, self.batches, self._iter = int(state["epoch"]), int(state["batches"]), None


# ----------------------------------------------------------------------------------------------------------------
# Factories


class TrainLoaders(NamedTuple):
    """The two loaders of one training iteration (REFERENCE 4.1) and the domain names in index order."""

    source: InfiniteLoader  # (x_real [B,3,H,W], y_org [B])
    reference: InfiniteLoader  # (x_ref [B,3,H,W], x_ref2 [B,3,H,W], y_trg [B])
    domains: list[str]


def make_train_loaders(
    root: str | os.PathLike[str],
    img_size: int,
    batch_size: int,
    seed: int = 777,
    randcrop_prob: float = 0.5,
    reference_mode: ReferenceMode = "official",
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> TrainLoaders:
    """Build the source and reference loaders: two independent class-balanced streams over the same folder.

    The streams differ by their ``stream`` id (source 0, reference 1), never by the seed, so y_trg is independent
    of y_org. An epoch is at least one batch long, so tiny data sets still train.
    """
    transform = train_transform(img_size, randcrop_prob)
    source = ImageDomainDataset(root, transform)
    reference = ReferenceDataset(root, transform, mode=reference_mode, seed=seed, domains=source.domains)
    per_rank = max(math.ceil(len(source) / world_size), batch_size)
    loaders = []
    for dataset, stream in ((source, SOURCE_STREAM), (reference, REFERENCE_STREAM)):
        sampler = BalancedSampler(dataset.targets, seed, rank, world_size, stream, num_samples=per_rank)
        loaders.append(InfiniteLoader(dataset, sampler, batch_size, num_workers, pin_memory))
    log.info(
        "train loaders: %d images in %d domains, rank %d/%d, %d draws per epoch, reference partners %s",
        len(source), len(source.domains), rank, world_size, per_rank, reference_mode,
    )
    return TrainLoaders(loaders[0], loaders[1], source.domains)


def make_eval_loader(
    root: str | os.PathLike[str],
    img_size: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
    domains: Sequence[str] | None = None,
) -> DataLoader:
    """A plain loader of (image, label) with the eval transform (validation, debug images, metrics)."""
    dataset = ImageDomainDataset(root, eval_transform(img_size), domains)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )


__all__ = [
    "REFERENCE_STREAM",
    "SOURCE_STREAM",
    "BalancedSampler",
    "InfiniteLoader",
    "TrainLoaders",
    "class_balanced_weights",
    "make_eval_loader",
    "make_train_loaders",
    "weighted_random_sampler",
]
