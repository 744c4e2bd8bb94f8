"""The HTTP contract of ``smoothgan serve``, free of any server: parse a request into a :class:`Job`, encode answers.

Routes (the Ray Serve adapter in :mod:`smoothgan.serving.ray_serve` only moves bytes in and out of these):

- ``GET /health`` -> ``{"status": "ok"}``; ``GET /model`` -> domains, sha256, backend, precision, batching stats;
- ``POST /translate?domain=D&seed=S&num=K`` -> ``image/png`` (or ``format=jpeg``) when K is 1 and there is at
  most one reference, else JSON ``{"images": [base64...], "metadata": {...}}``;
- ``POST /interpolate?domain=D&steps=N&seed=S`` -> JSON ``{"frames": [base64...], "metadata": {...}}``.

The source image comes as the raw request body, as a ``multipart/form-data`` field ``image`` (references:
fields ``ref``), or as JSON ``{"image": "<base64>", "ref": ["<base64>", ...]}``. Every problem with a request is a
:class:`RequestError` carrying an HTTP status (400, 404, 405, 413) and a one-line reason; nothing a client
sends can make a 500.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from PIL import Image

from smoothgan import images, styles
from smoothgan.errors import InputError

ROUTES = {"/health": "GET", "/model": "GET", "/translate": "POST", "/interpolate": "POST"}
FORMATS = {"png": ("PNG", "image/png", {}), "jpeg": ("JPEG", "image/jpeg", {"quality": 95})}
_QUERY_KEYS = {
    "/translate": {"domain", "seed", "num", "format"},
    "/interpolate": {"domain", "seed", "steps", "source_domain", "mode", "format"},
}


class RequestError(InputError):
    """A request the server refuses: ``status`` is the HTTP status, the message one line for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(" ".join(message.split()))
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; over a limit is a 413 (sizes) or 400 (counts) with the limit named."""

    max_bytes: int = 20 << 20
    max_pixels: int = 16_000_000
    max_steps: int = 64
    max_num: int = 16
    max_refs: int = 8

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_refs"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_steps < 2:
            raise InputError(f"max_steps must be at least 2, got {self.max_steps}")
        if self.max_num < 1:
            raise InputError(f"max_num must be at least 1, got {self.max_num}")


@dataclass
class Job:
    """One translate or interpolate request, validated and decoded (uint8 RGB arrays)."""

    kind: str  # "translate" | "interpolate"
    image: np.ndarray
    domain: str
    seed: int = 0
    num: int = 1
    steps: Optional[int] = None
    refs: list[np.ndarray] = field(default_factory=list)
    source_domain: Optional[str] = None
    mode: str = "lerp"
    format: str = "png"

    @property
    def rows(self) -> int:
        """Generator rows (output images) this job makes."""
        return self.steps if self.steps is not None else (len(self.refs) or self.num)


def check_route(path: str, method: str) -> str:
    """The route of ``path`` (trailing slash ignored), or a 404/405 :class:`RequestError`."""
    route = path.rstrip("/") or "/"
    if route not in ROUTES:
        raise RequestError(404, f"no route {route}; routes: {', '.join(f'{m} {r}' for r, m in ROUTES.items())}")
    if method.upper() != ROUTES[route]:
        raise RequestError(405, f"{route} takes {ROUTES[route]}, not {method.upper()}")
    return route


def check_length(content_length: Optional[str], limits: Limits) -> None:
    """Refuse a declared body over ``limits.max_bytes`` (413) before reading it."""
    if content_length is None:
        return
    try:
        size = int(content_length)
    except ValueError:
        raise RequestError(400, f"bad Content-Length header {content_length!r}") from None
    if size > limits.max_bytes:
        raise RequestError(413, f"request body of {size} bytes is over the limit of {limits.max_bytes} bytes")


def decode_image(data: bytes, what: str, limits: Limits) -> np.ndarray:
    """Encoded image bytes -> uint8 [H, W, 3] RGB, upright, with :func:`smoothgan.images.load`'s mode policy.

    The pixel limit is checked on the header before decoding (413); anything Pillow cannot decode is a 400.
    """
    if not data:
        raise RequestError(400, f"{what} is empty: send the encoded image (PNG, JPEG, WebP, BMP)")
    try:
        return images.decode(data, what, max_pixels=limits.max_pixels)
    except images.ImageTooLargeError as exc:
        raise RequestError(413, str(exc)) from None
    except InputError as exc:
        raise RequestError(400, str(exc)) from None


def _parts(content_type: str, body: bytes) -> dict[str, list[bytes]]:
    """The fields of a ``multipart/form-data`` body by name (stdlib email parser; no extra dependency)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise RequestError(400, "malformed multipart/form-data body (no boundary or no parts)")
    found: dict[str, list[bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True)
            found.setdefault(str(name), []).append(payload if isinstance(payload, bytes) else b"")
    return found


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise RequestError(400, f"{what} must be a base64 string, got {type(value).__name__}")
    if "," in value[:64] and value.startswith("data:"):
        value = value.split(",", 1)[1]  # a data: URL
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"{what} is not valid base64") from None


def split_body(content_type: Optional[str], body: bytes) -> tuple[bytes, list[bytes]]:
    """(source image bytes, reference image bytes) from a raw, multipart or JSON body."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        fields = _parts(content_type or "", body)
        if "image" not in fields:
            raise RequestError(400, f"multipart body has no field 'image' (fields: {', '.join(fields) or 'none'})")
        if len(fields["image"]) > 1:
            raise RequestError(400, "send one 'image' field per request")
        return fields["image"][0], fields.get("ref", [])
    if kind == "application/json":
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(400, f"body is not valid JSON ({exc})") from None
        if not isinstance(data, dict) or "image" not in data:
            raise RequestError(400, 'JSON body must be an object {"image": "<base64>", "ref": [...]}')
        unknown = set(data) - {"image", "ref"}
        if unknown:
            raise RequestError(400, f"unknown JSON key(s) {', '.join(sorted(unknown))}; use image and ref")
        refs = data.get("ref") or []
        refs = [refs] if isinstance(refs, str) else refs
        if not isinstance(refs, list):
            raise RequestError(400, "JSON 'ref' must be a base64 string or a list of them")
        return _b64(data["image"], "image"), [_b64(r, f"ref[{i}]") for i, r in enumerate(refs)]
    return body, []  # raw image bytes, whatever the type says (curl --data-binary sends x-www-form-urlencoded)


def _int(query: Mapping[str, str], key: str, default: int, low: int, high: int, limit: bool = False) -> int:
    raw = query.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(400, f"{key} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        which = "the server's limit " if limit else ""
        raise RequestError(400, f"{key} must be from {low} to {high} ({which}{high}), got {value}")
    return value


def parse(route: str, query: Mapping[str, str], content_type: Optional[str], body: bytes, domains: Sequence[str],
          limits: Limits) -> Job:
    """Validate the query and decode the images of a POST ``route``; :class:`RequestError` on any problem."""
    unknown = set(query) - _QUERY_KEYS[route]
    if unknown:
        raise RequestError(400, f"unknown query parameter(s) {', '.join(sorted(unknown))}; {route} takes "
                                f"{', '.join(sorted(_QUERY_KEYS[route]))}")
    if len(body) > limits.max_bytes:
        raise RequestError(413, f"request body of {len(body)} bytes is over the limit of {limits.max_bytes} bytes")

    def domain_of(key: str, required: bool) -> Optional[str]:
        value = query.get(key)
        if value is None:
            if required:
                raise RequestError(400, f"missing query parameter {key} (one of {', '.join(domains)})")
            return None
        if value not in domains:
            raise RequestError(400, f"unknown {key} {value!r}; this model has {', '.join(domains)}")
        return value

    domain = domain_of("domain", True)
    fmt = query.get("format", "png").lower()
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt not in FORMATS:
        raise RequestError(400, f"format must be png or jpeg, got {query['format']!r}")
    seed = _int(query, "seed", 0, 0, styles.SEED_MAX)
    source, refs = split_body(content_type, body)
    if len(refs) > limits.max_refs:
        raise RequestError(400, f"{len(refs)} references is over the server's limit of {limits.max_refs}")
    job = Job(route.strip("/"), decode_image(source, "image", limits), str(domain), seed, format=fmt,
              refs=[decode_image(r, f"reference {i}", limits) for i, r in enumerate(refs)])
    if route == "/translate":
        job.num = _int(query, "num", 1, 1, limits.max_num, limit=True)
        if job.refs and job.num != 1:
            raise RequestError(400, "num applies to latent styles only; each reference gives one style")
    else:
        job.steps = _int(query, "steps", 20, 2, limits.max_steps, limit=True)
        job.source_domain = domain_of("source_domain", False)
        job.mode = query.get("mode", "lerp")
        if job.mode not in styles.INTERPOLATION_MODES:
            raise RequestError(400, f"mode must be one of {', '.join(styles.INTERPOLATION_MODES)}, got {job.mode!r}")
        if len(job.refs) > 1:
            raise RequestError(400, f"an interpolation goes to one style: send one reference, not {len(job.refs)}")
    return job


def encode_image(image: np.ndarray, fmt: str = "png") -> bytes:
    """uint8 [H, W, 3] -> PNG or JPEG bytes."""
    pil_format, _, options = FORMATS[fmt]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format=pil_format, **options)
    return buffer.getvalue()


def answer(job: Job, frames: np.ndarray, metadata: dict[str, Any]) -> tuple[str, bytes]:
    """(content type, body) for a finished job: one image as itself, several as JSON with base64 images."""
    if job.kind == "translate" and len(frames) == 1:
        return FORMATS[job.format][1], encode_image(frames[0], job.format)
    key = "images" if job.kind == "translate" else "frames"
    encoded = [base64.b64encode(encode_image(f, job.format)).decode("ascii") for f in frames]
    return "application/json", json_bytes({key: encoded, "format": job.format, "metadata": metadata})


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def error_body(exc: RequestError) -> bytes:
    return json_bytes({"error": str(exc), "status": exc.status})


__all__ = ["FORMATS", "Job", "Limits", "ROUTES", "RequestError", "answer", "check_length", "check_route",
           "decode_image", "encode_image", "error_body", "json_bytes", "parse", "split_body"]
