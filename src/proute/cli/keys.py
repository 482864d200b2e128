"""``proute keys create|list|revoke --keys FILE``: the API keys of ``proute serve --api-keys
FILE`` (:mod:`proute.serving.auth`).

``create`` prints the new key once, on stdout alone (what it did goes to stderr); the file
keeps its hash. Every change rewrites the file atomically (mode 0600) under a lock, so an
existing file keeps its keys when a change fails and two changes at once both land.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import sys
import time
from pathlib import Path


def add_keys_parser(sub) -> None:
    """``proute keys`` and its commands."""
    p = sub.add_parser("keys", help="create, list and revoke the API keys of proute serve --api-keys")
    cmds = p.add_subparsers(dest="keys_command", required=True)
    create = cmds.add_parser("create", help="a new key: printed once, its hash stored in FILE")
    create.add_argument(
        "--role", required=True, choices=("admin", "app"), help="admin: anything; app: see --users"
    )
    create.add_argument(
        "--users",
        nargs="+",
        metavar="ID",
        default=None,
        help="app keys: the users it may route for, send feedback for and add (default: route "
        "for any user, no feedback, no new users)",
    )
    create.add_argument("--name", default=None, help="a label (who or what uses the key)")
    create.add_argument(
        "--rate", default=None, help="its rate limit, e.g. 20/s, 600/min, none (default: the server's)"
    )
    create.add_argument(
        "--burst", type=int, default=None, help="requests it may send at once (default: 2 s of its rate)"
    )
    listing = cmds.add_parser("list", help="the keys of FILE (ids, roles, users; no secrets)")
    listing.add_argument("--json", action="store_true", help="one JSON object a key")
    revoke = cmds.add_parser("revoke", help="revoke a key (the server refuses it within a second)")
    revoke.add_argument("id", metavar="ID", help="the key's id (proute keys list)")
    for c in (create, listing, revoke):
        c.add_argument("--keys", required=True, type=Path, metavar="FILE", help="the keys file (YAML)")


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``FILE.lock`` while the keys file is read and rewritten."""
    import fcntl

    with open(path.with_name(path.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read(path: Path):
    from proute.serving.auth import read_keys_file

    return read_keys_file(path) if path.exists() else ([], {})


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def create(args: argparse.Namespace) -> int:
    from proute.serving.auth import APIKey, key_hash, new_key, parse_burst, parse_rate, write_keys_file
    from proute.serving.user_ids import text_user_id

    if args.users is not None and args.role == "admin":
        raise ValueError("--users binds app keys; an admin key may act for every user")
    parse_rate(args.rate, "--rate")
    parse_burst(args.burst, "--burst")
    users = None if args.users is None else [text_user_id(u, "--users") for u in args.users]
    path = args.keys
    with _locked(path):
        keys, defaults = _read(path)
        taken = {k.id for k in keys}
        kid = next(i for i in iter(lambda: "k" + secrets.token_hex(4), None) if i not in taken)
        key = new_key()
        rec = APIKey(
            kid, key_hash(key), args.role, key[:7], users, args.name, _now(), None, args.rate, args.burst
        )
        write_keys_file(path, [*keys, rec], defaults)
    bound = "any user" if users is None else "users " + ", ".join(map(str, users))
    print(
        f"key {kid} ({args.role}, {bound}) added to {path}; this is the only time it is shown:",
        file=sys.stderr,
    )
    print(key)
    return 0


def list_keys(args: argparse.Namespace) -> int:
    if not args.keys.exists():
        raise ValueError(f"keys file {args.keys}: no such file")
    keys, _ = _read(args.keys)
    for k in keys:
        if args.json:
            print(json.dumps(k.describe()))
            continue
        users = "any user" if k.users is None else "users " + ",".join(map(str, k.users))
        state = f"revoked {k.revoked}" if k.revoked else "active"
        rate = f"rate {k.rate}" + (f" burst {k.burst}" if k.burst else "") if k.rate else "server rate"
        print(f"{k.id}  {k.prefix}…  {k.role:5}  {users}  {state}  {rate}  {k.name or ''}".rstrip())
    return 0


def revoke(args: argparse.Namespace) -> int:
    from proute.serving.auth import write_keys_file

    if not args.keys.exists():
        raise ValueError(f"keys file {args.keys}: no such file")
    with _locked(args.keys):
        keys, defaults = _read(args.keys)
        match = [k for k in keys if k.id == args.id]
        if not match:
            raise ValueError(f"keys file {args.keys}: no key {args.id!r}; its keys: {[k.id for k in keys]}")
        if match[0].revoked is None:
            match[0].revoked = _now()
            write_keys_file(args.keys, keys, defaults)
    print(f"key {args.id} revoked in {args.keys}", file=sys.stderr)
    return 0


def keys_command(args: argparse.Namespace) -> int:
    """``proute keys ...``; a bad file or value exits naming it."""
    commands = {"create": create, "list": list_keys, "revoke": revoke}
    try:
        return commands[args.keys_command](args)
    except (ValueError, OSError) as exc:
        raise SystemExit(f"proute keys {args.keys_command}: {exc}") from None
