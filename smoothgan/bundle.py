"""Model bundle: the directory users pass around.

Layout::

    BUNDLE/
      smoothgan.json          format version, config, domain names, preprocessing, provenance, artefacts
      weights.safetensors     generator.*, mapping_network.*, style_encoder.* (EMA), fan.* when w_hpf > 0
      onnx/*.onnx             exported graphs (smoothgan.export.onnx)
      engines/<gpu>-<cc>-<trt>-<precision>/   TensorRT engines + manifest (smoothgan.export.tensorrt)

Reading needs only numpy + safetensors (no torch), so ONNX-only deployments can load bundles.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from smoothgan import __version__
from smoothgan.config import ModelConfig
from smoothgan.errors import BundleError, InputError
from smoothgan.fileio import sha256_file, write_json_atomic

FORMAT = "smoothgan-bundle"
FORMAT_VERSION = 1
CONFIG_FILE = "smoothgan.json"
WEIGHTS_FILE = "weights.safetensors"
MODULES = ("generator", "mapping_network", "style_encoder", "fan")
DEFAULT_PREPROCESSING = {"fit": "crop", "resample": "bilinear-antialias", "range": [-1.0, 1.0]}
ENV_MODEL = "SMOOTHGAN_MODEL"
ASSETS = Path(__file__).parent / "assets"
EMBEDDED_BUNDLE = ASSETS / "demo"  # the small smoothed model shipped in the package (see EXPERIMENTS.md)
SAMPLES_DIR = ASSETS / "samples"


@dataclass
class ModelBundle:
    """A bundle on disk: config, domain names, provenance and artefact records; weights are read on demand."""

    path: Path
    config: ModelConfig
    domains: tuple[str, ...]
    weights_sha256: str
    provenance: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PREPROCESSING))
    artifacts: dict[str, Any] = field(default_factory=dict)
    weights_dtype: str = "float32"

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS_FILE

    @property
    def is_embedded(self) -> bool:
        """True for the demo model shipped inside the package."""
        return self.path.resolve() == EMBEDDED_BUNDLE.resolve()

    @property
    def name(self) -> str:
        return self.provenance.get("name") or self.path.name

    def domain_index(self, domain: str | int) -> int:
        """Index of a domain name (or a valid index), with the known names in the error."""
        if isinstance(domain, (int, np.integer)) and not isinstance(domain, bool):
            if 0 <= int(domain) < len(self.domains):
                return int(domain)
        elif domain in self.domains:
            return self.domains.index(domain)
        elif isinstance(domain, str) and domain.isdigit() and int(domain) < len(self.domains):
            return int(domain)
        raise InputError(f"unknown domain {domain!r}; this model knows: {', '.join(self.domains)}")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "smoothgan_version": __version__,
            "config": self.config.to_dict(),
            "domains": list(self.domains),
            "preprocessing": self.preprocessing,
            "weights": {"file": WEIGHTS_FILE, "sha256": self.weights_sha256, "dtype": self.weights_dtype},
            "provenance": self.provenance,
            "artifacts": self.artifacts,
        }

    def save_metadata(self) -> None:
        """Rewrite ``smoothgan.json`` atomically (after recording a new artefact, say)."""
        write_json_atomic(self.path / CONFIG_FILE, self.to_json())

    def record_artifact(self, kind: str, key: str, record: dict[str, Any]) -> None:
        self.artifacts.setdefault(kind, {})[key] = record
        self.save_metadata()

    def load_arrays(self, module: Optional[str] = None, verify: bool = False) -> dict[str, np.ndarray]:
        """Weights as float32 numpy arrays; ``module`` keeps one network's entries with the prefix removed."""
        from safetensors.numpy import load_file

        if verify and sha256_file(self.weights_path) != self.weights_sha256:
            raise BundleError(f"{self.weights_path} does not match the sha256 recorded in {CONFIG_FILE}")
        try:
            arrays = load_file(str(self.weights_path))
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise BundleError(f"cannot read {self.weights_path}: {exc}") from exc
        out = {}
        for key, value in arrays.items():
            if module is None:
                out[key] = value.astype(np.float32) if value.dtype.kind == "f" else value
            elif key.startswith(module + "."):
                name = key[len(module) + 1:]
                out[name] = value.astype(np.float32) if value.dtype.kind == "f" else value
        return out

    def load_state_dicts(self) -> dict[str, dict[str, Any]]:
        """Per-network torch state_dicts (float32) for building torch modules."""
        import torch

        grouped: dict[str, dict[str, Any]] = {}
        for key, value in self.load_arrays().items():
            module, name = key.split(".", 1)
            grouped.setdefault(module, {})[name] = torch.from_numpy(np.array(value, copy=True))
        return grouped

    def build_networks(self, device: str = "cpu") -> dict[str, Any]:
        """Torch modules (eval mode) loaded strictly from the bundle's weights."""
        from smoothgan.models.checkpoints import load_state_strict
        from smoothgan.models.fan import FAN
        from smoothgan.models.stargan_v2 import build_networks

        states = self.load_state_dicts()
        networks = build_networks(self.config)
        if self.config.uses_masks:
            networks["fan"] = FAN()
        for name, module in networks.items():
            if name not in states:
                raise BundleError(f"{self.weights_path} has no weights for {name}")
            load_state_strict(module, states[name], f"bundle {name}")
            module.eval().to(device)
        return networks


def save_bundle(out: str | Path, networks: dict[str, Any], config: ModelConfig, domains: tuple[str, ...] | list[str],
                provenance: Optional[dict[str, Any]] = None, dtype: str = "float32",
                overwrite: bool = False) -> ModelBundle:
    """Write a new bundle directory atomically: built in a temporary sibling, then renamed into place."""
    import torch
    from safetensors.torch import save_file

    domains = tuple(domains)
    if len(domains) != config.num_domains:
        raise InputError(f"{len(domains)} domain names given for a model with {config.num_domains} domains")
    if len(set(domains)) != len(domains) or any(not d or "," in d for d in domains):
        raise InputError(f"domain names must be unique, non-empty and without commas: {', '.join(domains)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists (choose another --out or pass --overwrite)")
    torch_dtype = {"float32": torch.float32, "float16": torch.float16}[dtype]
    tensors = {}
    for module in MODULES:
        if module not in networks:
            continue
        for key, value in networks[module].state_dict().items():
            value = value.detach().cpu()
            if value.is_floating_point():
                value = value.to(torch_dtype)
            tensors[f"{module}.{key}"] = value.contiguous()
    provenance = dict(provenance or {})
    provenance.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": FORMAT})
        bundle = ModelBundle(staging, config, domains, sha256_file(staging / WEIGHTS_FILE), provenance,
                             weights_dtype=dtype)
        bundle.save_metadata()
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    bundle.path = out
    return bundle


def load_bundle(path: str | Path | None) -> ModelBundle:
    """Open a bundle directory (``path``, else ``$SMOOTHGAN_MODEL``, else the embedded demo model)."""
    if path is None or str(path) == "":
        path = os.environ.get(ENV_MODEL) or None
    if path is None:
        if not (EMBEDDED_BUNDLE / CONFIG_FILE).is_file():
            raise BundleError(
                "no model given: pass --model BUNDLE or set SMOOTHGAN_MODEL. To make a bundle from the official "
                "checkpoints: smoothgan import 100000_nets_ema.ckpt --domains female,male --wing wing.ckpt "
                "--out celeba"
            )
        path = EMBEDDED_BUNDLE
    root = Path(path)
    meta_path = root / CONFIG_FILE
    if not root.is_dir() or not meta_path.is_file():
        hint = " (that is a checkpoint file: run 'smoothgan import' first)" if root.suffix in {".ckpt", ".pt"} else ""
        raise BundleError(f"{root} is not a smoothgan bundle: no {CONFIG_FILE}{hint}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {meta_path}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(f"{meta_path} is not a smoothgan bundle description")
    if meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{meta_path} has format version {meta.get('format_version')}; this smoothgan reads {FORMAT_VERSION}"
        )
    try:
        config = ModelConfig.from_dict(meta["config"])
        domains = tuple(meta["domains"])
        weights = meta["weights"]
    except (KeyError, TypeError) as exc:
        raise BundleError(f"{meta_path} lacks {exc}") from None
    if len(domains) != config.num_domains:
        raise BundleError(f"{meta_path}: {len(domains)} domain names for {config.num_domains} domains")
    if not (root / WEIGHTS_FILE).is_file():
        raise BundleError(f"{root} has no {WEIGHTS_FILE}")
    return ModelBundle(
        path=root,
        config=config,
        domains=domains,
        weights_sha256=weights.get("sha256", ""),
        provenance=meta.get("provenance", {}),
        preprocessing=meta.get("preprocessing", dict(DEFAULT_PREPROCESSING)),
        artifacts=meta.get("artifacts", {}),
        weights_dtype=weights.get("dtype", "float32"),
    )


def artifact_path(bundle: ModelBundle, relative: str) -> Path:
    """Absolute path of an artefact recorded relative to the bundle root."""
    return bundle.path / relative


__all__ = ["ModelBundle", "save_bundle", "load_bundle", "ENV_MODEL", "EMBEDDED_BUNDLE", "SAMPLES_DIR"]
