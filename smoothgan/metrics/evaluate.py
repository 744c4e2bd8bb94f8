"""The evaluation runner: PS (inter/intra-domain), LPIPS diversity, FID and content preservation of a model.

Works through a :class:`~smoothgan.translator.Translator` on any backend (torch, ONNX Runtime, TensorRT); the
distances (LPIPS) and features (Inception) run in torch on ``metric_device``. Everything is batched: the frames
of many interpolations go through the generator in batches of ``translator.max_batch``.

Data layout: ``DATA/<split>/<domain>/*`` (sources and references, ``split="val"``) and ``DATA/train/<domain>/*``
(FID real images), the StarGAN v2 layout; the domain folders must be exactly the model's domains. Sources of a
domain are its images sorted by path; ``num_pairs`` keeps the first N (default all).

Randomness: every latent z is ``numpy.random.default_rng([seed, stream, src, i, trg, j]).standard_normal(L)``
(src/trg domain indices, i the source's index in its sorted list, j the output number; streams 0 PS inter
(j = 0 the end style, j = 1 the start style with ``ps_start="latent"``), 1 PS intra, 2 latent translations,
3 reference picks), so a number does not depend on batch sizes or backends.

Protocol (the official repo never recorded how its PS frame sequences were made; docs/EVALUATION.md):

- **PS inter-domain** ``ps_inter_<steps>_<mode>``: for every source x of domain y_src and every y_trg != y_src,
  styles lerp(s0, M(z, y_trg), alpha) at alpha = i / (steps - 1) (both ends included), s0 = E(x, y_src) (the
  default ``ps_start="source"``, our deviation) or a random style M(z', y_src) (``ps_start="latent"``, the
  paper's random styles; keys ``ps_inter_latent_<steps>_<mode>``); frames G(x, s, masks(x)); frames quantised
  to uint8 and rescaled to [-1, 1] (the released ``ps_eval.py`` read 8-bit PNGs); squared LPIPS between
  consecutive frames and between the two end frames. Modes (``smoothgan.metrics.ps.PS_MODES``): ``official`` =
  squared LPIPS, A capped at 1, in-place epsilon (the released script); ``metric`` = sqrt-LPIPS, a
  pseudo-metric; ``paper`` = sqrt-LPIPS, A unclipped, PS = harmonic mean of mean A and mean U (Eq. 13-14).
- **PS intra-domain** ``ps_intra_<steps>_<mode>``: the same path between two mapping styles M(z1, y),
  M(z2, y) of the same domain, for every domain y (the source's own included, like the smoothing repo's video
  mode, whose loop holds intra segments in both domains).
- **LPIPS diversity** ``lpips_latent`` / ``lpips_reference`` (StarGAN v2): for every task src != trg,
  ``num_outs`` outputs per source, from fresh latents or from references drawn from the target's ``split``
  images; per source the mean squared LPIPS over all output pairs, on the float outputs (as the official code).
- **FID** ``fid_latent`` / ``fid_reference``: per task, the uint8-quantised outputs of the diversity pass vs
  every train image of the target domain, Inception features; the headline is the mean over tasks.
- **Content** ``content_lpips_latent``: per source, mean LPIPS(x, output) over its latent outputs; with a
  synthetic data set (``attributes.jsonl``): ``content_position_err`` / ``content_size_err`` in pixels (object
  centre-of-mass distance, |size| difference, size by area) of each output vs the source's known attributes, found by
  :func:`~smoothgan.trainer.synth.estimate_content`, ``content_rotation_err`` in degrees (wrapped to the target
  shape's symmetry period; only for tasks whose source and target shapes both show a rotation, e.g.
  square2triangle) and ``content_not_found`` (fraction of outputs).
- **Translation domain accuracy** ``domain_accuracy_latent`` / ``domain_accuracy_reference`` (with a ``judge``,
  a :class:`~smoothgan.metrics.domain_classifier.DomainClassifier` at >= 98% on its own validation split): the
  share of the diversity pass's uint8 outputs that the judge assigns to the target domain.

Aggregation: means over sequences (PS), sources (diversity, content LPIPS) or outputs (position) pooled over
tasks, with the sample std and a 95 % Student-t interval; every metric also per task ``{src}2{trg}``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from smoothgan import images, styles
from smoothgan.errors import BackendError, InputError
from smoothgan.metrics.eval_data import EvalData, scan_eval_data
from smoothgan.metrics.eval_keys import add_grouped, add_smoothness, rank
from smoothgan.metrics.ps import PS_MODES, PSResult, smoothness_from_distances
from smoothgan.metrics.report import MetricValue, Report

if TYPE_CHECKING:
    import torch

    from smoothgan.metrics.domain_classifier import DomainClassifier
    from smoothgan.metrics.lpips import PerceptualDistance
    from smoothgan.translator import Translator

__all__ = [
    "DEFAULT_METRICS", "METRICS", "PS_STARTS", "EvalData", "PSStart", "Progress", "build_fid_extractor",
    "build_lpips", "evaluate", "parse_metrics", "scan_eval_data",
]

log = logging.getLogger(__name__)

METRICS: tuple[str, ...] = ("ps", "lpips", "fid", "content", "accuracy")
"""Metric groups :func:`evaluate` knows, in report order (``accuracy`` needs a judge)."""
DEFAULT_METRICS: tuple[str, ...] = ("ps", "lpips", "fid", "content")
"""What :func:`evaluate` measures when not told: everything that needs no judge."""
NEEDS_LPIPS = ("ps", "lpips", "content")

STREAM_INTER, STREAM_INTRA, STREAM_LATENT, STREAM_REFERENCE = 0, 1, 2, 3
RANDOM_BACKBONE_WARNING = "LPIPS backbone is random: numbers not comparable with published LPIPS/PS"


@dataclass(frozen=True)
class PSStart:
    """Where an inter-domain PS interpolation starts (a row of :data:`PS_STARTS`)."""

    name: str
    kind: str  # the kind in the metric keys: ps_<kind>_<steps>_<mode>
    style: str  # the start style, in the notation of docs/EVALUATION.md
    summary: str  # one line for the report's protocol


PS_STARTS: dict[str, PSStart] = {
    row.name: row
    for row in (
        PSStart("source", "inter", "E(x, y_src)",
                "the source's own style (default; a deviation from the paper and the official main.py)"),
        PSStart("latent", "inter_latent", "M(z', y_src)",
                "a random latent style of the source domain (the paper's random styles)"),
    )
}
"""Start styles of the inter-domain PS sequences; drives ``evaluate(ps_start=...)`` and ``--ps-start``."""

Progress = Callable[[str, int, int], None]
"""``progress(stage, completed, total)``, called as work units of a stage finish."""
Distance = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


# ------------------------------------------------------------------------------------------------ networks


def build_lpips(weights: str | Path | None = None, random_backbone: bool = False) -> PerceptualDistance:
    """Squared LPIPS (the official value). A random backbone is seeded (0) so smoke-test numbers repeat."""
    import torch

    from smoothgan.metrics.lpips import PerceptualDistance

    if random_backbone:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return PerceptualDistance("squared", random_backbone=True)
    return PerceptualDistance("squared", backbone_weights=weights)


def build_fid_extractor(weights: str | Path | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """torchvision Inception v3 features (REFERENCE 6.3) from ``weights`` or the torch hub cache."""
    from smoothgan.metrics.fid import INCEPTION_FILE, INCEPTION_URL, InceptionFeatures
    from smoothgan.metrics.lpips import pretrained_weights

    path = pretrained_weights(weights, INCEPTION_FILE, INCEPTION_URL, "FID's ImageNet Inception v3 weights",
                              "its path (--inception-weights PATH, or fid_extractor=PATH)")
    return InceptionFeatures(path)


def _describe(obj: object) -> str:
    describe = getattr(obj, "describe", None)
    return describe() if callable(describe) else f"custom ({type(obj).__name__})"


def _lpips_info(distance: object) -> tuple[str, bool]:
    from smoothgan.metrics.lpips import PerceptualDistance

    if isinstance(distance, PerceptualDistance):
        if distance.mode != "squared":
            raise InputError(f"evaluation needs squared LPIPS (mode='squared'), got mode={distance.mode!r}; "
                             "the metric PS mode takes its square root itself")
        text = distance.describe()
        return text, "random init" not in text
    return _describe(distance), False


# ------------------------------------------------------------------------------------------------ runner


def _quantised(x: np.ndarray) -> np.ndarray:
    """Model output -> uint8 (torchvision save_image rounding) -> [-1, 1] float32, as read back from a PNG."""
    u8 = images.from_model_output(x).transpose(0, 3, 1, 2).astype(np.float32)
    return (u8 / np.float32(255) - np.float32(0.5)) / np.float32(0.5)


class _Runner:
    """State shared by the passes: translator, distance, extractor, seeds, progress, collected values."""

    def __init__(self, translator: Translator, data: EvalData, distance: Optional[Distance],
                 extractor: Optional[Callable[..., Any]], device: str, seed: int, progress: Optional[Progress],
                 ps_start: str = "source", judge: Optional[DomainClassifier] = None) -> None:
        import torch

        self.t, self.data, self.seed, self.ps_start, self.judge = translator, data, seed, ps_start, judge
        self.domains = data.domains
        self.index = {d: translator.bundle.domain_index(d) for d in data.domains}
        self.batch = translator.max_batch
        self.device = torch.device(device)
        self.distance = distance.to(self.device) if isinstance(distance, torch.nn.Module) else distance
        self.extractor = extractor.to(self.device) if isinstance(extractor, torch.nn.Module) else extractor
        self.progress = progress
        self.generated = 0
        self._ref_styles: dict[str, np.ndarray] = {}
        self._real_features: dict[str, np.ndarray] = {}

    # -- helpers ------------------------------------------------------------------------------------------------
    def _report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    def _latent(self, stream: int, src: int, i: int, trg: int, j: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, stream, src, i, trg, j])
        return rng.standard_normal(self.t.config.latent_dim).astype(np.float32)

    def _map(self, z: np.ndarray, domain: np.ndarray) -> np.ndarray:
        parts = [self.t.backend.mapping(np.ascontiguousarray(z[k:k + self.batch]), domain[k:k + self.batch])
                 for k in range(0, len(z), self.batch)]
        return np.concatenate(parts)

    def _load(self, paths: Sequence[Path]) -> tuple[np.ndarray, Any]:
        x = self.t.prepare(list(paths))
        return x, self.t.masks(x)

    def _generate(self, x: np.ndarray, masks: Any, style: np.ndarray, repeats: int) -> np.ndarray:
        """G(x_i, style_(i, r)) for every source i and its ``repeats`` styles (style rows ordered (i, r))."""
        rep = None if masks is None else (np.repeat(masks[0], repeats, 0), np.repeat(masks[1], repeats, 0))
        out = self.t.generate(np.repeat(x, repeats, axis=0), style, rep)
        self.generated += len(out)
        return out

    def _distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distances [N] (float64, >= 0) between aligned image arrays [N, 3, H, W], in batches."""
        import torch

        out = []
        with torch.inference_mode():
            for k in range(0, len(a), self.batch):
                x0 = torch.from_numpy(np.ascontiguousarray(a[k:k + self.batch])).to(self.device)
                x1 = torch.from_numpy(np.ascontiguousarray(b[k:k + self.batch])).to(self.device)
                d = self.distance(x0, x1).reshape(-1)
                if d.shape[0] != x0.shape[0]:
                    raise InputError("the LPIPS distance must return one value per image pair ([B])")
                out.append(d.double().clamp_min(0.0).cpu().numpy())
        return np.concatenate(out)

    def _features(self, x: np.ndarray) -> np.ndarray:
        from smoothgan.metrics.fid import extract_features

        return extract_features(torch_from(x), self.extractor, self.batch, self.device)

    def _tasks(self, same: bool) -> list[tuple[str, str]]:
        return [(s, t) for s in self.domains for t in self.domains if same or s != t]

    # -- PS -------------------------------------------------------------------------------------------------------
    def perceptual_smoothness(self, kind: str, steps: int, report: Report) -> None:
        """Interpolation sequences of one kind ("inter" or "intra") -> PS, alignment, uniformity in every mode."""
        results: dict[tuple[str, str], dict[str, list[PSResult]]] = defaultdict(lambda: defaultdict(list))
        intra = kind == "intra"
        label = kind if intra else PS_STARTS[self.ps_start].kind
        total = sum(len(self.data.sources[s]) for s, _ in self._tasks(intra))  # sequences
        done, stage = 0, f"PS {kind}-domain"
        for src in self.domains:
            s = self.index[src]
            targets = [t for t in self.domains if intra or t != src]
            tix = np.array([self.index[t] for t in targets], np.int64)
            paths = self.data.sources[src]
            per = max(1, self.batch // (steps * len(targets)))
            for c0 in range(0, len(paths), per):
                x, masks = self._load(paths[c0:c0 + per])
                n, k = len(x), len(targets)
                dom = np.tile(tix, n)  # sequence q = i * k + target position
                if intra:
                    start = self._map(np.stack([self._latent(STREAM_INTRA, s, c0 + i, t, 0)
                                                for i in range(n) for t in tix]), dom)
                    end = self._map(np.stack([self._latent(STREAM_INTRA, s, c0 + i, t, 1)
                                              for i in range(n) for t in tix]), dom)
                else:
                    if self.ps_start == "latent":
                        start = self._map(np.stack([self._latent(STREAM_INTER, s, c0 + i, t, 1)
                                                    for i in range(n) for t in tix]), np.full(n * k, s, np.int64))
                    else:
                        start = np.repeat(self.t.encode(x, np.full(n, s, np.int64)), k, axis=0)
                    end = self._map(np.stack([self._latent(STREAM_INTER, s, c0 + i, t, 0)
                                              for i in range(n) for t in tix]), dom)
                path = styles.interpolate(start, end, steps).transpose(1, 0, 2)  # [n * k, steps, D]
                frames = _quantised(self._generate(x, masks, path.reshape(n * k * steps, -1), k * steps))
                frames = frames.reshape(n * k, steps, *frames.shape[1:])
                first = np.concatenate([frames[:, :-1], frames[:, :1]], axis=1).reshape(-1, *frames.shape[2:])
                second = np.concatenate([frames[:, 1:], frames[:, -1:]], axis=1).reshape(-1, *frames.shape[2:])
                d = self._distances(first, second).reshape(n * k, steps)  # [.., :-1] consecutive, [.., -1] end
                for q in range(n * k):
                    bucket = results[(src, targets[q % k])]
                    by_distance = {"squared": d[q], "sqrt": np.sqrt(d[q])}
                    for mode, spec in PS_MODES.items():
                        dist = by_distance[spec.distance]
                        bucket[mode].append(smoothness_from_distances(dist[:-1], float(dist[-1]), mode=mode))
                done += n * k
                self._report(stage, done, total)
        add_smoothness(report, results, label, steps)

    # -- translations: diversity, FID, content --------------------------------------------------------------------
    def _reference_styles(self, domain: str) -> np.ndarray:
        """E(ref, domain) for every split image of ``domain`` (computed once)."""
        if domain not in self._ref_styles:
            refs, parts = self.data.references[domain], []
            for k in range(0, len(refs), self.batch):
                x = self.t.prepare(refs[k:k + self.batch])
                parts.append(self.t.encode(x, np.full(len(x), self.index[domain], np.int64)))
            self._ref_styles[domain] = np.concatenate(parts)
        return self._ref_styles[domain]

    def real_features(self, domain: str) -> np.ndarray:
        """Inception features of every train image of ``domain`` (computed once)."""
        if domain not in self._real_features:
            paths, parts = self.data.train[domain], []
            for k in range(0, len(paths), self.batch):
                parts.append(self._features(self.t.prepare(paths[k:k + self.batch])))
                self._report(f"FID real features ({domain})", min(k + self.batch, len(paths)), len(paths))
            self._real_features[domain] = np.concatenate(parts)
        return self._real_features[domain]

    def translations(self, mode: str, num_outs: int, want: set[str], report: Report) -> None:
        """``num_outs`` outputs per source and task (src != trg); feeds diversity, FID and content."""
        values: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        fake: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
        tasks = self._tasks(False)
        pairs = [(a, b) for a in range(num_outs) for b in range(a + 1, num_outs)]
        total, done, stage = sum(len(self.data.sources[s]) for s, _ in tasks), 0, f"translations ({mode})"
        content = mode == "latent" and "content" in want
        for src, trg in tasks:
            s, t = self.index[src], self.index[trg]
            paths = self.data.sources[src]
            per = max(1, self.batch // num_outs)
            for c0 in range(0, len(paths), per):
                chunk = paths[c0:c0 + per]
                x, masks = self._load(chunk)
                n = len(x)
                if mode == "latent":
                    z = np.stack([self._latent(STREAM_LATENT, s, c0 + i, t, j)
                                  for i in range(n) for j in range(num_outs)])
                    style = self._map(z, np.full(len(z), t, np.int64))
                else:
                    bank = self._reference_styles(trg)
                    picks = [int(np.random.default_rng([self.seed, STREAM_REFERENCE, s, c0 + i, t, j])
                                 .integers(len(bank))) for i in range(n) for j in range(num_outs)]
                    style = bank[picks]
                out = self._generate(x, masks, style, num_outs)  # [n * num_outs, 3, H, W], rows (i, j)
                bucket = values[(src, trg)]
                if "lpips" in want and pairs:
                    outs = out.reshape(n, num_outs, *out.shape[1:])
                    a = np.concatenate([outs[:, p] for p, _ in pairs])  # rows (pair, i)
                    b = np.concatenate([outs[:, q] for _, q in pairs])
                    bucket[f"lpips_{mode}"].extend(self._distances(a, b).reshape(len(pairs), n).mean(0))
                if "fid" in want:
                    fake[(src, trg)].append(self._features(_quantised(out)))
                if "accuracy" in want and self.judge is not None:
                    judged = self.judge.predict(images.from_model_output(out))
                    target = list(self.judge.config.domains).index(trg)
                    bucket[f"domain_accuracy_{mode}"].extend((judged == target).astype(np.float64))
                if content:
                    d = self._distances(np.repeat(x, num_outs, axis=0), out).reshape(n, num_outs)
                    bucket["content_lpips_latent"].extend(d.mean(axis=1))
                    if self.data.attributes is not None:
                        self._content_errors(chunk, images.from_model_output(out), num_outs, trg, bucket)
                done += n
                self._report(stage, done, total)
        add_grouped(report, values)
        if "fid" in want:
            self._fid(mode, fake, report)

    def _content_errors(self, chunk: Sequence[Path], outputs: np.ndarray, num_outs: int, target: str,
                        bucket: dict[str, list[float]]) -> None:
        """Object position/size error (pixels) of each output vs the source's synthetic attributes, and the
        rotation error (degrees) where both the source's and the target's shape show a rotation."""
        from smoothgan.trainer.synth import estimate_content, has_rotation, rotation_error

        side, rows = outputs.shape[1], self.data.attributes or {}
        for i, path in enumerate(chunk):
            row = rows.get(path.relative_to(self.data.root).as_posix())
            if row is None:
                continue
            rotated = has_rotation(target) and has_rotation(row["domain"])
            for j in range(num_outs):
                est = estimate_content(outputs[i * num_outs + j], domain=target if rotated else None)
                found = math.isfinite(est.cx)
                bucket["content_not_found"].append(0.0 if found else 1.0)
                if found:
                    bucket["content_position_err"].append(math.hypot(est.cx - row["cx"], est.cy - row["cy"]) * side)
                    bucket["content_size_err"].append(abs(est.size - row["size"]) * side)
                    if rotated:
                        bucket["content_rotation_err"].append(rotation_error(est.rotation, row["rotation"], target))

    def _fid(self, mode: str, fake: dict[tuple[str, str], list[np.ndarray]], report: Report) -> None:
        from smoothgan.metrics.fid import fid_from_features

        per_task = {}
        for (src, trg), parts in fake.items():
            feats = np.concatenate(parts)
            value = fid_from_features(self.real_features(trg), feats)
            per_task[f"{src}2{trg}"] = MetricValue.single(value, len(feats), "generated images")
        fids = [v.mean for v in per_task.values()]
        report.add(f"fid_{mode}", MetricValue(float(np.mean(fids)), math.nan, len(fids), "tasks (mean of FIDs)"),
                   per_task)


def parse_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    """Metric groups from a list or "ps,lpips" text, in canonical order; InputError for unknown names."""
    names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise InputError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METRICS)}")
    return tuple(m for m in METRICS if m in names)


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _metric_device(translator: Translator, metric_device: Optional[str]) -> str:
    import torch

    if metric_device is None:
        wanted = "cuda" if str(translator.backend.device).startswith("cuda") else "cpu"
        return wanted if wanted == "cpu" or torch.cuda.is_available() else "cpu"
    if metric_device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"metric device {metric_device!r} asked for, but PyTorch sees no CUDA GPU")
    return metric_device


def evaluate(
    translator: Translator,
    data_root: str | Path,
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    *,
    steps: int = 20,
    num_pairs: Optional[int] = None,
    num_outs: int = 10,
    seed: int = 0,
    lpips: Optional[Distance] = None,
    fid_extractor: Callable[..., Any] | str | Path | None = None,
    split: str = "val",
    progress: Optional[Progress] = None,
    metric_device: Optional[str] = None,
    ps_start: str = "source",
    judge: DomainClassifier | str | Path | None = None,
) -> Report:
    """Evaluate a model on ``data_root`` with the protocol of the module docstring; returns a :class:`Report`.

    ``metrics``: any of "ps", "lpips", "fid", "content". ``lpips``: a squared-LPIPS distance
    ``(x0, x1) -> [B]`` (default: :func:`build_lpips`, which needs the AlexNet ImageNet weights in the torch hub
    cache; a :class:`~smoothgan.metrics.lpips.PerceptualDistance` with ``random_backbone=True`` for smoke tests).
    ``fid_extractor``: a callable ``images [B, 3, H, W] in [-1, 1] -> [B, F]``, a path to torchvision's
    Inception v3 weights, or None for the hub cache. ``metric_device``: where LPIPS/Inception run (default: the
    backend's device if torch can use it, else CPU). ``ps_start``: the inter-domain start style, a key of
    :data:`PS_STARTS` ("source": E(x, y_src), the default; "latent": M(z', y_src), the paper's protocol).
    ``judge``: a domain classifier (or its folder, see ``smoothgan data judge``) for the ``accuracy`` metric;
    refused below 98% validation accuracy or without every domain of the data.
    ``progress(stage, completed, total)`` is called as work finishes. Inputs are checked (data layout, weights)
    before any image is generated.
    """
    started = time.perf_counter()
    selected = parse_metrics(metrics)
    _check_int("steps", steps, 2)
    _check_int("num_outs", num_outs, 2 if "lpips" in selected else 1)
    _check_int("seed", seed, 0)
    if not isinstance(ps_start, str) or ps_start not in PS_STARTS:
        raise InputError(f"unknown ps_start {ps_start!r}; expected one of {', '.join(PS_STARTS)}")
    start = PS_STARTS[ps_start]
    if num_pairs is not None:
        _check_int("num_pairs", num_pairs, 1)
    if len(translator.domains) < 2:
        raise InputError("evaluation needs a model with at least two domains")
    data = scan_eval_data(data_root, translator.domains, split, num_pairs, need_train="fid" in selected)
    if "accuracy" in selected:
        from smoothgan.metrics.domain_classifier import load_judge

        judge = load_judge(judge, data.domains)
    else:
        judge = None
    if "fid" in selected:
        fewest = min(len(v) for v in data.sources.values()) * num_outs, min(len(v) for v in data.train.values())
        if min(fewest) < 2:
            raise InputError(f"FID needs at least 2 generated and 2 real images per task, got {fewest[0]} and "
                             f"{fewest[1]}; raise --num-outs / --num-pairs or add train images")
    device = _metric_device(translator, metric_device)

    report = Report()
    distance, extractor = None, None
    if any(m in selected for m in NEEDS_LPIPS):
        distance = lpips if lpips is not None else build_lpips()
        description, comparable = _lpips_info(distance)
        report.networks.update(lpips=description, lpips_comparable_with_published=comparable)
        if not comparable:
            report.warnings.append(RANDOM_BACKBONE_WARNING if "random init" in description else
                                   f"LPIPS is a custom distance ({description}): numbers not comparable with "
                                   "published LPIPS/PS")
    if "fid" in selected:
        extractor = fid_extractor if callable(fid_extractor) else build_fid_extractor(fid_extractor)
        from smoothgan.metrics.fid import InceptionFeatures

        comparable = isinstance(extractor, InceptionFeatures)
        report.networks.update(inception=_describe(extractor), inception_comparable_with_published=comparable)
        if not comparable:
            report.warnings.append("FID uses a custom feature extractor: numbers not comparable with published FID")

    if judge is not None:
        report.networks.update(judge={"domains": list(judge.config.domains), "img_size": judge.config.img_size,
                                      "val_accuracy": judge.val_accuracy, "val_count": judge.val_count})

    bundle, backend = translator.bundle, translator.backend
    report.protocol = {
        "metrics": list(selected), "split": split, "steps": steps, "num_pairs": num_pairs, "num_outs": num_outs,
        "seed": seed,
        "latents": "numpy default_rng([seed, stream, src, i, trg, j]).standard_normal(latent_dim); streams: "
                   "0 ps_inter (j=0 end, j=1 latent start), 1 ps_intra, 2 latent translations, 3 reference picks",
        "interpolation": "lerp of style codes at i/(steps-1), both ends included",
        "ps_start": ps_start,
        "ps_inter": f"{start.style} -> M(z, y_trg) for every y_trg != y_src; start: {start.summary}; "
                    f"keys ps_{start.kind}_<steps>_<mode>",
        "ps_intra": "M(z1, y) -> M(z2, y) for every domain y, the source's own included",
        "ps_frames": "uint8-quantised outputs rescaled to [-1, 1] (as PNGs read by ps_eval.py)",
        "ps_modes": {name: spec.summary for name, spec in PS_MODES.items()},
        "lpips_diversity": "per source, mean squared LPIPS over all pairs of num_outs float outputs; tasks src != trg",
        "references": f"drawn uniformly (seeded) from the target domain's {split} images",
        "fid": "uint8-quantised outputs per task vs every train image of the target domain; headline = task mean",
        "content": "LPIPS(source, latent output); synthetic sets: object centre-of-mass/size (by area) error in pixels",
        "accuracy": "share of the diversity pass's uint8 outputs the judge assigns to the target domain",
    }
    report.model = {"path": str(bundle.path), "name": bundle.name, "sha256": bundle.weights_sha256,
                    "domains": list(bundle.domains), "img_size": bundle.config.img_size,
                    "w_hpf": bundle.config.w_hpf}
    report.runtime = {"backend": backend.name, "device": backend.device, "precision": backend.precision,
                      "max_batch": translator.max_batch, "metric_device": device}
    report.data = data.summary()

    runner = _Runner(translator, data, distance, extractor, device, seed, progress, ps_start, judge)
    stage_s: dict[str, float] = {}
    if "ps" in selected:
        for kind in ("inter", "intra"):
            t0 = time.perf_counter()
            runner.perceptual_smoothness(kind, steps, report)
            stage_s[f"ps_{kind}"] = round(time.perf_counter() - t0, 3)
    want = {m for m in selected if m in ("lpips", "fid", "content", "accuracy")}
    for mode in ("latent", "reference"):
        todo = want if mode == "latent" else want - {"content"}
        if todo:
            t0 = time.perf_counter()
            runner.translations(mode, num_outs, todo, report)
            stage_s[f"translations_{mode}"] = round(time.perf_counter() - t0, 3)
    report.metrics = dict(sorted(report.metrics.items(), key=lambda item: rank(item[0])))
    report.tasks = dict(sorted(report.tasks.items(), key=lambda item: rank(item[0])))
    total = time.perf_counter() - started
    report.timing = {"total_s": round(total, 3), "stages_s": stage_s, "generated_images": runner.generated,
                     "generated_per_s": round(runner.generated / total, 2) if total > 0 else None}
    log.info("evaluation of %s done in %.1f s (%d generated images)", bundle.name, total, runner.generated)
    return report


def torch_from(x: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(x))
