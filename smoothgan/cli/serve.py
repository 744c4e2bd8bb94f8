"""``smoothgan serve`` (Ray Serve HTTP API) and ``smoothgan batch`` (Ray Data folder job); extra ``smoothgan[ray]``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from smoothgan.cli.app import (BackendName, BackendOption, Device, DeviceOption, ModelOption, Precision,
                               PrecisionOption, command, console, err_console)

if TYPE_CHECKING:
    from smoothgan.jobs import FolderSummary

RAY_HINT = "pip install 'smoothgan[ray]'"


def _need_ray() -> None:
    import importlib.util

    from smoothgan.errors import BackendError

    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.serve") is None:
        raise BackendError(f"this command needs Ray: {RAY_HINT}")


@command("serve")
def serve_command(
    bundle: Annotated[Optional[str], typer.Argument(envvar="SMOOTHGAN_MODEL", show_default=False,
                                                    help="Bundle directory (default $SMOOTHGAN_MODEL, else the "
                                                         "embedded demo model).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0 for every interface).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="TCP port.")] = 8000,
    backend: BackendOption = BackendName.auto,
    device: DeviceOption = Device.cpu,
    precision: PrecisionOption = Precision.fp32,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, max=4096,
                                           help="Most requests per batch (and generator rows per engine call).")]
    = 16,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", min=0, max=60000,
                                               help="How long a batch waits for more requests.")] = 10.0,
    replicas: Annotated[int, typer.Option("--replicas", min=1, max=1024, help="Model replicas (Ray actors).")] = 1,
    cpus_per_replica: Annotated[float, typer.Option("--cpus-per-replica", min=0.01,
                                                    help="Ray CPUs reserved per replica.")] = 1.0,
    gpus_per_replica: Annotated[Optional[float], typer.Option("--gpus-per-replica", min=0,
                                                              help="Ray GPUs per replica (default 1 on cuda).")]
    = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Join this Ray cluster (HEAD:6379 or "
                                                       "auto) instead of starting a local one.")] = None,
    max_bytes: Annotated[int, typer.Option("--max-bytes", min=1, help="Largest request body.")] = 20 << 20,
    max_pixels: Annotated[int, typer.Option("--max-pixels", min=1, help="Largest image (width x height).")]
    = 16_000_000,
    max_steps: Annotated[int, typer.Option("--max-steps", min=2, help="Most interpolation frames.")] = 64,
    max_num: Annotated[int, typer.Option("--max-num", min=1, help="Most latent styles per request.")] = 16,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="ONNX Runtime intra-op threads per "
                                                   "replica (default: physical cores).")] = None,
) -> None:
    """Serve a bundle over HTTP on Ray Serve, batching concurrent requests; stops cleanly on SIGTERM or Ctrl-C.

    Examples:

    1. `smoothgan serve afhq --port 8000` then `curl -s --data-binary @cat.jpg
       'http://127.0.0.1:8000/translate?domain=dog&seed=3' -o dog.png`

    2. `smoothgan serve afhq --backend onnxruntime --max-batch 32 --max-wait-ms 20 --replicas 2`

    3. `smoothgan serve celeba_hq --device cuda --backend tensorrt --precision fp16`

    4. `curl -s -F image=@face.jpg 'http://127.0.0.1:8000/interpolate?domain=female&steps=8'` (JSON frames)

    Routes: GET /health, GET /model (domains, sha256, backend, precision, batching counts), POST /translate
    (domain, seed, num, format=png|jpeg; one image back as image/png, several as JSON with base64 PNGs; references
    as multipart fields 'ref' or JSON {"image": b64, "ref": [b64]}), POST /interpolate (domain, steps, seed,
    source_domain, mode). Bad requests get a 4xx with a one-line JSON error. Needs `pip install 'smoothgan[ray]'`.
    """
    _need_ray()
    from smoothgan.serving.http import Limits
    from smoothgan.serving.ray_serve import app, run

    application = app(bundle, backend=backend.value, device=device.value, precision=precision.value,
                      max_batch=max_batch, max_wait_ms=max_wait_ms, replicas=replicas, num_cpus=cpus_per_replica,
                      num_gpus=gpus_per_replica,
                      limits=Limits(max_bytes, max_pixels, max_steps, max_num), threads=threads)
    err_console.print("starting Ray Serve (this takes a while the first time)...")

    def ready(url: str) -> None:
        console.print(f"serving on {url} (GET /health, GET /model, POST /translate, POST /interpolate); "
                      "Ctrl-C or SIGTERM stops", highlight=False)

    run(application, host=host, port=port, ray_address=ray_address, ready=ready)
    err_console.print("stopped")


@command("batch")
def batch_command(
    input: Annotated[str, typer.Argument(help="A file, a folder (recursive) or a quoted glob pattern.",
                                         show_default=False)],
    output: Annotated[Path, typer.Argument(help="Output folder (every node must see it).", show_default=False)],
    domain: Annotated[str, typer.Option("--domain", "-t", help="Target domain name.")],
    model: ModelOption = None,
    num: Annotated[int, typer.Option("--num", "-n", help="Latent styles per input.")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the latent styles.")] = 0,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Interpolate in N frames instead.")] = None,
    ref: Annotated[Optional[list[Path]], typer.Option("--ref", help="Reference image(s) giving the style.")] = None,
    source_domain: Annotated[Optional[str], typer.Option("--source-domain", help="Domain of the inputs.")] = None,
    layout: Annotated[str, typer.Option("--layout", help="flat: `OUT/<name>_<domain>[_<k>].png`; folders: "
                                                         "`OUT/<name>/` with frames, strip and sidecar.")] = "flat",
    backend: BackendOption = BackendName.auto,
    device: DeviceOption = Device.cpu,
    precision: PrecisionOption = Precision.fp32,
    actors: Annotated[int, typer.Option("--actors", min=1, max=1024, help="Translators running at once.")] = 1,
    cpus_per_actor: Annotated[float, typer.Option("--cpus-per-actor", min=0.01, help="Ray CPUs per actor.")] = 0.5,
    gpus_per_actor: Annotated[Optional[float], typer.Option("--gpus-per-actor", min=0,
                                                            help="Ray GPUs per actor (default 1 on cuda).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Generator rows per engine call.")] = 16,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Run on this Ray cluster (HEAD:6379 "
                                                       "or auto); default: a private local Ray.")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Skip inputs the manifest records as done.")]
    = True,
    keep_going: Annotated[bool, typer.Option("--keep-going/--fail-fast", help="Record bad files and go on, or "
                                             "stop before running if a file is unreadable.")] = True,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="ONNX Runtime intra-op threads per "
                                                   "actor (default: physical cores).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-file lines.")] = False,
) -> None:
    """Translate a folder (or files, or a glob) on a Ray Data actor pool, locally or on a Ray cluster.

    Examples:

    1. `smoothgan batch photos/ out/ --model afhq --domain dog --actors 2`

    2. `smoothgan batch photos/ out/ --model afhq --domain dog` again: done inputs are skipped (manifest)

    3. On a cluster (every node sees /shared): `ray start --head --port 6379` on the head, `ray start
       --address HEAD:6379` on each worker, then `smoothgan batch /shared/in /shared/out --model /shared/afhq
       --domain dog --device cuda --actors 8 --gpus-per-actor 1 --ray-address HEAD:6379`

    Outputs keep the inputs' relative names (`OUT/<name>_<domain>.png` with the flat layout); `OUT/manifest.jsonl`
    gets one line per input after its outputs are written (the format of `smoothgan translate`), bad files get
    an error line and the exit code is 2 if any failed. Needs `pip install 'smoothgan[ray]'`.
    """
    _need_ray()
    from smoothgan.errors import InputError
    from smoothgan.jobs import LAYOUTS
    from smoothgan.serving.ray_data import run_batch

    if layout not in LAYOUTS:
        raise InputError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")

    def progress(summary: "FolderSummary", record: dict[str, Any]) -> None:
        if quiet:
            return
        done = summary.done + summary.failed
        todo = summary.total - summary.skipped
        if record.get("status") == "ok":
            console.print(f"[{done}/{todo}] {record['input']} -> {', '.join(record['outputs'])}",
                          highlight=False)
        else:
            console.print(f"[{done}/{todo}] failed: {record.get('error')}", highlight=False)

    summary = run_batch(input, output, domain, model=model, backend=backend.value, device=device.value,
                        precision=precision.value, num=num, seed=seed, steps=steps, ref=ref,
                        source_domain=source_domain, layout=layout, resume=resume, keep_going=keep_going,
                        actors=actors, cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor,
                        batch_size=batch_size, ray_address=ray_address, threads=threads, progress=progress)
    rate = summary.done / summary.seconds if summary.seconds > 0 else 0.0
    console.print(f"translated {summary.done}, skipped {summary.skipped} already done, failed {summary.failed} of "
                  f"{summary.total} input(s) ({rate:.1f} img/s); manifest {summary.manifest}",
                  highlight=False)
    if summary.failed:
        raise InputError(f"{summary.failed} of {summary.total} input(s) failed; see {summary.manifest}")
