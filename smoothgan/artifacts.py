"""What the runtime knows about exported artefacts: names, paths, shapes, metadata and manifests.

The exporter (:mod:`smoothgan.export`) writes ONNX graphs and TensorRT engines through these names; the backends
and the benchmark read them back with these readers. Nothing here imports torch, onnx or TensorRT, so an
ONNX-only install can check its graphs before use.

ONNX graphs: ``BUNDLE/onnx/<network>-<precision>.onnx``, one per network and precision, each stamped with
``metadata_props`` (:func:`read_metadata`): smoothgan_version, weights_sha256, network, precision, img_size,
domains, opset and format_version. I/O of each graph (batch axis ``batch``, everything else static):

========================  =========================================================  ===========================
network                   inputs                                                     outputs
========================  =========================================================  ===========================
``mapping_network``       latent f32 [batch, latent_dim], domain i64 [batch]         style f32 [batch, style_dim]
``style_encoder``         image f32 [batch, 3, S, S], domain i64 [batch]             style f32 [batch, style_dim]
``generator``             image f32 [batch, 3, S, S], style f32 [batch, style_dim]   output f32 [batch, 3, S, S]
                          (+ mask0, mask1 f32 [batch, 1, 256, 256] when w_hpf > 0)
``fan`` (w_hpf > 0 only)  image f32 [batch, 3, S, S] in [-1, 1]                      mask0, mask1 f32 [batch, 1,
                                                                                     256, 256]
========================  =========================================================  ===========================

TensorRT engines: ``BUNDLE/engines/<gpu>-<cc>-<trt>-<precision>/<network>.engine`` with a ``manifest.json``
(:func:`read_manifest`, :func:`manifest_problem`) that records the weights, graphs, TensorRT version, GPU and
profile they were built from and for.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, BinaryIO, Optional

import numpy as np

from smoothgan.errors import BackendError
from smoothgan.fileio import sha256_file

if TYPE_CHECKING:
    from smoothgan.bundle import ModelBundle
    from smoothgan.config import ModelConfig

# ------------------------------------------------------------------------------------------------- ONNX graphs
ONNX_DIR = "onnx"
FORMAT_VERSION = 1  # of the graphs' metadata; a graph with another version is re-exported
ONNX_PRECISIONS = ("fp32", "fp16", "int8")  # int8: ONNX Runtime CPU only (smoothgan.export.quantize)
NETWORKS = ("mapping_network", "style_encoder", "generator", "fan")
BATCH = "batch"
MASK_SIZE = 256  # FAN masks are always 256x256, whatever img_size is

IOSpec = tuple[str, list[Any], str]  # (name, shape with "batch", dtype)


def required_networks(config: "ModelConfig") -> list[str]:
    """The graphs a bundle needs: mapping network, style encoder, generator, and the FAN when w_hpf > 0."""
    return [n for n in NETWORKS if n != "fan" or config.uses_masks]


def onnx_path(bundle: "ModelBundle", network: str, precision: str) -> Path:
    """``BUNDLE/onnx/<network>-<precision>.onnx``."""
    return bundle.path / ONNX_DIR / f"{network}-{precision}.onnx"


def io_spec(config: "ModelConfig", network: str) -> tuple[list[IOSpec], list[IOSpec]]:
    """Graph inputs and outputs of ``network`` as (name, shape, dtype) with the symbolic ``batch`` axis."""
    size = config.img_size
    image: IOSpec = ("image", [BATCH, 3, size, size], "float32")
    domain: IOSpec = ("domain", [BATCH], "int64")
    style: IOSpec = ("style", [BATCH, config.style_dim], "float32")
    masks: list[IOSpec] = [(f"mask{i}", [BATCH, 1, MASK_SIZE, MASK_SIZE], "float32") for i in (0, 1)]
    if network == "mapping_network":
        return [("latent", [BATCH, config.latent_dim], "float32"), domain], [style]
    if network == "style_encoder":
        return [image, domain], [style]
    if network == "generator":
        return [image, style, *(masks if config.uses_masks else [])], [("output", [BATCH, 3, size, size], "float32")]
    if network == "fan" and config.uses_masks:
        return [image], masks
    raise BackendError(f"unknown network {network!r} for this model; it has {', '.join(required_networks(config))}")


def check_onnx_precision(precision: str) -> None:
    """Refuse precisions smoothgan exports no graphs for, with what to ask for instead."""
    if precision == "bf16":
        raise BackendError("bf16 ONNX graphs are not supported (ONNX Runtime has almost no bf16 kernels): "
                           "export --precision fp16 or fp32")
    if precision not in ONNX_PRECISIONS:
        raise BackendError(f"ONNX precision must be one of {', '.join(ONNX_PRECISIONS)}, not {precision!r}")


def export_command(bundle: "ModelBundle", precision: str) -> str:
    """The command that (re)exports a bundle's graphs of one precision."""
    return f"smoothgan export --model {bundle.path} --onnx" + ("" if precision == "fp32" else
                                                               f" --precision {precision}")


# ------------------------------------------------------------------------------------------------- metadata

def _varint(stream: BinaryIO) -> Optional[int]:
    """One protobuf varint from ``stream``; None at a clean end of file."""
    value = shift = 0
    while True:
        byte = stream.read(1)
        if not byte:
            if shift:
                raise ValueError("truncated varint")
            return None
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise ValueError("truncated field")
    return data


def _fields(stream: BinaryIO, wanted: int) -> dict[int, list[bytes]]:
    """Length-delimited fields numbered ``wanted`` of one protobuf message; other fields are skipped by seeking."""
    found: dict[int, list[bytes]] = {}
    while (key := _varint(stream)) is not None:
        number, wire = key >> 3, key & 7
        if wire == 0:
            _varint(stream)
        elif wire in (1, 5):
            stream.seek(8 if wire == 1 else 4, io.SEEK_CUR)
        elif wire == 2:
            length = _varint(stream)
            if length is None:
                raise ValueError("truncated length")
            if number == wanted or wanted < 0:
                found.setdefault(number, []).append(_read_exact(stream, length))
            else:
                stream.seek(length, io.SEEK_CUR)  # the graph and its weights are never read
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return found


def read_metadata(path: str | Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file (ModelProto field 14) as a dict, without onnx or torch.

    Only the model's top level is parsed; the graph (field 7) is skipped by seeking, so this is cheap for
    graphs of any size.
    """
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            entries = _fields(stream, 14).get(14, [])
            if stream.tell() != path.stat().st_size:
                raise ValueError("truncated file")
        props = {}
        for entry in entries:  # StringStringEntryProto {1: key, 2: value}
            parts = _fields(io.BytesIO(entry), -1)
            props[parts.get(1, [b""])[0].decode()] = parts.get(2, [b""])[0].decode()
    except OSError as exc:
        raise BackendError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackendError(f"{path} is not a readable ONNX file ({exc})") from exc
    return props


def onnx_graphs(bundle: "ModelBundle", precision: str) -> dict[str, Path]:
    """The bundle's graphs of ``precision`` by network, each checked: present, a smoothgan graph, exported from
    the bundle's weights for this network, precision, image size and metadata format; else one
    :class:`BackendError` naming the command that fixes it."""
    check_onnx_precision(precision)
    fix = export_command(bundle, precision)
    paths = {n: onnx_path(bundle, n, precision) for n in required_networks(bundle.config)}
    missing = [p.relative_to(bundle.path).as_posix() for p in paths.values() if not p.is_file()]
    if missing:
        raise BackendError(f"{bundle.path} has no ONNX graph(s) {', '.join(missing)}; run: {fix}")
    expected = {"img_size": str(bundle.config.img_size), "precision": precision,
                "format_version": str(FORMAT_VERSION)}
    for network, path in paths.items():
        meta = read_metadata(path)
        if "weights_sha256" not in meta:
            raise BackendError(f"{path} is not a smoothgan ONNX graph (no metadata); run: {fix}")
        if meta["weights_sha256"] != bundle.weights_sha256:
            raise BackendError(
                f"stale ONNX graph {path}: exported from weights {meta['weights_sha256'][:12]}, the bundle's "
                f"are {bundle.weights_sha256[:12]}; re-run smoothgan export: {fix}")
        for key, want in {**expected, "network": network}.items():
            if meta.get(key) != want:
                raise BackendError(f"stale ONNX graph {path}: {key} is {meta.get(key)!r}, expected {want!r}; "
                                   f"re-run smoothgan export: {fix}")
    return paths


def has_onnx_graphs(bundle: "ModelBundle", precision: str) -> bool:
    """Whether :func:`onnx_graphs` would accept the bundle's graphs of ``precision`` (for backend ``auto``)."""
    try:
        onnx_graphs(bundle, precision)
    except BackendError:
        return False
    return True


# ------------------------------------------------------------------------------------------------- agreement
PSNR_CAP_DB = 200.0  # reported for identical outputs (keeps the JSON finite)


def psnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR over the reference's dynamic range (max - min), capped at :data:`PSNR_CAP_DB` for identical arrays."""
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    peak = float(reference.max() - reference.min()) or 1.0
    if mse == 0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10 * math.log10(peak * peak / mse))


# ------------------------------------------------------------------------------------------------- engines
ENGINE_DIR = "engines"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "smoothgan-tensorrt-engines"
MANIFEST_VERSION = 1
TIMING_CACHE_FILE = "timing.cache"
RUNTIME_CACHE_FILE = "runtime.cache"
ENGINE_PRECISIONS = ("fp32", "fp16")
MODULE_TAGS = {"tensorrt": "trt", "tensorrt_rtx": "rtx"}
CPU_BUILD = "cpu-build"
PORTABLE_CC = "portable"  # TensorRT-RTX default targets: every supported compute capability from 8.0 on
RTX_DEFAULT_CCS = ("8.0", "8.6", "8.9", "12.0", "12.1")


@dataclass(frozen=True)
class GpuInfo:
    """The GPU engines are built for: ``name`` and compute capability ``cc`` ("9.0"); a CPU build has none."""

    name: str
    cc: Optional[str] = None

    @property
    def present(self) -> bool:
        return self.name != CPU_BUILD

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "gpu"


CPU_GPU = GpuInfo(CPU_BUILD)


def module_name(trt: ModuleType) -> str:
    """``tensorrt`` or ``tensorrt_rtx`` for a loaded TensorRT Python module."""
    return "tensorrt_rtx" if "rtx" in trt.__name__ else "tensorrt"


def trt_version(trt: ModuleType) -> str:
    return str(getattr(trt, "__version__", "unknown"))


def trt_tag(trt: ModuleType) -> str:
    """Short folder tag: ``trt10.13.0.35`` or ``rtx1.7.1.116``."""
    return f"{MODULE_TAGS[module_name(trt)]}{trt_version(trt)}"


def folder_name(gpu: GpuInfo, ccs: Sequence[str], trt: ModuleType, precision: str) -> str:
    """``<gpu>-<cc>-<trt>-<precision>``, e.g. ``nvidia-h100-80gb-hbm3-sm90-trt10.13.0.35-fp16``."""
    cc = "+".join("sm" + c.replace(".", "") for c in ccs) if ccs else PORTABLE_CC
    return f"{gpu.slug}-{cc}-{trt_tag(trt)}-{precision}"


def check_engine_precision(precision: str) -> None:
    if precision == "bf16":
        raise BackendError("bf16 TensorRT engines are not supported: strongly typed engines take their precision "
                           "from the ONNX graph and smoothgan exports fp32 and fp16 graphs only; use fp16")
    if precision not in ENGINE_PRECISIONS:
        raise BackendError(f"TensorRT precision must be one of {', '.join(ENGINE_PRECISIONS)}, not {precision!r}")


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an engine folder; a clear error when it is missing or not smoothgan's."""
    path = Path(folder) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackendError(f"{folder} has no {MANIFEST_FILE}: not a smoothgan engine folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackendError(f"cannot read {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise BackendError(f"{path} is not a smoothgan engine manifest")
    return manifest


def _stale(folder: Path, field: str, have: Any, want: Any) -> BackendError:
    return BackendError(f"TensorRT engines in {folder} do not match: {field} is {have}, expected {want}; "
                        "rebuild them (smoothgan export --trt, or build_engines(..., force=True))")


def _cc_ok(manifest: dict[str, Any], gpu: GpuInfo) -> bool:
    targets = manifest["gpu"].get("targets") or []
    if manifest["tensorrt"]["module"] == "tensorrt_rtx":
        allowed = RTX_DEFAULT_CCS if targets == [PORTABLE_CC] else targets
        return gpu.cc in allowed or (targets == [PORTABLE_CC] and float(gpu.cc or 0) >= 12.0)
    return manifest["gpu"]["name"] == gpu.name and manifest["gpu"]["compute_capability"] == gpu.cc


def manifest_problem(folder: Path, manifest: dict[str, Any], bundle: "ModelBundle", gpu: Optional[GpuInfo],
                     precision: Optional[str], trt: Optional[ModuleType],
                     networks: Optional[Sequence[str]] = None) -> Optional[BackendError]:
    """The first mismatch between a manifest and what is asked of it, as a ready-to-raise error (or None)."""
    if manifest.get("format_version") != MANIFEST_VERSION:
        return _stale(folder, "manifest format version", manifest.get("format_version"), MANIFEST_VERSION)
    if precision is not None and manifest.get("precision") != precision:
        return _stale(folder, "precision", manifest.get("precision"), precision)
    if manifest.get("weights_sha256") != bundle.weights_sha256:
        return _stale(folder, "weights sha256", str(manifest.get("weights_sha256"))[:12], bundle.weights_sha256[:12])
    if trt is not None:
        have = f"{manifest['tensorrt']['module']} {manifest['tensorrt']['version']}"
        want = f"{module_name(trt)} {trt_version(trt)}"
        if have != want:
            return _stale(folder, "TensorRT version", have, want)
    if gpu is not None and gpu.present and not _cc_ok(manifest, gpu):
        have = f"{manifest['gpu']['name']} (targets {', '.join(manifest['gpu'].get('targets') or [])})"
        return _stale(folder, "GPU / compute capability", have, f"{gpu.name} ({gpu.cc})")
    entries = manifest.get("networks", {})
    for network in networks or sorted(entries):
        entry = entries.get(network)
        if entry is None:
            return _stale(folder, "engine list", ", ".join(sorted(entries)) or "empty", f"one with {network}")
        engine_file = folder / entry["file"]
        if not engine_file.is_file() or sha256_file(engine_file) != entry.get("sha256"):
            return _stale(folder, f"{entry['file']} sha256", "missing" if not engine_file.is_file() else "changed",
                          entry.get("sha256", "")[:12])
        onnx_file = bundle.path / entry["onnx"]["file"]
        if onnx_file.is_file() and sha256_file(onnx_file) != entry["onnx"]["sha256"]:
            return _stale(folder, f"ONNX sha256 of {network}", "changed", entry["onnx"]["sha256"][:12])
    return None


def checked_manifest(folder: str | Path, bundle: "ModelBundle", gpu: Optional[GpuInfo], precision: Optional[str],
                     trt: Optional[ModuleType], networks: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """The manifest of ``folder`` if its engines fit; else the :class:`BackendError` naming the first mismatch."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    try:
        problem = manifest_problem(folder, manifest, bundle, gpu, precision, trt, networks)
    except (KeyError, TypeError) as exc:
        problem = BackendError(f"{folder / MANIFEST_FILE} is malformed: missing {exc}")
    if problem is not None:
        raise problem
    return manifest


def find_engine_folders(bundle: "ModelBundle", precision: str, trt: Optional[ModuleType],
                        gpu: Optional[GpuInfo]) -> list[Path]:
    """Candidate engine folders for this precision (and TensorRT, when given), best first: this GPU's, then
    portable builds."""
    root = bundle.path / ENGINE_DIR
    if not root.is_dir():
        return []
    suffix = f"-{trt_tag(trt)}-{precision}" if trt is not None else f"-{precision}"
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.endswith(suffix)
                     and (p / MANIFEST_FILE).is_file())
    own = [p for p in folders if gpu is not None and p.name.startswith(f"{gpu.slug}-")]
    return own + [p for p in folders if p not in own and p.name.startswith(f"{CPU_BUILD}-")]


__all__ = [
    "BATCH", "CPU_GPU", "ENGINE_DIR", "ENGINE_PRECISIONS", "FORMAT_VERSION", "GpuInfo", "MANIFEST_FILE",
    "MASK_SIZE", "NETWORKS", "ONNX_DIR", "ONNX_PRECISIONS", "RUNTIME_CACHE_FILE", "TIMING_CACHE_FILE",
    "check_engine_precision", "check_onnx_precision", "checked_manifest", "export_command", "find_engine_folders",
    "folder_name", "has_onnx_graphs", "io_spec", "manifest_problem", "module_name", "onnx_graphs", "onnx_path",
    "psnr_db", "read_manifest", "read_metadata", "required_networks", "trt_tag", "trt_version",
]
