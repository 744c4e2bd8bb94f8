"""PyTorch networks with the official names, the FAN, and the one path from weights to modules."""

from smoothgan.models.loading import load_networks, load_state_strict, new_networks
from smoothgan.models.stargan_v2 import Discriminator, Generator, MappingNetwork, StyleEncoder, build_networks

__all__ = ["Generator", "MappingNetwork", "StyleEncoder", "Discriminator", "build_networks", "load_networks",
           "load_state_strict", "new_networks"]
