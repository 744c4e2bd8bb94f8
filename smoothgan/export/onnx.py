"""ONNX graphs of a bundle's networks: export, half-precision conversion, metadata and numeric validation.

One graph per network and precision, ``BUNDLE/onnx/<network>-<precision>.onnx``; the table of graphs, their
inputs and outputs is in :mod:`smoothgan.artifacts` (what the runtime reads).

The batch axis is dynamic and named ``batch`` everywhere; every other size is static. The boundary is float32 /
int64 in every precision (half graphs cast inside), so all backends share it. The ``fan`` graph is
``FAN.masks``: resize to 256, landmark heatmaps and the mask post-processing.

**Exporter.** ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript), the default since torch 2.9.
Measured here (torch 2.14, 2 CPU cores) against the TorchScript exporter (``dynamo=False``): the TorchScript one
fails on the masked generator (its traced sizes are tensors, so the skip cache keyed by resolution misses; with
that worked around, "ONNX export of convolution for kernel of unknown shape" for the high-pass depthwise kernel),
is deprecated, and leaves 146 Constant and extra Shape/Gather/Where nodes in the FAN graph; the dynamo graphs come
out constant-folded, keep ``InstanceNormalization`` (no training-mode BatchNormalization substitute) and hold no
baked-in batch size (validated at batch 1 and 3). The price is export time, paid once per bundle: 2-5 s per tiny
network and 8-16 s for the FAN on 2 CPU cores (the TorchScript exporter: 4 s for the FAN).

**Half precision ("fp16").** The fp32 graph is converted by :func:`convert_to_half`, not exported a second time:
weights and activations become float16 except ``InstanceNormalization`` and the AdaIN modulation that consumes
it (``(1 + gamma) * IN(x) + beta``), which stay float32 behind explicit Cast nodes, one Cast per crossing tensor.
InstanceNorm's variance overflows in float16 (ONNX Runtime and TensorRT both produce inf/NaN or collapsed
channels), and strongly typed TensorRT builds take these types from the graph as they are. Converting the
validated fp32 graph keeps one source of truth (same nodes, same names), works for any exporter output, and costs
milliseconds instead of a second export. The ``fan`` graph stays float32 in ``fan-fp16.onnx``: its heatmaps are
thresholded at 0.1 and min-max normalised per channel, where float16 rounding moves mask pixels, and it runs once
per source image (not per style), so its share of an interpolation's cost is small. bf16 graphs are not exported:
ONNX Runtime has almost no bf16 kernels; ask for fp16 (TensorRT takes its precision from these graphs too).

**Metadata.** Every graph carries ``metadata_props``: smoothgan_version, weights_sha256, network, precision,
img_size, domains, opset and format_version. Names, shapes, the metadata reader and the checks backends run before
use live in :mod:`smoothgan.artifacts` (the runtime never imports this module); this module writes through them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from smoothgan import __version__
from smoothgan.artifacts import (
    BATCH,
    FORMAT_VERSION,
    NETWORKS,
    ONNX_DIR,
    ONNX_PRECISIONS,
    IOSpec,
    io_spec,
    onnx_path,
    psnr_db,
    read_metadata,
    required_networks,
)
from smoothgan.artifacts import check_onnx_precision as check_precision
from smoothgan.errors import BackendError

if TYPE_CHECKING:
    from smoothgan.bundle import ModelBundle
    from smoothgan.config import ModelConfig

log = logging.getLogger(__name__)

MIN_OPSET = 18
FP32_MAX_ABS = 1e-4  # fp32 graph vs torch fp32 (ONNX Runtime CPU), at every validation batch size
HALF_MIN_PSNR_DB = 40.0  # half graph vs torch fp32
FAN_MAX_OUTLIERS = 1e-3  # fraction of FAN mask pixels allowed past FP32_MAX_ABS (threshold flips)
VALIDATION_BATCHES = (1, 3)
VALIDATION_SEED = 0
KEEP_FP32_OPS = frozenset({"InstanceNormalization"})
FLOAT32_ONLY_INPUTS = {"Resize": (1, 2), "Upsample": (1,)}  # roi / scales are float32 by the op's type rules

Progress = Callable[[str], None]


@dataclass
class OnnxArtifact:
    """One exported graph on disk and how it matched torch fp32 (``validation`` is None when skipped)."""

    network: str
    precision: str
    path: Path
    sha256: str
    opset: int
    inputs: list[IOSpec]
    outputs: list[IOSpec]
    validation: Optional[dict[str, Any]]
    seconds: float


# --------------------------------------------------------------------------------------------- names and shapes

def _metadata(bundle: "ModelBundle", network: str, precision: str, opset: int) -> dict[str, str]:
    return {
        "smoothgan_version": __version__,
        "weights_sha256": bundle.weights_sha256,
        "network": network,
        "precision": precision,
        "img_size": str(bundle.config.img_size),
        "domains": ",".join(bundle.domains),
        "opset": str(opset),
        "format_version": str(FORMAT_VERSION),
        "compute": "fp32" if precision == "fp32" or network == "fan" else "fp16 (InstanceNorm and AdaIN in fp32)",
    }


# --------------------------------------------------------------------------------------------- fp32 export

def _graph_module(network: str, module: Any) -> Any:
    """A torch module whose positional inputs are the graph's, in :func:`io_spec` order."""
    import torch

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = module

        def forward(self, *inputs: torch.Tensor) -> Any:
            if network == "fan":
                return self.net.masks(*inputs)  # (mask0, mask1)
            if network == "generator" and len(inputs) == 4:
                return self.net(inputs[0], inputs[1], (inputs[2], inputs[3]))
            return self.net(*inputs)

    return Graph().eval()


def example_inputs(config: "ModelConfig", network: str, batch: int, rng: np.random.Generator
                   ) -> dict[str, np.ndarray]:
    """Random inputs in each input's natural range (images in [-1, 1], masks in [0, 1], valid domains)."""
    feeds: dict[str, np.ndarray] = {}
    for name, shape, dtype in io_spec(config, network)[0]:
        concrete = [batch if d == BATCH else d for d in shape]
        if name == "domain":
            feeds[name] = rng.integers(0, config.num_domains, concrete).astype(np.int64)
        elif name == "image":
            feeds[name] = rng.uniform(-1, 1, concrete).astype(np.float32)
        elif name.startswith("mask"):
            feeds[name] = rng.uniform(0, 1, concrete).astype(np.float32)
        else:
            feeds[name] = rng.standard_normal(concrete).astype(np.float32)
    return feeds


def _export_fp32(graph_module: Any, config: "ModelConfig", network: str, opset: int) -> Any:
    """torch module -> fp32 onnx.ModelProto via the dynamo exporter, dynamic batch axis only."""
    import torch

    inputs, outputs = io_spec(config, network)
    example = example_inputs(config, network, 2, np.random.default_rng(VALIDATION_SEED))  # 2: no 0/1 specialising
    batch = torch.export.Dim(BATCH, min=1)
    try:
        program = torch.onnx.export(
            graph_module, tuple(torch.from_numpy(v) for v in example.values()), dynamo=True, opset_version=opset,
            input_names=[i[0] for i in inputs], output_names=[o[0] for o in outputs],
            dynamic_shapes={"inputs": tuple({0: batch} for _ in inputs)}, optimize=True, verbose=False,
        )
    except Exception as exc:  # the exporter raises many types; the first line says what failed
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendError(f"exporting {network} to ONNX failed: {first}") from exc
    return program.model_proto


def _graph_io(model: Any) -> tuple[list[IOSpec], list[IOSpec]]:
    """(name, shape, dtype) of a model's graph inputs and outputs, read from the graph itself."""
    from onnx import helper

    def describe(value: Any) -> IOSpec:
        tensor = value.type.tensor_type
        shape = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in tensor.shape.dim]
        return value.name, shape, str(helper.tensor_dtype_to_np_dtype(tensor.elem_type))

    return [describe(v) for v in model.graph.input], [describe(v) for v in model.graph.output]


# --------------------------------------------------------------------------------------------- half precision

def _fp32_nodes(graph: Any) -> set[int]:
    """Indices of nodes kept in float32: InstanceNormalization and the AdaIN Mul + Add that consume it."""
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    keep = set()
    for i, node in enumerate(graph.node):
        if node.op_type not in KEEP_FP32_OPS:
            continue
        keep.add(i)
        chain, tensor = ("Mul", "Add"), node.output[0]  # (1 + gamma) * IN(x) + beta
        for op_type in chain:
            users = consumers.get(tensor, [])
            if len(users) != 1 or graph.node[users[0]].op_type != op_type:
                break
            keep.add(users[0])
            tensor = graph.node[users[0]].output[0]
    return keep


def convert_to_half(model: Any) -> Any:
    """fp32 ModelProto -> float16 weights and activations with float32 I/O and float32 islands.

    Islands are :data:`KEEP_FP32_OPS` nodes plus their AdaIN modulation; a Cast is inserted once per tensor
    that crosses a precision boundary (graph inputs and outputs included). Initializers used in float16 are
    stored in float16; roi/scales inputs of Resize stay float32 as the operator requires.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if model.functions:
        raise BackendError("cannot convert an ONNX graph with local functions to half precision")
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    initializers = {t.name: t for t in graph.initializer}
    types.update({name: t.data_type for name, t in initializers.items()})
    keep = _fp32_nodes(graph)
    current: dict[str, int] = {}  # float tensor -> its element type in the new graph
    converted: dict[tuple[str, int], str] = {}
    nodes: list[Any] = []
    new_initializers: list[Any] = []

    def as_type(name: str, to: int) -> str:
        if current.get(name, TensorProto.FLOAT) == to:
            return name
        if (name, to) not in converted:
            suffix = "fp16" if to == TensorProto.FLOAT16 else "fp32"
            target = f"{name}__{suffix}"
            if name in initializers:
                array = numpy_helper.to_array(initializers[name])
                new_initializers.append(numpy_helper.from_array(array.astype(helper.tensor_dtype_to_np_dtype(to)),
                                                                target))
            else:
                nodes.append(helper.make_node("Cast", [name], [target], to=to, name=f"cast_{target}"))
            converted[(name, to)] = target
        return converted[(name, to)]

    for i, node in enumerate(graph.node):
        want = TensorProto.FLOAT if i in keep else TensorProto.FLOAT16
        for j, name in enumerate(node.input):
            if name and types.get(name) == TensorProto.FLOAT:
                fixed = j in FLOAT32_ONLY_INPUTS.get(node.op_type, ())
                node.input[j] = as_type(name, TensorProto.FLOAT if fixed else want)
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = want
            elif node.op_type in ("Constant", "ConstantOfShape") and attr.name == "value" \
                    and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(
                    numpy_helper.to_array(attr.t).astype(helper.tensor_dtype_to_np_dtype(want)), attr.t.name))
        for name in node.output:
            if types.get(name) == TensorProto.FLOAT:
                current[name] = want
        nodes.append(node)

    for output in graph.output:  # keep float32 outputs under their names
        if current.get(output.name) == TensorProto.FLOAT16:
            inner = f"{output.name}__fp16"
            for node in nodes:
                node.output[:] = [inner if n == output.name else n for n in node.output]
                node.input[:] = [inner if n == output.name else n for n in node.input]
            nodes.append(helper.make_node("Cast", [inner], [output.name], to=TensorProto.FLOAT,
                                          name=f"cast_{output.name}"))
    used = {name for node in nodes for name in node.input}
    kept_initializers = [t for t in graph.initializer if t.name in used] + new_initializers
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept_initializers)
    del graph.value_info[:]  # stale element types; shape inference rebuilds them
    return onnx.shape_inference.infer_shapes(out, strict_mode=True)


# --------------------------------------------------------------------------------------------- validation

def cpu_session(path: str | Path) -> Any:
    """An ONNX Runtime CPU session with full graph optimisation (what serving on CPU runs).

    Its threads do not spin-wait between runs: validation alternates ONNX Runtime and torch in one process, and
    spinning threads would slow torch's.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def tolerance_for(network: str, precision: str) -> dict[str, float]:
    """What a graph must meet against torch fp32 (see :func:`validate_graph`)."""
    if network == "fan":  # fp32 in every precision; masks jump where a heatmap pixel sits at the 0.1 threshold
        return {"max_abs": FP32_MAX_ABS, "outliers": FAN_MAX_OUTLIERS}
    return {"max_abs": FP32_MAX_ABS, "outliers": 0.0} if precision == "fp32" else {"psnr_db": HALF_MIN_PSNR_DB}


def validate_graph(path: str | Path, torch_module: Any, config: "ModelConfig", network: str, precision: str,
                   batch_sizes: Sequence[int] = VALIDATION_BATCHES) -> dict[str, Any]:
    """Run the graph on ONNX Runtime CPU and ``torch_module`` (fp32) on the same random inputs.

    Records, worst over outputs and batch sizes: ``max_abs``, ``psnr_db`` and ``outliers`` (the fraction of
    values off by more than 1e-4), per-batch numbers, the tolerance (:func:`tolerance_for`: fp32 graphs no value
    off by more than 1e-4; half graphs PSNR >= 40 dB; FAN masks at most 0.1% of pixels off by more than 1e-4,
    since thresholding heatmaps at 0.1 turns float rounding at the threshold into a jump) and ``passed``. A
    graph that ONNX Runtime CPU cannot run is reported with ``error`` and ``passed: None``.
    """
    import torch

    tolerance = tolerance_for(network, precision)
    result: dict[str, Any] = {"reference": "torch fp32", "runtime": "onnxruntime cpu",
                              "batch_sizes": list(batch_sizes), "tolerance": tolerance}
    try:
        session = cpu_session(path)
    except Exception as exc:  # ORT raises its own exception types (NOT_IMPLEMENTED for missing kernels)
        result.update(max_abs=None, psnr_db=None, passed=None, error=str(exc).strip().splitlines()[0])
        return result
    rng = np.random.default_rng(VALIDATION_SEED)
    per_batch = []
    for batch in batch_sizes:
        feeds = example_inputs(config, network, batch, rng)
        with torch.inference_mode():
            expected = torch_module(*(torch.from_numpy(v) for v in feeds.values()))
        expected = [e.numpy() for e in ([expected] if isinstance(expected, torch.Tensor) else expected)]
        got = session.run(None, feeds)
        if all(np.isfinite(g).all() for g in got):
            errors = [np.abs(e - g) for e, g in zip(expected, got)]
            max_abs = max(float(err.max()) for err in errors)
            outliers = max(float((err > FP32_MAX_ABS).mean()) for err in errors)
            psnr = min(psnr_db(e, g) for e, g in zip(expected, got))
        else:
            max_abs, outliers, psnr = math.inf, 1.0, 0.0
        per_batch.append({"batch": batch, "max_abs": max_abs, "psnr_db": round(psnr, 2), "outliers": outliers})
    max_abs = max(p["max_abs"] for p in per_batch)
    outliers = max(p["outliers"] for p in per_batch)
    psnr = min(p["psnr_db"] for p in per_batch)
    passed = outliers <= tolerance["outliers"] if "outliers" in tolerance else psnr >= tolerance["psnr_db"]
    result.update(max_abs=max_abs if math.isfinite(max_abs) else None, psnr_db=psnr, outliers=outliers,
                  passed=bool(passed), per_batch=per_batch)
    return result


# --------------------------------------------------------------------------------------------- export

def _current_fp32(bundle: "ModelBundle", network: str, opset: int) -> Optional[Path]:
    """The bundle's fp32 graph of ``network`` when it was exported from these weights at this opset."""
    path = onnx_path(bundle, network, "fp32")
    if not path.is_file():
        return None
    try:
        meta = read_metadata(path)
    except BackendError:
        return None
    current = (meta.get("weights_sha256") == bundle.weights_sha256 and meta.get("opset") == str(opset)
               and meta.get("format_version") == str(FORMAT_VERSION))
    return path if current else None


def _graph(bundle: "ModelBundle", network: str, precision: str, opset: int, graph_module: Any,
           say: Callable[[str], None]) -> tuple[Any, Optional[Path]]:
    """The ModelProto of one graph (before metadata) and the current fp32 file it was derived from, if any."""
    import onnx

    source = _current_fp32(bundle, network, opset) if precision != "fp32" else None
    if source is not None:
        say(("copying (the FAN stays fp32)" if network == "fan" else f"converting to {precision}")
            + f" from {source.name}")
        model = onnx.load(str(source))
    else:
        say(f"exporting the fp32 graph (torch.onnx dynamo, opset {opset})")
        model = _export_fp32(graph_module, bundle.config, network, opset)
    if precision != "fp32" and network != "fan":
        model = convert_to_half(model)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, _metadata(bundle, network, precision, opset))
    model.doc_string = f"smoothgan {network} ({precision}); inputs and outputs: see smoothgan.export.onnx"
    return model, source


def export_onnx(bundle: "ModelBundle", precision: str = "fp32", opset: int = 18,
                networks: Optional[Sequence[str]] = None, validate: bool = True,
                progress: Optional[Progress] = None) -> list[OnnxArtifact]:
    """Export the bundle's networks to ``BUNDLE/onnx/<network>-<precision>.onnx`` and record them.

    fp32 graphs come from the dynamo exporter; fp16 graphs are converted from the fp32 graph (the bundle's
    own ``<network>-fp32.onnx`` when it is current, else a fresh in-memory export). Each graph's I/O is checked
    against :func:`io_spec`, then ``onnx.checker`` (full check), an atomic write, validation against torch fp32
    on ONNX Runtime CPU (:func:`validate_graph`, unless ``validate=False``; a graph outside its tolerance is
    logged and recorded with ``passed: false``) and a record in ``smoothgan.json`` under ``artifacts.onnx``.
    A kill at any moment leaves each graph either old or new and complete; the next export removes the staging
    files a killed one left in ``onnx/``.
    """
    import onnx
    import torch

    from smoothgan.fileio import atomic_path, clean_stale, sha256_file

    check_precision(precision)
    if precision == "int8":
        raise BackendError("int8 graphs are quantized from the fp32 graphs: smoothgan.export.quantize.quantize_bundle "
                           "(smoothgan export --precision int8)")
    if opset < MIN_OPSET:
        raise BackendError(f"opset must be >= {MIN_OPSET} (the dynamo exporter's floor), got {opset}")
    required = required_networks(bundle.config)
    wanted = list(networks) if networks else required
    unknown = [n for n in wanted if n not in required]
    if unknown:
        raise BackendError(f"unknown network(s) {', '.join(unknown)} for this model; it has {', '.join(required)}")
    exporter = f"torch.onnx.export(dynamo=True), torch {torch.__version__}"
    clean_stale(bundle.path / ONNX_DIR)  # staging files of killed exports (each graph is written atomically)
    modules = bundle.build_networks("cpu")
    artifacts = []
    report = progress or log.info
    for index, network in enumerate(wanted, 1):
        step = f"[{index}/{len(wanted)}] {network}: "
        start = time.perf_counter()
        graph_module = _graph_module(network, modules[network])
        model, source = _graph(bundle, network, precision, opset, graph_module, lambda m: report(step + m))
        inputs, outputs = _graph_io(model)
        if (inputs, outputs) != io_spec(bundle.config, network):
            raise BackendError(f"exported {network} graph has I/O {inputs} -> {outputs}, "
                               f"expected {io_spec(bundle.config, network)}")
        onnx.checker.check_model(model, full_check=True)
        path = onnx_path(bundle, network, precision)
        with atomic_path(path) as tmp:
            onnx.save(model, str(tmp))
        seconds = time.perf_counter() - start
        validation = None
        prior = bundle.artifacts.get(ONNX_DIR, {}).get(f"{network}-fp32", {})
        if validate and network == "fan" and source is not None and prior.get("validation") \
                and prior.get("sha256") == sha256_file(source):
            validation = {**prior["validation"], "same_graph_as": f"{network}-fp32"}  # only metadata differs
        elif validate:
            report(f"{step}validating {path.name} against torch fp32")
            validation = validate_graph(path, graph_module, bundle.config, network, precision)
            if validation["passed"] is False:
                log.warning("%s does not meet its tolerance %s: max abs %s, PSNR %s dB", path.name,
                            validation["tolerance"], validation["max_abs"], validation["psnr_db"])
        artifact = OnnxArtifact(network, precision, path, sha256_file(path), opset, inputs, outputs, validation,
                                seconds)
        bundle.record_artifact(ONNX_DIR, f"{network}-{precision}", {
            "path": path.relative_to(bundle.path).as_posix(),
            "network": network,
            "precision": precision,
            "opset": opset,
            "sha256": artifact.sha256,
            "inputs": [list(i) for i in inputs],
            "outputs": [list(o) for o in outputs],
            "exporter": exporter + ("" if precision == "fp32" or network == "fan" else " + convert_to_half"),
            "validation": validation,
        })
        artifacts.append(artifact)
    return artifacts


__all__ = ["NETWORKS", "ONNX_PRECISIONS", "OnnxArtifact", "check_precision", "convert_to_half", "export_onnx",
           "io_spec", "onnx_path", "read_metadata", "required_networks", "validate_graph"]
