"""smoothgan serve: the HTTP contract (parsing, limits, 4xx), cross-request batching equal to direct Translator
calls, and the real Ray Serve app on a loopback port under a bounded burst of concurrent clients."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import numpy as np
import pytest
from PIL import Image

from smoothgan.serving.http import Job, Limits, RequestError, answer, check_length, check_route, parse
from smoothgan.serving.service import Service
from smoothgan.translator import Translator, load

DOMAINS = ("a", "b")


def png_bytes(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


def photo(seed: int, size: tuple[int, int] = (40, 48)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def translator(tiny_bundle: Any) -> Translator:
    return load(tiny_bundle.path, max_batch=8)


def status_of(route: str, query: dict[str, str], body: bytes, content_type: Optional[str] = None,
              limits: Limits = Limits()) -> int:
    with pytest.raises(RequestError) as info:
        parse(route, query, content_type, body, DOMAINS, limits)
    assert "\n" not in str(info.value) and str(info.value)
    return info.value.status


# ---- the contract, without a server -------------------------------------------------------------------------

def test_routes_and_methods() -> None:
    assert check_route("/translate/", "post") == "/translate"
    assert check_route("/health", "GET") == "/health"
    with pytest.raises(RequestError) as info:
        check_route("/nope", "GET")
    assert info.value.status == 404
    with pytest.raises(RequestError) as info:
        check_route("/translate", "GET")
    assert info.value.status == 405 and "POST" in str(info.value)


def test_request_errors_are_one_line_4xx() -> None:
    good = png_bytes(photo(0))
    assert status_of("/translate", {}, good) == 400  # no domain
    assert status_of("/translate", {"domain": "zebra"}, good) == 400
    assert status_of("/translate", {"domain": "a", "seed": "-1"}, good) == 400
    assert status_of("/translate", {"domain": "a", "seed": "x"}, good) == 400
    assert status_of("/translate", {"domain": "a", "num": "17"}, good) == 400  # over max_num 16
    assert status_of("/translate", {"domain": "a", "colour": "red"}, good) == 400
    assert status_of("/translate", {"domain": "a", "format": "gif"}, good) == 400
    assert status_of("/interpolate", {"domain": "a", "steps": "65"}, good) == 400  # over max_steps 64
    assert status_of("/interpolate", {"domain": "a", "steps": "1"}, good) == 400
    assert status_of("/interpolate", {"domain": "a", "mode": "cubic"}, good) == 400
    assert status_of("/translate", {"domain": "a"}, b"") == 400
    assert status_of("/translate", {"domain": "a"}, b"definitely not an image") == 400
    assert status_of("/translate", {"domain": "a"}, good[: len(good) // 2]) == 400  # truncated PNG
    assert status_of("/translate", {"domain": "a"}, b"{", "application/json") == 400
    assert status_of("/translate", {"domain": "a"}, b'{"image": "***"}', "application/json") == 400
    assert status_of("/translate", {"domain": "a"}, b'{"img": "x"}', "application/json") == 400
    assert status_of("/translate", {"domain": "a"}, good, limits=Limits(max_bytes=100)) == 413
    assert status_of("/translate", {"domain": "a"}, good, limits=Limits(max_pixels=40 * 48 - 1)) == 413
    refs = json.dumps({"image": base64.b64encode(good).decode(), "ref": [base64.b64encode(good).decode()]})
    assert status_of("/translate", {"domain": "a", "num": "2"}, refs.encode(), "application/json") == 400
    two = json.dumps({"image": base64.b64encode(good).decode(), "ref": [base64.b64encode(good).decode()] * 2})
    assert status_of("/interpolate", {"domain": "a"}, two.encode(), "application/json") == 400
    with pytest.raises(RequestError) as info:
        check_length("999999999", Limits())
    assert info.value.status == 413


def test_body_forms_decode_the_same() -> None:
    image = photo(1)
    raw = png_bytes(image)
    boundary = "xYzBoUnDaRy"
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n"
                 "Content-Type: image/png\r\n\r\n").encode() + raw + f"\r\n--{boundary}--\r\n".encode()
    as_json = json.dumps({"image": base64.b64encode(raw).decode()}).encode()
    jobs = [parse("/translate", {"domain": "b", "seed": "3"}, ctype, body, DOMAINS, Limits())
            for ctype, body in ((None, raw), ("application/x-www-form-urlencoded", raw),
                                (f"multipart/form-data; boundary={boundary}", multipart),
                                ("application/json", as_json))]
    for job in jobs:
        assert job.domain == "b" and job.seed == 3 and job.num == 1 and job.rows == 1
        np.testing.assert_array_equal(job.image, image)
    no_image = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"picture\"\r\n\r\n").encode() + raw + \
        f"\r\n--{boundary}--\r\n".encode()
    assert status_of("/translate", {"domain": "a"}, no_image, f"multipart/form-data; boundary={boundary}") == 400


def test_answer_formats() -> None:
    frames = np.stack([photo(2, (32, 32)), photo(3, (32, 32))])
    media, body = answer(Job("translate", frames[0], "a", format="png"), frames[:1], {})
    assert media == "image/png"
    np.testing.assert_array_equal(decode(body), frames[0])
    media, body = answer(Job("translate", frames[0], "a", num=2), frames, {"seed": 0})
    data = json.loads(body)
    assert media == "application/json" and data["metadata"] == {"seed": 0} and len(data["images"]) == 2
    np.testing.assert_array_equal(decode(base64.b64decode(data["images"][1])), frames[1])
    media, _ = answer(Job("translate", frames[0], "a", format="jpeg"), frames[:1], {})
    assert media == "image/jpeg"
    media, body = answer(Job("interpolate", frames[0], "a", steps=2), frames, {})
    assert len(json.loads(body)["frames"]) == 2


def test_one_batch_of_mixed_requests_equals_direct_calls(translator: Translator) -> None:
    service = Service(translator)
    a, b, c, r = photo(10), photo(11, (64, 30)), photo(12), photo(13)
    jobs = [Job("translate", a, "b", seed=3), Job("translate", b, "a", seed=7, num=3),
            Job("interpolate", c, "b", seed=5, steps=4), Job("translate", a, "a", refs=[r, c]),
            Job("interpolate", b, "a", seed=1, steps=3, source_domain="b", mode="slerp")]
    direct = [translator.translate(a, "b", seed=3), translator.translate(b, "a", seed=7, num=3),
              translator.interpolate(c, "b", seed=5, steps=4), translator.translate(a, "a", ref=[r, c]),
              translator.interpolate(b, "a", seed=1, steps=3, source_domain="b", mode="slerp")]
    outputs = service.generate([service.prepare(job) for job in jobs])  # 1 + 3 + 4 + 2 + 3 = 13 rows, batches of 8
    for out, want, job in zip(outputs, direct, jobs):
        assert out.shape == want.images[0].shape == (job.rows, 32, 32, 3)
        assert int(np.abs(out.astype(int) - want.images[0]).max()) <= 1
    stats = service.stats()
    assert stats["batches"] == 1 and stats["largest_batch"] == 5 and stats["rows"] == 13
    meta = service.prepare(jobs[2]).metadata
    assert meta["source_domain"] == direct[2].metadata["source_domains"][0] and meta["source_domain_inferred"]
    assert meta["model_sha256"] == translator.bundle.weights_sha256


def test_app_is_a_serve_application(tiny_bundle: Any) -> None:
    pytest.importorskip("ray.serve")
    from ray import serve

    import smoothgan.serving

    application = smoothgan.serving.app(tiny_bundle.path, max_batch=4, max_wait_ms=5)
    assert isinstance(application, serve.Application)
    with pytest.raises(Exception, match="runs on"):
        smoothgan.serving.app(tiny_bundle.path, backend="tensorrt", device="cpu")


def test_importing_smoothgan_and_the_cli_does_not_import_ray() -> None:
    code = ("import sys, smoothgan, smoothgan.cli, smoothgan.serving, smoothgan.serving.http; "
            "sys.exit(3 if 'ray' in sys.modules or 'tritonclient' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_serve_refuses_a_busy_port_before_starting_ray(tiny_bundle: Any) -> None:
    pytest.importorskip("ray.serve")
    from typer.testing import CliRunner

    from smoothgan.cli import app

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", str(tiny_bundle.path), "--port", str(port)])
    assert result.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in result.output
    import ray

    assert not ray.is_initialized()


# ---- the real server ----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(url: str, body: Optional[bytes] = None, headers: Optional[dict[str, str]] = None,
            timeout: float = 60) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.headers.get("content-type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), exc.read()


def stop(process: subprocess.Popen, timeout: float = 60) -> Optional[int]:
    """SIGTERM to the driver, then SIGKILL if it has not exited in time; its return code (None if killed)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            return None
    return process.returncode


@pytest.fixture(scope="module")
def server(tiny_bundle: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("ray.serve")
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, "-c", "from smoothgan.cli import main; main()", "serve", str(tiny_bundle.path),
           "--backend", "torch", "--port", str(port), "--max-batch", "8", "--max-wait-ms", "50", "--cpus-per-replica", "0.5",
           "--max-bytes", "200000", "--max-num", "4"]
    with open(log, "wb") as handle:
        process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 150
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"smoothgan serve exited with {process.returncode}: {log.read_text()[-2000:]}")
            try:
                if request(url + "/health", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"smoothgan serve not healthy after 150 s: {log.read_text()[-2000:]}")
            time.sleep(1)
        yield url, process, log
    finally:
        stop(process)


@pytest.mark.slow
def test_server_batches_concurrent_clients_with_direct_results(server: Any, translator: Translator) -> None:
    url, _, _ = server
    status, media, body = request(url + "/model")
    info = json.loads(body)
    assert status == 200 and media == "application/json"
    assert info["domains"] == list(DOMAINS) and info["sha256"] == translator.bundle.weights_sha256
    assert info["backend"] == "torch" and info["precision"] == "fp32"
    sources = [photo(100 + i) for i in range(4)]
    encoded = [png_bytes(s) for s in sources]

    def case(client: int, k: int) -> tuple[int, str, int, int]:
        return client % 4, DOMAINS[(client + k) % 2], 1000 * client + k, 1 + (client + k) % 3 // 2

    def client(index: int) -> list[tuple[tuple[int, str, int, int], int, str, bytes]]:
        out = []
        for k in range(5):
            src, domain, seed, num = spec = case(index, k)
            status, media, body = request(f"{url}/translate?domain={domain}&seed={seed}&num={num}", encoded[src],
                                          {"Content-Type": "image/png"})
            out.append((spec, status, media, body))
        return out

    with ThreadPoolExecutor(16) as pool:
        answers = [a for result in pool.map(client, range(16)) for a in result]
    assert len(answers) == 80
    for (src, domain, seed, num), status, media, body in answers:
        assert status == 200, body[:200]
        want = translator.translate(sources[src], domain, seed=seed, num=num).images[0]
        if num == 1:
            assert media == "image/png"
            got = decode(body)[None]
        else:
            assert media == "application/json"
            got = np.stack([decode(base64.b64decode(b)) for b in json.loads(body)["images"]])
        assert int(np.abs(got.astype(int) - want).max()) <= 1
    batching = json.loads(request(url + "/model")[2])["batching"]
    assert batching["requests"] >= 80 and batching["largest_batch"] > 1, batching

    status, media, body = request(f"{url}/interpolate?domain=b&steps=5&seed=9", encoded[0])
    want = translator.interpolate(sources[0], "b", steps=5, seed=9)
    frames = np.stack([decode(base64.b64decode(b)) for b in json.loads(body)["frames"]])
    assert status == 200 and int(np.abs(frames.astype(int) - want.images[0]).max()) <= 1
    assert json.loads(body)["metadata"]["source_domain"] == want.metadata["source_domains"][0]
    ref = json.dumps({"image": base64.b64encode(encoded[1]).decode(), "ref": [base64.b64encode(encoded[2]).decode()]})
    status, media, body = request(f"{url}/translate?domain=a", ref.encode(), {"Content-Type": "application/json"})
    want = translator.translate(sources[1], "a", ref=sources[2]).images[0]
    assert status == 200 and int(np.abs(decode(body)[None].astype(int) - want).max()) <= 1


@pytest.mark.slow
def test_server_refuses_bad_requests_with_4xx_and_stops_on_sigterm(server: Any) -> None:
    url, process, log = server
    cases = [
        (request(f"{url}/translate?domain=a", b"not an image"), 400),
        (request(f"{url}/translate?domain=a", b"\0" * 300_000), 413),  # over --max-bytes 200000
        (request(f"{url}/translate?domain=a&num=5", png_bytes(photo(0))), 400),  # over --max-num 4
        (request(f"{url}/translate?domain=nope", png_bytes(photo(0))), 400),
        (request(f"{url}/translate"), 405),
        (request(f"{url}/nowhere"), 404),
    ]
    for (status, media, body), want in cases:
        assert status == want, body[:200]
        error = json.loads(body)
        assert error["status"] == want and "\n" not in error["error"]
    assert request(url + "/health")[0] == 200  # still serving
    started = time.monotonic()
    code = stop(process, timeout=60)
    assert code == 0, log.read_text()[-2000:]
    assert time.monotonic() - started < 60
    assert "stopped" in log.read_text()
