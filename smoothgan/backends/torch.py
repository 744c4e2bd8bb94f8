"""PyTorch backend: the reference path (fp32 eager) and autocast half precision on CUDA."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch
import torch.nn.functional as F

from smoothgan.backends.base import Backend, Masks
from smoothgan.errors import BackendError
from smoothgan.models.stargan_v2 import HPF_RESOLUTIONS, INV_SQRT2, AdainResBlk, Generator, ResBlk

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


# ---- CPU inference path ------------------------------------------------------------------------------------------
# Profiled on the 2-core AMD EPYC (AVX-512) development machine, AFHQ-like 256x256, one image, mapping + generator
# (ONEDNN_VERBOSE=profile_exec and torch.profiler): the stock modules spend ~40% of oneDNN time in *reorders*,
# every convolution converting its NCHW input to oneDNN's blocked layout and its output back; channels_last
# removes them, but then InstanceNorm (batch_norm on a [1, B*C, H, W] view) copies every activation to NCHW and
# back, so channels_last alone was 8% slower (1.43 vs 1.32 s CPU, one thread). The official code has the same
# costs; the fused forward below removes them: instance norm as var_mean + one addcmul (layout-agnostic, AdaIN's
# (1 + gamma) and beta folded into the same scale/shift, LeakyReLU in place), channels_last activations, the
# nearest-2x upsample + 3x3 conv of each up block as four 2x2 phase convolutions on the low-resolution input
# (16 instead of 36 MACs per output pixel and channel pair: 17 of the generator's 49 GMAC at 256px become 7.5),
# and the 1x1 shortcut convolution before the upsample (it commutes with nearest upsampling; 4x fewer MACs).
# Measured one thread, CPU time, 1 image: official 1.285 s, stock 1.32 s, fused NCHW 1.09 s, fused
# channels_last 0.997 s (1.29x); batch 4: official 6.48 s, fused channels_last 4.44 s (1.46x). Outputs differ
# from the stock modules by float rounding only (max abs 6e-5 on outputs of magnitude ~4, random He weights).
# Prepacked oneDNN weights (torch.ops.mkldnn._reorder_convolution_weight) saved 2.3 ms of 12.8 ms on a 512x512
# conv at 16x16 but nothing at 64x64 (~2% of a call): not worth a private op.


def _phase_weights(weight: torch.Tensor) -> torch.Tensor:
    """3x3 kernels [O, I, 3, 3] -> the four 2x2 phase kernels [4 * O, I, 2, 2] of conv3x3(upsample2x(x)).

    Output pixel (2i + a, 2j + b) of the upsampled convolution reads low-resolution rows (i - 1, i) when a = 0
    (kernel rows 0 and 1 + 2) and (i, i + 1) when a = 1 (rows 0 + 1 and 2); columns likewise with b. Phase
    ``2a + b`` occupies output channels ``[(2a + b) * O, (2a + b + 1) * O)``.
    """
    def fold(w: torch.Tensor, dim: int, phase: int) -> torch.Tensor:
        first, middle, last = w.unbind(dim)
        pair = (first, middle + last) if phase == 0 else (first + middle, last)
        return torch.stack(pair, dim)

    return torch.cat([fold(fold(weight, 2, a), 3, b) for a in (0, 1) for b in (0, 1)]).contiguous()


def _upsample_conv(x: torch.Tensor, phases: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """conv3x3(nearest_upsample2x(x)) with padding 1, from :func:`_phase_weights`: [B, C, H, W] -> [B, O, 2H, 2W]."""
    batch, _, height, width = x.shape
    out_channels = phases.shape[0] // 4
    y = F.conv2d(F.pad(x, (1, 1, 1, 1)), phases)  # [B, 4 * O, H + 1, W + 1]
    out = torch.empty((batch, out_channels, 2 * height, 2 * width), dtype=y.dtype, device=y.device,
                      memory_format=torch.channels_last)
    for a in (0, 1):
        for b in (0, 1):
            p = 2 * a + b
            out[:, :, a::2, b::2] = y[:, p * out_channels:(p + 1) * out_channels, a:a + height, b:b + width]
    return out if bias is None else out.add_(bias.view(1, -1, 1, 1))


def _norm_act(x: torch.Tensor, eps: float, scale: Optional[torch.Tensor] = None,
              shift: Optional[torch.Tensor] = None) -> torch.Tensor:
    """LeakyReLU(0.2)(IN(x) * scale + shift) in two passes over x; scale/shift broadcast as [B or 1, C, 1, 1]."""
    var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
    a = torch.rsqrt(var + eps)
    if scale is not None:
        a = a * scale
    b = -mean * a if shift is None else shift - mean * a
    return F.leaky_relu_(torch.addcmul(b, x, a), 0.2)


class FusedGenerator:
    """The generator's forward for inference on CPU, on the same modules and weights (see the notes above)."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator.to(memory_format=torch.channels_last)
        self.phases = {i: _phase_weights(block.conv1.weight.detach()).contiguous(memory_format=torch.channels_last)
                       for i, block in enumerate(generator.decode) if block.upsample}

    def _encode_block(self, block: ResBlk, x: torch.Tensor) -> torch.Tensor:
        shortcut = block.conv1x1(x) if block.learned_sc else x
        if block.downsample:
            shortcut = F.avg_pool2d(shortcut, 2)
        norm1, norm2 = block.norm1, block.norm2
        h = block.conv1(_norm_act(x, norm1.eps, norm1.weight.view(1, -1, 1, 1), norm1.bias.view(1, -1, 1, 1)))
        if block.downsample:
            h = F.avg_pool2d(h, 2)
        h = block.conv2(_norm_act(h, norm2.eps, norm2.weight.view(1, -1, 1, 1), norm2.bias.view(1, -1, 1, 1)))
        return h.add_(shortcut).mul_(INV_SQRT2)

    def _decode_block(self, index: int, block: AdainResBlk, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        gamma1, beta1 = block.norm1.fc(s)[:, :, None, None].chunk(2, dim=1)  # [B, C, 1, 1] each
        h = _norm_act(x, block.norm1.norm.eps, 1 + gamma1, beta1)
        if block.upsample:
            h = _upsample_conv(h, self.phases[index], block.conv1.bias)
        else:
            h = block.conv1(h)
        gamma2, beta2 = block.norm2.fc(s)[:, :, None, None].chunk(2, dim=1)
        h = block.conv2(_norm_act(h, block.norm2.norm.eps, 1 + gamma2, beta2))
        if block.w_hpf > 0:
            return h
        shortcut = block.conv1x1(x) if block.learned_sc else x  # 1x1 conv first: it commutes with the upsample
        if block.upsample:
            shortcut = F.interpolate(shortcut, scale_factor=2, mode="nearest")
        return h.add_(shortcut).mul_(INV_SQRT2)

    def __call__(self, x: torch.Tensor, s: torch.Tensor,
                 masks: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """Same contract as :meth:`Generator.forward`."""
        g = self.generator
        use_masks = masks is not None and g.w_hpf > 0
        h = g.from_rgb(x.contiguous(memory_format=torch.channels_last))
        cache: dict[int, torch.Tensor] = {}
        for block in g.encode:
            if use_masks and h.shape[2] in HPF_RESOLUTIONS:
                cache[h.shape[2]] = h
            h = self._encode_block(block, h)
        for index, block in enumerate(g.decode):
            h = self._decode_block(index, block, h, s)
            size = h.shape[2]
            if use_masks and size in HPF_RESOLUTIONS:
                mask = masks[0] if size == 32 else masks[1]
                mask = F.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False)
                h = h + g.hpf(mask * cache[size])
        norm = g.to_rgb[0]
        h = _norm_act(h, norm.eps, norm.weight.view(1, -1, 1, 1), norm.bias.view(1, -1, 1, 1))
        return g.to_rgb[2](h).contiguous()


class TorchBackend(Backend):
    """Runs the bundle's torch modules; numpy in, numpy out (see :class:`Backend`)."""

    name = "torch"

    def __init__(self, bundle: "ModelBundle", device: str = "cpu", precision: str = "fp32",
                 channels_last: bool = False, compile: bool = False, compile_mode: Optional[str] = None,
                 fused: Optional[bool] = None) -> None:
        """``fused`` (default: on for CPU fp32 without ``compile``) runs :class:`FusedGenerator` in place of the
        stock generator forward and keeps generator and style encoder in channels_last."""
        super().__init__(bundle.config, device, precision)
        self.torch_device = resolve_device(device)
        if precision == "fp16" and self.torch_device.type != "cuda":
            raise BackendError("fp16 on the torch backend needs --device cuda (use fp32 or bf16 on CPU)")
        if fused and compile:
            raise BackendError("fused and compile are alternatives: choose one")
        self.networks = bundle.build_networks(str(self.torch_device))
        self.fused = (self.torch_device.type == "cpu" and precision == "fp32" and not compile) if fused is None \
            else fused
        if self.fused:
            self.networks["style_encoder"].to(memory_format=torch.channels_last)  # no norms: no copies in NHWC
            channels_last = True
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last and not self.fused:
            for net in self.networks.values():
                net.to(memory_format=torch.channels_last)
        if compile:
            # CUDA graphs ("reduce-overhead") remove launch gaps on GPU; plain inductor on CPU. Never max-autotune:
            # its search can take many minutes. Each new batch shape compiles (and captures) once.
            mode = compile_mode or ("reduce-overhead" if self.torch_device.type == "cuda" else None)
            for name in ("generator", "mapping_network", "style_encoder"):
                self.networks[name] = torch.compile(self.networks[name], mode=mode, dynamic=False)
        generator = self.networks["generator"]
        self._generator: Callable[..., torch.Tensor] = FusedGenerator(generator) if self.fused else generator

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
        generator = self._generator
        x, s = self._tensor(image, True), self._tensor(style)
        if masks is None:
            return self._run(generator, x, s)
        m = (self._tensor(masks[0]), self._tensor(masks[1]))
        return self._run(lambda a, b: generator(a, b, m), x, s)

    def _run_heatmap(self, image: np.ndarray) -> Masks:
        with torch.inference_mode():  # the FAN always runs in fp32: its masks are thresholded at 0.1
            mask0, mask1 = self.networks["fan"].get_heatmap(self._tensor(image))
        return mask0.float().cpu().numpy(), mask1.float().cpu().numpy()
