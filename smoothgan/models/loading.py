"""Networks of a model built from its weights: the one path bundles, training checkpoints and benchmarks share.

``new_networks`` builds the inference set of a config (generator, mapping network, style encoder, and the FAN
when ``w_hpf > 0``); ``load_networks`` fills it strictly from per-network state dicts (every key, every shape)
and returns the modules in eval mode on a device.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from smoothgan.config import ModelConfig
from smoothgan.errors import CheckpointError, SmoothganError
from smoothgan.models.fan import FAN
from smoothgan.models.stargan_v2 import build_networks

States = Mapping[str, Mapping[str, Any]]  # network name -> state dict (torch tensors or numpy arrays)


def _summarise(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def load_state_strict(module: nn.Module, state: Mapping[str, Any], what: str) -> None:
    """Load ``state`` into ``module`` requiring exactly its keys and shapes; one-line error listing problems."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {_summarise(missing)}")
    if unexpected:
        problems.append(f"unexpected {_summarise(unexpected)}")
    if misshaped:
        problems.append(f"wrong shape {_summarise(misshaped)}")
    if problems:
        raise CheckpointError(f"{what}: " + "; ".join(problems))
    module.load_state_dict({k: torch.as_tensor(state[k]).to(expected[k].dtype) for k in expected}, strict=True)


def new_networks(config: ModelConfig, discriminator: bool = False) -> dict[str, nn.Module]:
    """The inference networks of ``config`` with fresh weights: the official set, plus the FAN when w_hpf > 0."""
    networks = build_networks(config, discriminator=discriminator)
    if config.uses_masks:
        networks["fan"] = FAN()
    return networks


def load_networks(config: ModelConfig, states: States, device: str | torch.device = "cpu",
                  source: str = "weights", error: type[SmoothganError] = CheckpointError) -> dict[str, nn.Module]:
    """Inference networks of ``config`` loaded strictly from ``states`` (name -> state dict), eval mode, on
    ``device``. ``source`` names where the states came from in errors; a network without states raises ``error``.
    """
    networks = new_networks(config)
    for name, module in networks.items():
        if name not in states:
            raise error(f"{source} has no weights for {name}")
        load_state_strict(module, states[name], f"{source}: {name}")
        module.eval().to(device)
    return networks


__all__ = ["load_networks", "load_state_strict", "new_networks"]
