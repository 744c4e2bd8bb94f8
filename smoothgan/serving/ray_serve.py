"""``smoothgan serve`` on Ray Serve: one deployment whose replicas each hold a :class:`Translator`.

Ray Serve does the HTTP server, the replicas, the routing across them (and across machines when the driver joins a
cluster) and the dynamic batching (``@serve.batch``). This module only adapts: the request contract is
:mod:`smoothgan.serving.http`, the model work :mod:`smoothgan.serving.service`. Model calls run on one thread per
replica (so the event loop keeps answering ``/health`` and queueing requests while a batch runs); requests that
arrive while a batch runs form the next batch, up to ``max_batch`` requests or ``max_wait_ms`` after the first.

Python: ``serve.run(smoothgan.serving.app("afhq", max_batch=16), route_prefix="/")`` inside your own Ray
application; the CLI's :func:`run` starts (or joins) Ray, binds host:port and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from functools import partial
from typing import Any, Callable, Optional

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from smoothgan.errors import InputError, SmoothganError
from smoothgan.serving import http
from smoothgan.serving.cluster import check_backend, init_ray
from smoothgan.serving.http import Limits, RequestError
from smoothgan.serving.service import Prepared, Service

log = logging.getLogger(__name__)

APP_NAME = "smoothgan"
SHUTDOWN_TIMEOUT_S = 20.0  # a replica finishes its in-flight requests for at most this long on shutdown


def _response(status: int, body: bytes, media_type: str = "application/json",
              headers: Optional[dict[str, str]] = None) -> Response:
    return Response(content=body, status_code=status, media_type=media_type, headers=headers)


@serve.deployment(name=APP_NAME, graceful_shutdown_timeout_s=SHUTDOWN_TIMEOUT_S, health_check_period_s=5)
class SmoothganDeployment:
    """A Serve replica: the HTTP contract around one translator, with cross-request batching."""

    def __init__(self, bundle: str, backend: str, device: str, precision: str, max_batch: int, max_wait_ms: float,
                 limits: dict[str, int], options: dict[str, Any]) -> None:
        from smoothgan.translator import load

        logging.getLogger("smoothgan").setLevel(logging.INFO)
        self.limits = Limits(**limits)
        self.service = Service(load(bundle, backend=backend, device=device, precision=precision,
                                    max_batch=max_batch, **options), max_wait_ms)
        self._generate.set_max_batch_size(max_batch)
        self._generate.set_batch_wait_timeout_s(max_wait_ms / 1000.0)
        self._model = ThreadPoolExecutor(1, thread_name_prefix="smoothgan-model")  # engine calls, in order
        self._codec = ThreadPoolExecutor(2, thread_name_prefix="smoothgan-codec")  # decode/encode images
        log.info("replica ready: %s on %s", bundle, self.service.translator.backend.name)

    async def __call__(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except RequestError as exc:
            return _response(exc.status, http.error_body(exc))
        except InputError as exc:  # limits the translator checks (memory of a call)
            return _response(400, http.error_body(RequestError(400, str(exc))))
        except SmoothganError as exc:
            log.error("request failed: %s", exc)
            return _response(500, http.error_body(RequestError(500, f"server error: {exc}")))
        except Exception:  # a bug: logged with its traceback, one line to the client
            log.exception("request failed")
            return _response(500, http.error_body(RequestError(500, "internal server error (see the server log)")))

    async def _handle(self, request: Request) -> Response:
        route = http.check_route(request.url.path, request.method)
        if route == "/health":
            return _response(200, http.json_bytes({"status": "ok"}))
        if route == "/model":
            return _response(200, http.json_bytes({**self.service.describe(), "limits": asdict(self.limits)}))
        http.check_length(request.headers.get("content-length"), self.limits)
        body = await self._read(request)
        loop = asyncio.get_running_loop()
        job = await loop.run_in_executor(self._codec, partial(
            http.parse, route, dict(request.query_params), request.headers.get("content-type"), body,
            self.service.translator.domains, self.limits))
        prepared: Prepared = await loop.run_in_executor(self._model, self.service.prepare, job)
        frames = await self._generate(prepared)
        media_type, content = await loop.run_in_executor(self._codec, http.answer, job, frames, prepared.metadata)
        meta = json.dumps(prepared.metadata, ensure_ascii=True, separators=(",", ":"))
        return _response(200, content, media_type, {"X-Smoothgan-Metadata": meta})

    async def _read(self, request: Request) -> bytes:
        """The body, refused with a 413 as soon as it passes the byte limit (chunked uploads included)."""
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.limits.max_bytes:
                raise RequestError(413, f"request body is over the limit of {self.limits.max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _generate(self, batch: list[Prepared]) -> list[np.ndarray]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._model, self.service.generate, batch)

    def __del__(self) -> None:
        for pool in (getattr(self, "_model", None), getattr(self, "_codec", None)):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)


def app(bundle: str | os.PathLike[str] | None = None, *, backend: str = "auto", device: str = "cpu",
        precision: str = "fp32", max_batch: int = 16, max_wait_ms: float = 10.0, replicas: int = 1,
        num_cpus: float = 1.0, num_gpus: Optional[float] = None, limits: Optional[Limits] = None,
        max_ongoing_requests: Optional[int] = None, threads: Optional[int] = None) -> "serve.Application":
    """The Serve application for ``bundle`` (checked here, before anything is deployed).

    ``max_batch``: most requests per batch and most generator rows per engine call; ``max_wait_ms``: how long
    the first request of a batch waits for more. ``num_cpus``/``num_gpus``: Ray resources per replica (GPUs default
    to 1 on ``cuda``). ``max_ongoing_requests`` per replica defaults to ``4 * max_batch`` (at least 32), so a
    full batch can queue behind the running one. ``threads``: ONNX Runtime intra-op threads per replica (default:
    the physical cores; 1 is faster on a machine that is busy with other work).
    """
    from smoothgan.bundle import load_bundle
    from smoothgan.translator import check_count

    loaded = load_bundle(bundle)
    check_backend(backend, device, precision)
    check_count("max_batch", max_batch, 1, 4096)
    check_count("replicas", replicas, 1, 1024)
    if not 0 <= max_wait_ms <= 60_000:
        raise InputError(f"max_wait_ms must be from 0 to 60000, got {max_wait_ms}")
    gpus = (1.0 if device == "cuda" else 0.0) if num_gpus is None else float(num_gpus)
    ongoing = max_ongoing_requests or max(32, 4 * max_batch)
    deployment = SmoothganDeployment.options(
        num_replicas=replicas, max_ongoing_requests=ongoing,
        ray_actor_options={"num_cpus": float(num_cpus), "num_gpus": gpus})
    return deployment.bind(str(loaded.path.resolve()), backend, device, precision, max_batch, float(max_wait_ms),
                           asdict(limits or Limits()), {} if threads is None else {"threads": int(threads)})


def check_port(host: str, port: int) -> None:
    """A one-line error now, rather than a proxy that never comes up, when ``host:port`` cannot be bound."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, port))
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def run(application: "serve.Application", *, host: str = "127.0.0.1", port: int = 8000,
        ray_address: Optional[str] = None, num_cpus: Optional[int] = None,
        ready: Optional[Callable[[str], None]] = None, stop: Optional[threading.Event] = None) -> None:
    """Serve ``application`` on ``host:port`` until SIGTERM/SIGINT (or ``stop``), then shut down gracefully.

    Locally (no ``ray_address``) Ray and Serve are started for this process and stopped at the end; on a cluster
    only this application is deleted, the cluster and other applications stay.
    """
    import ray

    if ray_address is None:
        check_port(host, port)
    stop = stop or threading.Event()
    started = init_ray(ray_address, num_cpus)
    # after ray.init, which installs its own SIGTERM handler (it would end the driver without a shutdown)
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)} \
        if threading.current_thread() is threading.main_thread() else {}
    try:
        serve.start(http_options={"host": host, "port": port})
        started_at = time.perf_counter()
        serve.run(application, name=APP_NAME, route_prefix="/", blocking=False)
        log.info("deployed in %.1f s", time.perf_counter() - started_at)
        if ready is not None:
            ready(f"http://{host}:{port}")
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        own_cluster = started and ray_address is None  # joined clusters keep Serve and their other applications
        if not _bounded(serve.shutdown if own_cluster else partial(serve.delete, APP_NAME), SHUTDOWN_TIMEOUT_S + 10):
            log.warning("Serve did not shut down within %.0f s (was Ray signalled too?); stopping anyway",
                        SHUTDOWN_TIMEOUT_S + 10)
        if started and not _bounded(ray.shutdown, 15):
            log.warning("Ray did not shut down within 15 s; its processes end with this one")


def _bounded(fn: Callable[[], Any], seconds: float) -> bool:
    """Run ``fn`` in a daemon thread for at most ``seconds``: a shutdown must never hang the process."""
    done = threading.Event()

    def target() -> None:
        try:
            fn()
        except Exception as exc:  # reported, then the caller carries on with its own shutdown
            log.warning("shutdown step failed: %s", " ".join(str(exc).split()))
        finally:
            done.set()

    threading.Thread(target=target, name="smoothgan-shutdown", daemon=True).start()
    return done.wait(seconds)


__all__ = ["APP_NAME", "SmoothganDeployment", "app", "check_port", "run"]
