"""Serving benchmark: ``smoothgan serve`` (Ray Serve, dynamic batching) under N concurrent clients x M requests on
127.0.0.1, beside direct Translator calls (one image per call, and batched), and ``smoothgan batch`` (Ray Data) beside
the folder job (``smoothgan translate DIR``) on the same files.

    smoothgan bench --tasks serve --batches 16 --backends onnxruntime       (the standard run)
    python benchmarks/serve_bench.py --clients 16 --requests 20 --files 200 --out benchmarks/results

Without ``--model`` a stand-in bundle is built: the ``small`` preset (64x64, max_conv_dim 128) with PyTorch's default
initialisation, exported to ONNX (timing only; the outputs mean nothing). Results: a markdown table on stdout and
``serve-<backend>-<precision>-<device>.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def stand_in_bundle(root: Path) -> Path:
    """The ``small`` preset with default-initialised weights, exported to ONNX fp32."""
    from smoothgan.bundle import save_bundle
    from smoothgan.config import get_preset
    from smoothgan.export.onnx import export_onnx
    from smoothgan.models.stargan_v2 import build_networks

    spec = get_preset("small")
    nets = {name: net.eval() for name, net in build_networks(spec.config).items()}
    bundle = save_bundle(root / "small", nets, spec.config, spec.domains, {"name": "small", "kind": "stand-in"})
    export_onnx(bundle, validate=False)
    return bundle.path


def photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"photo{i:04d}.png"
        Image.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def engine(threads: Optional[int]) -> dict[str, Any]:
    return {} if threads is None else {"threads": threads}


def direct(model: Path, backend: str, precision: str, sources: list[Path], max_batch: int, count: int,
           threads: Optional[int]) -> dict[str, Any]:
    """One image per call (``count`` calls), then the same images in calls of ``max_batch``."""
    from smoothgan.translator import load

    translator = load(model, backend=backend, precision=precision, max_batch=max_batch, **engine(threads))
    domain = translator.domains[0]
    translator.translate(sources[0], domain)  # warm-up
    latencies = []
    started = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        translator.translate(sources[i % len(sources)], domain, seed=i)
        latencies.append(time.perf_counter() - t0)
    single = time.perf_counter() - started
    started = time.perf_counter()
    done = 0
    while done < count:
        chunk = [sources[(done + j) % len(sources)] for j in range(min(max_batch, count - done))]
        translator.translate(chunk, domain, seed=done)
        done += len(chunk)
    batched = time.perf_counter() - started
    return {"backend": translator.backend.name, "single_img_s": count / single,
            "single_p50_ms": 1000 * percentile(latencies, 50), "single_p99_ms": 1000 * percentile(latencies, 99),
            "batched_img_s": count / batched, "batch": max_batch, "images": count}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except OSError:
        return 0, b""


def serve(model: Path, backend: str, precision: str, sources: list[Path], clients: int, requests: int,
          max_batch: int, max_wait_ms: float, replicas: int, threads: Optional[int]) -> dict[str, Any]:
    """Start ``smoothgan serve``, wait until healthy, then ``clients`` threads x ``requests`` POST /translate."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkstemp(prefix="serve-bench-", suffix=".log")[1])
    cmd = [sys.executable, "-c", "from smoothgan.cli import main; main()", "serve", str(model), "--port", str(port),
           "--backend", backend, "--precision", precision, "--max-batch", str(max_batch), "--max-wait-ms",
           str(max_wait_ms), "--replicas", str(replicas), "--cpus-per-replica", "0.5"] + \
        ([] if threads is None else ["--threads", str(threads)])
    started = time.perf_counter()
    with open(log, "wb") as handle:
        process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        while get(url + "/health")[0] != 200:
            if process.poll() is not None or time.perf_counter() - started > 300:
                raise RuntimeError(f"smoothgan serve did not come up: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        cold = time.perf_counter() - started
        bodies = [p.read_bytes() for p in sources]
        info = json.loads(get(url + "/model")[1])
        domain = info["domains"][0]

        def post(i: int) -> float:
            t0 = time.perf_counter()
            req = urllib.request.Request(f"{url}/translate?domain={domain}&seed={i}", data=bodies[i % len(bodies)],
                                         headers={"Content-Type": "image/png"}, method="POST")
            with urllib.request.urlopen(req, timeout=120) as response:
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}")
            return time.perf_counter() - t0

        with ThreadPoolExecutor(clients) as pool:  # warm-up: one request per client
            list(pool.map(post, range(clients)))
        before = json.loads(get(url + "/model")[1])["batching"]

        def client(index: int) -> list[float]:
            return [post(index * requests + k) for k in range(requests)]

        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            latencies = [v for result in pool.map(client, range(clients)) for v in result]
        elapsed = time.perf_counter() - t0
        after = json.loads(get(url + "/model")[1])["batching"]
        sizes = {k: v - before["batch_sizes"].get(k, 0) for k, v in after["batch_sizes"].items()}
        return {"backend": info["backend"], "img_s": len(latencies) / elapsed,
                "p50_ms": 1000 * percentile(latencies, 50), "p99_ms": 1000 * percentile(latencies, 99),
                "cold_start_s": cold, "clients": clients, "requests_per_client": requests, "replicas": replicas,
                "max_batch": max_batch, "max_wait_ms": max_wait_ms,
                "batches": after["batches"] - before["batches"],
                "batch_sizes": {k: v for k, v in sizes.items() if v > 0},
                "mean_batch": (after["requests"] - before["requests"]) / max(1, after["batches"] - before["batches"])}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def offline(model: Path, backend: str, precision: str, folder: Path, work: Path, batch: int, actors: int,
            threads: Optional[int]) -> dict[str, Any]:
    """``smoothgan batch`` (Ray Data) beside the folder job on the same files, both writing flat PNGs."""
    from smoothgan.serving.ray_data import run_batch
    from smoothgan.translator import load

    translator = load(model, backend=backend, precision=precision, max_batch=batch, **engine(threads))
    domain = translator.domains[0]
    t0 = time.perf_counter()
    folder_summary = translator.translate_folder(folder, work / "folder", domain, layout="flat", batch_size=batch)
    folder_wall = time.perf_counter() - t0
    translator.close()
    t0 = time.perf_counter()
    summary = run_batch(folder, work / "ray", domain, model=str(model), backend=backend, precision=precision,
                        actors=actors, batch_size=batch, num_cpus=os.cpu_count(), threads=threads)
    ray_wall = time.perf_counter() - t0
    return {"files": summary.total, "folder_img_s": folder_summary.done / folder_summary.seconds,
            "folder_wall_s": folder_wall, "ray_img_s": summary.done / summary.seconds, "ray_wall_s": ray_wall,
            "ray_actors": actors, "batch": batch, "ray_failed": summary.failed}


def machine() -> dict[str, Any]:
    """:func:`smoothgan.bench.machine_info` plus the Ray version."""
    import ray

    from smoothgan.bench import machine_info

    return {**machine_info(), "ray": ray.__version__}


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="bundle (default: the small stand-in, built and exported)")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=10)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--files", type=int, default=200, help="offline job size (0: skip)")
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads everywhere (default: cores)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        work = Path(tmp)
        model = args.model or stand_in_bundle(work)
        sources = photos(work / "photos", max(args.files, 16))
        result: dict[str, Any] = {"machine": machine(), "model": str(args.model or "small stand-in (64x64)"),
                                  "precision": args.precision,
                                  "command": "python benchmarks/serve_bench.py " + " ".join(argv or sys.argv[1:])}
        total = args.clients * args.requests
        result["threads"] = args.threads
        result["direct"] = direct(model, args.backend, args.precision, sources, args.max_batch, total, args.threads)
        result["serve"] = serve(model, args.backend, args.precision, sources, args.clients, args.requests,
                                args.max_batch, args.max_wait_ms, args.replicas, args.threads)
        if args.files:
            result["offline"] = offline(model, args.backend, args.precision, work / "photos", work, args.max_batch,
                                        args.actors, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    device = "cpu"
    threads = "" if args.threads is None else f"-t{args.threads}"
    path = args.out / f"serve-{args.backend}-{args.precision}-bs{args.max_batch}-{device}{threads}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    d, s = result["direct"], result["serve"]
    print("| path | img/s | p50 ms | p99 ms | notes |\n|---|---|---|---|---|")
    print(f"| direct, 1 image per call | {d['single_img_s']:.1f} | {d['single_p50_ms']:.1f} | {d['single_p99_ms']:.1f} "
          f"| {d['images']} calls, {d['backend']} |")
    print(f"| direct, batches of {d['batch']} | {d['batched_img_s']:.1f} | - | - | |")
    print(f"| smoothgan serve ({s['clients']} clients x {s['requests_per_client']}) | {s['img_s']:.1f} | "
          f"{s['p50_ms']:.1f} | {s['p99_ms']:.1f} | mean batch {s['mean_batch']:.1f}, batches {s['batch_sizes']}, "
          f"cold start {s['cold_start_s']:.1f} s |")
    if "offline" in result:
        o = result["offline"]
        print(f"| folder job ({o['files']} files) | {o['folder_img_s']:.1f} | - | - | wall {o['folder_wall_s']:.1f} s |")
        print(f"| smoothgan batch, {o['ray_actors']} actor(s) | {o['ray_img_s']:.1f} | - | - | wall "
              f"{o['ray_wall_s']:.1f} s (Ray start included) |")
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
