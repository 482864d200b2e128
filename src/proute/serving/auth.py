"""API keys for ``proute serve --api-keys FILE``: the keys file, who may do what, and a
token bucket per key.

A key is ``pk-`` and 43 random URL-safe characters (:func:`new_key`), shown once by
``proute keys create`` (:mod:`proute.cli.keys`); the keys file keeps only its SHA-256
(``sha256:<hex>``; a key has 256 random bits, so a fast hash is enough), its id and its
first characters (``prefix``, to recognise it in ``proute keys list``). A presented key is
hashed and compared with every key's hash by :func:`hmac.compare_digest` (constant time, no
early exit). The file, YAML (JSON is YAML too)::

    rate: 20/s            # optional: the server's default limit per key
    burst: 40
    keys:
      - {id: k3f9a1c2, prefix: pk-Xy12, hash: "sha256:...", role: app, users: [3, alice],
         name: web, created: "2026-12-03T11:00:00Z", revoked: null, rate: 5/s, burst: 10}

Roles: ``admin`` may do anything. ``app`` routes and chats for any user, or, bound to
users (``users: [...]``), only for them; it sends feedback and adds users only for the
users it is bound to (an unbound ``app`` key may not). Every path needs a key when keys are
on, ``/health``, ``/docs``, ``/redoc`` and ``/openapi.json`` included: 401 without a valid
one, 403 for what the key may not do, 429 over its rate (``retry-after``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proute.data.ids import UserIdError, user_key
from proute.serving.errors import APIError
from proute.serving.ratelimit import TokenBucket, describe_rate, parse_burst, parse_rate

log = logging.getLogger(__name__)

ROLES = ("admin", "app")
KEY_PREFIX = "pk-"
DEFAULT_RATE = "20/s"


class KeysFileError(ValueError):
    """A keys file that cannot be read or has a bad field; the message names both."""


def new_key() -> str:
    """A new random key: ``pk-`` and 43 URL-safe characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    """What the keys file keeps of ``key``."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass
class APIKey:
    """One key of the keys file (its hash, never the key)."""

    id: str
    hash: str
    role: str
    prefix: str = ""
    users: list[int | str] | None = None
    name: str | None = None
    created: str | None = None
    revoked: str | None = None
    rate: str | float | None = None
    burst: int | None = None

    @property
    def user_keys(self) -> frozenset[str] | None:
        return None if self.users is None else frozenset(user_key(u) for u in self.users)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def describe(self) -> dict[str, Any]:
        """The key as ``proute keys list`` shows it (no hash)."""
        return {k: v for k, v in self.to_dict().items() if k != "hash"}


_FIELDS = set(APIKey.__dataclass_fields__)


def _record(item: Any, where: str) -> APIKey:
    """One ``keys[i]`` entry, checked field by field."""
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(item).__name__}")
    unknown = sorted(set(map(str, item)) - _FIELDS)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown field; expected some of {sorted(_FIELDS)}")
    for name in ("id", "hash", "role"):
        if not isinstance(item.get(name), str) or not item[name]:
            raise ValueError(f"{where}.{name}: expected a non-empty text, got {item.get(name)!r}")
    if item["role"] not in ROLES:
        raise ValueError(f"{where}.role: expected one of {list(ROLES)}, got {item['role']!r}")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", item["hash"]):
        raise ValueError(f"{where}.hash: expected 'sha256:' and 64 hex digits (never the key itself)")
    users = item.get("users")
    if users is not None:
        if not isinstance(users, list) or not users:
            raise ValueError(f"{where}.users: expected a non-empty list of user ids or null, got {users!r}")
        for j, u in enumerate(users):
            try:
                user_key(u, f"{where}.users[{j}]")
            except UserIdError as exc:
                raise ValueError(str(exc)) from None
    parse_rate(item.get("rate"), f"{where}.rate")
    parse_burst(item.get("burst"), f"{where}.burst")
    return APIKey(**{k: item[k] for k in item})


def parse_keys(doc: Any) -> tuple[list[APIKey], dict[str, Any]]:
    """The keys and the defaults (``rate``, ``burst``) of a keys file's document."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ValueError(f"expected a mapping with 'keys', got {type(doc).__name__}")
    unknown = sorted(set(map(str, doc)) - {"keys", "rate", "burst"})
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field; expected keys, rate, burst")
    items = doc.get("keys") or []
    if not isinstance(items, list):
        raise ValueError(f"keys: expected a list, got {type(items).__name__}")
    keys = [_record(x, f"keys[{i}]") for i, x in enumerate(items)]
    ids = [k.id for k in keys]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup is not None:
        raise ValueError(f"keys: the id {dup!r} is used twice")
    defaults = {"rate": doc.get("rate"), "burst": doc.get("burst")}
    parse_rate(defaults["rate"])
    parse_burst(defaults["burst"])
    return keys, defaults


def read_keys_file(path: Path) -> tuple[list[APIKey], dict[str, Any]]:
    """The keys file ``path``; :class:`KeysFileError` naming it (and the field) if bad."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeysFileError(f"keys file {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        return parse_keys(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise KeysFileError(f"keys file {path}: not valid YAML/JSON ({exc})") from None
    except ValueError as exc:
        raise KeysFileError(f"keys file {path}: {exc}") from None


def write_keys_file(path: Path, keys: list[APIKey], defaults: dict[str, Any]) -> None:
    """Write the keys file atomically (a temporary file, mode 0600, renamed over it)."""
    import tempfile

    import yaml

    path = Path(path)
    doc: dict[str, Any] = {k: v for k, v in defaults.items() if v is not None}
    doc["keys"] = [k.to_dict() for k in keys]
    text = "# proute API keys: hashes only (proute keys create|list|revoke)\n"
    text += yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (``localhost``, 127.0.0.0/8, ::1)."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: cannot be sure


def check_exposure(host: str, api_keys: Any, insecure: bool) -> None:
    """Refuse to serve on a non-loopback ``host`` without API keys unless ``insecure``."""
    if api_keys is None and not insecure and not is_loopback(host):
        raise ValueError(
            f"refusing to serve on {host!r} without API keys: anyone who reaches it could route, "
            "chat, add users and send feedback. Create keys (proute keys create --role admin "
            "--keys FILE) and start with --api-keys FILE, or pass --insecure to serve without them"
        )


def _error(status: int, message: str, code: str, type_: str) -> APIError:
    return APIError(status, message, None, code, type_)


def unauthorized(message: str) -> APIError:
    return _error(401, message, "invalid_api_key", "authentication_error")


def forbidden(message: str, param: str | None = None) -> APIError:
    err = _error(403, message, "permission_denied", "permission_error")
    err.param = param
    return err


class RateLimited(APIError):
    """429: a key over its rate; ``headers``: ``retry-after`` (whole seconds) and
    ``x-ratelimit-limit`` (the limit, ``20/s, burst 40``)."""

    def __init__(self, message: str, headers: dict[str, str]):
        super().__init__(429, message, None, "rate_limit_exceeded", "rate_limit_error")
        self.headers = headers


class KeyRing:
    """The keys of a keys file, read again when the file changes (a revoked key is refused
    within a second; a file that became unreadable keeps the last good keys and is logged),
    and a token bucket per key. ``rate``/``burst``: the server's default limit per key
    (else the file's top-level ``rate``/``burst``, else 20/s); a key's own fields win."""

    RELOAD_EVERY_S = 1.0

    def __init__(self, path: Path, rate: Any = None, burst: Any = None):
        self.path = Path(path)
        self.server_rate, self.server_burst = (
            parse_rate(rate, "--key-rate"),
            parse_burst(burst, "--key-burst"),
        )
        self._server_rate_given = rate is not None
        self._lock = threading.Lock()
        self._buckets: dict[tuple, TokenBucket] = {}
        self.keys, self.defaults = read_keys_file(self.path)
        if not any(k.revoked is None for k in self.keys):
            raise KeysFileError(
                f"keys file {self.path}: no active key (every request would be refused); "
                f"create one: proute keys create --role admin --keys {self.path}"
            )
        self._stamp, self._checked = self._file_stamp(), time.monotonic()

    def _file_stamp(self) -> tuple | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.RELOAD_EVERY_S:
            return
        self._checked = now
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        try:
            self.keys, self.defaults = read_keys_file(self.path)
        except KeysFileError as exc:  # logged once a change
            log.error("%s; keeping the keys read before", exc)
        self._stamp = stamp

    def authenticate(self, header: str | None) -> APIKey:
        """The key of an ``Authorization: Bearer KEY`` header, or the 401 saying why not."""
        if header is None or not header.strip():
            raise unauthorized("missing API key: send the header 'Authorization: Bearer <key>'")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise unauthorized("malformed Authorization header: expected 'Bearer <key>'")
        with self._lock:
            self._refresh()
            keys = self.keys
        digest, found = key_hash(token), None
        for k in keys:  # every hash, in constant time: no early exit
            if hmac.compare_digest(k.hash, digest):
                found = k
        if found is None:
            raise unauthorized("invalid API key (not in the server's keys file)")
        if found.revoked is not None:
            raise unauthorized(f"API key {found.id} was revoked ({found.revoked})")
        return found

    def limit(self, key: APIKey) -> tuple[float, int] | None:
        """The key's (rate per second, burst), or ``None`` for no limit: the key's own rate,
        else the server's, else the file's, else 20/s; the burst of the same place (the key's
        own ``burst`` wins), else 2 s of the rate."""
        burst: int | None
        if key.rate is not None:
            rate, burst = parse_rate(key.rate), None
        elif self._server_rate_given:
            rate, burst = self.server_rate, self.server_burst
        elif self.defaults.get("rate") is not None:
            rate, burst = parse_rate(self.defaults["rate"]), self.defaults.get("burst")
        else:
            rate, burst = parse_rate(DEFAULT_RATE), self.server_burst or self.defaults.get("burst")
        if rate is None:
            return None
        return rate, key.burst or burst or max(1, round(2 * rate))

    def throttle(self, key: APIKey) -> None:
        """Count a request of ``key``; 429 (``retry-after``) when over its limit."""
        limit = self.limit(key)
        if limit is None:
            return
        with self._lock:
            bucket = self._buckets.setdefault((key.id, *limit), TokenBucket(*limit))
            wait = bucket.take(time.monotonic())
        if wait > 0:
            what = describe_rate(*limit)
            message = f"rate limit of API key {key.id} exceeded ({what}); retry after {wait:.2f} s"
            retry = {"retry-after": str(max(1, math.ceil(wait))), "x-ratelimit-limit": what}
            raise RateLimited(message, retry)


class APIKeyMiddleware:
    """Every HTTP request needs a valid key (401) within its rate (429); the key goes to
    the endpoints as ``request.scope["proute.api_key"]`` (:func:`authorize`)."""

    def __init__(self, app, ring: KeyRing):
        self.app, self.ring = app, ring

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.datastructures import Headers
        from starlette.responses import JSONResponse

        try:
            key = self.ring.authenticate(Headers(scope=scope).get("authorization"))
            self.ring.throttle(key)
        except APIError as err:
            headers = err.headers if isinstance(err, RateLimited) else {"www-authenticate": "Bearer"}
            return await JSONResponse(err.body(), err.status, headers)(scope, receive, send)
        scope["proute.api_key"] = key
        return await self.app(scope, receive, send)


def authorize(request, action: str, user: Any = None, param: str = "user") -> None:
    """403 unless the request's key may do ``action`` for ``user``: ``route`` (route, chat)
    or ``user`` (feedback, add a user). Without keys (no middleware) everything passes."""
    key: APIKey | None = request.scope.get("proute.api_key")
    if key is None or key.role == "admin":
        return
    bound = key.user_keys
    if bound is None:
        if action == "route":
            return
        raise forbidden(
            f"API key {key.id} (role app, bound to no users) may not send feedback or add users; "
            "use an app key bound to the user (proute keys create --role app --users ID) or an admin key",
            param,
        )
    if user_key(user, param) not in bound:
        what = "route for" if action == "route" else "send feedback for or add"
        raise forbidden(f"API key {key.id} is bound to other users: it may not {what} user {user!r}", param)
