"""Where each routed LLM is served: the upstreams file and the calls to it.

An upstreams file (YAML; ``conf/upstreams.example.yaml``) maps every LLM name the router
can choose to an OpenAI-compatible chat-completions endpoint::

    defaults:                       # optional; every LLM inherits these keys
      base_url: http://127.0.0.1:8001/v1
      timeout: 60                   # seconds per connect / read / write
      api_key_env: OPENAI_API_KEY   # the *name* of the variable that holds the key
    llms:
      gpt-4o-mini: {}               # model name defaults to the LLM's name
      llama-3.1-8b-instruct:
        base_url: https://example.invalid/v1
        model: meta-llama/Llama-3.1-8B-Instruct
        api_key_env: LLAMA_API_KEY

``llms`` may be left out: with only ``defaults`` (``conf/upstreams.local.yaml``) every LLM
of the router is served at ``defaults.base_url`` under its own name.

The file never holds a key, only the name of the environment variable that does. A named
variable that is unset is an error when the file is read (not at the first request: a
server that starts and then fails every call is worse) for an endpoint beyond this
machine; for a loopback ``base_url`` (``127.0.0.1``, ``localhost``, ``::1``: a local vLLM,
llama.cpp or ``proute stub-upstream``, which usually take no key) it is an
:class:`UpstreamsWarning` and the calls go without a key. A problem of the file is an
:class:`UpstreamsError` naming the file and the field.

:func:`chat_url`/:func:`request_headers` build the request; :func:`complete` is the
blocking call of ``proute infer`` and ``proute chat``; the server forwards with its own
asynchronous client (:mod:`proute.serving.app`). Failures of the call are :class:`UpstreamError`,
naming the upstream.
"""

from __future__ import annotations

import ipaddress
import math
import os
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

_KEYS = ("base_url", "model", "api_key_env", "timeout", "headers")
DEFAULT_TIMEOUT = 60.0


class UpstreamsError(ValueError):
    """The upstreams file is unreadable, malformed, or does not cover the router's LLMs."""


class UpstreamsWarning(UserWarning):
    """An upstreams file's api_key_env names an unset variable for a loopback endpoint: its
    calls go without a key."""


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine (``localhost`` or a loopback address)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class UpstreamError(RuntimeError):
    """A call to an upstream failed (connection, timeout, an error status, a bad body)."""

    def __init__(self, upstream: "Upstream", message: str, status: int | None = None):
        super().__init__(f"upstream {upstream.llm!r} ({upstream.base_url}): {message}")
        self.upstream = upstream
        self.status = status


@dataclass(frozen=True)
class Upstream:
    """One LLM's endpoint: ``POST {base_url}/chat/completions`` with ``model``."""

    llm: str
    base_url: str
    model: str
    api_key_env: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def describe(self) -> dict[str, Any]:
        """What ``/health`` shows (no key, only the variable's name)."""
        return {
            "llm": self.llm,
            "base_url": self.base_url,
            "model": self.model,
            "api_key_env": self.api_key_env,
            "timeout": self.timeout,
        }


def chat_url(upstream: Upstream) -> str:
    return upstream.base_url.rstrip("/") + "/chat/completions"


def request_headers(upstream: Upstream) -> dict[str, str]:
    headers = {"content-type": "application/json", **dict(upstream.headers)}
    key = upstream.api_key
    if key:
        headers["authorization"] = f"Bearer {key}"
    return headers


def upstream_body(upstream: Upstream, body: dict[str, Any]) -> dict[str, Any]:
    """The request as the upstream gets it: its own model name, proute's fields removed."""
    out = {k: v for k, v in body.items() if k not in ("task", "proute")}
    out["model"] = upstream.model
    return out


def _one(path: Path, where: str, raw: Any, defaults: dict[str, Any], llm: str) -> Upstream:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UpstreamsError(f"{path}: field {where!r} must be a mapping of {list(_KEYS)}, got {raw!r}")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise UpstreamsError(f"{path}: field {where}.{unknown[0]!r} is not one of {list(_KEYS)}")
    spec = {**defaults, **raw}
    base_url = spec.get("base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise UpstreamsError(
            f"{path}: field {where}.base_url must be an http(s) URL such as "
            f"'http://127.0.0.1:8001/v1' (here or under 'defaults'), got {base_url!r}"
        )
    model = spec.get("model", llm)
    if not isinstance(model, str) or not model:
        raise UpstreamsError(f"{path}: field {where}.model must be a non-empty string, got {model!r}")
    timeout = spec.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (0 < timeout < math.inf):
        raise UpstreamsError(
            f"{path}: field {where}.timeout must be a positive number of seconds, got {timeout!r}"
        )
    env = spec.get("api_key_env")
    if env is not None:
        if not isinstance(env, str) or not env:
            raise UpstreamsError(
                f"{path}: field {where}.api_key_env must name an environment variable, got {env!r}"
            )
    headers = spec.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise UpstreamsError(f"{path}: field {where}.headers must map header names to strings")
    return Upstream(llm, base_url, model, env, float(timeout), tuple((str(k), v) for k, v in headers.items()))


def _check_keys(path: Path, out: dict[str, Upstream], listed: dict) -> None:
    """Unset ``api_key_env`` variables: an error for an endpoint beyond this machine, one
    warning per (variable, loopback endpoint) otherwise (see the module docstring)."""
    keyless: dict[tuple[str, str], list[str]] = {}
    for name, up in out.items():
        env = up.api_key_env
        if env is None or env in os.environ:
            continue
        own = listed.get(name)
        where = f"llms.{name}" if isinstance(own, dict) and "api_key_env" in own else "defaults"
        if not is_loopback(up.base_url):
            raise UpstreamsError(
                f"{path}: field {where}.api_key_env names the environment variable {env!r}, which is "
                f"not set, and {up.base_url} is not on this machine; export it (the file holds the "
                "variable's name, never the key), or remove api_key_env if the endpoint takes no key"
            )
        keyless.setdefault((env, up.base_url), []).append(name)
    for (env, url), names in keyless.items():
        warnings.warn(
            UpstreamsWarning(
                f"{path}: the environment variable {env!r} (api_key_env) is not set; calling "
                f"{url} (this machine) without a key for {names}"
            ),
            stacklevel=3,
        )


def load_upstreams(path: str | os.PathLike, llms: Iterable[str] | None = None) -> dict[str, Upstream]:
    """Read an upstreams file: ``{llm name: Upstream}``.

    With ``llms`` (the router's LLM names), every one must have an upstream: listed under
    ``llms:``, or, when ``defaults`` gives a ``base_url``, served there under its own name.
    An LLM in the file that the router does not know is an error too (a typo). Without
    ``llms``, only the LLMs the file lists are returned.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UpstreamsError(
            f"{path}: cannot read the upstreams file ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UpstreamsError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(doc, dict) or not ({"defaults", "llms"} & set(doc)):
        raise UpstreamsError(
            f"{path}: expected a mapping with a field 'defaults' (where every LLM is served) "
            "and/or 'llms' (LLM name -> its endpoint)"
        )
    listed = doc.get("llms") or {}
    if not isinstance(listed, dict):
        raise UpstreamsError(f"{path}: field 'llms' must map LLM names to their endpoints, got {listed!r}")
    extra = sorted(set(doc) - {"defaults", "llms"})
    if extra:
        raise UpstreamsError(f"{path}: unknown top-level field {extra[0]!r}; expected 'defaults' and 'llms'")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise UpstreamsError(f"{path}: field 'defaults' must be a mapping, got {defaults!r}")
    bad = sorted(set(defaults) - (set(_KEYS) - {"model"}))
    if bad:
        bad = bad[0]
        raise UpstreamsError(
            f"{path}: field defaults.{bad!r} is not allowed; 'defaults' takes "
            f"{[k for k in _KEYS if k != 'model']} (each LLM's model name is its own)"
        )
    out = {str(name): _one(path, f"llms.{name}", raw, defaults, str(name)) for name, raw in listed.items()}
    if llms is not None:
        llms = list(llms)
        strangers = sorted(set(out) - set(llms))
        if strangers:
            raise UpstreamsError(f"{path}: field llms.{strangers[0]!r} is not an LLM of this router ({llms})")
        missing = [m for m in llms if m not in out]
        if missing and not defaults.get("base_url"):
            raise UpstreamsError(
                f"{path}: field 'llms' has no upstream for {missing}; list them, or give "
                "defaults.base_url to serve them there under their own names"
            )
        for m in missing:
            out[m] = _one(path, "defaults", {}, defaults, m)
    _check_keys(path, out, listed)
    return out


def message_text(content: Any) -> str | None:
    """The text of a chat message's ``content``: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        texts = [p for p in parts if isinstance(p, str)]
        if parts and len(texts) == len(parts):
            return "\n".join(texts)
    return None


def answer_text(response: dict[str, Any]) -> str:
    """The first choice's message text of a chat-completions response ('' when absent)."""
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    return message_text(content) or ""


def complete(upstream: Upstream, body: dict[str, Any], client=None) -> dict[str, Any]:
    """POST a chat-completions request to ``upstream`` and return its JSON (blocking).

    Raises :class:`UpstreamError` on a connection failure, a timeout, a non-2xx status or
    a body that is not a JSON object.
    """
    import httpx

    own = client is None
    client = client or httpx.Client()
    try:
        resp = client.post(
            chat_url(upstream),
            json=upstream_body(upstream, {**body, "stream": False}),
            headers=request_headers(upstream),
            timeout=upstream.timeout,
        )
    except httpx.TimeoutException:
        raise UpstreamError(upstream, f"no answer within its timeout of {upstream.timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise UpstreamError(upstream, f"request failed ({type(exc).__name__}: {exc})") from None
    finally:
        if own:
            client.close()
    return parse_response(upstream, resp.status_code, resp.content)


def parse_response(upstream: Upstream, status: int, content: bytes) -> dict[str, Any]:
    """The JSON object of an upstream's answer, or :class:`UpstreamError` saying why not."""
    import json

    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not 200 <= status < 300:
        detail = data.get("error") if isinstance(data, dict) else None
        if isinstance(detail, dict):
            detail = detail.get("message", detail)
        detail = detail or content[:200].decode("utf-8", "replace")
        raise UpstreamError(upstream, f"answered HTTP {status}: {detail}", status)
    if not isinstance(data, dict):
        raise UpstreamError(upstream, f"answered HTTP {status} with a body that is not a JSON object")
    return data
