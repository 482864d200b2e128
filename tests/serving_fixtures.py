"""What the serving tests share: a uvicorn server in a thread on a free loopback port, the
tiny trained router and an upstreams file for the stub upstream
(:mod:`proute.serving.stub_upstream`)."""

import socket
import threading
import time
from pathlib import Path

import conftest
from proute.serving.stub_upstream import HOST

KEY_ENV = "PROUTE_TEST_UPSTREAM_KEY"
TIMEOUT = 1.5  # the stub upstreams' timeout: STUB_STALL answers after 6 s


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


def train_tiny_router(tmp_path_factory, cache_dir) -> Path:
    """The router directory of one tiny training run on the fixtures (seconds)."""
    return conftest.train_tiny_router(tmp_path_factory.mktemp("run"), cache_dir)


def write_upstreams(path: Path, base_url: str, llms, timeout: float = TIMEOUT) -> Path:
    """An upstreams file serving every LLM at the stub as ``stub-<llm>``, keyed by KEY_ENV."""
    import yaml

    doc = {
        "defaults": {"base_url": base_url, "timeout": timeout, "api_key_env": KEY_ENV},
        "llms": {m: {"model": f"stub-{m}"} for m in llms},
    }
    path.write_text(yaml.safe_dump(doc))
    return path
