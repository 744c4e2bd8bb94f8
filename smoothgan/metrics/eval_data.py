"""Evaluation data: the split's images per domain (sources, references), train images for FID, synthetic
attributes when the folder has them. Layout: ``DATA/{train,val}/<domain>/<images>``, as for training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from smoothgan import images
from smoothgan.errors import DataError


@dataclass
class EvalData:
    """The images of an evaluation: sources, references and FID reals per domain (model order)."""

    root: Path
    split: str
    domains: tuple[str, ...]
    sources: dict[str, list[Path]]  # the first num_pairs images of each domain's split folder
    references: dict[str, list[Path]]  # every image of each domain's split folder
    train: dict[str, list[Path]]  # every train image per domain (only when FID is asked for)
    attributes: Optional[dict[str, dict[str, Any]]]  # synthetic rows by relative path, when attributes.jsonl exists

    def summary(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "split": self.split,
            "sources": {d: len(v) for d, v in self.sources.items()},
            "references": {d: len(v) for d, v in self.references.items()},
            "train": {d: len(v) for d, v in self.train.items()},
            "synthetic_attributes": self.attributes is not None,
        }


def _domain_images(folder: Path) -> dict[str, list[Path]]:
    if not folder.is_dir():
        raise DataError(f"evaluation data not found: {folder} (expected {folder}/<domain>/<images>, the layout "
                        "DATA/{train,val}/<domain>/)")
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return {name: images.list_images(folder / name) for name in names}


def scan_eval_data(root: str | Path, domains: Sequence[str], split: str = "val", num_pairs: Optional[int] = None,
                   need_train: bool = False) -> EvalData:
    """List ``root/<split>/<domain>`` (and ``root/train`` for FID); DataError unless the domain folders are
    exactly ``domains`` and none is empty."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"evaluation data folder not found: {root}")
    found = _domain_images(root / split)
    if set(found) != set(domains):
        raise DataError(f"domain folders of {root / split} ({', '.join(found) or 'none'}) do not match the "
                        f"model's domains ({', '.join(domains)})")
    empty = [d for d in domains if not found[d]]
    if empty:
        raise DataError(f"no images in {', '.join(str(root / split / d) for d in empty)}")
    train: dict[str, list[Path]] = {}
    if need_train:
        if not (root / "train").is_dir():
            raise DataError(f"FID needs the target domains' train images: {root / 'train'} not found (expected "
                            f"{root / 'train'}/<domain>/<images>)")
        train_found = _domain_images(root / "train")
        missing = [d for d in domains if not train_found.get(d)]
        if missing:
            raise DataError(f"FID needs the target domains' train images: none in "
                            f"{', '.join(str(root / 'train' / d) for d in missing)}")
        train = {d: train_found[d] for d in domains}
    attributes = None
    if (root / "attributes.jsonl").is_file():
        from smoothgan.trainer.synth import read_attributes

        attributes = {row["file"]: row for row in read_attributes(root) if "file" in row}
    references = {d: found[d] for d in domains}
    sources = {d: v[:num_pairs] if num_pairs else v for d, v in references.items()}
    return EvalData(root, split, tuple(domains), sources, references, train, attributes)


__all__ = ["EvalData", "scan_eval_data"]
