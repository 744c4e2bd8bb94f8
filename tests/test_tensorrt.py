"""TensorRT engines (smoothgan.export.tensorrt) and the TensorRT backend.

Three layers, so that each runs wherever it can:
* engine builds: TensorRT-RTX parses and builds every exported graph on a CPU-only machine (skipped when
  ``tensorrt_rtx`` is not importable); manifests are written and every kind of mismatch is caught;
* backend plumbing: the backend's I/O (names, dtypes, batch splitting, per-thread contexts, zero masks) over
  fake engines that run the same ONNX graphs in onnxruntime from the buffer addresses they are given; needs
  no TensorRT and no GPU;
* execution (``-m trt``): real engines on a CUDA GPU that the installed TensorRT can run, compared with torch
  fp32 (fp32: max abs <= 1e-3; fp16: generator PSNR >= 40 dB, styles within 1e-2 relative).
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from smoothgan.backends import create_backend, trt_runtime
from smoothgan.backends.tensorrt import CudaPythonMemory, EngineRunner, TensorRTBackend, TorchMemory
from smoothgan.backends.torch import TorchBackend
from smoothgan.bundle import ModelBundle, load_bundle
from smoothgan.errors import BackendError, InputError
from smoothgan.export import tensorrt as trt_export
from smoothgan.export.onnx import export_onnx, onnx_path, read_metadata, required_networks
from smoothgan.export.tensorrt import (
    MANIFEST_FILE,
    GpuInfo,
    build_engines,
    check_manifest,
    import_tensorrt,
    read_manifest,
)
from smoothgan.fileio import sha256_file

# CPU-only TensorRT-RTX builds, whatever GPU this machine has (an H100 would be refused as a target)
BUILD = {"max_batch": 4, "opt_batch": 2, "workspace_gb": 1, "optimization_level": 0, "prefer": "tensorrt_rtx",
         "gpu": trt_export.CPU_GPU}
FP32_ATOL = 1e-3
FP16_PSNR_DB = 40.0


@pytest.fixture(scope="module")
def bundles(tiny_bundle: ModelBundle, tiny_hpf_bundle: ModelBundle,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelBundle]:
    """Private copies of the session bundles (engines and records are written into them) with their graphs."""
    root = tmp_path_factory.mktemp("trt")
    out = {}
    for source in (tiny_bundle, tiny_hpf_bundle):
        shutil.copytree(source.path, root / source.path.name, ignore=shutil.ignore_patterns("engines"))
        out[source.path.name] = bundle = load_bundle(root / source.path.name)
        for precision in ("fp32", "fp16"):  # validated by the ONNX tests; on-demand export: see below
            export_onnx(bundle, precision=precision, validate=False)
    return out


@pytest.fixture(scope="module")
def rtx() -> Any:
    try:
        return import_tensorrt("tensorrt_rtx")
    except BackendError as exc:
        pytest.skip(f"TensorRT-RTX is not importable: {exc}")


_BUILT: dict[tuple[str, str], tuple[list[trt_export.EngineArtifact], float]] = {}


def _built(bundles: dict[str, ModelBundle], preset: str, precision: str) -> tuple[list[Any], float]:
    """Engines of one bundle and precision, built once per module."""
    if (preset, precision) not in _BUILT:
        start = time.perf_counter()
        artifacts = build_engines(bundles[preset], precision=precision, **BUILD)
        _BUILT[preset, precision] = artifacts, time.perf_counter() - start
    return _BUILT[preset, precision]


# --------------------------------------------------------------------------------------------- builds

@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("preset", ["tiny", "tiny-hpf"])
def test_every_graph_builds_an_engine(rtx: Any, bundles: dict[str, ModelBundle], preset: str,
                                      precision: str) -> None:
    bundle = bundles[preset]
    artifacts, seconds = _built(bundles, preset, precision)
    assert [a.network for a in artifacts] == required_networks(bundle.config)
    folder = artifacts[0].path.parent
    assert folder.name == f"cpu-build-portable-rtx{rtx.__version__}-{precision}"
    assert all(a.size_bytes > 100_000 and a.path.stat().st_size == a.size_bytes for a in artifacts)
    assert not any(a.reused for a in artifacts)
    manifest = read_manifest(folder)
    assert manifest["weights_sha256"] == bundle.weights_sha256
    assert manifest["tensorrt"] == {"module": "tensorrt_rtx", "version": rtx.__version__}
    assert manifest["precision"] == precision and manifest["gpu"]["targets"] == ["portable"]
    assert manifest["profile"] == {"min_batch": 1, "opt_batch": 2, "max_batch": 4}
    c = bundle.config
    image = {"name": "image", "shape": [-1, 3, c.img_size, c.img_size], "dtype": "float32"}
    style = {"name": "style", "shape": [-1, c.style_dim], "dtype": "float32"}
    nets = manifest["networks"]
    assert nets["mapping_network"]["inputs"] == [{"name": "latent", "shape": [-1, c.latent_dim], "dtype": "float32"},
                                                 {"name": "domain", "shape": [-1], "dtype": "int64"}]
    assert nets["style_encoder"]["inputs"][0] == image and nets["style_encoder"]["outputs"] == [style]
    assert nets["generator"]["outputs"] == [{**image, "name": "output"}]
    if c.uses_masks:
        mask = {"shape": [-1, 1, 256, 256], "dtype": "float32"}
        assert nets["fan"]["outputs"] == [{"name": "mask0", **mask}, {"name": "mask1", **mask}]
        assert nets["generator"]["inputs"][2:] == [{"name": "mask0", **mask}, {"name": "mask1", **mask}]
    for network, entry in nets.items():
        assert entry["onnx"]["file"] == f"onnx/{network}-{precision}.onnx"
        assert entry["build_seconds"] > 0
    record = load_bundle(bundle.path).artifacts["engines"][folder.name]
    assert record["networks"] == sorted(nets) and record["precision"] == precision
    print(f"\n{preset} {precision}: {seconds:.1f} s for {len(artifacts)} engines, "
          + ", ".join(f"{a.network} {a.size_bytes / 1e6:.1f} MB in {a.build_seconds:.2f} s" for a in artifacts))


def test_engines_are_reused_until_forced(rtx: Any, bundles: dict[str, ModelBundle]) -> None:
    bundle = bundles["tiny"]
    first, _ = _built(bundles, "tiny", "fp32")
    start = time.perf_counter()
    again = build_engines(bundle, precision="fp32", **BUILD)
    assert all(a.reused for a in again) and time.perf_counter() - start < 5
    forced = build_engines(bundle, precision="fp32", networks=["mapping_network"], force=True, **BUILD)
    assert [a.network for a in forced] == ["mapping_network"] and not forced[0].reused
    # the manifest keeps the engines that were not rebuilt
    assert sorted(read_manifest(first[0].path.parent)["networks"]) == sorted(required_networks(bundle.config))
    changed = build_engines(bundle, precision="fp32", networks=["mapping_network"], **{**BUILD, "max_batch": 8})
    assert not changed[0].reused  # another profile is another build
    build_engines(bundle, precision="fp32", force=True, **BUILD)  # leave the folder as the other tests expect


@pytest.fixture()
def fp32_folder(rtx: Any, bundles: dict[str, ModelBundle], tmp_path: Path) -> Path:
    """A private copy of the tiny bundle's fp32 engine folder, to corrupt."""
    artifacts, _ = _built(bundles, "tiny", "fp32")
    return Path(shutil.copytree(artifacts[0].path.parent, tmp_path / artifacts[0].folder))


def _edit_manifest(folder: Path, edit: Any) -> None:
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    edit(manifest)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))


@pytest.mark.parametrize("field", ["weights", "onnx", "trt version", "gpu", "precision", "engine file",
                                   "format version", "missing network", "malformed", "not json", "no manifest"])
def test_check_manifest_names_each_mismatch(rtx: Any, bundles: dict[str, ModelBundle], fp32_folder: Path,
                                            field: str) -> None:
    bundle = bundles["tiny"]
    assert check_manifest(fp32_folder, bundle, precision="fp32", trt=rtx)["precision"] == "fp32"
    kwargs: dict[str, Any] = {"precision": "fp32", "trt": rtx}
    expected = {"weights": "weights sha256", "onnx": "ONNX sha256 of generator", "trt version": "TensorRT version",
                "gpu": "GPU / compute capability", "precision": "precision is fp32, expected fp16",
                "engine file": "generator.engine sha256", "format version": "manifest format version",
                "missing network": "one with generator", "malformed": "malformed", "not json": "cannot read",
                "no manifest": "no manifest.json"}[field]
    if field == "weights":
        bundle = dataclasses.replace(bundle, weights_sha256="0" * 64)
    elif field == "onnx":
        _edit_manifest(fp32_folder, lambda m: m["networks"]["generator"]["onnx"].update(sha256="1" * 64))
    elif field == "trt version":
        kwargs["trt"] = SimpleNamespace(__name__="tensorrt_rtx_bindings", __version__="1.0.0.0")
    elif field == "gpu":
        kwargs["gpu"] = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")  # outside TensorRT-RTX's portable targets
    elif field == "precision":
        kwargs["precision"] = "fp16"
    elif field == "engine file":
        with open(fp32_folder / "generator.engine", "r+b") as handle:
            handle.seek(1000)
            handle.write(b"\0\1\2\3")
    elif field == "format version":
        _edit_manifest(fp32_folder, lambda m: m.update(format_version=99))
    elif field == "missing network":
        _edit_manifest(fp32_folder, lambda m: m["networks"].pop("generator"))
        kwargs["networks"] = required_networks(bundle.config)
    elif field == "malformed":
        _edit_manifest(fp32_folder, lambda m: m.pop("tensorrt"))
    elif field == "not json":
        (fp32_folder / MANIFEST_FILE).write_text("{")
    elif field == "no manifest":
        (fp32_folder / MANIFEST_FILE).unlink()
    with pytest.raises(BackendError, match="^[^\n]*$") as info:
        check_manifest(fp32_folder, bundle, **kwargs)
    assert expected in str(info.value)


def test_check_manifest_accepts_portable_engines_on_supported_gpus(rtx: Any, bundles: dict[str, ModelBundle],
                                                                    fp32_folder: Path) -> None:
    for gpu in (GpuInfo("NVIDIA GeForce RTX 3090", "8.6"), GpuInfo("NVIDIA RTX PRO 6000", "12.0")):
        assert check_manifest(fp32_folder, bundles["tiny"], gpu=gpu, precision="fp32", trt=rtx)


def test_check_manifest_rebuilds_when_asked(rtx: Any, bundles: dict[str, ModelBundle]) -> None:
    bundle = bundles["tiny"]
    artifacts, _ = _built(bundles, "tiny", "fp32")
    folder = artifacts[0].path.parent
    _edit_manifest(folder, lambda m: m.update(weights_sha256="0" * 64))
    manifest = check_manifest(folder, bundle, gpu=trt_export.CPU_GPU, precision="fp32", trt=rtx, rebuild=True,
                              workspace_gb=1, optimization_level=0)
    assert manifest["weights_sha256"] == bundle.weights_sha256 and manifest["folder"] == folder.name
    assert manifest["profile"]["max_batch"] == BUILD["max_batch"]  # the old profile is kept
    assert check_manifest(folder, bundle, precision="fp32", trt=rtx) == manifest


def test_cross_build_for_a_target_compute_capability(rtx: Any, bundles: dict[str, ModelBundle]) -> None:
    bundle = bundles["tiny"]
    (artifact,) = build_engines(bundle, precision="fp32", networks=["mapping_network"], target_cc="8.6", **BUILD)
    assert artifact.folder == f"cpu-build-sm86-rtx{rtx.__version__}-fp32"
    folder = artifact.path.parent
    assert read_manifest(folder)["gpu"]["targets"] == ["8.6"]
    assert check_manifest(folder, bundle, gpu=GpuInfo("NVIDIA GeForce RTX 3090", "8.6"), trt=rtx)
    with pytest.raises(BackendError, match="GPU / compute capability"):
        check_manifest(folder, bundle, gpu=GpuInfo("NVIDIA GeForce RTX 4090", "8.9"), trt=rtx)
    with pytest.raises(BackendError, match=r"supports compute capabilities .*8\.6.*not 9\.0"):
        build_engines(bundle, precision="fp32", target_cc="sm90", **BUILD)
    with pytest.raises(BackendError, match="(?i)the GPU here, NVIDIA H100.*pip install 'smoothgan\\[trt\\]'"):
        build_engines(bundle, precision="fp32", **{**BUILD, "gpu": GpuInfo("NVIDIA H100 80GB HBM3", "9.0")})


def test_parser_errors_are_one_line_with_the_node(rtx: Any, bundles: dict[str, ModelBundle],
                                                  tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    shutil.copytree(bundles["tiny"].path, tmp_path / "tiny", ignore=shutil.ignore_patterns("engines"))
    bundle = load_bundle(tmp_path / "tiny")
    node = helper.make_node("NoSuchOp", ["image"], ["output"], name="broken_node", domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)])
    path = onnx_path(bundle, "generator", "fp32")
    model.metadata_props.extend(onnx.load(path).metadata_props)  # current for these weights: not re-exported
    onnx.save(model, path)
    with pytest.raises(BackendError, match="^[^\n]*$") as info:
        build_engines(bundle, precision="fp32", networks=["generator"], **BUILD)
    message = str(info.value)
    assert "cannot parse generator-fp32.onnx" in message and "broken_node" in message and "NoSuchOp" in message


def test_graphs_from_other_weights_are_exported_again(rtx: Any, bundles: dict[str, ModelBundle],
                                                      tmp_path: Path) -> None:
    import onnx

    shutil.copytree(bundles["tiny"].path, tmp_path / "tiny", ignore=shutil.ignore_patterns("engines"))
    bundle = load_bundle(tmp_path / "tiny")
    path = onnx_path(bundle, "mapping_network", "fp32")
    model = onnx.load(path)
    for prop in model.metadata_props:
        if prop.key == "weights_sha256":
            prop.value = "0" * 64
    onnx.save(model, path)
    (artifact,) = build_engines(bundle, precision="fp32", networks=["mapping_network"], **BUILD)
    assert read_metadata(path)["weights_sha256"] == bundle.weights_sha256
    entry = read_manifest(artifact.path.parent)["networks"]["mapping_network"]
    assert entry["onnx"]["sha256"] == sha256_file(path)


def test_bf16_and_bad_arguments_are_refused(bundles: dict[str, ModelBundle]) -> None:
    with pytest.raises(BackendError, match="bf16 TensorRT engines are not supported.*use fp16"):
        build_engines(bundles["tiny"], precision="bf16")
    with pytest.raises(BackendError, match="supports fp32, fp16, not bf16"):
        create_backend(bundles["tiny"], "tensorrt", device="cuda", precision="bf16")
    with pytest.raises(BackendError, match="min_batch <= max_batch"):
        build_engines(bundles["tiny"], precision="fp32", min_batch=8, max_batch=4)
    with pytest.raises(BackendError, match="unknown network"):
        build_engines(bundles["tiny"], precision="fp32", networks=["fan"], prefer="tensorrt_rtx", workspace_gb=1)


def test_import_tensorrt_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(trt_runtime, "_MODULE_CACHE", {})
    monkeypatch.setattr(trt_runtime, "_import_one", missing)
    with pytest.raises(BackendError, match=r"^TensorRT is not installed .*pip install 'smoothgan\[trt\]'") as info:
        import_tensorrt()
    assert "tensorrt:" in str(info.value) and "tensorrt_rtx:" in str(info.value)
    with pytest.raises(BackendError, match="unknown TensorRT flavour 'tensorrt_llm'"):
        import_tensorrt("tensorrt_llm")


def test_missing_rtx_libraries_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(trt_runtime.ENV_RTX_LIB_DIR, str(tmp_path))
    monkeypatch.setattr(trt_runtime, "RTX_LIB_PACKAGE", "no_such_package_here")
    with pytest.raises(BackendError, match=r"libtensorrt_rtx\.so\.1 not found .*" + str(tmp_path)):
        trt_runtime._load_rtx_libraries()


def test_detect_gpu_without_a_gpu_is_none_or_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = trt_export.detect_gpu()
    assert gpu is None or (gpu.name and gpu.cc and "." in gpu.cc)
    assert GpuInfo("NVIDIA GeForce RTX 4090", "8.9").slug == "nvidia-geforce-rtx-4090"


# --------------------------------------------------------------------------------------------- plumbing

FAKE_TRT = SimpleNamespace(float32="f32", float16="f16", int64="i64", int32="i32",
                           TensorIOMode=SimpleNamespace(INPUT="in", OUTPUT="out"))


class FakeEngine:
    """Just enough of ICudaEngine/IExecutionContext to run an ONNX graph in onnxruntime from raw addresses."""

    def __init__(self, onnx_file: Path, max_batch: int) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
        self.max_batch = max_batch
        self.tensors = {t.name: ("in", t) for t in self.session.get_inputs()}
        self.tensors.update({t.name: ("out", t) for t in self.session.get_outputs()})
        self.contexts: list[tuple[int, Any]] = []
        self.batches: list[int] = []

    num_io_tensors = property(lambda self: len(self.tensors))

    def get_tensor_name(self, i: int) -> str:
        return list(self.tensors)[i]

    def get_tensor_mode(self, name: str) -> str:
        return self.tensors[name][0]

    def get_tensor_dtype(self, name: str) -> str:
        return {"tensor(float)": "f32", "tensor(int64)": "i64"}[self.tensors[name][1].type]

    def get_tensor_shape(self, name: str) -> list[int]:
        return [-1 if isinstance(d, str) else d for d in self.tensors[name][1].shape]

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[list[int]]:
        rest = self.get_tensor_shape(name)[1:]
        return [[1, *rest], [1, *rest], [self.max_batch, *rest]]

    def create_execution_context(self, *config: Any) -> "FakeContext":
        context = FakeContext(self)
        self.contexts.append((threading.get_ident(), context))
        return context


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine, self.shapes, self.addresses = engine, {}, {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        self.shapes[name] = tuple(shape)

    def set_tensor_address(self, name: str, address: int) -> None:
        self.addresses[name] = address

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        batch = next(iter(self.shapes.values()))[0]
        return (batch, *self.engine.get_tensor_shape(name)[1:])

    def execute_async_v3(self, stream: int) -> bool:
        dtypes = {"f32": np.float32, "i64": np.int64}
        feeds = {}
        for name, shape in self.shapes.items():
            dtype = np.dtype(dtypes[self.engine.get_tensor_dtype(name)])
            raw = (ctypes.c_char * (int(np.prod(shape)) * dtype.itemsize)).from_address(self.addresses[name])
            feeds[name] = np.frombuffer(raw, dtype).reshape(shape).copy()
        names = [o.name for o in self.engine.session.get_outputs()]
        for name, value in zip(names, self.engine.session.run(names, feeds)):
            assert value.shape == self.get_tensor_shape(name) and value.dtype == np.float32
            ctypes.memmove(self.addresses[name], np.ascontiguousarray(value).ctypes.data, value.nbytes)
        self.engine.batches.append(len(next(iter(feeds.values()))))
        return True


def _inputs(bundle: ModelBundle, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = bundle.config
    return {"image": rng.uniform(-1, 1, (n, 3, c.img_size, c.img_size)).astype(np.float32),
            "latent": rng.standard_normal((n, c.latent_dim)).astype(np.float32),
            "style": rng.standard_normal((n, c.style_dim)).astype(np.float32),
            "domain": rng.integers(0, c.num_domains, n).astype(np.int64)}


@pytest.mark.parametrize("preset", ["tiny", "tiny-hpf"])
def test_backend_plumbing_matches_torch(bundles: dict[str, ModelBundle], preset: str) -> None:
    bundle = bundles[preset]
    engines = {n: FakeEngine(onnx_path(bundle, n, "fp32"), max_batch=2) for n in required_networks(bundle.config)}
    backend = TensorRTBackend.from_runner(bundle.config, EngineRunner(FAKE_TRT, engines, TorchMemory("cpu")))
    reference = TorchBackend(bundle, "cpu", "fp32")
    x = _inputs(bundle, 5)
    style = reference.mapping(x["latent"], x["domain"])
    np.testing.assert_allclose(backend.mapping(x["latent"], x["domain"]), style, atol=1e-4)
    np.testing.assert_allclose(backend.encode_style(x["image"], x["domain"].astype(np.int32)),
                               reference.encode_style(x["image"], x["domain"]), atol=1e-4)
    masks = reference.heatmap(x["image"]) if bundle.config.uses_masks else None
    out = backend.generate(x["image"], style, masks)
    assert out.shape == x["image"].shape and out.dtype == np.float32
    np.testing.assert_allclose(out, reference.generate(x["image"], style, masks), atol=1e-4)
    assert engines["generator"].batches == [2, 2, 1]  # split at the profile's maximum
    if bundle.config.uses_masks:
        got = backend.heatmap(x["image"])
        for a, b in zip(got, masks):
            assert a.shape == (5, 1, 256, 256)
            np.testing.assert_allclose(a, b, atol=1e-4)
        with pytest.raises(InputError, match="needs the FAN masks"):  # the same policy on every backend
            backend.generate(x["image"], style, None)
    else:
        with pytest.raises(InputError, match="no FAN masks"):
            backend.heatmap(x["image"])


def test_backend_plumbing_threads_and_errors(bundles: dict[str, ModelBundle]) -> None:
    bundle = bundles["tiny"]
    engine = FakeEngine(onnx_path(bundle, "generator", "fp32"), max_batch=4)
    runner = EngineRunner(FAKE_TRT, {"generator": engine}, TorchMemory("cpu"))
    backend = TensorRTBackend.from_runner(bundle.config, runner)
    x = _inputs(bundle, 5)
    expected = backend.generate(x["image"], x["style"])
    results: list[np.ndarray] = []
    barrier = threading.Barrier(3)  # keeps every thread alive until all ran, so no thread id is reused

    def work() -> None:
        results.append(backend.generate(x["image"], x["style"]))
        barrier.wait(timeout=60)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and all(np.array_equal(r, expected) for r in results)
    owners = [owner for owner, _ in engine.contexts]
    assert len(owners) == 4 and len(set(owners)) == 4  # one context per thread, reused within a thread
    with pytest.raises(InputError, match=r"image has shape \[5, 3, 16, 16\], expected \[B, 3, 32, 32\]"):
        backend.generate(x["image"][:, :, :16, :16], x["style"])
    with pytest.raises(InputError, match="batch sizes differ"):
        backend.generate(x["image"], x["style"][:2])
    with pytest.raises(BackendError, match="no TensorRT engine for mapping_network"):
        backend.mapping(x["latent"], x["domain"])


def test_backend_refuses_cpu_and_a_missing_gpu(bundles: dict[str, ModelBundle]) -> None:
    with pytest.raises(BackendError, match="runs on cuda, not cpu"):
        TensorRTBackend(bundles["tiny"], device="cpu", precision="fp32")
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    try:
        import_tensorrt()
    except BackendError as exc:
        pytest.skip(str(exc))
    with pytest.raises(BackendError, match="PyTorch sees no CUDA GPU"):
        TensorRTBackend(bundles["tiny"], "cuda", "fp32")


def test_cuda_python_memory_reports_cuda_errors() -> None:
    pytest.importorskip("cuda.bindings.runtime")
    with pytest.raises(BackendError, match="^CUDA error in cudaSetDevice: "):
        CudaPythonMemory(999)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["torch", "cuda-python"])
def test_device_memory_round_trip(kind: str) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    if kind == "cuda-python":
        pytest.importorskip("cuda.bindings.runtime")
    memory = TorchMemory("cuda:0") if kind == "torch" else CudaPythonMemory(0)
    stream = memory.new_stream()
    image = np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8)
    domain = np.array([1, 0], np.int64)
    buffers = [memory.upload(image, stream), memory.upload(domain, stream), memory.empty((2, 16), np.float32, stream)]
    assert len({memory.pointer(b) for b in buffers}) == 3 and memory.handle(stream) != 0
    np.testing.assert_array_equal(memory.download(buffers[0], stream), image)
    np.testing.assert_array_equal(memory.download(buffers[1], stream), domain)
    assert memory.download(buffers[2], stream).shape == (2, 16)
    memory.finish(stream, buffers)
    assert buffers == []


# --------------------------------------------------------------------------------------------- execution

def _executable() -> tuple[Any, GpuInfo]:
    """TensorRT module and GPU when this machine can run engines; skip otherwise."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    try:
        trt = import_tensorrt()
    except BackendError as exc:
        pytest.skip(str(exc))
    gpu = trt_export.detect_gpu()
    assert gpu is not None
    if trt_export.module_name(trt) == "tensorrt_rtx" and gpu.cc not in trt_runtime.rtx_ccs(trt):
        pytest.skip(f"TensorRT-RTX {trt.__version__} cannot run on {gpu.name} (compute capability {gpu.cc})")
    return trt, gpu


def _psnr(a: np.ndarray, b: np.ndarray, peak_to_peak: float = 2.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak_to_peak**2 / mse)


@pytest.mark.trt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("preset", ["tiny", "tiny-hpf"])
def test_tensorrt_backend_matches_torch_fp32(bundles: dict[str, ModelBundle], preset: str, precision: str) -> None:
    trt, gpu = _executable()
    bundle = bundles[preset]
    backend = TensorRTBackend(bundle, "cuda", precision, opt_batch=4, max_batch=8, workspace_gb=1,
                              prefer=trt_export.module_name(trt), builder=build_engines)
    reference = TorchBackend(bundle, "cpu", "fp32")  # CPU: no TF32 in the reference
    x = _inputs(bundle, 11)  # more than max_batch: split in two
    style = reference.mapping(x["latent"], x["domain"])
    masks = reference.heatmap(x["image"]) if bundle.config.uses_masks else None
    got = {"mapping": backend.mapping(x["latent"], x["domain"]),
           "encode": backend.encode_style(x["image"], x["domain"]),
           "generate": backend.generate(x["image"], style, masks)}
    want = {"mapping": style, "encode": reference.encode_style(x["image"], x["domain"]),
            "generate": reference.generate(x["image"], style, masks)}
    for key in got:
        assert got[key].shape == want[key].shape and got[key].dtype == np.float32
    if precision == "fp32":
        for key in got:
            np.testing.assert_allclose(got[key], want[key], atol=FP32_ATOL, rtol=0, err_msg=key)
    else:
        assert _psnr(got["generate"], want["generate"]) >= FP16_PSNR_DB
        for key in ("mapping", "encode"):
            scale = max(1.0, float(np.abs(want[key]).max()))
            np.testing.assert_allclose(got[key], want[key], atol=1e-2 * scale, rtol=0, err_msg=key)
    if masks is not None:
        for a, b in zip(backend.heatmap(x["image"]), masks):
            np.testing.assert_allclose(a, b, atol=FP32_ATOL if precision == "fp32" else 2e-2)
    backend.close()
    start = time.perf_counter()
    again = TensorRTBackend(bundle, "cuda", precision, prefer=trt_export.module_name(trt))
    assert time.perf_counter() - start < 30  # found and reused, not rebuilt
    np.testing.assert_array_equal(again.generate(x["image"][:3], style[:3], None if masks is None else
                                                 (masks[0][:3], masks[1][:3])), got["generate"][:3])
    again.close()


def test_close_saves_the_tensorrt_rtx_runtime_cache(bundles: dict[str, ModelBundle], tmp_path: Path) -> None:
    """TensorRT-RTX's JIT-compiled kernels are written to the engine folder on close (once), also when the
    backend is closed by a Translator used as a context manager."""
    from smoothgan.artifacts import RUNTIME_CACHE_FILE
    from smoothgan.translator import Translator

    class Cache:
        def serialize(self) -> bytes:
            return b"kernels"

    bundle = bundles["tiny"]
    engines = {n: FakeEngine(onnx_path(bundle, n, "fp32"), max_batch=2) for n in required_networks(bundle.config)}
    backend = TensorRTBackend.from_runner(bundle.config, EngineRunner(FAKE_TRT, engines, TorchMemory("cpu")))
    backend._runtime_cache, backend.folder = Cache(), tmp_path
    with Translator(bundle, backend) as translator:
        translator.backend.mapping(_inputs(bundle, 1)["latent"], [0])
    assert (tmp_path / RUNTIME_CACHE_FILE).read_bytes() == b"kernels"
    (tmp_path / RUNTIME_CACHE_FILE).unlink()
    backend.close()  # already saved: nothing more to write
    assert not (tmp_path / RUNTIME_CACHE_FILE).exists()
