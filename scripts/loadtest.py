"""Load test of ``proute serve`` on loopback (127.0.0.1 only; bounded in count and time).

    python scripts/loadtest.py ROUTER [--clients 32] [--requests 2000] [--max-seconds 120]
                               [--skip-upstream] [--bench] [--out FILE.json]

Starts a stub upstream (an OpenAI-compatible chat-completions server that echoes) and
``proute serve ROUTER`` pointed at it, each in its own process, then:

1. ``--clients`` concurrent clients send ``--requests`` route-only requests in all
   (``POST /v1/route``, short queries from a fixed set, random known users);
2. the same through the stub upstream (``POST /v1/chat/completions``, ``model: proute``);

and reports for each: throughput, p50/p99 latency, errors (must be 0), the server's peak
RSS and its micro-batches. A phase stops at ``--max-seconds`` (the requests not sent are
reported, not counted as errors).

``--bench`` also measures, in this process: ``route_single`` and ``route_batch`` with
precomputed embeddings (no text encoding), and the latency of one ``/v1/route`` request at a
time for a short query (text encoding included).

The stub upstream (:func:`stub_app`) and :class:`ServerThread` (uvicorn in a thread on a
free loopback port) are used by tests/test_serve.py too. The stub answers a message that
contains ``STUB_FAIL`` with HTTP 500, ``STUB_BADJSON`` with a body that is not JSON,
``STUB_STALL`` after ``stall_s`` seconds and, when streaming, ``STUB_BREAK`` stalls after
the first chunk.
"""

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"

QUERIES = [
    "What is {a} + {b}?",
    "Write a Python function that returns the {a}th Fibonacci number.",
    "Summarise the causes of the French Revolution in {a} sentences.",
    "Translate 'good morning, I have {a} cats' into German.",
    "Solve for x: {a}x + {b} = 0",
    "Which is larger, {a}/{b} or {b}/{a}? Explain briefly.",
    "Give me {a} tips for writing clear commit messages.",
    "What is the capital of the country with ISO code number {a}?",
]


def short_query(rng: random.Random) -> str:
    return rng.choice(QUERIES).format(a=rng.randint(2, 99), b=rng.randint(2, 99))


# ---------------------------------------------------------------------------- stub upstream
def _last_user_text(body: dict) -> str:
    for m in reversed(body.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else json.dumps(c)
    return ""


def stub_app(stall_s: float = 30.0):
    """An OpenAI-compatible chat-completions stub: answers ``stub <model>: <message>``;
    ``app.state.calls`` records each request's model, authorization header and body."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

    app = FastAPI()
    app.state.calls = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        app.state.calls.append(
            {"model": body.get("model"), "auth": request.headers.get("authorization"), "body": body}
        )
        text = _last_user_text(body)
        if "STUB_FAIL" in text:
            return JSONResponse(
                {"error": {"message": "the stub was told to fail", "type": "server_error"}}, 500
            )
        if "STUB_BADJSON" in text:
            return PlainTextResponse("this is not JSON")
        if "STUB_STALL" in text:
            await asyncio.sleep(stall_s)
        reply = f"stub {body.get('model')}: {text}"
        created = int(time.time())
        if body.get("stream"):

            async def events():
                for i, word in enumerate(reply.split(" ")):
                    chunk = {
                        "id": "chatcmpl-stub",
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": body.get("model"),
                        "choices": [{"index": 0, "delta": {"content": (" " if i else "") + word}}],
                    }
                    yield f"data: {json.dumps(chunk)}\n\n"
                    if "STUB_BREAK" in text:
                        await asyncio.sleep(stall_s)
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": created,
            "model": body.get("model"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": len(text.split()),
                "completion_tokens": len(reply.split()),
                "total_tokens": 0,
            },
        }

    return app


class ServerThread:
    """``with ServerThread(app) as s: s.url`` — uvicorn serving ``app`` on a free loopback
    port in a daemon thread, lifespan included; stopped on exit."""

    def __init__(self, app, log_level: str = "warning"):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server thread did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- processes
def start(cmd: list[str], health: str, timeout: float = 180.0) -> subprocess.Popen:
    """Start a server process and wait until ``health`` answers 200."""
    import httpx

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[:4]} exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(health, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{cmd[:4]} did not answer {health} within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class PeakRSS:
    """Samples a process's RSS every 20 ms in a thread; ``peak`` in bytes."""

    def __init__(self, pid: int):
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except Exception:
                return
            time.sleep(0.02)

    def __enter__(self) -> "PeakRSS":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join(2)


# ---------------------------------------------------------------------------- load
async def _load(url: str, make_body, clients: int, total: int, max_seconds: float, timeout: float = 60.0):
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(total))
    deadline = time.perf_counter() + max_seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(k: int, http: httpx.AsyncClient) -> None:
        rng = random.Random(k)
        for i in counter:
            if time.perf_counter() > deadline:
                return
            t = time.perf_counter()
            try:
                r = await http.post(url, json=make_body(rng, i))
                if r.status_code != 200:
                    errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                    continue
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - t)

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(k, http) for k in range(clients)))
        wall = time.perf_counter() - t0
    return latencies, errors, wall


def _quantile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def phase(
    name: str, url: str, make_body, clients: int, total: int, max_seconds: float, server_pid: int
) -> dict:
    import httpx

    base = url.split("/v1/")[0]
    before = httpx.get(base + "/health", timeout=10).json()["batching"]
    with PeakRSS(server_pid) as rss:
        latencies, errors, wall = asyncio.run(_load(url, make_body, clients, total, max_seconds))
    after = httpx.get(base + "/health", timeout=10).json()["batching"]
    done = len(latencies)
    batches = after["batches"] - before["batches"]
    out = {
        "phase": name,
        "clients": clients,
        "requests": total,
        "ok": done,
        "errors": len(errors),
        "not_sent": total - done - len(errors),
        "seconds": round(wall, 3),
        "throughput_rps": round(done / wall, 1) if wall > 0 else None,
        "p50_ms": round(_quantile(latencies, 0.5) * 1000, 2),
        "p99_ms": round(_quantile(latencies, 0.99) * 1000, 2),
        "server_peak_rss_mib": round(rss.peak / 2**20, 1),
        "route_batches": batches,
        "mean_batch": round((after["requests"] - before["requests"]) / batches, 1) if batches else None,
        "largest_batch": after["largest_batch"],
    }
    if errors:
        out["first_errors"] = errors[:5]
    return out


# ---------------------------------------------------------------------------- in-process bench
class _Precomputed:
    """A text encoder that returns precomputed embeddings (no model call)."""

    def __init__(self, table: dict):
        import numpy as np

        self.table, self.np = table, np

    def encode(self, texts):
        return self.np.stack([self.table[t] for t in texts])


def bench(router_path: Path, server_url: str, users: list, n_single: int = 300) -> dict:
    import httpx

    from proute.router import PersonalizedRouter

    rng = random.Random(0)
    texts = list(dict.fromkeys(short_query(rng) for _ in range(4096)))
    plain = PersonalizedRouter.load(router_path)
    emb = plain.encode(texts)
    router = PersonalizedRouter.load(router_path, encoder=_Precomputed(dict(zip(texts, emb, strict=True))))
    requests = [{"query": t, "user_id": rng.choice(users)} for t in texts]
    for r in requests[:20]:
        router.route_single(r)
    single = []
    for r in requests[:n_single]:
        t = time.perf_counter()
        router.route_single(r)
        single.append(time.perf_counter() - t)
    batch = {}
    for size in (256, 1024, len(requests)):
        router.route_batch(requests[:size])
        reps = []
        for _ in range(5):
            t = time.perf_counter()
            router.route_batch(requests[:size])
            reps.append(time.perf_counter() - t)
        batch[size] = round(size / statistics.median(reps), 1)
    encode_only = []
    for t in texts[:100]:
        s = time.perf_counter()
        plain.encode([t])
        encode_only.append(time.perf_counter() - s)
    http = []
    with httpx.Client(timeout=30) as client:
        for r in requests[:20]:
            client.post(server_url + "/v1/route", json=r)
        for r in requests[:n_single]:
            t = time.perf_counter()
            resp = client.post(server_url + "/v1/route", json=r)
            http.append(time.perf_counter() - t)
            assert resp.status_code == 200, resp.text
    ms = lambda xs: round(statistics.median(xs) * 1000, 3)  # noqa: E731
    return {
        "route_single_precomputed_ms_median": ms(single),
        "route_single_precomputed_ms_p99": round(_quantile(single, 0.99) * 1000, 3),
        "route_batch_precomputed_queries_per_s": batch,
        "encode_one_short_query_ms_median": ms(encode_only),
        "http_route_short_query_ms_median": ms(http),
        "http_route_short_query_ms_p99": round(_quantile(http, 0.99) * 1000, 3),
        "short_query_example": texts[0],
    }


# ---------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict:
    router_path = Path(args.router).resolve()
    meta = json.loads((router_path / "router.json").read_text())
    users, llms = meta["users"], meta["llms"]
    result: dict = {"router": str(router_path), "load_avg_1min": os.getloadavg()[0], "cpus": os.cpu_count()}
    result["server_threads"] = args.server_threads or "torch default"
    with tempfile.TemporaryDirectory() as tmp:
        up_port, port = free_port(), free_port()
        upstream = start(
            [sys.executable, __file__, "--stub-upstream", str(up_port)], f"http://{HOST}:{up_port}/docs"
        )
        try:
            conf = Path(tmp) / "upstreams.yaml"
            conf.write_text(
                json.dumps(
                    {
                        "defaults": {"base_url": f"http://{HOST}:{up_port}/v1", "timeout": 30},
                        "llms": {m: {"model": f"stub-{m}"} for m in llms},
                    }
                )
            )
            cmd = [sys.executable, "-m", "proute.cli", "serve", str(router_path), "--host", HOST]
            cmd += ["--port", str(port), "--upstreams", str(conf), "--unknown-user", "error"]
            if args.server_threads:
                cmd += ["--threads", str(args.server_threads)]
            server = start(cmd, f"http://{HOST}:{port}/health")
            try:
                url = f"http://{HOST}:{port}"

                def route_body(rng, i):
                    return {"query": short_query(rng), "user": rng.choice(users)}

                def chat_body(rng, i):
                    messages = [{"role": "user", "content": short_query(rng)}]
                    return {"model": "proute", "user": str(rng.choice(users)), "messages": messages}

                result["phases"] = [
                    phase(
                        "route",
                        url + "/v1/route",
                        route_body,
                        args.clients,
                        args.requests,
                        args.max_seconds,
                        server.pid,
                    )
                ]
                if not args.skip_upstream:
                    result["phases"].append(
                        phase(
                            "chat via stub upstream",
                            url + "/v1/chat/completions",
                            chat_body,
                            args.clients,
                            args.requests,
                            args.max_seconds,
                            server.pid,
                        )
                    )
                if args.bench:
                    if args.server_threads:
                        import torch

                        torch.set_num_threads(args.server_threads)
                    result["bench"] = bench(router_path, url, users)
            finally:
                stop(server)
        finally:
            stop(upstream)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("router", nargs="?", help="exported router directory")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000, help="requests per phase, all clients together")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="time bound of each phase")
    parser.add_argument("--skip-upstream", action="store_true", help="route-only phase alone")
    parser.add_argument("--bench", action="store_true", help="also the in-process and one-at-a-time numbers")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--server-threads",
        type=int,
        default=1,
        help="torch threads of the server and of --bench (default 1: more oversubscribe a busy machine; "
        "0: torch's default)",
    )
    parser.add_argument("--stub-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stub_upstream is not None:
        import uvicorn

        uvicorn.run(stub_app(), host=HOST, port=args.stub_upstream, log_level="warning")
        return 0
    if args.router is None:
        parser.error("give the router directory")
    result = run(args)
    for p in result["phases"]:
        print(
            f"{p['phase']:>24}: {p['ok']}/{p['requests']} ok, {p['errors']} errors, "
            f"{p['throughput_rps']} req/s, "
            f"p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms, server peak RSS {p['server_peak_rss_mib']} MiB, "
            f"{p['route_batches']} route batches (mean {p['mean_batch']}, largest {p['largest_batch']})"
        )
    if "bench" in result:
        for k, v in result["bench"].items():
            print(f"{k:>40}: {v}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if any(p["errors"] for p in result["phases"]) else 0


if __name__ == "__main__":
    sys.exit(main())
