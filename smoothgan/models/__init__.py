"""PyTorch networks with the official names, the FAN, and the official checkpoint formats."""

from smoothgan.models.stargan_v2 import Discriminator, Generator, MappingNetwork, StyleEncoder, build_networks

__all__ = ["Generator", "MappingNetwork", "StyleEncoder", "Discriminator", "build_networks"]
