"""TensorRT backend: the bundle's engines (built by :mod:`smoothgan.export.tensorrt`) on one CUDA GPU.

Engines are found under ``BUNDLE/engines/`` for this GPU, precision and TensorRT version and their manifest is
checked (weights, ONNX graphs, TensorRT version, GPU, precision; :mod:`smoothgan.artifacts`). Missing or stale
engines are an error naming ``smoothgan export --trt``, or are rebuilt by a ``builder`` the caller passes
(``smoothgan.export.tensorrt.build_engines``): the runtime never imports the exporter.

Device memory comes from PyTorch CUDA tensors when torch is importable, else from cuda-python
(``cuda.bindings.runtime``). Each thread gets its own execution contexts and CUDA stream, so one backend can
serve several threads. Batches larger than the engines' optimization profile are split.

I/O follows the backend interface and its input policy (:mod:`smoothgan.backends.base`): float32
images/latents/styles/masks and int64 domains; TensorRT 10+ and TensorRT-RTX take int64 inputs natively.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from smoothgan.artifacts import (
    ENGINE_DIR,
    RUNTIME_CACHE_FILE,
    GpuInfo,
    check_engine_precision,
    checked_manifest,
    find_engine_folders,
    module_name,
    required_networks,
)
from smoothgan.backends.base import Backend, Masks
from smoothgan.backends.trt_runtime import capture_logger, detect_gpu, import_tensorrt
from smoothgan.config import ModelConfig
from smoothgan.errors import BackendError, InputError
from smoothgan.fileio import write_bytes_atomic

if TYPE_CHECKING:
    from smoothgan.bundle import ModelBundle

log = logging.getLogger(__name__)

EngineBuilder = Callable[..., list[Any]]  # smoothgan.export.tensorrt.build_engines or a stand-in


# ------------------------------------------------------------------------------------------- device memory

class TorchMemory:
    """Device buffers as torch tensors on ``device`` (CUDA; "cpu" only serves tests of the plumbing)."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.zeros(1, device=self.device)  # a current CUDA context, which TensorRT-RTX's runtime cache needs

    def new_stream(self) -> Any:
        return self.torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def handle(self, stream: Any) -> int:
        return 0 if stream is None else int(stream.cuda_stream)

    def upload(self, array: np.ndarray, stream: Any) -> Any:
        if not array.flags.writeable:  # torch.from_numpy warns on read-only arrays
            array = array.copy()
        with self._on(stream):
            return self.torch.from_numpy(array).to(self.device, non_blocking=True)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype, stream: Any) -> Any:
        with self._on(stream):
            return self.torch.empty(shape, dtype=self.torch.from_numpy(np.empty(0, dtype)).dtype, device=self.device)

    @staticmethod
    def pointer(buffer: Any) -> int:
        return int(buffer.data_ptr())

    def download(self, buffer: Any, stream: Any) -> np.ndarray:
        with self._on(stream):
            out = buffer.cpu().numpy()
        return out

    def finish(self, stream: Any, buffers: list[Any]) -> None:
        if stream is not None:
            stream.synchronize()
        buffers.clear()

    def _on(self, stream: Any) -> Any:
        import contextlib

        return self.torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()


class CudaPythonMemory:
    """Device buffers from cuda-python's runtime API (``pip install cuda-python``) when torch is absent."""

    def __init__(self, index: int) -> None:
        from cuda.bindings import runtime as cudart  # type: ignore[import-not-found]

        self.cudart = cudart
        self._check(cudart.cudaSetDevice(index), "cudaSetDevice")
        self._check(cudart.cudaFree(0), "cudaFree(0)")  # creates the context

    def _check(self, result: Any, what: str) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise BackendError(f"CUDA error in {what}: {self.cudart.cudaGetErrorString(err)[1].decode()}")
        return rest[0] if rest else None

    def new_stream(self) -> Any:
        return self._check(self.cudart.cudaStreamCreate(), "cudaStreamCreate")

    def handle(self, stream: Any) -> int:
        return int(stream)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype, stream: Any) -> tuple[int, tuple[int, ...], np.dtype]:
        nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        return int(self._check(self.cudart.cudaMallocAsync(nbytes, stream), "cudaMallocAsync")), shape, dtype

    def upload(self, array: np.ndarray, stream: Any) -> tuple[int, tuple[int, ...], np.dtype]:
        buffer = self.empty(array.shape, array.dtype, stream)
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.cudart.cudaMemcpyAsync(buffer[0], array.ctypes.data, array.nbytes, kind, stream), "upload")
        self._check(self.cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")  # pageable source
        return buffer

    @staticmethod
    def pointer(buffer: tuple[int, tuple[int, ...], np.dtype]) -> int:
        return buffer[0]

    def download(self, buffer: tuple[int, tuple[int, ...], np.dtype], stream: Any) -> np.ndarray:
        out = np.empty(buffer[1], buffer[2])
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.cudart.cudaMemcpyAsync(out.ctypes.data, buffer[0], out.nbytes, kind, stream), "download")
        self._check(self.cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return out

    def finish(self, stream: Any, buffers: list[Any]) -> None:
        for buffer in buffers:
            self._check(self.cudart.cudaFreeAsync(buffer[0], stream), "cudaFreeAsync")
        self._check(self.cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        buffers.clear()


def device_memory(device: str) -> Any:
    """torch CUDA tensors if torch is importable, else cuda-python; a clear error without either."""
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    try:
        import torch
    except ImportError:
        try:
            return CudaPythonMemory(index)
        except ImportError:
            raise BackendError("the TensorRT backend needs PyTorch (pip install 'smoothgan[torch]') or cuda-python "
                               "(pip install cuda-python) for GPU memory") from None
    if not torch.cuda.is_available():
        raise BackendError("device 'cuda' was asked for but PyTorch sees no CUDA GPU")
    return TorchMemory(f"cuda:{index}")


# ------------------------------------------------------------------------------------------- engines

class EngineRunner:
    """Deserialized engines plus per-thread execution contexts and streams; numpy in, numpy out."""

    def __init__(self, trt: ModuleType, engines: dict[str, Any], memory: Any,
                 runtime_cache: Optional[Any] = None) -> None:
        self.trt = trt
        self.engines = engines
        self.memory = memory
        self.runtime_cache = runtime_cache  # TensorRT-RTX: JIT-compiled kernels, shared by every context
        self._local = threading.local()
        self._dtypes = {trt.float32: np.dtype(np.float32), trt.float16: np.dtype(np.float16),
                        trt.int64: np.dtype(np.int64), trt.int32: np.dtype(np.int32)}
        self.io: dict[str, tuple[list[tuple[str, np.dtype, tuple[int, ...]]], list[str], int]] = {}
        for network, engine in engines.items():
            inputs, outputs, max_batch = [], [], 0
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                    dtype = self._dtypes.get(engine.get_tensor_dtype(name))
                    if dtype is None:
                        raise BackendError(f"{network} engine input {name} has unsupported type "
                                           f"{engine.get_tensor_dtype(name)}")
                    inputs.append((name, dtype, tuple(engine.get_tensor_shape(name))[1:]))
                    max_batch = max(max_batch, int(engine.get_tensor_profile_shape(name, 0)[2][0]))
                else:
                    outputs.append(name)
            self.io[network] = (inputs, outputs, max_batch)

    def max_batch(self, network: str) -> int:
        return self.io[network][2]

    def _thread_state(self) -> Any:
        state = self._local
        if not hasattr(state, "contexts"):
            state.contexts = {}
            state.stream = self.memory.new_stream()
        return state

    def _context(self, network: str) -> Any:
        state = self._thread_state()
        if network not in state.contexts:
            engine = self.engines[network]
            if self.runtime_cache is not None:  # one runtime config per context, one cache for all
                config = engine.create_runtime_config()
                config.set_runtime_cache(self.runtime_cache)
                context = engine.create_execution_context(config)
            else:
                context = engine.create_execution_context()
            if context is None:
                raise BackendError(f"TensorRT could not create an execution context for {network} (GPU memory?)")
            state.contexts[network] = context
        return state.contexts[network]

    def run(self, network: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run ``network`` on ``feeds`` (by input name), splitting batches above the profile's maximum."""
        if network not in self.engines:
            raise BackendError(f"no TensorRT engine for {network}")
        inputs, outputs, max_batch = self.io[network]
        arrays = {}
        for name, dtype, rest in inputs:
            if name not in feeds:
                raise BackendError(f"{network} engine needs input {name!r}")
            array = np.asarray(feeds[name])
            if array.ndim != len(rest) + 1 or any(r not in (-1, s) for r, s in zip(rest, array.shape[1:])):
                raise InputError(f"{network}: {name} has shape {list(array.shape)}, the engine takes [B, "
                                 f"{', '.join(map(str, rest))}]")
            arrays[name] = np.ascontiguousarray(array, dtype=dtype)
        sizes = {len(a) for a in arrays.values()}
        if len(sizes) != 1 or 0 in sizes:
            raise InputError(f"{network}: inputs need one equal, non-zero batch size, got "
                             f"{', '.join(f'{k}: {len(v)}' for k, v in arrays.items())}")
        total = sizes.pop()
        parts = [self._run_batch(network, {k: v[i:i + max_batch] for k, v in arrays.items()}, outputs)
                 for i in range(0, total, max_batch)]
        return {name: np.concatenate([p[name] for p in parts]) if len(parts) > 1 else parts[0][name]
                for name in outputs}

    def _run_batch(self, network: str, arrays: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        context = self._context(network)
        stream = self._local.stream
        buffers: list[Any] = []
        try:
            for name, array in arrays.items():
                buffer = self.memory.upload(array, stream)
                buffers.append(buffer)
                context.set_input_shape(name, array.shape)
                context.set_tensor_address(name, self.memory.pointer(buffer))
            results = {}
            for name in outputs:
                shape = tuple(context.get_tensor_shape(name))
                dtype = self._dtypes[self.engines[network].get_tensor_dtype(name)]
                results[name] = self.memory.empty(shape, dtype, stream)
                buffers.append(results[name])
                context.set_tensor_address(name, self.memory.pointer(results[name]))
            if not context.execute_async_v3(self.memory.handle(stream)):
                raise BackendError(f"TensorRT failed to run {network} on a batch of {len(next(iter(arrays.values())))}")
            out = {name: self.memory.download(buffer, stream).astype(np.float32, copy=False)
                   for name, buffer in results.items()}
        finally:
            self.memory.finish(stream, buffers)
        return out


# ------------------------------------------------------------------------------------------- backend

class TensorRTBackend(Backend):
    """Runs the bundle's TensorRT engines (see the module docstring); numpy in, numpy out."""

    name = "tensorrt"

    def __init__(self, bundle: "ModelBundle", device: str = "cuda", precision: str = "fp16",
                 engine_dir: Optional[str | Path] = None, builder: Optional[EngineBuilder] = None,
                 opt_batch: int = 20, max_batch: int = 64, prefer: Optional[str] = None,
                 workspace_gb: float = 4) -> None:
        super().__init__(bundle.config, device, precision)
        check_engine_precision(precision)
        if not device.startswith("cuda"):
            raise BackendError(f"the TensorRT backend runs on cuda, not {device}")
        trt = import_tensorrt(prefer)
        memory = device_memory(device)
        gpu = detect_gpu(int(device.split(":", 1)[1]) if ":" in device else 0)
        if gpu is None:
            raise BackendError("the TensorRT backend found no CUDA GPU")
        networks = required_networks(bundle.config)
        build = {"opt_batch": opt_batch, "max_batch": max_batch, "workspace_gb": workspace_gb}
        folders = [Path(engine_dir)] if engine_dir is not None else find_engine_folders(bundle, precision, trt, gpu)
        problems = []
        for folder in folders:
            try:
                self.manifest = checked_manifest(folder, bundle, gpu, precision, trt, networks)
                self.folder = folder
                break
            except BackendError as exc:
                problems.append(str(exc))
        else:
            self.manifest, self.folder = self._build(bundle, gpu, precision, trt, builder, problems, build)
        self.trt = trt
        self.logger = capture_logger(trt)
        self.runtime = trt.Runtime(self.logger)
        self._runtime_cache = None
        engines = {}
        for network in networks:
            engine = self.runtime.deserialize_cuda_engine((self.folder / f"{network}.engine").read_bytes())
            if engine is None:
                raise BackendError(f"TensorRT cannot load {self.folder / network}.engine on {gpu.name}: "
                                   f"{self.logger.last_error()}")
            engines[network] = engine
            if self._runtime_cache is None and module_name(trt) == "tensorrt_rtx":
                self._runtime_cache = self._load_runtime_cache(engine)
        self.runner = EngineRunner(trt, engines, memory, self._runtime_cache)
        self.gpu = gpu

    @staticmethod
    def _build(bundle: "ModelBundle", gpu: GpuInfo, precision: str, trt: ModuleType,
               builder: Optional[EngineBuilder], problems: list[str], options: dict[str, Any]
               ) -> tuple[dict[str, Any], Path]:
        """Engines from ``builder`` when one was given, else the error naming the command that builds them."""
        if builder is None:
            command = f"smoothgan export --model {bundle.path} --trt --precision {precision}"
            raise BackendError((problems[0] if problems else f"no TensorRT {precision} engines for {gpu.name} in "
                                f"{bundle.path / ENGINE_DIR}") + f"; build them: {command}")
        if problems:
            log.warning("%s; rebuilding", problems[0])
        artifacts = builder(bundle, precision=precision, gpu=gpu, prefer=module_name(trt), force=bool(problems),
                            **options)
        folder = bundle.path / ENGINE_DIR / artifacts[0].folder
        return checked_manifest(folder, bundle, gpu, precision, trt), folder

    def _load_runtime_cache(self, engine: Any) -> Any:
        """TensorRT-RTX compiles kernels at run time; a runtime cache in the engine folder keeps them."""
        cache = engine.create_runtime_config().create_runtime_cache()
        path = self.folder / RUNTIME_CACHE_FILE
        if path.is_file() and not cache.deserialize(path.read_bytes()):
            log.info("ignoring %s (made by another GPU, driver or TensorRT-RTX version)", path)
        return cache

    @classmethod
    def from_runner(cls, config: ModelConfig, runner: EngineRunner, precision: str = "fp32") -> "TensorRTBackend":
        """A backend over an existing :class:`EngineRunner` (tests of the I/O plumbing, custom engine loading)."""
        self = cls.__new__(cls)
        Backend.__init__(self, config, "cuda", precision)
        self.runner, self._runtime_cache, self.folder = runner, None, None
        return self

    def _run_mapping(self, latent: np.ndarray, domain: np.ndarray) -> np.ndarray:
        return self.runner.run("mapping_network", {"latent": latent, "domain": domain})["style"]

    def _run_encode(self, image: np.ndarray, domain: np.ndarray) -> np.ndarray:
        return self.runner.run("style_encoder", {"image": image, "domain": domain})["style"]

    def _run_generate(self, image: np.ndarray, style: np.ndarray, masks: Optional[Masks]) -> np.ndarray:
        feeds = {"image": image, "style": style}
        if masks is not None:
            feeds.update(mask0=masks[0], mask1=masks[1])
        return self.runner.run("generator", feeds)["output"]

    def _run_heatmap(self, image: np.ndarray) -> Masks:
        out = self.runner.run("fan", {"image": image})
        return out["mask0"], out["mask1"]

    def describe(self) -> str:
        flavour = getattr(self, "trt", None)
        engine = f"{module_name(flavour)} {flavour.__version__}" if flavour is not None else "engines"
        return f"{self.name} ({self.device}, {self.precision}, {engine})"

    def close(self) -> None:
        """Save TensorRT-RTX's runtime cache (JIT-compiled kernels) for the next start."""
        if self._runtime_cache is not None and self.folder is not None:
            try:
                write_bytes_atomic(self.folder / RUNTIME_CACHE_FILE, bytes(memoryview(self._runtime_cache.serialize())))
            except OSError as exc:
                log.warning("could not save the TensorRT-RTX runtime cache: %s", exc)
            self._runtime_cache = None
