"""Model bundle: the directory users pass around.

Layout::

    BUNDLE/
      smoothgan.json          format version, config, domain names, preprocessing, provenance, artefacts
      weights.safetensors     generator.*, mapping_network.*, style_encoder.* (EMA), fan.* when w_hpf > 0
      onnx/*.onnx             exported graphs (smoothgan.export.onnx)
      engines/<gpu>-<cc>-<trt>-<precision>/   TensorRT engines + manifest (smoothgan.export.tensorrt)

Reading needs only numpy + safetensors (no torch), so ONNX-only deployments can load bundles.

:func:`load_bundle` validates the whole of ``smoothgan.json`` once (every error names the file and the key), reads
the safetensors header (every tensor is ``<network>.<param>`` of a known network, all needed networks present,
the file not truncated) and checks the weights against the sha256 recorded at import, through a per-user cache
(:func:`smoothgan.fileio.cached_sha256`). Everything downstream that trusts ``weights_sha256`` (backends refusing
stale ONNX graphs / TensorRT engines, sidecars recording ``model_sha256``) therefore sees the hash of the file that
is really there. :func:`save_bundle` replaces only an existing bundle, and atomically.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Optional

import numpy as np

from smoothgan import __version__
from smoothgan.config import ModelConfig, check_value, describe, strict_from_dict
from smoothgan.errors import BundleError, InputError, SmoothganError
from smoothgan.fileio import (atomic_dir, cached_sha256, clean_stale, is_staging_name, read_marker, sha256_file,
                              target_entries, write_json_atomic)
from smoothgan.images import FIT_MODES

FORMAT = "smoothgan-bundle"
FORMAT_VERSION = 1
CONFIG_FILE = "smoothgan.json"
WEIGHTS_FILE = "weights.safetensors"
MODULES = ("generator", "mapping_network", "style_encoder", "fan")
DEFAULT_PREPROCESSING = {"fit": "crop", "resample": "bilinear-antialias", "range": [-1.0, 1.0], "align": "none"}
ALIGN_MODES = ("none", "face")  # "face": photos are aligned to CelebA-HQ crops before translation
ENV_MODEL = "SMOOTHGAN_MODEL"
ASSETS = Path(__file__).parent / "assets"
EMBEDDED_BUNDLE = ASSETS / "demo"  # the small smoothed model shipped in the package (see EXPERIMENTS.md)
SAMPLES_DIR = ASSETS / "samples"
BUNDLE_ENTRIES = (CONFIG_FILE, WEIGHTS_FILE, "onnx", "engines")  # what a bundle folder may hold at its top level
WEIGHT_DTYPES = ("float32", "float16")
TOP_KEYS = ("format", "format_version", "smoothgan_version", "config", "domains", "preprocessing", "weights",
            "provenance", "artifacts")
REQUIRED_KEYS = ("format", "format_version", "config", "domains", "weights")
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit for the JSON header
REBUILD_HINT = ("re-import it (smoothgan import CHECKPOINT --out BUNDLE --overwrite), then rebuild its graphs and "
                "engines (smoothgan export --model BUNDLE)")


@dataclass(frozen=True)
class Preprocessing:
    """``smoothgan.json`` ``preprocessing``: how images become model input.

    ``align``: ``"face"`` for models trained on CelebA-HQ-style face crops (photos are aligned with
    :mod:`smoothgan.faces` first: ``smoothgan translate --align auto``), ``"none"`` for whole images.
    """

    fit: str = "crop"
    resample: str = "bilinear-antialias"
    range: tuple[float, float] = (-1.0, 1.0)
    align: str = "none"

    def __post_init__(self) -> None:
        if self.fit not in FIT_MODES:
            raise BundleError(f"fit must be one of {', '.join(FIT_MODES)}, got {self.fit!r}")
        if self.align not in ALIGN_MODES:
            raise BundleError(f"align must be one of {', '.join(ALIGN_MODES)}, got {self.align!r}")
        if self.resample != "bilinear-antialias":
            raise BundleError(f"resample must be 'bilinear-antialias' (the only one implemented), got "
                              f"{self.resample!r}")
        if tuple(self.range) != (-1.0, 1.0):
            raise BundleError(f"range must be [-1.0, 1.0] (what the networks were trained on), got {list(self.range)}")

    def to_dict(self) -> dict[str, Any]:
        return {"fit": self.fit, "resample": self.resample, "range": list(self.range), "align": self.align}


@dataclass(frozen=True)
class WeightsRecord:
    """``smoothgan.json`` ``weights``: the file name, its sha256 at import and the stored float dtype."""

    file: str
    sha256: str
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.file != WEIGHTS_FILE:
            raise BundleError(f"file must be {WEIGHTS_FILE!r}, got {self.file!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise BundleError(f"sha256 must be 64 lowercase hex digits, got {describe(self.sha256)}")
        if self.dtype not in WEIGHT_DTYPES:
            raise BundleError(f"dtype must be one of {', '.join(WEIGHT_DTYPES)}, got {self.dtype!r}")


def check_domains(domains: Any, num_domains: int, where: str, error: type[SmoothganError]) -> tuple[str, ...]:
    """Domain names in index order: a list of ``num_domains`` unique, non-empty strings without commas."""
    if not isinstance(domains, (list, tuple)):
        raise error(f"{where} must be a list of domain names, got {describe(domains)}")
    names = tuple(check_value(d, str, f"{where}[{i}]", error) for i, d in enumerate(domains))
    bad = [n for n in names if not n.strip() or "," in n or n != n.strip()]
    if bad:
        raise error(f"{where}: domain names must be non-empty, without commas or surrounding spaces: {bad[0]!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise error(f"{where}: domain names must be unique; repeated: {', '.join(duplicates)}")
    if len(names) != num_domains:
        raise error(f"{where}: {len(names)} domain names for {num_domains} domains")
    return names


def _check_provenance(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BundleError(f"{where} must be an object, got {describe(value)}")
    for key, hint in (("name", str), ("source", str), ("source_sha256", str), ("kind", str), ("created", str)):
        if key in value:
            check_value(value[key], hint, f"{where}.{key}")
    if "notes" in value:
        check_value(value["notes"], tuple[str, ...], f"{where}.notes")
    return value


def _check_artifacts(value: Any, where: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``{kind: {key: record}}`` with every record an object and every ``path`` relative, inside the bundle."""
    if not isinstance(value, dict):
        raise BundleError(f"{where} must be an object of artefact kinds, got {describe(value)}")
    for kind, records in value.items():
        if not isinstance(records, dict):
            raise BundleError(f"{where}.{kind} must be an object of artefact records, got {describe(records)}")
        for key, record in records.items():
            if not isinstance(record, dict):
                raise BundleError(f"{where}.{kind}.{key} must be an object (an artefact record), got "
                                  f"{describe(record)}")
            if "path" in record:
                rel = check_value(record["path"], str, f"{where}.{kind}.{key}.path")
                pure = PurePosixPath(rel)
                if not rel or pure.is_absolute() or ".." in pure.parts or "\\" in rel:
                    raise BundleError(f"{where}.{kind}.{key}.path must be a relative path inside the bundle, "
                                      f"got {rel!r}")
    return value


def parse_metadata(meta: Any, meta_path: Path) -> dict[str, Any]:
    """Validate a whole ``smoothgan.json`` document; the checked pieces, ready for :class:`ModelBundle`."""
    if not isinstance(meta, dict):
        raise BundleError(f"{meta_path} must hold a JSON object, got {describe(meta)}")
    unknown = sorted(k for k in meta if k not in TOP_KEYS)
    if unknown:
        raise BundleError(f"{meta_path}: unknown keys {', '.join(unknown)} (known: {', '.join(TOP_KEYS)})")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise BundleError(f"{meta_path}: missing keys {', '.join(missing)}")
    if "smoothgan_version" in meta:
        check_value(meta["smoothgan_version"], str, f"{meta_path}: smoothgan_version")
    config = ModelConfig.from_dict(meta["config"], where=f"{meta_path}: config")
    domains = check_domains(meta["domains"], config.num_domains, f"{meta_path}: domains", BundleError)
    preprocessing = strict_from_dict(Preprocessing, meta.get("preprocessing", {}), f"{meta_path}: preprocessing")
    weights = strict_from_dict(WeightsRecord, meta["weights"], f"{meta_path}: weights")
    return {
        "config": config,
        "domains": domains,
        "weights_sha256": weights.sha256,
        "weights_dtype": weights.dtype,
        "preprocessing": preprocessing.to_dict(),
        "provenance": _check_provenance(meta.get("provenance", {}), f"{meta_path}: provenance"),
        "artifacts": _check_artifacts(meta.get("artifacts", {}), f"{meta_path}: artifacts"),
    }


def read_safetensors_header(path: Path) -> dict[str, dict[str, Any]]:
    """Tensor entries of a safetensors file's header (name -> dtype, shape, data_offsets), checked for sanity.

    Reads only the header (8 bytes + its JSON); the data offsets are compared with the file size, so a truncated
    file is caught here rather than as a read error in the middle of a job.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if length < 2 or length > min(MAX_HEADER_BYTES, size - 8):
                raise BundleError(f"{path} is not a safetensors file (no valid header; empty or truncated?)")
            raw = handle.read(length)
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BundleError(f"{path} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise BundleError(f"{path} is not a safetensors file (its header is not an object)")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    data_size = size - 8 - length
    for name, entry in tensors.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise BundleError(f"{path}: tensor {name!r} has a malformed header entry")
        if offsets[1] > data_size:
            raise BundleError(f"{path} is truncated: tensor {name!r} ends at byte {offsets[1]} of {data_size}")
    return tensors


def check_weight_names(names: Any, config: ModelConfig, path: Path) -> None:
    """Every tensor is ``<network>.<param>`` of a known network; the networks the config needs are all there."""
    modules = set()
    for name in names:
        module, dot, param = name.partition(".")
        if not dot or not param or module not in MODULES:
            raise BundleError(f"{path}: tensor {name!r} is not named <network>.<parameter> with a network among "
                              f"{', '.join(MODULES)}")
        modules.add(module)
    needed = [m for m in MODULES[:3] + (("fan",) if config.uses_masks else ()) if m not in modules]
    if needed:
        raise BundleError(f"{path} has no weights for {', '.join(needed)}")


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
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        if verify and sha256_file(self.weights_path) != self.weights_sha256:
            raise BundleError(f"{self.weights_path} does not match the sha256 recorded in {CONFIG_FILE}: "
                              f"{REBUILD_HINT}")
        try:
            arrays = load_file(str(self.weights_path))
        except (OSError, SafetensorError) as exc:
            raise BundleError(f"cannot read {self.weights_path}: {exc}") from None
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
        """Torch modules (eval mode) loaded strictly from the bundle's weights (``models.load_networks``)."""
        from smoothgan.models.loading import load_networks

        return load_networks(self.config, self.load_state_dicts(), device, source=str(self.weights_path),
                             error=BundleError)


def is_bundle(path: str | Path) -> bool:
    """True for a real folder (not a link) whose ``smoothgan.json`` carries the bundle format marker."""
    root = Path(path)
    meta = root / CONFIG_FILE
    if root.is_symlink() or not root.is_dir() or meta.is_symlink() or not meta.is_file():
        return False
    try:
        read_marker(meta, FORMAT, FORMAT_VERSION, BundleError, "a smoothgan bundle description")
    except BundleError:
        return False
    return True


def check_replaceable(out: str | Path, overwrite: bool) -> None:
    """Refuse (InputError, one line) to write a bundle at ``out`` unless that loses nothing of the user's.

    Allowed: nothing at ``out``, an empty folder, or with ``overwrite`` a bundle holding only bundle entries
    (``BUNDLE_ENTRIES`` and our own staging leftovers). A file, a link, a folder of other things or a bundle with
    extra files is never replaced.
    """
    out = Path(out)
    entries = target_entries(out)
    if not entries:
        return
    if not is_bundle(out):
        raise InputError(f"{out} exists and is not a smoothgan bundle (no {CONFIG_FILE} with the bundle format); "
                         "refusing to replace it (choose another --out)")
    if not overwrite:
        raise InputError(f"{out} already exists (choose another --out or pass --overwrite)")
    foreign = [name for name in entries if name not in BUNDLE_ENTRIES and not is_staging_name(name)]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" (+{len(foreign) - 5} more)" if len(foreign) > 5 else "")
        raise InputError(f"{out} holds files that are not part of a bundle ({shown}); refusing to replace it "
                         "(move them away or choose another --out)")


def save_bundle(out: str | Path, networks: dict[str, Any], config: ModelConfig, domains: tuple[str, ...] | list[str],
                provenance: Optional[dict[str, Any]] = None, dtype: str = "float32",
                overwrite: bool = False, preprocessing: Optional[dict[str, Any]] = None) -> ModelBundle:
    """Write a bundle directory atomically: built in a hidden staging sibling, then swapped into place.

    ``out`` may be missing, an empty folder, or (with ``overwrite``) an existing bundle; anything else is refused
    before any work (:func:`check_replaceable`) and checked again just before the swap. ``preprocessing`` keys
    (e.g. ``{"align": "face"}``) override the defaults.
    """
    import torch
    from safetensors.torch import save_file

    domains = check_domains(list(domains), config.num_domains, "domain names", InputError)
    prep = strict_from_dict(Preprocessing, {**DEFAULT_PREPROCESSING, **(preprocessing or {})}, "preprocessing",
                            InputError).to_dict()
    if dtype not in WEIGHT_DTYPES:
        raise InputError(f"weights dtype must be one of {', '.join(WEIGHT_DTYPES)}, got {dtype!r}")
    out = Path(out)
    check_replaceable(out, overwrite)
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
    with atomic_dir(out, before_replace=lambda target: check_replaceable(target, overwrite)) as staging:
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": FORMAT})
        bundle = ModelBundle(staging, config, domains, sha256_file(staging / WEIGHTS_FILE), provenance,
                             preprocessing=prep, weights_dtype=dtype)
        bundle.save_metadata()
    bundle.path = out
    return bundle


def load_bundle(path: str | Path | None, verify: bool = True) -> ModelBundle:
    """Open a bundle directory (``path``, else ``$SMOOTHGAN_MODEL``, else the embedded demo model).

    The whole ``smoothgan.json`` and the weights' header are validated; with ``verify`` (the default) the weights
    file is checked against its recorded sha256 (cached per file identity: ~0.05 ms when unchanged, a full hash,
    ~0.4 s for a 293 MB CelebA-HQ bundle, when it changed). This is the check every backend (exported graphs and
    engines are stamped with that sha256) and every sidecar's ``model_sha256`` rely on.
    """
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
    if not root.exists() and not root.is_symlink():
        clean_stale(root.parent, root.name)  # a replacement killed between its two renames: restore the bundle
    if not root.is_dir() or not meta_path.is_file():
        hint = " (that is a checkpoint file: run 'smoothgan import' first)" if root.suffix in {".ckpt", ".pt"} else ""
        missing = "no such folder" if not root.exists() else f"no {CONFIG_FILE}"
        raise BundleError(f"{root} is not a smoothgan bundle: {missing}{hint}")
    meta = read_marker(meta_path, FORMAT, FORMAT_VERSION, BundleError, "a smoothgan bundle description")
    parsed = parse_metadata(meta, meta_path)
    weights_path = root / WEIGHTS_FILE
    if not weights_path.is_file():
        raise BundleError(f"{root} has no {WEIGHTS_FILE}")
    check_weight_names(read_safetensors_header(weights_path), parsed["config"], weights_path)
    if verify:
        try:
            actual = cached_sha256(weights_path)
        except OSError as exc:
            raise BundleError(f"cannot read {weights_path}: {exc.strerror or exc}") from None
        if actual != parsed["weights_sha256"]:
            raise BundleError(
                f"{weights_path} is not the file this bundle was made with (sha256 {actual[:12]}, {CONFIG_FILE} "
                f"records {parsed['weights_sha256'][:12]}): its exported graphs and sidecars would be wrong; "
                f"{REBUILD_HINT}"
            )
    return ModelBundle(path=root, **parsed)


def artifact_path(bundle: ModelBundle, relative: str) -> Path:
    """Absolute path of an artefact recorded relative to the bundle root."""
    return bundle.path / relative


__all__ = ["ModelBundle", "save_bundle", "load_bundle", "check_replaceable", "is_bundle", "check_domains", "ENV_MODEL", "EMBEDDED_BUNDLE", "SAMPLES_DIR"]
