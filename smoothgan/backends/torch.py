"""PyTorch backend: the reference path (fp32 eager) and autocast half precision on CUDA."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from smoothgan.backends.base import Backend, Masks
from smoothgan.errors import BackendError

if TYPE_CHECKING:
    from smoothgan.bundle import ModelBundle

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """A torch device, refusing CUDA where none is present with a clear message."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError("device 'cuda' was asked for but PyTorch sees no CUDA GPU")
    if device != "cpu" and not device.startswith("cuda"):
        raise BackendError(f"unknown device {device!r}: use cpu or cuda")
    return torch.device(device)


class TorchBackend(Backend):
    """Runs the bundle's torch modules; numpy in, numpy out (see :class:`Backend`)."""

    name = "torch"

    def __init__(self, bundle: "ModelBundle", device: str = "cpu", precision: str = "fp32",
                 channels_last: bool = False, compile: bool = False, compile_mode: Optional[str] = None) -> None:
        super().__init__(bundle.config, device, precision)
        self.torch_device = resolve_device(device)
        if precision == "fp16" and self.torch_device.type != "cuda":
            raise BackendError("fp16 on the torch backend needs --device cuda (use fp32 or bf16 on CPU)")
        self.networks = bundle.build_networks(str(self.torch_device))
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            for net in self.networks.values():
                net.to(memory_format=torch.channels_last)
        if compile:
            # CUDA graphs ("reduce-overhead") remove launch gaps on GPU; plain inductor on CPU. Never max-autotune:
            # its search can take many minutes. Each new batch shape compiles (and captures) once.
            mode = compile_mode or ("reduce-overhead" if self.torch_device.type == "cuda" else None)
            for name in ("generator", "mapping_network", "style_encoder"):
                self.networks[name] = torch.compile(self.networks[name], mode=mode, dynamic=False)

    @contextlib.contextmanager
    def _context(self) -> Iterator[None]:
        with torch.inference_mode():
            if self.precision in AUTOCAST_DTYPES:
                with torch.autocast(self.torch_device.type, dtype=AUTOCAST_DTYPES[self.precision]):
                    yield
            else:
                yield

    def _tensor(self, array: np.ndarray, image: bool = False) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.torch_device, non_blocking=True)
        return tensor.contiguous(memory_format=self.memory_format) if image else tensor

    def _run(self, fn: Callable[..., torch.Tensor], *args: torch.Tensor) -> np.ndarray:
        with self._context():
            out = fn(*args)
            # clone inside the context: CUDA-graph outputs are overwritten by the next replay
            return out.float().cpu().numpy()

    def _run_mapping(self, latent: np.ndarray, domain: np.ndarray) -> np.ndarray:
        return self._run(self.networks["mapping_network"], self._tensor(latent), self._tensor(domain))

    def _run_encode(self, image: np.ndarray, domain: np.ndarray) -> np.ndarray:
        return self._run(self.networks["style_encoder"], self._tensor(image, True), self._tensor(domain))

    def _run_generate(self, image: np.ndarray, style: np.ndarray, masks: Optional[Masks]) -> np.ndarray:
        generator = self.networks["generator"]
        x, s = self._tensor(image, True), self._tensor(style)
        if masks is None:
            return self._run(generator, x, s)
        m = (self._tensor(masks[0]), self._tensor(masks[1]))
        return self._run(lambda a, b: generator(a, b, m), x, s)

    def _run_heatmap(self, image: np.ndarray) -> Masks:
        with torch.inference_mode():  # the FAN always runs in fp32: its masks are thresholded at 0.1
            mask0, mask1 = self.networks["fan"].get_heatmap(self._tensor(image))
        return mask0.float().cpu().numpy(), mask1.float().cpu().numpy()
