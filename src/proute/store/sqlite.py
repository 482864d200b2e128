"""The SQLite state store: one file, WAL journal, ``synchronous=FULL``.

Every append is its own transaction, committed (the WAL fsynced) before
:meth:`SQLiteStore.append` returns, so an acknowledged event survives SIGKILL and power
loss. One process writes (the server); its appends are serialised by a lock. An existing
file is opened read-write, never created anew: a file that is not a SQLite database, a
truncated one, or one that fails SQLite's ``quick_check`` is an error naming it, and
nothing is written to it. ``path=":memory:"`` is the in-memory store (``--state memory``).
``exclusive=True`` (``proute serve``) holds the file's lock until closed, so a second
server (or ``proute state import``) on the same file is refused instead of diverging.

Tables: ``meta`` (``schema``, ``router_id``, ``router_path``), ``events`` (``seq INTEGER
PRIMARY KEY AUTOINCREMENT``: never reused), ``snapshots``, ``users`` (events and last time
per user, kept through compaction).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator

from proute.data.ids import user_key
from proute.store.base import Event, StateStore, StoreError, event_body

SCHEMA_VERSION = 1
MEMORY = ":memory:"
_MAGIC = b"SQLite format 3\x00"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL,
    user TEXT, args TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS users (user TEXT PRIMARY KEY, events INTEGER NOT NULL, last_ts REAL);
"""


def check_file(path: Path) -> None:
    """Refuse, without writing to it, an existing file that is not a whole SQLite database."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(100)
    if len(head) < 100 or not head.startswith(_MAGIC):
        what = f"truncated ({size} bytes)" if size < 100 else "not a SQLite database"
        raise StoreError(
            f"{path}: the state file is {what}; expected a proute state store. Nothing was written to it"
        )
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    if page and pages and size < page * pages:
        raise StoreError(
            f"{path}: the state file is truncated ({size} bytes; its header says {pages} pages of "
            f"{page} bytes). Nothing was written to it; restore it from a copy or `proute state export`"
        )


def _user_of(event: Event) -> str | None:
    uid = event.args.get("user_id")
    try:
        return None if uid is None else user_key(uid)
    except ValueError:
        return None


class SQLiteStore(StateStore):
    """A :class:`~proute.store.base.StateStore` in the SQLite file ``path`` (see the module
    docstring). ``create``: make the file when it does not exist (else an error)."""

    def __init__(self, path: str | Path, create: bool = True, exclusive: bool = False):
        self.path = path if path == MEMORY else Path(path)
        self.url = "memory" if path == MEMORY else f"sqlite:///{self.path}"
        self._lock = threading.Lock()
        self._db = self._connect(create, exclusive)
        if exclusive:
            self._take(self._db)

    def _take(self, db: sqlite3.Connection) -> None:
        """Hold the file's write lock until closed: the one writer (``proute serve``)."""
        try:
            db.execute("BEGIN EXCLUSIVE")
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            db.close()
            raise self._in_use(exc) from None

    def _in_use(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(
            f"{self.path}: the state file is in use by another process ({exc}): one server "
            "writes a state store; stop the other, or give this one another --state"
        )

    def _connect(self, create: bool, exclusive: bool) -> sqlite3.Connection:
        if self.path == MEMORY:
            db = sqlite3.connect(MEMORY, check_same_thread=False, isolation_level=None)
            db.executescript(_SCHEMA)
            return db
        path = Path(self.path)
        exists = path.exists()
        if exists:
            check_file(path)
        elif not create:
            raise StoreError(f"{path}: no such state file")
        elif not path.parent.is_dir():
            raise StoreError(f"{path}: cannot create the state file: no directory {path.parent}")
        mode = "rw" if exists else "rwc"
        try:
            db = sqlite3.connect(
                f"file:{path}?mode={mode}", uri=True, check_same_thread=False, isolation_level=None
            )
            db.execute("PRAGMA busy_timeout=2000")
            if exclusive:  # before the first access: the WAL index then lives in memory
                db.execute("PRAGMA locking_mode=EXCLUSIVE")
            if exists:
                self._check(db)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            db.close()
            if "locked" in str(exc):
                raise self._in_use(exc) from None
            raise StoreError(
                f"{path}: cannot open the state store ({exc}); nothing was written to it"
            ) from None
        return db

    def _check(self, db: sqlite3.Connection) -> None:
        """Integrity before anything is written: SQLite's quick_check and our tables."""
        rows = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
        if rows != ["ok"]:
            db.close()
            raise StoreError(
                f"{self.path}: the state file is corrupt ({'; '.join(rows[:3])}); nothing was written to it"
            )
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables or "events" not in tables:
            db.close()
            raise StoreError(
                f"{self.path}: a SQLite file but not a proute state store (tables {sorted(tables)})"
            )

    # ------------------------------------------------------------------ meta
    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, values: dict[str, str]) -> None:
        with self._lock, self._tx():
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))

    def _tx(self):
        return _Transaction(self._db, self.url)

    # ------------------------------------------------------------------ events
    def append(self, event: Event) -> int:
        body, user, ts = event_body(event), _user_of(event), time.time()
        with self._lock, self._tx():
            cur = self._db.execute(
                "INSERT INTO events (ts, kind, user, args) VALUES (?, ?, ?, ?)", (ts, event.kind, user, body)
            )
            if user is not None:
                self._db.execute(
                    "INSERT INTO users VALUES (?, 1, ?) ON CONFLICT(user) DO UPDATE SET "
                    "events = events + 1, last_ts = excluded.last_ts",
                    (user, ts),
                )
            return int(cur.lastrowid or 0)

    def discard(self, seq: int) -> None:
        with self._lock, self._tx():
            row = self._db.execute("SELECT user FROM events WHERE seq=?", (seq,)).fetchone()
            self._db.execute("DELETE FROM events WHERE seq=?", (seq,))
            if row is not None and row[0] is not None:
                self._db.execute("UPDATE users SET events = events - 1 WHERE user=?", (row[0],))
                self._db.execute("DELETE FROM users WHERE events <= 0")

    def events_after(self, seq: int = 0) -> Iterator[Event]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, ts, kind, user, args FROM events WHERE seq > ? ORDER BY seq", (seq,)
            ).fetchall()
        for s, ts, kind, user, args in rows:
            try:
                parsed = json.loads(args)
            except ValueError as exc:
                raise StoreError(f"{self.url}: event {s} is not JSON ({exc})") from None
            yield Event(kind, parsed, int(s), float(ts), user)

    def last_seq(self) -> int:
        """The largest ``seq`` ever given (0 for none)."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ snapshots
    def write_snapshot(self, seq: int, blob: bytes, drop_events: bool = False) -> None:
        with self._lock, self._tx():
            self._db.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)", (seq, time.time(), blob))
            self._db.execute("DELETE FROM snapshots WHERE seq < ?", (seq,))
            if drop_events:
                self._db.execute("DELETE FROM events WHERE seq <= ?", (seq,))

    def latest_snapshot(self) -> tuple[int, bytes] | None:
        with self._lock:
            row = self._db.execute("SELECT seq, blob FROM snapshots ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def user_summary(self, user: str) -> tuple[int, float | None]:
        with self._lock:
            row = self._db.execute("SELECT events, last_ts FROM users WHERE user=?", (user,)).fetchone()
        return (0, None) if row is None else (int(row[0]), row[1])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on an error, re-raised as a StoreError)."""

    def __init__(self, db: sqlite3.Connection, url: str):
        self.db, self.url = db, url

    def __enter__(self) -> None:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.url}: cannot write to the state store ({exc})") from None

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error as err:
                exc = err
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"{self.url}: cannot write to the state store ({exc})") from None
