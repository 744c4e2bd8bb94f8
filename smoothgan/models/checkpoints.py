"""Official checkpoint formats: ``*_nets_ema.ckpt``, ``*_nets.ckpt`` and ``wing.ckpt`` (REFERENCE.md section 1).

Every quirk of the official files is handled here and nowhere else: ``module.`` prefixes, the ``hpf.filter``
constant that released files lack, an extra ``fan`` entry in AFHQ files, and configuration that must be
inferred from tensor shapes because the files store none (nor domain names). Loading is strict: missing,
unexpected or mis-shaped keys are an error listing them, never a silent ``strict=False``.
"""

from __future__ import annotations

import io
import logging
import math
import pickle
import pickletools
import stat
import struct
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch
from torch import nn

from smoothgan.config import ModelConfig
from smoothgan.errors import CheckpointError, SmoothganError
from smoothgan.models.fan import FAN
from smoothgan.models.loading import load_state_strict
from smoothgan.models.stargan_v2 import HighPass, build_networks

if TYPE_CHECKING:
    from smoothgan.bundle import ModelBundle

log = logging.getLogger(__name__)

INFERENCE_MODULES = ("generator", "mapping_network", "style_encoder")
KNOWN_ENTRIES = (*INFERENCE_MODULES, "discriminator", "fan")
DEFAULT_W_HPF = 1.0  # the only value any released hpf model uses; files without hpf.filter do not record it


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format since 1.6
PICKLE_MAGIC = b"\x80"  # legacy torch.save (the released StarGAN v2 files): pickle protocol 2+
# Globals a weights_only load may meet in a plain checkpoint; anything else named in the pickle is reported.
_PLAIN_GLOBALS = ("torch.", "collections.OrderedDict", "builtins.set", "builtins.frozenset", "builtins.bytearray",
                  "builtins.slice", "_codecs.encode", "numpy.")
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # protocol 2 names what Python 3 calls these


def _pickle_globals(stream: io.BufferedIOBase | io.BytesIO, pickles: int) -> list[str]:
    """``module.name`` of every global the first ``pickles`` pickles of ``stream`` import (nothing is executed).

    ``GLOBAL``/``INST`` carry the name; ``STACK_GLOBAL`` takes the last two strings pushed (directly or from the
    memo), which is how protocol 4 writes them.
    """
    found: list[str] = []
    for _ in range(pickles):
        strings: list[str] = []
        memo: dict[int, str] = {}
        try:
            for opcode, arg, _pos in pickletools.genops(stream):
                if opcode.name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING",
                                     "BINSTRING", "SHORT_BINSTRING"):
                    strings.append(str(arg))
                elif opcode.name == "MEMOIZE" and strings:
                    memo[len(memo)] = strings[-1]
                elif opcode.name in ("BINPUT", "LONG_BINPUT", "PUT") and strings:
                    memo[int(arg)] = strings[-1]
                elif opcode.name in ("BINGET", "LONG_BINGET", "GET") and int(arg) in memo:
                    strings.append(memo[int(arg)])
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
        except (ValueError, EOFError, struct.error, UnicodeDecodeError):
            break  # a malformed pickle: report what was found before the damage
    return found


def _blocked_globals(path: Path) -> list[str]:
    """Globals in the checkpoint's pickle that are not tensors or plain containers (for the refusal message)."""
    try:
        with open(path, "rb") as handle:
            if handle.read(4) == ZIP_MAGIC:
                with zipfile.ZipFile(handle) as archive:
                    name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                    if name is None:
                        return []
                    with archive.open(name) as member:
                        names = _pickle_globals(io.BytesIO(member.read()), 1)
            else:
                handle.seek(0)
                names = _pickle_globals(handle, 4)  # legacy: magic number, protocol, sys info, the object
    except (OSError, zipfile.BadZipFile):
        return []
    names = [_PY2_MODULES.get(n.split(".")[0], n.split(".")[0]) + n[len(n.split(".")[0]):] for n in names]
    return list(dict.fromkeys(n for n in names if not n.startswith(_PLAIN_GLOBALS)))


def _load_failure(path: Path, exc: BaseException, magic: bytes) -> CheckpointError:
    """One line, in our words, for a ``torch.load(weights_only=True)`` failure (torch's text advises unsafe
    loading and hides the blocked call, so it is never shown)."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and "weights only" in text.lower():
        blocked = _blocked_globals(path)
        if blocked:
            shown = ", ".join(blocked[:3]) + (f" and {len(blocked) - 3} more" if len(blocked) > 3 else "")
            return CheckpointError(f"cannot read checkpoint {path}: refused: the file contains code ({shown}); "
                                   "smoothgan loads only tensors and plain containers")
        return CheckpointError(f"cannot read checkpoint {path}: refused: the file holds objects other than tensors "
                               "and plain containers")
    if magic == ZIP_MAGIC and ("data.pkl" in text or "file not found" in text or "in archive" in text):
        return CheckpointError(f"cannot read checkpoint {path}: a zip archive, but not a PyTorch checkpoint")
    if magic == ZIP_MAGIC:
        return CheckpointError(f"cannot read checkpoint {path}: a truncated or corrupt PyTorch zip archive")
    return CheckpointError(f"cannot read checkpoint {path}: a truncated or corrupt PyTorch checkpoint")


def load_torch_file(path: str | Path) -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``, never arbitrary pickles).

    Every failure is one :class:`CheckpointError` line: missing, a folder, unreadable, empty, not a PyTorch file,
    truncated, or refused because it contains code (the blocked globals are named).
    """
    path = Path(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise CheckpointError(f"cannot read checkpoint {path}: it is a folder, not a checkpoint file")
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"cannot read checkpoint {path}: not a regular file")
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {(exc.strerror or str(exc)).lower()}") from None
    if not magic:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty, not a PyTorch checkpoint")
    if magic != ZIP_MAGIC and not magic.startswith(PICKLE_MAGIC):
        raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch checkpoint (neither a torch.save zip "
                              "archive nor a pickle)")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files; each becomes one line in our words
        raise _load_failure(path, exc, magic) from None


def tensor_state(value: Any, what: str, path: str | Path) -> dict[str, torch.Tensor]:
    """``value`` as a state dict: a dict of string keys to tensors, else one line naming the first bad entry."""
    if not isinstance(value, Mapping):
        raise CheckpointError(f"{path}: {what} is not a state dict (found {type(value).__name__})")
    for key, tensor in value.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: {what} has a non-string key {key!r} ({type(key).__name__})")
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: {what} entry {key!r} is a {type(tensor).__name__}, not a tensor")
    return dict(value)


def strip_module_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove one leading ``module.`` (DataParallel) from every key that has it."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def _count_groups(state: dict[str, torch.Tensor], prefix: str) -> int:
    indices = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
    return len(indices)


def infer_config(entries: dict[str, dict[str, torch.Tensor]]) -> tuple[ModelConfig, list[str]]:
    """Recover the architecture from tensor shapes (REFERENCE 1.8); returns the config and notes on guesses."""
    generator, mapping, encoder = (entries[name] for name in INFERENCE_MODULES)
    notes: list[str] = []
    try:
        num_domains = _count_groups(mapping, "unshared.")
        style_dim = mapping["unshared.0.6.weight"].shape[0]
        latent_dim = mapping["shared.0.weight"].shape[1]
        mapping_dim = mapping["shared.0.weight"].shape[0]
        encoder_blocks = _count_groups(encoder, "shared.") - 2  # conv, N ResBlks, conv 4x4 (LReLUs have no keys)
        img_size = 2 ** (encoder_blocks + 2)
        start_dim = generator["from_rgb.weight"].shape[0]
        encode_blocks = _count_groups(generator, "encode.")
        widths = [t.shape[0] for state in (generator, encoder) for t in state.values() if t.dim() == 4]
        max_conv_dim = max(widths)
    except (KeyError, IndexError) as exc:
        raise CheckpointError(f"not a StarGAN v2 checkpoint: cannot find {exc} in its networks") from None
    except ValueError:
        raise CheckpointError("not a StarGAN v2 checkpoint: its networks' key names or shapes do not fit") from None
    if encoder_blocks < 2 or encoder_blocks > 12:
        raise CheckpointError(f"not a StarGAN v2 checkpoint: a style encoder with {encoder_blocks} blocks")
    uses_hpf = encode_blocks == int(math.log2(img_size)) - 2 + 1
    if not uses_hpf and encode_blocks != int(math.log2(img_size)) - 2:
        raise CheckpointError(
            f"generator has {encode_blocks} encoder blocks, which fits no w_hpf for img_size {img_size}"
        )
    w_hpf = 0.0
    if uses_hpf:
        hpf = generator.get("hpf.filter")
        if hpf is not None:
            if tuple(hpf.shape) != (3, 3) or not hpf.is_floating_point():
                raise CheckpointError(f"generator hpf.filter has shape {tuple(hpf.shape)}, not the 3x3 high-pass kernel")
            w_hpf = float(8.0 / hpf[1, 1])
        else:
            w_hpf = DEFAULT_W_HPF
            notes.append(f"hpf.filter absent: assumed w_hpf={DEFAULT_W_HPF:g} (the released CelebA-HQ value)")
    try:
        config = ModelConfig(
            img_size=img_size,
            num_domains=num_domains,
            style_dim=int(style_dim),
            latent_dim=int(latent_dim),
            w_hpf=w_hpf,
            max_conv_dim=int(max_conv_dim),  # the style encoder goes deepest; a cap never reached does not matter
            base_dim=0 if start_dim == 2**14 // img_size else int(start_dim),
            mapping_dim=int(mapping_dim),
        )
    except SmoothganError as exc:
        raise CheckpointError(f"not a usable StarGAN v2 checkpoint: its shapes give an {exc}") from None
    return config, notes


@dataclass
class ImportedCheckpoint:
    """Networks loaded from an official file, with the inferred config and what the import noticed."""

    config: ModelConfig
    networks: dict[str, nn.Module]
    notes: list[str] = field(default_factory=list)
    fan_source: Optional[str] = None  # "checkpoint", "wing" or None


def _fill_hpf_filter(generator_state: dict[str, torch.Tensor], config: ModelConfig, notes: list[str]) -> None:
    """Synthesise the ``hpf.filter`` constant released files lack; check it where present."""
    if not config.uses_masks:
        return
    expected = HighPass(config.w_hpf).filter
    present = generator_state.get("hpf.filter")
    if present is None:
        generator_state["hpf.filter"] = expected
        notes.append("synthesised hpf.filter")
    elif not torch.allclose(present.float(), expected, atol=1e-6):
        raise CheckpointError("generator hpf.filter is not the high-pass kernel for any w_hpf")


def read_wing(path: str | Path) -> dict[str, torch.Tensor]:
    """The FAN state_dict inside ``wing.ckpt`` (its ``state_dict`` entry)."""
    data = load_torch_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a wing.ckpt: expected a dict with a 'state_dict' entry")
    return strip_module_prefix(tensor_state(data["state_dict"], "state_dict", path))


def import_official(path: str | Path, wing: Optional[str | Path] = None,
                    discriminator: bool = False) -> ImportedCheckpoint:
    """Read an official ``*_nets_ema.ckpt`` / ``*_nets.ckpt`` (and ``wing.ckpt`` for w_hpf > 0)."""
    data = load_torch_file(path)
    if not isinstance(data, dict) or not all(isinstance(data.get(m), dict) for m in INFERENCE_MODULES):
        found = ", ".join(sorted(map(str, data))) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"{path} is not an official StarGAN v2 checkpoint: expected entries "
            f"{', '.join(INFERENCE_MODULES)}; found {found or 'nothing'}"
        )
    unknown = sorted(str(k) for k in data if k not in KNOWN_ENTRIES)
    notes: list[str] = []
    if unknown:
        log.warning("ignoring unknown checkpoint entries: %s", ", ".join(unknown))
        notes.append(f"ignored entries: {', '.join(unknown)}")
    raw = {name: tensor_state(data[name], name, path) for name in INFERENCE_MODULES}
    entries = {name: strip_module_prefix(state) for name, state in raw.items()}
    if any(k.startswith("module.") for state in raw.values() for k in state):
        notes.append("stripped module. prefixes")
    config, guesses = infer_config(entries)
    notes += guesses
    _fill_hpf_filter(entries["generator"], config, notes)

    want_discriminator = discriminator and isinstance(data.get("discriminator"), dict)
    if discriminator and not want_discriminator:
        raise CheckpointError(f"{path} has no discriminator (only *_nets.ckpt files do)")
    networks = build_networks(config, discriminator=want_discriminator)
    if want_discriminator:
        entries["discriminator"] = strip_module_prefix(tensor_state(data["discriminator"], "discriminator", path))
    for name, module in networks.items():
        load_state_strict(module, entries[name], name)

    fan_source = None
    if config.uses_masks:
        networks["fan"] = load_fan(data.get("fan"), wing, path)
        fan_source = "checkpoint" if isinstance(data.get("fan"), dict) else "wing"
        notes.append(f"FAN weights from the {'checkpoint fan entry' if fan_source == 'checkpoint' else 'wing file'}")
    elif "fan" in data:
        notes.append("ignored the fan entry (w_hpf = 0 models use no masks)")
    for module in networks.values():
        module.eval()
    return ImportedCheckpoint(config, networks, notes, fan_source)


def load_fan(entry: Any, wing: Optional[str | Path], source: str | Path) -> FAN:
    """FAN weights: the checkpoint's own ``fan`` entry if present, else ``wing.ckpt``; all 336 names required."""
    if isinstance(entry, dict):
        state = strip_module_prefix(tensor_state(entry, "fan", source))
    elif wing is not None:
        state = read_wing(wing)
    else:
        raise CheckpointError(
            f"{source} is a w_hpf > 0 (CelebA-HQ style) model without FAN weights: pass --wing wing.ckpt"
        )
    fan = FAN()
    load_state_strict(fan, state, "fan")
    return fan.eval()


def import_to_bundle(path: str | Path, domains: list[str] | tuple[str, ...], out: str | Path,
                     wing: Optional[str | Path] = None, overwrite: bool = False,
                     name: Optional[str] = None, align: Optional[str] = None) -> "ModelBundle":
    """``smoothgan import``: an official checkpoint (+ wing.ckpt) -> a bundle with provenance and sha256s.

    ``align`` is recorded in the bundle's preprocessing: ``"face"`` (photos are aligned to CelebA-HQ crops
    before translation) is the default for models with a FAN (CelebA-HQ style), ``"none"`` otherwise.
    """
    from smoothgan.bundle import check_domains, check_replaceable, save_bundle
    from smoothgan.errors import InputError
    from smoothgan.fileio import sha256_file

    check_replaceable(out, overwrite)  # before the slow part: refuse a target we may not replace right away
    check_domains(list(domains), len(domains), "--domains", InputError)
    imported = import_official(path, wing)
    config = imported.config
    if len(domains) != config.num_domains:
        raise InputError(
            f"--domains names {len(domains)} domain(s) but the checkpoint has {config.num_domains}; give them in "
            f"index order (sorted training folder names, e.g. female,male or cat,dog,wild)"
        )
    provenance = {
        "name": name or Path(out).name,
        "source": Path(path).name,
        "source_sha256": sha256_file(path),
        "kind": "official StarGAN v2 / smoothing checkpoint",
        "notes": imported.notes,
    }
    if imported.fan_source == "wing":
        provenance["wing"] = Path(wing).name
        provenance["wing_sha256"] = sha256_file(wing)
    if align is None:
        align = "face" if config.uses_masks else "none"
    return save_bundle(out, imported.networks, config, tuple(domains), provenance, overwrite=overwrite,
                       preprocessing={"align": align})
