"""int8 ONNX graphs for ONNX Runtime CPU: static QDQ quantisation of the convolutions, mixed precision by
measured sensitivity, accepted only at a PSNR floor against the fp32 graph.

Why mixed precision: measured beforehand on random 256px weights (2-core Xeon, VNNI), quantizing every layer is
~2x faster than fp32 at only 24-25 dB, quantizing every convolution 27.7 dB at ~1.65x; the loss comes from the
AdaIN scale/shift and the residual adds that consume the quantized activations, so no uniform choice reaches
30 dB. Here each convolution's sensitivity is *measured*: the PSNR of the network's output, against fp32, on
held-out images with that convolution alone quantized. Convolutions are then quantized in order of least
sensitivity, the longest prefix that keeps the output PSNR >= ``min_psnr`` (a binary search over the prefix
length, then a check of the final graph) -- "greedy until the PSNR reaches the threshold".

Quantisation scheme (what ONNX Runtime's CPU kernels run fastest here, see ``lscpu``: AVX-512 VNNI on the AMD
EPYC and Xeon development machines, AVX2 elsewhere, both through MLAS's u8s8 kernels): activations uint8,
asymmetric, one scale per tensor from calibration percentiles; weights int8, symmetric, one scale per output
channel; biases int32 at scale x_scale * w_scale. Each quantized convolution gets DequantizeLinear on its input,
weight and bias and QuantizeLinear -> DequantizeLinear on its output, the node unit ONNX Runtime fuses into
QLinearConv. s8 activations were measured slower (issue 11), so u8 it is. The fp32 graph is rewritten directly
(onnxruntime.quantization's ``quant_pre_process`` fails on these opset-18 graphs, and its ``quantize_static``
would recalibrate for every candidate subset); calibration runs once per graph.

Calibration images: ``images`` when given, else the bundle's samples (the embedded demo model's
``smoothgan/assets/samples``), filled up with procedural shape images (``smoothgan data synth``'s renderer);
held-out images are shape images from another seed. Styles: the fp32 mapping network on seeded latents and the
fp32 style encoder on the images, alternately; FAN masks from the fp32 FAN graph. The mapping network (no
convolutions) and the FAN (its masks are thresholded) are written as int8 graphs with nothing quantized, so the
backend loads one precision for every network.

Each graph ``onnx/<network>-int8.onnx`` carries the fp32 graph's metadata with ``precision`` ``int8`` and
``int8_psnr_db``, ``int8_min_psnr_db``, ``int8_calibration``, ``int8_quantized`` (convolutions), and
``int8_quantized_macs`` (fraction of the convolution multiply-adds in int8); ``onnx/int8-strip.png`` shows
held-out inputs, fp32 outputs, int8 outputs and their difference.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from smoothgan.artifacts import ONNX_DIR, PSNR_CAP_DB, onnx_path, psnr_db, read_metadata, required_networks
from smoothgan.errors import BackendError

if TYPE_CHECKING:
    from smoothgan.bundle import ModelBundle

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

INT8 = "int8"
MIN_PSNR_DB = 30.0
CALIBRATION_IMAGES = 16
HELD_OUT_IMAGES = 4
PERCENTILE = 99.99  # activation range: [100 - p, p] percentiles per image, widest over the images
QUANTIZED_NETWORKS = ("style_encoder", "generator")
STRIP_FILE = "int8-strip.png"
_MAX_SAMPLE = 1 << 20  # values per tensor and image the percentiles are taken over


@dataclass
class Int8Graph:
    """One written int8 graph and how it was chosen."""

    network: str
    path: Path
    psnr_db: float
    quantized: list[str]
    candidates: int
    quantized_macs: float
    sensitivity: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


# ---- inputs ------------------------------------------------------------------------------------------------------
def _shape_images(count: int, img_size: int, seed: int) -> list[np.ndarray]:
    """Procedural shape images (the renderer of ``smoothgan data synth``), domains in turn."""
    from smoothgan.trainer.synth import DEFAULT_DOMAINS, render, sample_attributes

    rng = np.random.default_rng(seed)
    return [render(sample_attributes(rng, DEFAULT_DOMAINS[i % len(DEFAULT_DOMAINS)]), img_size)
            for i in range(count)]


def calibration_sets(bundle: "ModelBundle", images: Optional[Sequence[str | Path]] = None,
                     count: int = CALIBRATION_IMAGES, held_out: int = HELD_OUT_IMAGES
                     ) -> tuple[np.ndarray, np.ndarray, str]:
    """(calibration [N, 3, S, S], held-out [M, 3, S, S], description) as model inputs in [-1, 1]."""
    from smoothgan import images as imageio
    from smoothgan.bundle import SAMPLES_DIR

    size = bundle.config.img_size
    paths = [Path(p) for p in images] if images else (imageio.list_images(SAMPLES_DIR) if bundle.is_embedded
                                                      else [])
    real = [imageio.load(p) for p in paths][:count]
    synthetic = _shape_images(count - len(real), size, seed=0)
    parts = ([f"{len(real)} {'given' if images else 'bundle sample'} image(s)"] if real else []) + \
        ([f"{len(synthetic)} synthetic shape image(s) (seed 0)"] if synthetic else [])
    calibration = imageio.to_model_input(real + synthetic, size)
    evaluation = imageio.to_model_input(_shape_images(held_out, size, seed=1), size)
    return calibration, evaluation, " + ".join(parts)


# ---- ONNX Runtime helpers -----------------------------------------------------------------------------------------
def _session(model: Any, threads: int = 0) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _run(session: Any, feeds: dict[str, np.ndarray], outputs: Optional[list[str]] = None,
         batch: int = 1) -> list[np.ndarray]:
    """Run in batches of ``batch`` rows and concatenate (bounded memory for many intermediate outputs)."""
    total = len(next(iter(feeds.values())))
    parts = [session.run(outputs, {k: v[i:i + batch] for k, v in feeds.items()}) for i in range(0, total, batch)]
    return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]


def _network_feeds(fp32: dict[str, Any], network: str, x: np.ndarray, num_domains: int, latent_dim: int,
                   seed: int) -> dict[str, np.ndarray]:
    """Inputs of ``network`` for images ``x``: domains in turn, styles from mapping/encoder alternately, masks."""
    n = len(x)
    domain = (np.arange(n) % num_domains).astype(np.int64)
    if network == "style_encoder":
        return {"image": x, "domain": domain}
    if network == "mapping_network":
        z = np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)
        return {"latent": z, "domain": domain}
    if network == "fan":
        return {"image": x}
    z = np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)
    latent_styles = fp32["mapping_network"].run(None, {"latent": z, "domain": domain})[0]
    ref_styles = _run(fp32["style_encoder"], {"image": x, "domain": domain[::-1].copy()})[0]
    feeds = {"image": x, "style": np.where((np.arange(n) % 2 == 0)[:, None], latent_styles, ref_styles)}
    if "fan" in fp32:
        feeds["mask0"], feeds["mask1"] = _run(fp32["fan"], {"image": x})
    return feeds


# ---- calibration ------------------------------------------------------------------------------------------------
def _conv_candidates(model: Any) -> list[Any]:
    """Conv nodes with constant (initializer) weights and biases, in graph order."""
    inits = {t.name for t in model.graph.initializer}
    return [node for node in model.graph.node if node.op_type == "Conv" and node.input[1] in inits
            and (len(node.input) < 3 or not node.input[2] or node.input[2] in inits)]


def _tensor_ranges(model: Any, tensors: list[str], feeds: dict[str, np.ndarray],
                   percentile: float) -> dict[str, tuple[float, float]]:
    """Per tensor, the widest [100 - p, p] percentile range over the calibration images (one run per image)."""
    import onnx

    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    present = {o.name for o in augmented.graph.output}
    for name in tensors:
        if name not in present:
            augmented.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = _session(augmented)
    ranges: dict[str, tuple[float, float]] = {}
    rng = np.random.default_rng(0)
    total = len(next(iter(feeds.values())))
    for i in range(total):
        values = session.run(tensors, {k: v[i:i + 1] for k, v in feeds.items()})
        for name, value in zip(tensors, values):
            flat = value.reshape(-1)
            if flat.size > _MAX_SAMPLE:
                flat = flat[rng.integers(0, flat.size, _MAX_SAMPLE)]
            lo, hi = np.percentile(flat, [100 - percentile, percentile])
            old = ranges.get(name, (float(lo), float(hi)))
            ranges[name] = (min(old[0], float(lo)), max(old[1], float(hi)))
    return ranges


# ---- the QDQ rewrite --------------------------------------------------------------------------------------------
def _u8_params(lo: float, hi: float) -> tuple[float, int]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    return scale, int(np.clip(round(-lo / scale), 0, 255))


def quantize_graph(model: Any, ranges: dict[str, tuple[float, float]], names: Sequence[str]) -> Any:
    """A copy of ``model`` with the Conv nodes named ``names`` in QDQ form (see the module docstring)."""
    import onnx
    from onnx import helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    wanted = set(names)
    new_inits: list[Any] = []
    dq_of: dict[str, str] = {}  # activation -> its dequantized copy (shared by the convs that read it)
    nodes: list[Any] = []

    def const(name: str, array: np.ndarray) -> str:
        new_inits.append(numpy_helper.from_array(array, name))
        return name

    def qdq(tensor: str, lo: float, hi: float, source: str, target: str) -> list[Any]:
        name = f"{target}_qdq"  # targets are unique: "<x>_dq" for conv inputs, "<y>" for conv outputs
        scale, zero = _u8_params(lo, hi)
        s = const(f"{name}_scale", np.array(scale, np.float32))
        z = const(f"{name}_zero", np.array(zero, np.uint8))
        return [helper.make_node("QuantizeLinear", [source, s, z], [f"{name}_u8"], name=f"{name}_Q"),
                helper.make_node("DequantizeLinear", [f"{name}_u8", s, z], [target], name=f"{name}_DQ")]

    for node in graph.node:
        if node.op_type != "Conv" or node.name not in wanted:
            nodes.append(node)
            continue
        x, w_name = node.input[0], node.input[1]
        if x not in dq_of:
            dq_of[x] = f"{x}_dq"
            nodes += qdq(x, *ranges[x], source=x, target=dq_of[x])
        weight = numpy_helper.to_array(inits[w_name]).astype(np.float32)  # [O, I/g, kh, kw]
        w_scale = np.maximum(np.abs(weight).reshape(len(weight), -1).max(axis=1), 1e-12) / 127.0
        w_q = np.clip(np.round(weight / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
        base = node.name or w_name
        w_in = [const(f"{base}_w_q", w_q), const(f"{base}_w_scale", w_scale.astype(np.float32)),
                const(f"{base}_w_zero", np.zeros(len(weight), np.int8))]
        nodes.append(helper.make_node("DequantizeLinear", w_in, [f"{base}_w_dq"], name=f"{base}_w_DQ", axis=0))
        inputs = [dq_of[x], f"{base}_w_dq"]
        if len(node.input) > 2 and node.input[2]:
            x_scale, _ = _u8_params(*ranges[x])
            b_scale = (w_scale * x_scale).astype(np.float32)
            bias = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64)
            b_q = np.clip(np.round(bias / b_scale), -(2**31), 2**31 - 1).astype(np.int32)
            b_in = [const(f"{base}_b_q", b_q), const(f"{base}_b_scale", b_scale),
                    const(f"{base}_b_zero", np.zeros(len(bias), np.int32))]
            nodes.append(helper.make_node("DequantizeLinear", b_in, [f"{base}_b_dq"], name=f"{base}_b_DQ", axis=0))
            inputs.append(f"{base}_b_dq")
        y = node.output[0]
        conv = onnx.NodeProto()
        conv.CopyFrom(node)
        del conv.input[:]
        conv.input.extend(inputs)
        conv.output[0] = f"{y}_fp32"
        nodes.append(conv)
        nodes += qdq(y, *ranges[y], source=f"{y}_fp32", target=y)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return out


def _conv_macs(model: Any, node: Any, size_of: dict[str, int]) -> float:
    """Multiply-adds of a Conv per image: weight elements times output pixels (from the calibration shapes)."""
    from onnx import numpy_helper

    weight = next(t for t in model.graph.initializer if t.name == node.input[1])
    return float(np.prod(numpy_helper.to_array(weight).shape)) * size_of[node.output[0]]


# ---- per network --------------------------------------------------------------------------------------------------
def choose_layers(model: Any, feeds_cal: dict[str, np.ndarray], feeds_eval: dict[str, np.ndarray],
                  min_psnr: float = MIN_PSNR_DB, percentile: float = PERCENTILE,
                  progress: Optional[Progress] = None) -> tuple[Any, float, list[str], dict[str, float], float]:
    """(int8 model, its PSNR on ``feeds_eval``, quantized conv names, per-conv sensitivity, int8 MAC fraction)."""
    report = progress or log.info
    candidates = _conv_candidates(model)
    for i, node in enumerate(candidates):
        if not node.name:
            node.name = f"conv_{i}"
    reference = _run(_session(model), feeds_eval)[0]
    if not candidates:
        return model, PSNR_CAP_DB, [], {}, 0.0
    tensors = list(dict.fromkeys(t for n in candidates for t in (n.input[0], n.output[0])))
    report(f"calibrating {len(tensors)} tensors on {len(next(iter(feeds_cal.values())))} images")
    ranges = _tensor_ranges(model, tensors, feeds_cal, percentile)
    shapes = _run(_session(_with_outputs(model, [n.output[0] for n in candidates])),
                  {k: v[:1] for k, v in feeds_eval.items()}, [n.output[0] for n in candidates])
    macs = {n.name: _conv_macs(model, n, {n.output[0]: int(np.prod(s.shape[2:]))}) for n, s in zip(candidates, shapes)}

    def score(names: Sequence[str]) -> float:
        out = _run(_session(quantize_graph(model, ranges, names)), feeds_eval, batch=len(reference))[0]
        return psnr_db(reference, out)

    report(f"measuring the sensitivity of {len(candidates)} convolutions")
    sensitivity = {n.name: score([n.name]) for n in candidates}
    order = sorted(sensitivity, key=lambda name: -sensitivity[name])  # least sensitive first
    lo, hi, scores = 0, len(order), {0: PSNR_CAP_DB}
    while lo < hi:  # the longest prefix that keeps the threshold (PSNR falls as layers are added)
        mid = (lo + hi + 1) // 2
        scores[mid] = score(order[:mid])
        report(f"{mid} of {len(order)} convolutions in int8: {scores[mid]:.1f} dB")
        if scores[mid] >= min_psnr:
            lo = mid
        else:
            hi = mid - 1
    chosen = order[:lo]
    total_macs = sum(macs.values())
    return (quantize_graph(model, ranges, chosen), scores[lo], chosen, sensitivity,
            sum(macs[n] for n in chosen) / total_macs)


def _with_outputs(model: Any, names: list[str]) -> Any:
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    present = {o.name for o in out.graph.output}
    out.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                            for n in names if n not in present)
    return out


def _stamp(model: Any, metadata: dict[str, str]) -> None:
    props = {p.key: p.value for p in model.metadata_props}
    props.update(metadata)
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def _write_strip(path: Path, x: np.ndarray, fp32: np.ndarray, int8: np.ndarray) -> None:
    """Rows of held-out input | fp32 output | int8 output | |difference| x 10."""
    from smoothgan import images as imageio

    rows = []
    for a, b, c in zip(x, fp32, int8):
        diff = np.clip(np.abs(b - c) * 10 - 1, -1, 1)  # |diff| * 10 on the [-1, 1] scale, black = none
        rows.append(np.concatenate(list(imageio.from_model_output(np.stack([a, b, c, diff]))), axis=1))
    imageio.save_image(path, np.concatenate(rows, axis=0))


def quantize_bundle(bundle: "ModelBundle", min_psnr: float = MIN_PSNR_DB,
                    images: Optional[Sequence[str | Path]] = None, percentile: float = PERCENTILE,
                    progress: Optional[Progress] = None) -> list[Int8Graph]:
    """Write ``onnx/<network>-int8.onnx`` for every network of ``bundle`` (fp32 graphs exported first if needed).

    Raises :class:`BackendError` (one line) when no convolution of the generator can be quantized at
    ``min_psnr`` dB: such an "int8" graph would be the fp32 graph, slower for its conversions.
    """
    import onnx

    from smoothgan.artifacts import has_onnx_graphs
    from smoothgan.export.onnx import export_onnx
    from smoothgan.fileio import atomic_path, sha256_file

    report = progress or log.info
    if not has_onnx_graphs(bundle, "fp32"):
        report("exporting the fp32 graphs first")
        export_onnx(bundle, "fp32", progress=progress)
    config = bundle.config
    networks = required_networks(config)
    models = {n: onnx.load(str(onnx_path(bundle, n, "fp32"))) for n in networks}
    fp32 = {n: _session(m) for n, m in models.items()}
    x_cal, x_eval, description = calibration_sets(bundle, images)
    report(f"calibration: {description}; held out: {len(x_eval)} synthetic shape image(s) (seed 1)")
    results: dict[str, tuple[Any, float, list[str], dict[str, float], float, float, int]] = {}
    for network in networks:
        start = time.perf_counter()
        cal = _network_feeds(fp32, network, x_cal, config.num_domains, config.latent_dim, seed=0)
        held = _network_feeds(fp32, network, x_eval, config.num_domains, config.latent_dim, seed=1)
        if network in QUANTIZED_NETWORKS:
            model, psnr, chosen, sensitivity, mac_share = choose_layers(
                models[network], cal, held, min_psnr, percentile, lambda m, n=network: report(f"{n}: {m}"))
        else:
            model, psnr, chosen, sensitivity, mac_share = models[network], PSNR_CAP_DB, [], {}, 0.0
        results[network] = (model, psnr, chosen, sensitivity, mac_share, time.perf_counter() - start,
                            len(_conv_candidates(models[network])))
        report(f"{network}: {len(chosen)} of {results[network][6]} convolutions in int8 "
               f"({mac_share:.0%} of their MACs), {psnr:.1f} dB vs fp32")
    if not results["generator"][2]:
        best = max(results["generator"][3].values(), default=float("nan"))
        raise BackendError(f"int8 refused: no convolution of the generator can be quantized at >= {min_psnr:g} dB "
                           f"vs fp32 on held-out images (best single layer {best:.1f} dB); use fp32")
    written = []
    for network, (model, psnr, chosen, sensitivity, mac_share, seconds, candidates) in results.items():
        meta = read_metadata(onnx_path(bundle, network, "fp32"))
        _stamp(model, {**meta, "precision": INT8, "int8_psnr_db": f"{psnr:.2f}", "int8_min_psnr_db": f"{min_psnr:g}",
                       "int8_calibration": f"{description}; percentile {percentile:g}",
                       "int8_quantized": f"{len(chosen)}/{candidates}", "int8_quantized_macs": f"{mac_share:.3f}"})
        path = onnx_path(bundle, network, INT8)
        with atomic_path(path) as tmp:
            onnx.save(model, str(tmp))
        bundle.record_artifact(ONNX_DIR, f"{network}-{INT8}", {
            "path": path.relative_to(bundle.path).as_posix(), "network": network, "precision": INT8,
            "sha256": sha256_file(path), "psnr_db": round(psnr, 2), "min_psnr_db": min_psnr,
            "calibration": description, "percentile": percentile, "quantized": chosen,
            "quantized_macs": round(mac_share, 4), "candidates": candidates,
        })
        written.append(Int8Graph(network, path, psnr, chosen, candidates, mac_share, sensitivity, seconds))
    held = _network_feeds(fp32, "generator", x_eval, config.num_domains, config.latent_dim, seed=1)
    before = _run(fp32["generator"], held)[0]
    after = _run(_session(results["generator"][0]), held)[0]
    _write_strip(bundle.path / ONNX_DIR / STRIP_FILE, x_eval, before, after)
    return written


__all__ = ["INT8", "MIN_PSNR_DB", "Int8Graph", "calibration_sets", "choose_layers", "quantize_bundle",
           "quantize_graph"]
