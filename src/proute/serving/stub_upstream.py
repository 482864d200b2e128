"""A stub upstream: an OpenAI-compatible chat-completions server that echoes.

It answers ``stub <model>: <message>`` (plain or, with ``stream: true``, as server-sent
events, one word a chunk) and records each request in ``app.state.calls`` (its model,
authorization header and body). It is the upstream of the load test
(:mod:`proute.serving.loadtest`) and of the serving tests, and misbehaves on request: a
message that contains ``STUB_FAIL`` is answered with HTTP 500, ``STUB_BADJSON`` with a body
that is not JSON, ``STUB_STALL`` after ``stall_s`` seconds and, when streaming,
``STUB_BREAK`` stalls after the first chunk.

It answers every model name it is asked for (``GET /v1/models`` lists those it was asked
for so far) and needs no key.

    proute stub-upstream [--port 8001]                # on 127.0.0.1, until interrupted
    python -m proute.serving.stub_upstream PORT       # the same
"""

import asyncio
import json
import sys
import time
from typing import Any

HOST = "127.0.0.1"


def _last_user_text(body: dict) -> str:
    for m in reversed(body.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else json.dumps(c)
    return ""


def _completion(body: dict, text: str, reply: str, created: int) -> dict[str, Any]:
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


async def _events(body: dict, text: str, reply: str, created: int, stall_s: float):
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


def stub_app(stall_s: float = 30.0):
    """The stub's FastAPI app (see the module docstring)."""
    from fastapi import FastAPI, Request  # the serve extra
    from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

    app = FastAPI(title="proute stub upstream")
    app.state.calls = []

    @app.get("/v1/models")
    async def models():
        names = dict.fromkeys(str(c["model"]) for c in app.state.calls)
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "stub"} for m in names]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        app.state.calls.append(
            {"model": body.get("model"), "auth": request.headers.get("authorization"), "body": body}
        )
        text = _last_user_text(body)
        if "STUB_FAIL" in text:
            failure = {"error": {"message": "the stub was told to fail", "type": "server_error"}}
            return JSONResponse(failure, 500)
        if "STUB_BADJSON" in text:
            return PlainTextResponse("this is not JSON")
        if "STUB_STALL" in text:
            await asyncio.sleep(stall_s)
        reply = f"stub {body.get('model')}: {text}"
        created = int(time.time())
        if body.get("stream"):
            events = _events(body, text, reply, created, stall_s)
            return StreamingResponse(events, media_type="text/event-stream")
        return _completion(body, text, reply, created)

    return app


def serve_stub(port: int, host: str = HOST) -> None:
    """Serve the stub on ``host:port`` until interrupted."""
    import uvicorn  # the serve extra

    print(f"proute stub-upstream: an OpenAI-compatible echo on http://{host}:{port}/v1", flush=True)
    uvicorn.run(stub_app(), host=host, port=port, log_level="warning")


if __name__ == "__main__":
    serve_stub(int(sys.argv[1]))
