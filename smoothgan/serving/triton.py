"""``smoothgan export --triton REPO``: an NVIDIA Triton model repository from a bundle's exported graphs.

One Triton model per network (``<prefix>_<network>``: the ONNX graph on the ``onnxruntime`` backend, or the
TensorRT engine on the ``tensorrt`` backend where the bundle has current engines and ``engines=True``), each with a
``config.pbtxt`` whose I/O names, data types and dims are read from the ONNX graph itself, dynamic batching and an
instance group; plus two ensembles for the full translate pipeline:

- ``<prefix>_translate``: ``image`` [3, S, S] f32 in [-1, 1], ``latent`` [latent_dim] f32, ``domain`` [1] i64
  -> mapping network -> (FAN masks when w_hpf > 0) -> generator -> ``output`` [3, S, S] f32 in [-1, 1];
- ``<prefix>_translate_ref``: ``image``, ``reference`` [3, S, S], ``domain`` -> style encoder -> generator.

Decoding, resizing and the latent draw stay on the client (``images.to_model_input``, ``styles.latents(seed, ...)``),
so a Triton answer equals ``smoothgan translate`` with the same seed. Every config is checked after writing: parsed
with Triton's own ``ModelConfig`` protobuf (package ``tritonclient``) and its I/O compared with the ONNX file;
ensembles are checked step by step (models, tensor names, data types and dims).
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from smoothgan.artifacts import ENGINE_DIR, MANIFEST_FILE, onnx_graphs, read_manifest, required_networks
from smoothgan.errors import BackendError, InputError
from smoothgan.fileio import atomic_dir

if TYPE_CHECKING:
    from smoothgan.bundle import ModelBundle

log = logging.getLogger(__name__)

ONNX_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(bfloat16)": "TYPE_BF16",
              "tensor(double)": "TYPE_FP64", "tensor(int64)": "TYPE_INT64", "tensor(int32)": "TYPE_INT32",
              "tensor(uint8)": "TYPE_UINT8", "tensor(bool)": "TYPE_BOOL"}
KINDS = ("KIND_AUTO", "KIND_GPU", "KIND_CPU")
MODEL_FILES = {"onnxruntime": "model.onnx", "tensorrt": "model.plan"}
INSTALL_HINT = "pip install 'smoothgan[triton]'"


@dataclass(frozen=True)
class Tensor:
    """A model input/output as Triton sees it: ``dims`` without the batch axis; ``[batch]`` alone becomes dims
    [1] with ``reshape: { shape: [ ] }`` (Triton's rule for per-item scalars)."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    reshape: Optional[tuple[int, ...]] = None


@dataclass
class TritonModel:
    """One model folder written into the repository."""

    name: str
    backend: str  # onnxruntime | tensorrt | ensemble
    path: Path
    inputs: list[Tensor]
    outputs: list[Tensor]
    max_batch_size: int
    steps: list[dict[str, Any]] = field(default_factory=list)  # ensembles: model, input_map, output_map


def graph_io(path: str | Path) -> tuple[list[Tensor], list[Tensor]]:
    """Inputs and outputs of an ONNX file as Triton tensors, read with ONNX Runtime (no optimisation pass).

    Every tensor must have the symbolic batch axis first and static dims after it (smoothgan's graphs do).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for unreadable graphs
        raise BackendError(f"cannot read ONNX graph {path}: {' '.join(str(exc).split())[:300]}") from None

    def convert(arg: Any) -> Tensor:
        shape = list(arg.shape)
        if not shape or isinstance(shape[0], int):
            raise BackendError(f"{path}: {arg.name} has no dynamic batch axis (shape {shape}); Triton batching "
                               "needs one")
        rest = shape[1:]
        if any(not isinstance(d, int) or d < 1 for d in rest):
            raise BackendError(f"{path}: {arg.name} has dynamic dims {rest} past the batch axis")
        if arg.type not in ONNX_TYPES:
            raise BackendError(f"{path}: {arg.name} has type {arg.type}, which has no Triton data type here")
        if not rest:
            return Tensor(arg.name, ONNX_TYPES[arg.type], (1,), ())
        return Tensor(arg.name, ONNX_TYPES[arg.type], tuple(rest))

    return [convert(a) for a in session.get_inputs()], [convert(a) for a in session.get_outputs()]


# ---- config text ------------------------------------------------------------------------------------------------

def _dims(values: tuple[int, ...]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + (" ]" if values else "]")


def _tensors(key: str, tensors: list[Tensor]) -> list[str]:
    lines = [f"{key} ["]
    for i, t in enumerate(tensors):
        lines += ["  {", f'    name: "{t.name}"', f"    data_type: {t.data_type}", f"    dims: {_dims(t.dims)}"]
        if t.reshape is not None:
            lines.append(f"    reshape: {{ shape: {_dims(t.reshape)} }}")
        lines.append("  }" + ("," if i < len(tensors) - 1 else ""))
    return lines + ["]"]


def model_config(model: TritonModel, instances: int, kind: str, max_queue_delay_us: int) -> str:
    """``config.pbtxt`` of an engine model: backend, max batch, I/O, dynamic batching, instance group."""
    lines = [f'name: "{model.name}"', f'backend: "{model.backend}"', f"max_batch_size: {model.max_batch_size}",
             f'default_model_filename: "{MODEL_FILES[model.backend]}"']
    lines += _tensors("input", model.inputs) + _tensors("output", model.outputs)
    preferred = sorted({b for b in (4, 8, 16, 32, model.max_batch_size) if b <= model.max_batch_size})
    lines += ["dynamic_batching {", f"  preferred_batch_size: {_dims(tuple(preferred))}",
              f"  max_queue_delay_microseconds: {max_queue_delay_us}", "}",
              "instance_group [", "  {", f"    count: {instances}", f"    kind: {kind}", "  }", "]"]
    return "\n".join(lines) + "\n"


def ensemble_config(model: TritonModel) -> str:
    """``config.pbtxt`` of an ensemble: its I/O and one step per composing model with its tensor maps."""
    lines = [f'name: "{model.name}"', 'platform: "ensemble"', f"max_batch_size: {model.max_batch_size}"]
    lines += _tensors("input", model.inputs) + _tensors("output", model.outputs)
    lines += ["ensemble_scheduling {", "  step ["]
    for i, step in enumerate(model.steps):
        lines += ["    {", f'      model_name: "{step["model"]}"', "      model_version: -1"]
        for key in ("input_map", "output_map"):
            for inner, outer in step[key].items():
                lines.append(f'      {key} {{ key: "{inner}" value: "{outer}" }}')
        lines.append("    }" + ("," if i < len(model.steps) - 1 else ""))
    return "\n".join(lines + ["  ]", "}"]) + "\n"


# ---- repository -------------------------------------------------------------------------------------------------

def default_prefix(bundle: "ModelBundle") -> str:
    """Model name prefix from the bundle's name: letters, digits and underscores."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", bundle.name).strip("_") or "smoothgan"


def _engines(bundle: "ModelBundle", precision: str) -> Optional[tuple[Path, dict[str, Any]]]:
    """The bundle's newest TensorRT engine folder of ``precision`` built from its weights with every network.

    TensorRT-RTX engines are skipped (Triton's tensorrt backend cannot load them). The GPU is not checked here:
    the engines must match the GPU and TensorRT version of the Triton server that loads them.
    """
    root = bundle.path / ENGINE_DIR
    found = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not folder.is_dir() or not (folder / MANIFEST_FILE).is_file():
            continue
        try:
            manifest = read_manifest(folder)
        except BackendError as exc:
            log.warning("skipping %s: %s", folder, exc)
            continue
        networks = manifest.get("networks") or {}
        if (manifest.get("tensorrt", {}).get("module") == "tensorrt" and manifest.get("precision") == precision
                and manifest.get("weights_sha256") == bundle.weights_sha256
                and all(n in networks and (folder / networks[n].get("file", "")).is_file()
                        for n in required_networks(bundle.config))):
            found.append((str(manifest.get("created", "")), folder, manifest))
    if not found:
        return None
    _, folder, manifest = max(found, key=lambda entry: entry[0])
    return folder, manifest


def _ensembles(prefix: str, models: dict[str, TritonModel], uses_masks: bool) -> list[TritonModel]:
    """``_translate`` (mapping -> generator) and ``_translate_ref`` (style encoder -> generator)."""
    gen, mapping, encoder = models["generator"], models["mapping_network"], models["style_encoder"]
    by = {m: {t.name: t for t in models[m].inputs + models[m].outputs} for m in models}
    image = by["generator"]["image"]
    output = by["generator"]["output"]
    batch = min(m.max_batch_size for m in models.values())
    mask_step = []
    gen_inputs = {"image": "image", "style": "style"}
    if uses_masks:
        mask_step = [{"model": models["fan"].name, "input_map": {"image": "image"},
                      "output_map": {"mask0": "mask0", "mask1": "mask1"}}]
        gen_inputs.update(mask0="mask0", mask1="mask1")
    generate = {"model": gen.name, "input_map": gen_inputs, "output_map": {"output": "output"}}
    latent = TritonModel(f"{prefix}_translate", "ensemble", Path(), [image, by["mapping_network"]["latent"],
                                                                      by["mapping_network"]["domain"]], [output],
                         batch, [{"model": mapping.name, "input_map": {"latent": "latent", "domain": "domain"},
                                  "output_map": {"style": "style"}}, *mask_step, generate])
    reference = Tensor("reference", image.data_type, image.dims)
    ref = TritonModel(f"{prefix}_translate_ref", "ensemble", Path(), [image, reference,
                                                                      by["style_encoder"]["domain"]], [output],
                      batch, [{"model": encoder.name, "input_map": {"image": "reference", "domain": "domain"},
                               "output_map": {"style": "style"}}, *mask_step, generate])
    return [latent, ref]


def export_triton(bundle: "ModelBundle", repo: str | Path, *, precision: str = "fp32", prefix: Optional[str] = None,
                  max_batch: int = 64, instances: int = 1, kind: str = "KIND_AUTO", max_queue_delay_us: int = 1000,
                  engines: bool = False, validate: bool = True) -> list[TritonModel]:
    """Write ``repo/<prefix>_<network>/{config.pbtxt, 1/model.onnx|model.plan}`` and the two ensembles; validate.

    The ONNX graphs must be current (:func:`smoothgan.artifacts.onnx_graphs`: same weights, precision and
    format). With ``engines`` the bundle's TensorRT engines of ``precision`` are used instead where present (their
    ``max_batch`` is the engines' profile maximum). Each model folder is replaced whole and atomically; other
    models in ``repo`` are left alone. ``kind``: Triton instance kind (KIND_AUTO: GPU where there is one).
    """
    if kind not in KINDS:
        raise InputError(f"instance kind must be one of {', '.join(KINDS)}, got {kind!r}")
    for name, value, low in (("max_batch", max_batch, 1), ("instances", instances, 1),
                             ("max_queue_delay_us", max_queue_delay_us, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    prefix = prefix or default_prefix(bundle)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", prefix):
        raise InputError(f"model name prefix {prefix!r} must be letters, digits, '_', '.' or '-'")
    graphs = onnx_graphs(bundle, precision)
    engine_folder = _engines(bundle, precision) if engines else None
    if engines and engine_folder is None:
        log.warning("no TensorRT %s engines with every network in %s: using the ONNX graphs", precision, bundle.path)
    root = Path(repo)
    if root.exists() and not root.is_dir():
        raise InputError(f"Triton repository '{root}' exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    models: dict[str, TritonModel] = {}
    for network, graph in graphs.items():
        inputs, outputs = graph_io(graph)
        if engine_folder is not None:
            folder, manifest = engine_folder
            source, backend = folder / manifest["networks"][network]["file"], "tensorrt"
            batch = int(manifest.get("profile", {}).get("max_batch", max_batch))
        else:
            source, backend, batch = graph, "onnxruntime", max_batch
        model = TritonModel(f"{prefix}_{network}", backend, root / f"{prefix}_{network}", inputs, outputs, batch)
        with atomic_dir(model.path) as staging:
            (staging / "1").mkdir()
            shutil.copyfile(source, staging / "1" / MODEL_FILES[backend])
            (staging / "config.pbtxt").write_text(model_config(model, instances, kind, max_queue_delay_us))
        models[network] = model
    written = list(models.values())
    for ensemble in _ensembles(prefix, models, bundle.config.uses_masks):
        ensemble.path = root / ensemble.name
        with atomic_dir(ensemble.path) as staging:
            (staging / "1").mkdir()  # Triton wants a version folder, empty for an ensemble
            (staging / "config.pbtxt").write_text(ensemble_config(ensemble))
        written.append(ensemble)
    if validate:
        problems = validate_repository(root, [m.name for m in written], graphs={models[n].name: g
                                                                               for n, g in graphs.items()})
        if problems:
            raise BackendError(f"Triton repository {root} failed validation: {'; '.join(problems)}")
    log.info("Triton repository %s: %s", root, ", ".join(m.name for m in written))
    return written


# ---- validation -------------------------------------------------------------------------------------------------

def _config_proto() -> Any:
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except (ImportError, RuntimeError) as exc:
        raise BackendError(f"validating Triton configs needs tritonclient ({exc}): {INSTALL_HINT}") from None
    return text_format, model_config_pb2


def parse_config(path: str | Path) -> Any:
    """A ``config.pbtxt`` parsed with Triton's ``ModelConfig`` protobuf; :class:`BackendError` if it does not parse."""
    text_format, pb = _config_proto()
    try:
        return text_format.Parse(Path(path).read_text(), pb.ModelConfig())
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise BackendError(f"{path} is not a valid Triton model config: {' '.join(str(exc).split())}") from None


def _proto_tensors(entries: Any, pb: Any) -> dict[str, Tensor]:
    out = {}
    for e in entries:
        reshape = tuple(e.reshape.shape) if e.HasField("reshape") else None
        out[e.name] = Tensor(e.name, pb.DataType.Name(e.data_type), tuple(e.dims), reshape)
    return out


def validate_repository(repo: str | Path, names: Optional[list[str]] = None,
                        graphs: Optional[dict[str, Path]] = None) -> list[str]:
    """Problems with the models ``names`` (default: every folder with a config.pbtxt) of a Triton repository.

    Each config must parse as Triton's ``ModelConfig`` with the folder's name; engine models need their model
    file in version 1, a max batch, dynamic batching and I/O equal to the ONNX graph (``1/model.onnx``, or
    ``graphs[name]`` for engines); ensemble steps must name models of the repository and map tensors that exist
    with equal data types and dims, and every ensemble output must be produced by a step.
    """
    _, pb = _config_proto()
    root = Path(repo)
    names = names if names is not None else sorted(p.name for p in root.iterdir() if (p / "config.pbtxt").is_file())
    configs: dict[str, Any] = {}
    problems: list[str] = []
    for name in names:
        try:
            configs[name] = parse_config(root / name / "config.pbtxt")
        except BackendError as exc:
            problems.append(str(exc))
    for name, config in configs.items():
        where = f"{name}/config.pbtxt"
        if config.name != name:
            problems.append(f"{where}: name is {config.name!r}, the folder is {name!r}")
        if config.platform == "ensemble":
            problems += _check_ensemble(root, name, config, pb)
            continue
        model_file = root / name / "1" / (config.default_model_filename or MODEL_FILES.get(config.backend, ""))
        if config.backend not in MODEL_FILES or not model_file.is_file():
            problems.append(f"{where}: backend {config.backend!r} needs {model_file.relative_to(root)}")
            continue
        if config.max_batch_size < 1 or not config.HasField("dynamic_batching") or not config.instance_group:
            problems.append(f"{where}: needs max_batch_size >= 1, dynamic_batching and an instance_group")
        graph = model_file if config.backend == "onnxruntime" else (graphs or {}).get(name)
        if graph is None:
            continue  # an engine without its ONNX graph at hand: I/O checked when exported from the bundle
        inputs, outputs = graph_io(graph)
        for kind, declared, actual in (("input", config.input, inputs), ("output", config.output, outputs)):
            have = _proto_tensors(declared, pb)
            want = {t.name: t for t in actual}
            if have != want:
                problems.append(f"{where}: {kind}s {sorted(have.values(), key=str)} differ from the graph's "
                                f"{sorted(want.values(), key=str)}")
    return problems


def _check_ensemble(root: Path, name: str, config: Any, pb: Any) -> list[str]:
    where = f"{name}/config.pbtxt"
    problems = []
    known = _proto_tensors(config.input, pb)  # ensemble tensors available so far
    for number, step in enumerate(config.ensemble_scheduling.step, 1):
        target = root / step.model_name / "config.pbtxt"
        if not target.is_file():
            problems.append(f"{where}: step {number} uses {step.model_name!r}, not in the repository")
            continue
        try:
            inner = parse_config(target)
        except BackendError:
            continue  # reported with that model
        ins, outs = _proto_tensors(inner.input, pb), _proto_tensors(inner.output, pb)
        if set(step.input_map) != set(ins):
            problems.append(f"{where}: step {number} maps inputs {sorted(step.input_map)}, {step.model_name} has "
                            f"{sorted(ins)}")
        for key, value in step.input_map.items():
            have, want = known.get(value), ins.get(key)
            if have is None:
                problems.append(f"{where}: step {number} reads {value!r} before any step makes it")
            elif want is not None and (have.data_type, have.dims) != (want.data_type, want.dims):
                problems.append(f"{where}: step {number}: {value!r} is {have.data_type} {list(have.dims)}, "
                                f"{step.model_name}.{key} wants {want.data_type} {list(want.dims)}")
        for key, value in step.output_map.items():
            if key not in outs:
                problems.append(f"{where}: step {number}: {step.model_name} has no output {key!r}")
                continue
            known[value] = Tensor(value, outs[key].data_type, outs[key].dims)
    for out in _proto_tensors(config.output, pb).values():
        made = known.get(out.name)
        if made is None or (made.data_type, made.dims) != (out.data_type, out.dims):
            problems.append(f"{where}: output {out.name!r} ({out.data_type} {list(out.dims)}) is not made by a step")
    return problems


__all__ = ["KINDS", "Tensor", "TritonModel", "default_prefix", "ensemble_config", "export_triton", "graph_io",
           "model_config", "parse_config", "validate_repository"]
