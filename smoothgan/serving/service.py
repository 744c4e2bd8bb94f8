"""The model side of ``smoothgan serve``, free of any server: per-request styles, then one batched generator pass
over the rows of many requests.

A request is split in two. :meth:`Service.prepare` runs alone per request: preprocessing, the target styles
(mapping network for ``seed``/``num``, style encoder for references), FAN masks and, for interpolations, the
source's own style and the style path. :meth:`Service.generate` then takes the prepared requests of a whole batch
(what Ray Serve's ``@serve.batch`` collected) and sends all their generator rows through
:meth:`Translator.frames` in batches of at most ``max_batch``. The styles are those of :meth:`Translator.translate`
and :meth:`Translator.interpolate` with the same arguments, so answers equal ``smoothgan translate`` within 1/255.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from smoothgan import __version__, styles
from smoothgan.backends.base import Masks
from smoothgan.serving.http import Job
from smoothgan.translator import Translator

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A request ready for the generator: its source ``x`` [1, 3, S, S], styles [K, D], masks and metadata."""

    job: Job
    x: np.ndarray
    style: np.ndarray
    masks: Optional[Masks]
    metadata: dict[str, Any]


def _indices(translator: Translator, domain: str, count: int) -> np.ndarray:
    return np.full((count,), translator.bundle.domain_index(domain), dtype=np.int64)


class Service:
    """One translator plus batching statistics (what ``GET /model`` reports)."""

    def __init__(self, translator: Translator, max_wait_ms: float = 0.0) -> None:
        self.translator = translator
        self.max_wait_ms = float(max_wait_ms)
        self._lock = threading.Lock()
        self._sizes: Counter[int] = Counter()  # requests per batch -> batches
        self._rows = 0
        self._requests = 0

    # ---- per request -------------------------------------------------------------------------------------------
    def prepare(self, job: Job) -> Prepared:
        """Preprocess the source and make its K target styles (and, for interpolations, the style path)."""
        t = self.translator
        x = t.preprocess(job.image)
        refs = [t.preprocess(r) for r in job.refs]
        ref_x = np.concatenate(refs) if refs else None
        masks = t.masks(x)
        if ref_x is not None:
            target = t.encode(ref_x, _indices(t, job.domain, len(ref_x)))
            meta: dict[str, Any] = {"style": "reference", "references": len(refs)}
        else:
            target = t.latent_styles(job.domain, job.seed, 1 if job.steps is not None else job.num)
            meta = {"style": "latent", "seed": job.seed}
            if job.steps is None:
                meta["num"] = job.num
        meta = {"job": job.kind, "domain": job.domain, **meta}
        if job.steps is None:
            return Prepared(job, x, target, masks, self._metadata(meta))
        if job.source_domain is None:
            src, _ = t.infer_source_domain(x, masks)
            inferred = True
        else:
            src, inferred = _indices(t, job.source_domain, 1), False
        start = t.encode(x, src)  # [1, D]
        path = styles.interpolate(start, target[:1], job.steps, job.mode)[:, 0]  # [steps, D]
        meta.update(steps=job.steps, mode=job.mode, source_domain=t.domains[int(src[0])],
                    source_domain_inferred=inferred)
        return Prepared(job, x, np.ascontiguousarray(path), masks, self._metadata(meta))

    def _metadata(self, meta: dict[str, Any]) -> dict[str, Any]:
        t = self.translator
        return {**meta, "smoothgan_version": __version__, "model_sha256": t.bundle.weights_sha256,
                "backend": t.backend.name, "device": t.backend.device, "precision": t.backend.precision}

    # ---- per batch of requests --------------------------------------------------------------------------------
    def generate(self, batch: list[Prepared]) -> list[np.ndarray]:
        """uint8 frames [K_i, S, S, 3] for every prepared request; all rows go through the generator together."""
        counts = [len(p.style) for p in batch]
        x = np.concatenate([np.repeat(p.x, k, axis=0) for p, k in zip(batch, counts)])
        style = np.concatenate([p.style for p in batch])[:, None]  # [R, 1, D]
        masks = None
        if batch[0].masks is not None:
            masks = tuple(np.concatenate([np.repeat(p.masks[i], k, axis=0) for p, k in zip(batch, counts)])
                          for i in (0, 1))
        frames = self.translator.frames(x, style, masks)[:, 0]  # [R, S, S, 3]
        with self._lock:
            self._sizes[len(batch)] += 1
            self._requests += len(batch)
            self._rows += len(frames)
        log.debug("batch of %d request(s), %d generator row(s)", len(batch), len(frames))
        return list(np.split(frames, np.cumsum(counts)[:-1]))

    def run(self, job: Job) -> tuple[np.ndarray, dict[str, Any]]:
        """One request alone (no cross-request batching): frames and metadata."""
        prepared = self.prepare(job)
        return self.generate([prepared])[0], prepared.metadata

    # ---- reporting --------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Batches formed so far by this replica: count, requests, rows and a histogram of requests per batch."""
        with self._lock:
            sizes = dict(sorted(self._sizes.items()))
            return {"max_batch": self.translator.max_batch, "max_wait_ms": self.max_wait_ms,
                    "batches": sum(sizes.values()), "requests": self._requests, "rows": self._rows,
                    "largest_batch": max(sizes, default=0), "batch_sizes": {str(k): v for k, v in sizes.items()}}

    def describe(self) -> dict[str, Any]:
        """``GET /model``: what is served and how."""
        t = self.translator
        return {"name": t.bundle.name, "domains": list(t.domains), "sha256": t.bundle.weights_sha256,
                "img_size": t.config.img_size, "backend": t.backend.name, "device": t.backend.device,
                "precision": t.backend.precision, "smoothgan_version": __version__, "batching": self.stats()}


__all__ = ["Prepared", "Service"]
