"""TensorRT engines built from the bundle's ONNX graphs, with a manifest that is checked before every use.

Layout::

    BUNDLE/engines/<gpu>-<cc>-<trt>-<precision>/
        mapping_network.engine  style_encoder.engine  generator.engine  [fan.engine]
        manifest.json           what the engines were built from and for (see :func:`build_engines`)
        timing.cache            TensorRT's tactic timing cache, reused by later builds (TensorRT only)
        runtime.cache           TensorRT-RTX's cache of JIT-compiled kernels (written by the backend)

Two engines are supported through one code path:

* ``tensorrt`` (TensorRT 10/11, ``pip install smoothgan[trt]``): builds need the target GPU (autotuning); an
  engine runs only on the GPU model it was built on.
* ``tensorrt_rtx`` (TensorRT-RTX, ``pip install smoothgan[trt-rtx]``): builds ahead of time on a CPU-only
  machine and compiles kernels just in time on the user's GPU; one engine runs on every compute capability it
  targets (by default 8.0, 8.6, 8.9, 12.x; ``target_cc`` narrows it or adds 7.5). It has no timing cache (the
  API is a deprecated no-op there) and refuses data-centre GPUs such as the H100 (compute capability 9.0).

Precision comes from the graph: networks are created strongly typed, so an fp16 engine is built from the
half-precision ONNX graph (fp16 weights, InstanceNormalization kept in fp32, float32/int64 I/O). TensorRT 11
removed weak typing and the FP16/BF16 builder flags; the same strongly typed build works on TensorRT 10 and
TensorRT-RTX. bf16 engines are refused with a one-line error: smoothgan exports no bf16 ONNX graph. fp32
engines are built with TF32 off (TensorRT turns it on by default), so "fp32" means fp32 arithmetic.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional

from smoothgan import __version__
from smoothgan.artifacts import (
    CPU_BUILD,
    CPU_GPU,
    ENGINE_DIR,
    ENGINE_PRECISIONS,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    PORTABLE_CC,
    RUNTIME_CACHE_FILE,
    TIMING_CACHE_FILE,
    GpuInfo,
    find_engine_folders,
    folder_name,
    manifest_problem,
    module_name,
    onnx_path,
    read_manifest,
    read_metadata,
    required_networks,
    trt_tag,
    trt_version,
)
from smoothgan.artifacts import check_engine_precision as check_precision
from smoothgan.backends.trt_runtime import INSTALL_HINT, capture_logger, detect_gpu, import_tensorrt, rtx_ccs
from smoothgan.errors import BackendError
from smoothgan.fileio import atomic_path, clean_stale, sha256_file, write_bytes_atomic, write_json_atomic

if TYPE_CHECKING:
    from smoothgan.bundle import ModelBundle

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def _normalise_cc(value: str | float | Sequence[str | float]) -> list[str]:
    items = [value] if isinstance(value, (str, float, int)) else list(value)
    out = []
    for item in items:
        text = str(item).lower().removeprefix("sm").removeprefix("_")
        if re.fullmatch(r"\d+\.\d", text):
            out.append(text)
        elif re.fullmatch(r"\d{2,3}", text):
            out.append(f"{text[:-1]}.{text[-1]}")
        else:
            raise BackendError(f"bad compute capability {item!r}: write it as 8.6 or sm86")
    return out


def resolve_target(trt: ModuleType, gpu: Optional[GpuInfo], target_cc: Any = None) -> tuple[GpuInfo, list[str]]:
    """(GPU the engines are named after, compute capabilities they target); [] means RTX's portable default."""
    rtx = module_name(trt) == "tensorrt_rtx"
    gpu = gpu if gpu is not None and gpu.present else None
    wanted = _normalise_cc(target_cc) if target_cc is not None else None
    if not rtx:
        if gpu is None:
            raise BackendError("TensorRT builds engines on the GPU they will run on and none was found; "
                               "use TensorRT-RTX (pip install 'smoothgan[trt-rtx]') to build on a CPU-only machine")
        if wanted and wanted != [gpu.cc]:
            raise BackendError(f"TensorRT builds for the GPU present ({gpu.name}, {gpu.cc}), not for {wanted}; "
                               "only TensorRT-RTX cross-builds")
        return gpu, [str(gpu.cc)]
    supported = rtx_ccs(trt)
    if wanted is None and gpu is not None:
        wanted = [str(gpu.cc)]
    for cc in wanted or []:
        if cc not in supported:
            where = f" (the GPU here, {gpu.name}, is {cc})" if gpu is not None and cc == gpu.cc else ""
            raise BackendError(f"TensorRT-RTX {trt_version(trt)} supports compute capabilities "
                               f"{' '.join(sorted(supported, key=float))}, not {cc}{where}; use TensorRT for it: "
                               "pip install 'smoothgan[trt]'")
    return (gpu if gpu is not None else CPU_GPU), list(wanted or [])


# --------------------------------------------------------------------------------------------- build

@dataclass(frozen=True)
class EngineArtifact:
    """One serialized engine on disk and how it came to be."""

    network: str
    path: Path
    precision: str
    folder: str
    size_bytes: int
    build_seconds: float
    reused: bool


def _dtype_name(trt: ModuleType, dtype: Any) -> str:
    names = {trt.float32: "float32", trt.float16: "float16", trt.int64: "int64", trt.int32: "int32"}
    return names.get(dtype, str(dtype).split(".")[-1].lower())


def _parse(trt: ModuleType, logger: Any, onnx_file: Path) -> tuple[Any, Any]:
    builder = trt.Builder(logger)
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)  # ignored (always on) in 11.x
    network = builder.create_network(0 if flag is None else 1 << int(flag))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        first = errors[0] if errors else None
        where = f" at node {first.node()} '{first.node_name()}' ({first.node_operator()})" if first else ""
        what = first.desc() if first else logger.last_error()
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise BackendError(f"TensorRT cannot parse {onnx_file.name}{where}: {what}{more}".replace("\n", " "))
    return builder, network


def _io(trt: ModuleType, network: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    def describe(tensor: Any) -> dict[str, Any]:
        return {"name": tensor.name, "shape": list(tensor.shape), "dtype": _dtype_name(trt, tensor.dtype)}

    return ([describe(network.get_input(i)) for i in range(network.num_inputs)],
            [describe(network.get_output(i)) for i in range(network.num_outputs)])


def _build_one(trt: ModuleType, onnx_file: Path, engine_file: Path, ccs: Sequence[str],
               batches: tuple[int, int, int], workspace_gb: float, optimization_level: Optional[int],
               timing_cache: Optional[Path], allow_tf32: bool) -> dict[str, Any]:
    """Parse, configure and build one engine; write it atomically; return its manifest entry."""
    logger = capture_logger(trt)
    builder, network = _parse(trt, logger, onnx_file)
    inputs, outputs = _io(trt, network)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if optimization_level is not None and hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = optimization_level
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if tf32 is not None and not allow_tf32:  # on by default: fp32 engines would round convs/GEMMs to TF32
        config.clear_flag(tf32)
    if ccs and module_name(trt) == "tensorrt_rtx":
        supported = rtx_ccs(trt)
        config.num_compute_capabilities = len(ccs)
        for i, cc in enumerate(ccs):
            config.set_compute_capability(supported[cc], i)
    profile = builder.create_optimization_profile()
    for tensor in inputs:
        rest = tensor["shape"][1:]
        if tensor["shape"][0] != -1 or any(d < 0 for d in rest):
            raise BackendError(f"{onnx_file.name}: input {tensor['name']} {tensor['shape']} must have a dynamic "
                               "batch axis and static other axes")
        profile.set_shape(tensor["name"], *([b, *rest] for b in batches))
    config.add_optimization_profile(profile)
    cache = None
    if timing_cache is not None:
        blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, False)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None or serialized.nbytes == 0:
        error = logger.last_error()
        hint = (f"; raise workspace_gb (now {workspace_gb:g}) or lower max_batch (now {batches[2]})"
                if "OutOfMemory" in error or "out of memory" in error.lower() else "")
        raise BackendError(f"TensorRT could not build {engine_file.stem} from {onnx_file.name}: {error}{hint}")
    with atomic_path(engine_file) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(memoryview(serialized))
    if cache is not None and timing_cache is not None:
        write_bytes_atomic(timing_cache, bytes(memoryview(cache.serialize())))
    return {"file": engine_file.name, "sha256": sha256_file(engine_file), "bytes": engine_file.stat().st_size,
            "inputs": inputs, "outputs": outputs, "build_seconds": round(seconds, 3)}


def build_engines(bundle: "ModelBundle", precision: str = "fp16", min_batch: int = 1, opt_batch: int = 20,
                  max_batch: int = 64, workspace_gb: float = 4, networks: Optional[Sequence[str]] = None,
                  progress: Optional[Progress] = None, force: bool = False, target_cc: Any = None,
                  prefer: Optional[str] = None, optimization_level: Optional[int] = None,
                  gpu: Optional[GpuInfo] = None) -> list[EngineArtifact]:
    """Build (or reuse) one engine per network into ``engines/<gpu>-<cc>-<trt>-<precision>/`` with a manifest.

    Missing ONNX graphs, or graphs exported from other weights, are exported first. Every input gets one
    optimization profile (min, opt, max) over the batch axis. Engines whose manifest entry still matches
    (weights, ONNX graph, TensorRT version, target, profile) are reused unless ``force``. ``target_cc``
    ("8.6", ["8.6", "12.0"]) cross-builds with TensorRT-RTX; without a GPU, TensorRT-RTX builds a portable
    engine. ``gpu`` overrides detection (``CPU_GPU`` forces a CPU-only TensorRT-RTX build).
    """
    from smoothgan.export.onnx import export_onnx

    check_precision(precision)
    if not 1 <= min_batch <= max_batch:
        raise BackendError(f"need 1 <= min_batch <= max_batch, got {min_batch} and {max_batch}")
    if workspace_gb <= 0:
        raise BackendError(f"workspace_gb must be > 0, got {workspace_gb}")
    batches = (min_batch, min(max(opt_batch, min_batch), max_batch), max_batch)
    required = required_networks(bundle.config)
    wanted = list(networks) if networks else list(required)
    unknown = sorted(set(wanted) - set(required))
    if unknown:
        raise BackendError(f"unknown network(s) {', '.join(unknown)} for this model; it has {', '.join(required)}")
    trt = import_tensorrt(prefer)
    target_gpu, ccs = resolve_target(trt, gpu if gpu is not None else detect_gpu(), target_cc)
    name = folder_name(target_gpu, ccs, trt, precision)
    folder = bundle.path / ENGINE_DIR / name
    clean_stale(folder)  # staging files of a killed build (engines, manifest, timing cache)
    def current(path: Path) -> bool:  # exported from these weights
        try:
            return path.is_file() and read_metadata(path).get("weights_sha256") == bundle.weights_sha256
        except BackendError:
            return False

    missing = [n for n in wanted if not current(onnx_path(bundle, n, precision))]
    if missing:
        (progress or log.info)(f"exporting ONNX {precision} graphs (missing or from other weights): "
                               f"{', '.join(missing)}")
        export_onnx(bundle, precision=precision, networks=missing)
    old: dict[str, Any] = {}
    if (folder / MANIFEST_FILE).is_file():
        try:
            old = read_manifest(folder)
        except BackendError as exc:
            log.warning("rebuilding all engines in %s: %s", folder, exc)
    header = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "smoothgan_version": __version__,
        "folder": name,
        "weights_sha256": bundle.weights_sha256,
        "tensorrt": {"module": module_name(trt), "version": trt_version(trt)},
        "gpu": {"name": target_gpu.name, "compute_capability": target_gpu.cc,
                "targets": list(ccs) or [PORTABLE_CC]},
        "precision": precision,
        "profile": {"min_batch": batches[0], "opt_batch": batches[1], "max_batch": batches[2]},
    }
    same_build = old and all(old.get(k) == v for k, v in header.items() if k not in ("smoothgan_version",))
    entries: dict[str, Any] = dict(old.get("networks", {})) if same_build else {}
    timing = folder / TIMING_CACHE_FILE if module_name(trt) == "tensorrt" else None
    artifacts = []
    for i, network in enumerate(wanted, 1):
        onnx_file = onnx_path(bundle, network, precision)
        onnx_sha = sha256_file(onnx_file)
        engine_file = folder / f"{network}.engine"
        entry = entries.get(network)
        reuse = (not force and entry is not None and entry.get("onnx", {}).get("sha256") == onnx_sha
                 and engine_file.is_file() and engine_file.stat().st_size == entry.get("bytes"))
        if not reuse:
            (progress or log.info)(f"[{i}/{len(wanted)}] building {network} ({precision}, {trt_tag(trt)}, "
                                   f"batch {batches[0]}..{batches[2]}) -> {name}")
            entry = _build_one(trt, onnx_file, engine_file, ccs, batches, workspace_gb, optimization_level, timing,
                               allow_tf32=precision != "fp32")
            entry["onnx"] = {"file": onnx_file.relative_to(bundle.path).as_posix(), "sha256": onnx_sha}
            entries[network] = entry
        artifacts.append(EngineArtifact(network, engine_file, precision, name, entry["bytes"],
                                        entry["build_seconds"], reuse))
    manifest = {**header, "workspace_gb": workspace_gb, "optimization_level": optimization_level,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "networks": dict(sorted(entries.items()))}
    write_json_atomic(folder / MANIFEST_FILE, manifest)
    bundle.record_artifact(ENGINE_DIR, name, {
        "path": f"{ENGINE_DIR}/{name}", "precision": precision, "tensorrt": header["tensorrt"],
        "gpu": header["gpu"], "profile": header["profile"], "networks": sorted(entries),
        "created": manifest["created"]})
    return artifacts


# --------------------------------------------------------------------------------------------- check

def check_manifest(folder: str | Path, bundle: "ModelBundle", gpu: Optional[GpuInfo] = None,
                   precision: Optional[str] = None, trt: Optional[ModuleType] = None, rebuild: bool = False,
                   networks: Optional[Sequence[str]] = None, **build_options: Any) -> dict[str, Any]:
    """The manifest of ``folder`` if its engines fit the bundle, TensorRT, ``gpu`` and ``precision``.

    A mismatch raises a :class:`BackendError` naming the field, or with ``rebuild=True`` rebuilds (for the GPU
    here, possibly into another folder) and returns the new manifest; its ``folder`` key names the folder.
    """
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
        if trt is None:
            trt = import_tensorrt(manifest.get("tensorrt", {}).get("module"))
        problem = manifest_problem(folder, manifest, bundle, gpu, precision, trt, networks)
    except (KeyError, TypeError) as exc:
        problem = BackendError(f"{folder / MANIFEST_FILE} is malformed: missing {exc}")
        manifest = {}
    except BackendError as exc:
        problem, manifest = exc, {}
    if problem is None:
        return manifest
    if not rebuild:
        raise problem
    log.warning("%s; rebuilding", problem)
    profile = manifest.get("profile", {})
    options = {"min_batch": profile.get("min_batch", 1), "opt_batch": profile.get("opt_batch", 20),
               "max_batch": profile.get("max_batch", 64), **build_options}
    if (gpu is None or not gpu.present) and manifest.get("gpu", {}).get("targets") not in (None, [PORTABLE_CC]):
        options.setdefault("target_cc", manifest["gpu"]["targets"])
    artifacts = build_engines(bundle, precision=precision or manifest.get("precision", "fp16"), networks=networks,
                              force=True, prefer=module_name(trt) if trt is not None else None, gpu=gpu, **options)
    return read_manifest(bundle.path / ENGINE_DIR / artifacts[0].folder)


__all__ = [  # the artefact names and TensorRT loaders are re-exported for callers of the builder
    "CPU_BUILD", "CPU_GPU", "ENGINE_DIR", "ENGINE_PRECISIONS", "INSTALL_HINT", "MANIFEST_FILE", "RUNTIME_CACHE_FILE",
    "EngineArtifact", "GpuInfo", "build_engines", "capture_logger", "check_manifest", "check_precision",
    "detect_gpu", "find_engine_folders", "folder_name", "import_tensorrt", "module_name", "read_manifest",
    "resolve_target", "trt_version",
]
