"""What every reader shares to open a file and check a value (see :mod:`proute.data.readers`).

File opening (:func:`existing_file`, :func:`load_json`, :func:`iter_jsonl`) and value
checks (:func:`as_number`, :func:`as_text`, :func:`column_floats`, :func:`user_ids` ...). Each
raises :class:`~proute.data.table.DataError` naming the file, the line / record / row, the
field and what was expected.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from proute.data.table import DataError, normalize_user_ids

PathLike = Union[str, os.PathLike]


def text_id(text: str) -> str:
    """The stable id of a query text: ``"q"`` + the first 16 hex digits of its SHA-1.

    The text is hashed exactly as given (UTF-8, no stripping or case folding), so two
    sources share a ``query_id`` exactly when they share the text.

    >>> text_id("hello")
    'qaaf4c61ddcc5e8a2'
    """
    return "q" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- files


def existing_file(path: PathLike) -> Path:
    """``path`` as a :class:`Path` when it is a file, else :class:`DataError`."""
    p = Path(path).expanduser()
    if not p.is_file():
        what = "is a folder" if p.is_dir() else "not found"
        raise DataError(f"file {p}: {what}; expected a data file")
    return p


def load_json(path: Path) -> Any:
    """The JSON document in ``path``; a syntax error is reported with its line and column."""
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"file {path}, line {exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})"
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"file {path}: not UTF-8 text ({exc})") from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line (1-based line numbers)."""
    try:
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line.rstrip("\r\n"))
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"file {path}, line {lineno}: invalid JSON: {exc.msg} (column {exc.colno})"
                    ) from None
                if not isinstance(obj, dict):
                    raise DataError(
                        f"file {path}, line {lineno}: expected a JSON object per line, "
                        f"got {type(obj).__name__}"
                    )
                yield lineno, obj
    except UnicodeDecodeError as exc:
        raise DataError(f"file {path}: not UTF-8 text ({exc})") from None


def read_csv_text(p: Path, **kwargs: Any) -> pd.DataFrame:
    """A CSV file as text columns (nothing parsed as NaN), indexed by 1-based data row."""
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"file {p}: cannot parse CSV: {exc}") from None
    df.index = pd.RangeIndex(1, len(df) + 1, name="row")
    return df


# --------------------------------------------------------------------------- values


def as_number(value: Any, where: str, field: str) -> float:
    """A finite float from a JSON value (a number or a numeric string), else DataError."""
    if isinstance(value, bool) or value is None:
        raise DataError(f"{where}: field {field} is {value!r}; expected a number")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: field {field} is {value!r}; expected a number") from None
    if not math.isfinite(x):
        raise DataError(f"{where}: field {field} is {value!r}; expected a finite number")
    return x


def as_text(value: Any, where: str, field: str) -> str:
    """``value`` when it is non-blank text, else DataError."""
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field {field} is {short(value)!r}; expected non-empty text")
    return value


def short(value: Any, n: int = 60) -> Any:
    """Text cut to ``n`` characters (with ``...``) for an error message; other values as is."""
    if isinstance(value, str) and len(value) > n:
        return value[:n] + "..."
    return value


def column_floats(series: pd.Series, source: str, field: str, finite: bool = False) -> np.ndarray:
    """Parse a column to floats; a value that is not a number raises naming its row."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        out = series.to_numpy(dtype=float)
    else:
        out = np.empty(len(series), dtype=float)
        for pos, value in enumerate(series.tolist()):
            try:
                if isinstance(value, bool):
                    raise TypeError
                out[pos] = float(value)
            except (TypeError, ValueError):
                raise DataError(
                    f"{source}: row {series.index[pos]}: field {field!r} is {value!r}; expected a number"
                ) from None
    if finite:
        bad = ~np.isfinite(out)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source}: row {series.index[pos]}: field {field!r} is "
                f"{series.iloc[pos]!r}; expected a finite number"
            )
    return out


def user_ids(series: pd.Series, source: str = "user_id") -> pd.Series:
    """User ids as int64 when every id is a whole number (``3``, ``3.0``, ``"3"``), else as
    text; a float id that is not a whole number raises naming its row
    (:func:`proute.data.table.normalize_user_ids`).

    The same ids read from CSV (text), JSONL (numbers) or Parquet (typed) come out equal.
    Missing ids stay missing (``validate_table`` reports them).
    """
    return normalize_user_ids(series, source)


def is_missing(value: Any) -> bool:
    """``None`` or a float NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def blank_to_na(series: pd.Series) -> pd.Series:
    """Empty or whitespace-only text ids become missing, so validation names them."""
    if pd.api.types.is_numeric_dtype(series):
        return series
    blank = series.map(lambda v: isinstance(v, str) and not v.strip())
    return series.mask(blank.astype(bool))


def size_from_name(name: str) -> str:
    """The parameter count written in a model name (``gemma-2-27b-it`` -> ``27B``), or ``""``."""
    m = re.search(r"(?<![a-z0-9.])(\d+(?:\.\d+)?(?:x\d+(?:\.\d+)?)?)b(?![a-z])", name.lower())
    return m.group(1) + "B" if m else ""
