"""Load test of ``proute serve`` on loopback (127.0.0.1 only; bounded in count and time).

:func:`run` starts the stub upstream (:mod:`proute.serving.stub_upstream`) and ``proute
serve ROUTER`` pointed at it, each in its own process, then:

1. ``clients`` concurrent clients send ``requests`` route-only requests in all
   (``POST /v1/route``, short queries from a fixed set, random known users);
2. the same through the stub upstream (``POST /v1/chat/completions``, ``model: proute``);

and reports for each: throughput, p50/p99 latency, errors (must be 0), the server's peak
RSS and its micro-batches. A phase stops at ``max_seconds`` (the requests not sent are
reported, not counted as errors). With ``bench`` it also measures, in this process:
``route_single`` and ``route_batch`` with precomputed embeddings (no text encoding), and
the latency of one ``/v1/route`` request at a time for a short query (text encoding
included). The entry point is scripts/loadtest.py.
"""

from __future__ import annotations

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
from typing import Any, Callable

from proute.serving.stub_upstream import HOST

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- processes
def start(cmd: list[str], health: str, timeout: float = 180.0, cwd: Path | None = None) -> subprocess.Popen:
    """Start a server process and wait until ``health`` answers 200."""
    import httpx

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stderr = proc.stderr.read() if proc.stderr is not None else ""
            raise RuntimeError(f"{cmd[:4]} exited with {proc.returncode}: {stderr[-2000:]}")
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

    def __enter__(self) -> PeakRSS:
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


def _ms(xs: list[float]) -> float:
    return round(statistics.median(xs) * 1000, 3)


def _timed(fn: Callable[[Any], Any], items: list) -> list[float]:
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t)
    return out


def _batch_rates(router, requests: list[dict]) -> dict[int, float]:
    """Queries per second of ``route_batch`` at a few batch sizes (median of 5)."""
    rates = {}
    for size in (256, 1024, len(requests)):
        router.route_batch(requests[:size])
        reps = _timed(router.route_batch, [requests[:size]] * 5)
        rates[size] = round(size / statistics.median(reps), 1)
    return rates


def _http_latencies(server_url: str, requests: list[dict]) -> list[float]:
    import httpx

    def post(r):
        resp = client.post(server_url + "/v1/route", json=r)
        assert resp.status_code == 200, resp.text

    with httpx.Client(timeout=30) as client:
        for r in requests[:20]:
            client.post(server_url + "/v1/route", json=r)
        return _timed(post, requests)


def bench(router_path: Path, server_url: str, users: list, n_single: int = 300) -> dict:
    from proute.router import PersonalizedRouter  # torch: only for --bench

    rng = random.Random(0)
    texts = list(dict.fromkeys(short_query(rng) for _ in range(4096)))
    plain = PersonalizedRouter.load(router_path)
    emb = plain.encode(texts)
    router = PersonalizedRouter.load(router_path, encoder=_Precomputed(dict(zip(texts, emb, strict=True))))
    requests = [{"query": t, "user_id": rng.choice(users)} for t in texts]
    for r in requests[:20]:
        router.route_single(r)
    single = _timed(router.route_single, requests[:n_single])
    batch = _batch_rates(router, requests)
    encode_only = _timed(lambda t: plain.encode([t]), texts[:100])
    http = _http_latencies(server_url, requests[:n_single])
    return {
        "route_single_precomputed_ms_median": _ms(single),
        "route_single_precomputed_ms_p99": round(_quantile(single, 0.99) * 1000, 3),
        "route_batch_precomputed_queries_per_s": batch,
        "encode_one_short_query_ms_median": _ms(encode_only),
        "http_route_short_query_ms_median": _ms(http),
        "http_route_short_query_ms_p99": round(_quantile(http, 0.99) * 1000, 3),
        "short_query_example": texts[0],
    }


# ---------------------------------------------------------------------------- the run
def _phases(args, url: str, users: list, pid: int) -> list[dict]:
    def route_body(rng, i):
        return {"query": short_query(rng), "user": rng.choice(users)}

    def chat_body(rng, i):
        messages = [{"role": "user", "content": short_query(rng)}]
        return {"model": "proute", "user": str(rng.choice(users)), "messages": messages}

    bound = (args.clients, args.requests, args.max_seconds, pid)
    out = [phase("route", url + "/v1/route", route_body, *bound)]
    if not args.skip_upstream:
        out.append(phase("chat via stub upstream", url + "/v1/chat/completions", chat_body, *bound))
    return out


def _serve(args, router_path: Path, conf: Path, port: int, cwd: Path | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "proute.cli", "serve", str(router_path), "--host", HOST]
    cmd += ["--port", str(port), "--upstreams", str(conf), "--unknown-user", "error"]
    if args.server_threads:
        cmd += ["--threads", str(args.server_threads)]
    return start(cmd, f"http://{HOST}:{port}/health", cwd=cwd)


def run(args, cwd: Path | None = None) -> dict:
    """The load test of ``args`` (scripts/loadtest.py's options); its servers run in ``cwd``."""
    router_path = Path(args.router).resolve()
    meta = json.loads((router_path / "router.json").read_text())
    users, llms = meta["users"], meta["llms"]
    result: dict = {"router": str(router_path), "load_avg_1min": os.getloadavg()[0], "cpus": os.cpu_count()}
    result["server_threads"] = args.server_threads or "torch default"
    with tempfile.TemporaryDirectory() as tmp:
        up_port, port = free_port(), free_port()
        stub = [sys.executable, "-m", "proute.serving.stub_upstream", str(up_port)]
        upstream = start(stub, f"http://{HOST}:{up_port}/docs", cwd=cwd)
        try:
            conf = Path(tmp) / "upstreams.yaml"
            defaults = {"base_url": f"http://{HOST}:{up_port}/v1", "timeout": 30}
            stubs = {m: {"model": f"stub-{m}"} for m in llms}
            conf.write_text(json.dumps({"defaults": defaults, "llms": stubs}))
            server = _serve(args, router_path, conf, port, cwd)
            try:
                url = f"http://{HOST}:{port}"
                result["phases"] = _phases(args, url, users, server.pid)
                if args.bench:
                    from proute.serving.batching import set_threads  # torch: only for --bench

                    set_threads(args.server_threads or None)
                    result["bench"] = bench(router_path, url, users)
            finally:
                stop(server)
        finally:
            stop(upstream)
    return result


def report(result: dict) -> list[str]:
    """The lines scripts/loadtest.py prints for ``result``."""
    lines = [
        f"{p['phase']:>24}: {p['ok']}/{p['requests']} ok, {p['errors']} errors, "
        f"{p['throughput_rps']} req/s, "
        f"p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms, server peak RSS {p['server_peak_rss_mib']} MiB, "
        f"{p['route_batches']} route batches (mean {p['mean_batch']}, largest {p['largest_batch']})"
        for p in result["phases"]
    ]
    lines += [f"{k:>40}: {v}" for k, v in result.get("bench", {}).items()]
    return lines
