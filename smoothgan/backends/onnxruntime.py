"""ONNX Runtime backend: the bundle's exported graphs (``onnx/<network>-<precision>.onnx``) on CPU or CUDA.

Needs numpy and onnxruntime only (no torch). Every graph is checked before use: present, exported from the
bundle's weights (``weights_sha256`` in its metadata), for this network, precision and image size; anything
else is a one-line :class:`BackendError` that names the command to fix it.

* CPU: ``CPUExecutionProvider``, full graph optimisation (NCHWc layout), sequential execution, one intra-op
  thread per physical core available to this process (``threads`` overrides), no spinning (measurements at
  :meth:`OnnxRuntimeBackend._session`). ``int8`` graphs (``smoothgan export --precision int8``) run here only.
* CUDA (``pip install smoothgan[gpu]``): ``CUDAExecutionProvider`` with IOBinding; outputs go to
  device-resident OrtValues kept per batch shape, and each new batch shape is run once to warm up (kernel
  selection) before the call that returns. ``providers=["tensorrt", "cuda"]`` puts ONNX Runtime's TensorRT
  execution provider first (engines cached under ``BUNDLE/onnx/ort-trt-cache``).

Sessions are created lazily, one per network, on first use.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import onnxruntime as ort

from smoothgan.backends.base import Backend, Masks
from smoothgan.errors import BackendError, InputError
from smoothgan.artifacts import ONNX_DIR, io_spec, onnx_graphs

if TYPE_CHECKING:
    from smoothgan.bundle import ModelBundle

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
INSTALL_HINTS = {
    "CUDAExecutionProvider": "pip install 'smoothgan[gpu]' (onnxruntime-gpu in place of onnxruntime)",
    "TensorrtExecutionProvider": "pip install 'smoothgan[gpu]' and TensorRT's libraries",
}
MAX_BOUND_SHAPES = 8  # batch shapes whose device output buffers are kept per network
# CPU calls run in chunks of at most this many rows: at 256px one activation of a 64-image batch is 1 GiB. AFHQ-like
# generator, 2-core AMD EPYC, fp32: batch 64 in one call 1.88 img/s, in chunks of 8 2.03 img/s (batch 32: 1.85 /
# 2.03 vs 1.99 / 2.02, noise); per-image cost was flat from batch 1 to 8 (best of 4: 1.07-1.12 s, loaded machine).
# Chunks keep the rate and bound the activation memory whatever the caller's batch.
CPU_CHUNK = 8
ProviderSpec = Union[str, tuple[str, dict[str, Any]]]


def physical_cores() -> int:
    """Physical cores this process may run on: (socket, core) pairs in /proc/cpuinfo, capped by CPU affinity."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/proc/cpuinfo") as handle:
            text = handle.read()
    except OSError:
        return max(1, logical)
    cores, socket = set(), ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            socket = value.strip()
        elif key.strip() == "core id":
            cores.add((socket, value.strip()))
    return max(1, min(len(cores) or logical, logical))


def _device(device: str) -> tuple[str, int]:
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise BackendError(f"unknown device {device!r}: use cpu or cuda[:N]")
    return kind, int(index or 0)


class OnnxRuntimeBackend(Backend):
    """Runs the bundle's ONNX graphs with ONNX Runtime; numpy in, numpy out (see :class:`Backend`)."""

    name = "onnxruntime"

    def __init__(self, bundle: "ModelBundle", device: str = "cpu", precision: str = "fp32",
                 threads: Optional[int] = None, providers: Optional[Sequence[ProviderSpec]] = None) -> None:
        super().__init__(bundle.config, device, precision)
        if threads is not None and threads < 1:
            raise InputError(f"threads must be >= 1, got {threads}")
        self.bundle = bundle
        self.device_type, self.device_id = _device(device)
        if precision == "int8" and self.device_type != "cpu":
            raise BackendError("int8 graphs run on ONNX Runtime CPU only (QDQ u8s8 kernels): use --device cpu, or "
                               "fp16 on CUDA")
        self.buffer_device = self.device_type  # where IOBinding output buffers live
        self.threads = threads or physical_cores()
        self.providers = self._providers(providers)
        self.paths = onnx_graphs(bundle, precision)  # checked: present and exported from these weights
        self._sessions: dict[str, Any] = {}
        self._bound: OrderedDict[tuple[str, int], dict[str, Any]] = OrderedDict()

    # ---- setup ----------------------------------------------------------------------------------------------
    def _providers(self, requested: Optional[Sequence[ProviderSpec]]) -> list[ProviderSpec]:
        """Execution providers with options, checked against what this onnxruntime build offers."""
        if requested is None:
            requested = ["cuda"] if self.device_type == "cuda" else ["cpu"]
        resolved: list[ProviderSpec] = []
        for spec in requested:
            name, options = (spec, {}) if isinstance(spec, str) else (spec[0], dict(spec[1]))
            name = PROVIDER_ALIASES.get(name, name)
            if name != "CPUExecutionProvider" and self.device_type != "cuda":
                raise BackendError(f"execution provider {name} needs --device cuda")
            if name == "CUDAExecutionProvider":
                options.setdefault("device_id", self.device_id)
            elif name == "TensorrtExecutionProvider":
                options.setdefault("device_id", self.device_id)
                options.setdefault("trt_engine_cache_enable", True)
                options.setdefault("trt_engine_cache_path", str(self.bundle.path / ONNX_DIR / "ort-trt-cache"))
            resolved.append((name, options) if options else name)
        names = [p if isinstance(p, str) else p[0] for p in resolved]
        available = ort.get_available_providers()
        for name in names:
            if name not in available:
                hint = INSTALL_HINTS.get(name, "install an onnxruntime build that has it")
                raise BackendError(f"ONNX Runtime {ort.__version__} here has no {name} (it has "
                                   f"{', '.join(p for p in available if p != 'AzureExecutionProvider')}): {hint}")
        if "CPUExecutionProvider" not in names:
            resolved.append("CPUExecutionProvider")  # for the few nodes a GPU provider does not take
        return resolved

    def _session(self, network: str) -> Any:
        if network in self._sessions:
            return self._sessions[network]
        # CPU session options, each measured on the 2-core AMD EPYC (AVX-512 VNNI), AFHQ-like 256px generator,
        # batch 1 (fp32 / int8 graphs; one thread, process CPU time, unless said otherwise):
        # * ORT_ENABLE_ALL (NCHWc layout transformer) vs EXTENDED: fp32 975 vs 1088 ms (-10%); int8 356 vs 345 ms
        #   (same); BASIC: 1103 / 1126 ms (int8 needs the extended level's QDQ -> QLinearConv fusion). Kept ALL.
        # * intra-op threads = physical cores: quiet machine (best of 8, wall) fp32 552 ms on 2 threads vs 927 ms
        #   on 1; int8 330 vs 337 ms. Kept (``threads`` overrides it for hosts that share their cores).
        # * session.intra_op.allow_spinning = 0: on the shared machine (load ~5 on 2 cores, median of 8, wall)
        #   fp32 1139 vs 1280 ms, int8 449 vs 707 ms; best of 8 unchanged for fp32 (550 vs 552 ms), int8 347 vs
        #   330 ms. Spinning workers burn the cores that other threads (decoding, writing, other processes)
        #   need, so spinning is off.
        # * ORT_PARALLEL execution (2 inter-op threads): fp32 1650 vs 1280 ms, int8 1153 vs 707 ms (median,
        #   wall): the graphs are chains. Kept ORT_SEQUENTIAL.
        # * enable_mem_pattern off: 960 vs 975 ms, int8 349 vs 356 ms (noise); kept on (the default).
        #   enable_cpu_mem_arena off: 1026 vs 975 ms, int8 439 vs 356 ms; kept on (the default).
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads
        if self.device_type == "cpu":
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        path = self.paths[network]
        try:
            session = ort.InferenceSession(str(path), options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"ONNX Runtime cannot load {path}: {str(exc).strip().splitlines()[0]}") from exc
        first = self.providers[0] if isinstance(self.providers[0], str) else self.providers[0][0]
        if session.get_providers()[0] != first:
            raise BackendError(f"{first} failed to start for {path.name} (ONNX Runtime fell back to "
                               f"{session.get_providers()[0]}); check the CUDA/cuDNN libraries onnxruntime-gpu needs")
        self._sessions[network] = session
        return session

    # ---- running --------------------------------------------------------------------------------------------
    def _run(self, network: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        session = self._session(network)
        try:
            if self.device_type == "cpu":
                total = len(next(iter(feeds.values())))
                if total <= CPU_CHUNK:
                    return session.run(None, feeds)
                parts = [session.run(None, {k: v[i:i + CPU_CHUNK] for k, v in feeds.items()})
                         for i in range(0, total, CPU_CHUNK)]
                return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]
            return self._run_bound(network, session, feeds)
        except Exception as exc:  # onnxruntime's InvalidArgument / Fail / RuntimeException
            raise BackendError(f"ONNX Runtime failed on {network}: {str(exc).strip().splitlines()[0]}") from exc

    def _run_bound(self, network: str, session: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """IOBinding run: inputs copied to the device, outputs into device buffers kept per batch shape."""
        batch = len(next(iter(feeds.values())))
        key = (network, batch)
        fresh = key not in self._bound
        if fresh:
            outputs = {}
            for name, shape, _ in io_spec(self.config, network)[1]:
                concrete = [batch if d == "batch" else d for d in shape]
                outputs[name] = ort.OrtValue.ortvalue_from_shape_and_type(concrete, np.float32, self.buffer_device,
                                                                          self.device_id)
            self._bound[key] = outputs
            while len(self._bound) > MAX_BOUND_SHAPES:
                self._bound.popitem(last=False)
        self._bound.move_to_end(key)
        binding = session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, array)
        for name, value in self._bound[key].items():
            binding.bind_ortvalue_output(name, value)
        if fresh:
            session.run_with_iobinding(binding)  # warm-up: kernel/algorithm selection for this shape
        session.run_with_iobinding(binding)
        return [value.numpy() for value in self._bound[key].values()]

    # ---- the interface --------------------------------------------------------------------------------------
    def _run_mapping(self, latent: np.ndarray, domain: np.ndarray) -> np.ndarray:
        return self._run("mapping_network", {"latent": latent, "domain": domain})[0]

    def _run_encode(self, image: np.ndarray, domain: np.ndarray) -> np.ndarray:
        return self._run("style_encoder", {"image": image, "domain": domain})[0]

    def _run_generate(self, image: np.ndarray, style: np.ndarray, masks: Optional[Masks]) -> np.ndarray:
        feeds = {"image": image, "style": style}
        if masks is not None:
            feeds["mask0"], feeds["mask1"] = masks
        return self._run("generator", feeds)[0]

    def _run_heatmap(self, image: np.ndarray) -> Masks:
        mask0, mask1 = self._run("fan", {"image": image})
        return mask0, mask1

    def describe(self) -> str:
        first = self.providers[0] if isinstance(self.providers[0], str) else self.providers[0][0]
        return f"{self.name} ({self.device}, {self.precision}, {first}, {self.threads} threads)"

    def close(self) -> None:
        self._bound.clear()
        self._sessions.clear()
