"""The result of a translation: frames, styles and sources, and its atomic result folder on disk."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from smoothgan import images
from smoothgan.errors import InputError
from smoothgan.fileio import atomic_dir, write_json_atomic

_PER_SOURCE_KEYS = ("source_domains", "source_domain_errors")
STRIP_MAX_HEIGHT = 512  # strips of larger frames (full-size photos with faces pasted back) use scaled copies


def strip_of(images_: list[np.ndarray]) -> np.ndarray:
    """Images side by side; copies scaled to :data:`STRIP_MAX_HEIGHT` when they are taller (a strip of twenty
    full-size photos would be a PNG of hundreds of megapixels)."""
    height = images_[0].shape[0]
    if height > STRIP_MAX_HEIGHT:
        images_ = [images.resize(im, (STRIP_MAX_HEIGHT, max(1, round(im.shape[1] * STRIP_MAX_HEIGHT / height))))
                   for im in images_]
    return images.make_strip(images_)


@dataclass
class Result:
    """Outputs of one call: uint8 images [N_sources, K, H, W, 3] and the style codes that made them.

    ``sources`` holds the preprocessed sources (uint8 [N_sources, H, W, 3]); ``metadata`` everything needed to
    reproduce the call (seed, domains, steps, backend, model sha256), per-source lists included.
    """

    images: np.ndarray
    styles: np.ndarray
    sources: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def item(self, index: int) -> "Result":
        """The result of source ``index`` alone (its per-source metadata lists cut to one entry)."""
        if not -len(self) <= index < len(self):
            raise InputError(f"result index {index} out of range for {len(self)} source(s)")
        index %= len(self)
        return self.part(index, index + 1)

    def part(self, start: int, stop: int) -> "Result":
        """The results of sources ``start`` to ``stop - 1`` (per-source metadata lists cut to match)."""
        if not 0 <= start < stop <= len(self):
            raise InputError(f"result sources {start}:{stop} out of range for {len(self)} source(s)")
        meta = dict(self.metadata)
        for key in _PER_SOURCE_KEYS:
            if key in meta:
                meta[key] = list(meta[key][start:stop])
        sl = slice(start, stop)
        return Result(self.images[sl], self.styles[sl], self.sources[sl], meta)

    def sidecar(self) -> dict[str, Any]:
        """JSON-ready description: seeds, domains, steps, backend, model hash."""
        return dict(self.metadata)

    def save(self, folder: str | Path, *, index: int = 0, input: Optional[str | Path] = None, gif: bool = False,
             mp4: bool = False, fps: float = 10) -> Path:
        """Write source ``index``'s result folder atomically and return it.

        The folder holds frame_NNN.png, strip.png (the source first), animation.gif / animation.mp4 when asked and
        sidecar.json (with ``input`` when given). It is built in a staging folder that then replaces ``folder``
        whole (:func:`smoothgan.fileio.atomic_dir`): a rerun leaves no stale frames and a kill leaves the old
        folder or the new one, never a partial one. Only a previous result folder (or an empty one) is replaced:
        anything else at ``folder`` raises :class:`InputError` and is left alone.
        """
        if not fps > 0:
            raise InputError(f"fps must be positive, got {fps}")
        check_replaceable(folder)
        one = self.item(index)
        frames = list(one.images[0])
        sidecar = one.sidecar()
        if input is not None:
            sidecar = {"input": str(input), **sidecar}
        target = Path(folder)
        with atomic_dir(target) as staging:
            for i, frame in enumerate(frames):
                images.save_image(staging / f"frame_{i:03d}.png", frame)
            images.save_image(staging / "strip.png", strip_of([one.sources[0], *frames]))
            if gif:
                images.save_gif(staging / "animation.gif", frames, fps=fps)
            if mp4:
                images.save_mp4(staging / "animation.mp4", frames, fps=fps)
            write_json_atomic(staging / "sidecar.json", sidecar)
        return target


def check_replaceable(folder: str | Path) -> None:
    """Refuse to replace ``folder`` unless it is missing, an empty folder or a result folder (has sidecar.json)."""
    target = Path(folder)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise InputError(f"'{target}' exists and is not a result folder; choose another --out")
    if target.is_dir() and not (target / "sidecar.json").is_file() and any(target.iterdir()):
        raise InputError(f"'{target}' exists and is not a result folder (no sidecar.json); it is left alone: "
                         "choose another --out")


__all__ = ["Result", "STRIP_MAX_HEIGHT", "check_replaceable", "strip_of"]
