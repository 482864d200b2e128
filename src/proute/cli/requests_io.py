"""What ``proute infer`` reads and writes: the requests file (JSONL) and result files
written atomically."""

from __future__ import annotations

import json
from pathlib import Path


def fail(where: object, what: str) -> SystemExit:
    """The one-line error of ``proute infer`` (exit status 1, no traceback)."""
    return SystemExit(f"proute infer: {where}: {what}")


def read_requests(path: Path) -> list[tuple[int, dict]]:
    """``(line number, request)`` of each non-blank line of a UTF-8 JSONL file; any problem
    of the file or of a line's syntax is a :class:`SystemExit` naming the file and line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise fail(path, f"cannot read the requests file ({exc.strerror or exc})") from None
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark
        data = data[3:]
    requests = []
    for n, raw in enumerate(data.splitlines(), start=1):  # \n, \r\n or \r, as JSON allows
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise fail(
                f"{path}, line {n}",
                f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                "save the file as UTF-8",
            ) from None
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise fail(f"{path}, line {n}", f"invalid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise fail(f"{path}, line {n}", "expected an object with 'query' and 'user_id'")
        requests.append((n, obj))
    return requests


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in its folder and a rename: a
    failed or interrupted write leaves an existing file as it was."""
    import os
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def results_text(path: Path | None, results: list[dict]) -> str:
    """The results as ``path`` gets them: a ``.json`` path one JSON array, any other path
    (``.jsonl``) or stdout (``None``) one JSON object a line."""
    if path is not None and Path(path).suffix.lower() == ".json":
        return json.dumps(results, indent=2) + "\n"
    return "".join(json.dumps(r) + "\n" for r in results)
