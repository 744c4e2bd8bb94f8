"""The judge of translations: a small CNN domain classifier, trained on a data set's train split.

Why: "translation domain accuracy" (the share of translations that a classifier assigns to their target domain)
is only evidence when the classifier itself is right on real held-out images. So a :class:`DomainClassifier`
carries its validation accuracy, and every call that judges something (:meth:`DomainClassifier.predict`,
:func:`translation_domain_accuracy`) refuses, with a one-line error, a classifier below
:data:`MIN_VAL_ACCURACY` (98%) on its validation split.

Saved as ``<dir>/classifier.safetensors`` (weights) + ``<dir>/classifier.json`` (format version, config, domains,
validation accuracy, weights sha256, checked on load); never pickle.

Network: three conv blocks (3x3 conv, batch norm, ReLU, 2x2 max pool) then global average pooling and a linear
head; 94k parameters at the default widths. On the synthetic shapes it reaches >= 99% validation accuracy in a
few epochs (EXPERIMENTS.md, "Plan for the converged ablation").
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from smoothgan import images
from smoothgan.config import strict_from_dict
from smoothgan.errors import DataError, InputError
from smoothgan.fileio import atomic_dir, read_marker, sha256_file

log = logging.getLogger(__name__)

FORMAT = "smoothgan-domain-classifier"
FORMAT_VERSION = 1
MIN_VAL_ACCURACY = 0.98
WEIGHTS = "classifier.safetensors"
META = "classifier.json"


@dataclass(frozen=True)
class ClassifierConfig:
    """Constructor arguments of :class:`DomainClassifierNet` (and the input size it expects)."""

    img_size: int
    domains: tuple[str, ...]
    widths: tuple[int, ...] = (32, 64, 128)

    def __post_init__(self) -> None:
        if self.img_size < 8 or len(self.domains) < 2 or not self.widths or min(self.widths) < 1:
            raise InputError(f"domain classifier needs img_size >= 8, >= 2 domains and positive widths, got "
                             f"{self.img_size}, {list(self.domains)}, {list(self.widths)}")

    def to_dict(self) -> dict[str, Any]:
        return {"img_size": self.img_size, "domains": list(self.domains), "widths": list(self.widths)}


class DomainClassifierNet(nn.Module):
    """Conv blocks -> global average pool -> linear: ``[B, 3, H, W]`` in [-1, 1] -> ``[B, num_domains]`` logits."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 3
        for out in config.widths:
            layers += [nn.Conv2d(width, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(),
                       nn.MaxPool2d(2)]
            width = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # [B, widths[-1]]
        self.head = nn.Linear(width, len(config.domains))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # [B, num_domains]


@dataclass
class DomainClassifier:
    """A trained classifier with the validation accuracy that licenses its use."""

    config: ClassifierConfig
    net: DomainClassifierNet
    val_accuracy: float
    val_count: int
    history: list[dict[str, float]] = field(default_factory=list)

    def check(self, min_accuracy: float = MIN_VAL_ACCURACY) -> None:
        """Raise :class:`DataError` unless the validation accuracy reaches ``min_accuracy``."""
        if not self.val_accuracy >= min_accuracy:
            raise DataError(f"domain classifier validation accuracy {self.val_accuracy:.3f} (n={self.val_count}) "
                            f"is below {min_accuracy:.2f}: it cannot judge translations (train it longer)")

    def _logits(self, batch: np.ndarray, size: int = 256) -> np.ndarray:
        self.net.eval()
        with torch.no_grad():
            parts = [self.net(torch.from_numpy(batch[i:i + size])).numpy() for i in range(0, len(batch), size)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.config.domains)), np.float32)

    def probabilities(self, imgs: images.ImageList | np.ndarray) -> np.ndarray:
        """Softmax over the domains ``[N, D]`` of each image (uint8 HxWx3 arrays), resized to the
        classifier's input size: how sure the judge is, e.g. to pick samples whose translation is obvious."""
        self.check()
        logits = self._logits(images.to_model_input(list(imgs), self.config.img_size, fit="stretch"))
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy()

    def predict(self, imgs: images.ImageList | np.ndarray) -> np.ndarray:
        """Domain index of each image (uint8 HxWx3 arrays), resized to the classifier's input size."""
        self.check()
        return self._logits(images.to_model_input(list(imgs), self.config.img_size, fit="stretch")).argmax(1)

    def save(self, out_dir: str | os.PathLike[str], overwrite: bool = False) -> Path:
        """Write ``classifier.safetensors`` + ``classifier.json`` into a new folder ``out_dir``."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        if out.exists() and not overwrite:
            raise InputError(f"{out} exists; pass overwrite=True to replace it")
        with atomic_dir(out) as tmp:
            state = {k: v.detach().contiguous().cpu() for k, v in self.net.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS))
            meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": self.config.to_dict(),
                    "val_accuracy": self.val_accuracy, "val_count": self.val_count, "history": self.history,
                    "weights_sha256": sha256_file(tmp / WEIGHTS)}
            (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        return out


def load_domain_classifier(path: str | os.PathLike[str]) -> DomainClassifier:
    """Read a folder written by :meth:`DomainClassifier.save` (format, config and weights sha256 checked)."""
    from safetensors.torch import load_file

    root = Path(path)
    meta = read_marker(root / META, FORMAT, FORMAT_VERSION, InputError, "a domain classifier description")
    config = strict_from_dict(ClassifierConfig, meta.get("config"), f"{root / META}: config", InputError)
    accuracy, count = meta.get("val_accuracy"), meta.get("val_count")
    if not isinstance(accuracy, float) or not isinstance(count, int) or isinstance(count, bool):
        raise InputError(f"{root / META}: val_accuracy must be a number and val_count an integer")
    weights = root / WEIGHTS
    if not weights.is_file() or sha256_file(weights) != meta.get("weights_sha256"):
        raise InputError(f"{weights} is missing or does not match the sha256 recorded in {META}")
    net = DomainClassifierNet(config)
    try:
        net.load_state_dict(load_file(str(weights)))
    except RuntimeError as exc:
        raise InputError(f"{weights} does not fit the recorded config: {str(exc).splitlines()[0]}") from None
    net.eval()
    return DomainClassifier(config, net, accuracy, count, list(meta.get("history") or []))


def load_judge(judge: DomainClassifier | str | os.PathLike[str] | None,
               domains: Sequence[str]) -> DomainClassifier:
    """The judge of the ``accuracy`` metric: loaded if a folder, licensed (>= 98% validation accuracy), and
    knowing every domain of the data."""
    if judge is None:
        raise InputError("the accuracy metric needs a judge: a domain classifier folder made by `smoothgan data "
                         "judge DATA --out DIR` (--judge DIR)")
    classifier = judge if isinstance(judge, DomainClassifier) else load_domain_classifier(judge)
    classifier.check()
    missing = [d for d in domains if d not in classifier.config.domains]
    if missing:
        raise InputError(f"the judge knows domains {', '.join(classifier.config.domains)}, not "
                         f"{', '.join(missing)} of the data")
    return classifier


def load_split(root: str | os.PathLike[str], split: str, domains: Sequence[str],
               img_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images of ``root/split/<domain>/`` as model input ``[N, 3, S, S]`` in [-1, 1] and domain indices ``[N]``."""
    xs, ys = [], []
    for index, domain in enumerate(domains):
        files = images.list_images(Path(root) / split / domain)
        if not files:
            raise DataError(f"no images in {Path(root) / split / domain}")
        xs.append(images.to_model_input([images.load(f) for f in files], img_size, fit="stretch"))
        ys.append(np.full(len(files), index, np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def train_domain_classifier(root: str | os.PathLike[str], domains: Sequence[str], img_size: int, *,
                            epochs: int = 8, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                            widths: tuple[int, ...] = (32, 64, 128), target: float | None = None,
                            progress: Callable[[dict[str, float]], None] | None = None) -> DomainClassifier:
    """Train on ``root/train``, measure on ``root/val`` after every epoch; keep the best epoch's weights.

    Stops early once validation accuracy reaches ``target`` (default: none, all ``epochs`` run). Augmentation is
    a random horizontal flip (the shapes' domains are mirror-symmetric). The result is returned even when below
    :data:`MIN_VAL_ACCURACY`; using it to judge then fails (:meth:`DomainClassifier.check`). ``progress`` gets
    each epoch's ``{"epoch", "train_loss", "val_accuracy"}``.
    """
    config = ClassifierConfig(img_size, tuple(domains), tuple(widths))
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x, y = (torch.from_numpy(a) for a in load_split(root, "train", domains, img_size))
    xv, yv = load_split(root, "val", domains, img_size)
    net = DomainClassifierNet(config)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * math.ceil(len(x) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(1, steps))
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    classifier = DomainClassifier(config, net, 0.0, len(yv))
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            batch = x[idx]
            flip = torch.rand(len(idx), generator=generator) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
            loss = nn.functional.cross_entropy(net(batch), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        accuracy = float((classifier._logits(xv).argmax(1) == yv).mean())
        classifier.history.append({"epoch": epoch + 1, "train_loss": total / len(x), "val_accuracy": accuracy})
        log.info("domain classifier epoch %d: train loss %.4f, val accuracy %.4f", epoch + 1, total / len(x),
                 accuracy)
        if progress is not None:
            progress(classifier.history[-1])
        if best is None or accuracy > best[0]:
            best = (accuracy, {k: v.clone() for k, v in net.state_dict().items()})
        if target is not None and accuracy >= target:
            break
    assert best is not None  # epochs >= 1
    net.load_state_dict(best[1])
    net.eval()
    classifier.val_accuracy = best[0]
    return classifier


@dataclass(frozen=True)
class TranslationAccuracy:
    """Share of latent-guided translations classified as their target domain, overall and per ``src2trg``."""

    accuracy: float
    count: int
    per_task: dict[str, float]


def translation_domain_accuracy(translator: Any, root: str | os.PathLike[str], classifier: DomainClassifier, *,
                                split: str = "val", num: int = 2, max_sources: int | None = None,
                                seed: int = 0) -> TranslationAccuracy:
    """Translate ``root/split/<src>`` images to every other domain (``num`` latent styles each), then classify.

    ``translator`` is a :class:`smoothgan.Translator` (``translate(sources, domain, num=, seed=)``); its domains
    must be the classifier's. Refuses a classifier below :data:`MIN_VAL_ACCURACY`.
    """
    classifier.check()
    domains = list(classifier.config.domains)
    missing = [d for d in domains if d not in translator.domains]
    if missing:
        raise InputError(f"the translator has no domain(s) {', '.join(missing)} of the classifier")
    correct = total = 0
    per_task: dict[str, float] = {}
    for src in domains:
        files = images.list_images(Path(root) / split / src)[:max_sources]
        if not files:
            raise DataError(f"no images in {Path(root) / split / src}")
        sources = [images.load(f) for f in files]
        for trg_index, trg in enumerate(domains):
            if trg == src:
                continue
            result = translator.translate(sources, trg, num=num, seed=seed + trg_index)
            flat = result.images.reshape(-1, *result.images.shape[-3:])  # [S * num, H, W, 3]
            hits = int((classifier.predict(list(flat)) == trg_index).sum())
            per_task[f"{src}2{trg}"] = hits / len(flat)
            correct, total = correct + hits, total + len(flat)
    return TranslationAccuracy(correct / max(1, total), total, per_task)


__all__ = [
    "ClassifierConfig",
    "DomainClassifier",
    "DomainClassifierNet",
    "MIN_VAL_ACCURACY",
    "TranslationAccuracy",
    "load_domain_classifier",
    "load_judge",
    "load_split",
    "train_domain_classifier",
    "translation_domain_accuracy",
]
