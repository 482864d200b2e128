"""Fault matrix: bad routing tables (docs/DESIGN.md §5, §7; issue 7).

Every case writes one bad table into ``tmp_path``, loads it the way a run does (the reader,
or the reader and the pipeline without a text encoder), and asserts the error type, that
the message names the file, the row and the field or column, and that no file under
``tmp_path`` changed. Cases that are *accepted* by a documented policy (the same text under
two ids in one split, a declared performance range, float user ids) are tests below the
matrix, with the same "nothing changed" check.

Families already tested in detail elsewhere get one file-level case here so the matrix
lists them; the details (every numeric column, every split name, tuple row labels ...)
stay in tests/test_table.py (``validate_table`` in memory) and tests/test_readers.py (each
reader's own syntax errors).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

from proute.data.pipeline import prepare
from proute.data.readers import read_llmrouter_jsonl, read_personalizedrouter_csv, read_table
from proute.data.splits import ProvidedSplit, QuerySplit
from proute.data.table import DataError
from proute.data.users import CostEfficiencyUsers, DataUsers

FIXTURES = Path(__file__).resolve().parents[1] / "data"
LLMS = ("small-llama", "big-qwen")
#: Dollars per million tokens; the good table's costs imply 100 and 89 tokens a call.
PRICES = {"small-llama": 0.2, "big-qwen": 0.9}
COST = {"small-llama": 2e-5, "big-qwen": 8e-5}
SPLIT_OF = ["train", "train", "train", "train", "val", "test"]


def good() -> pd.DataFrame:
    """2 users x 6 queries x 2 LLMs, every split used. CSV data row of (u, q, llm):
    ``12 u + 2 q + (llm index) + 1``."""
    rows = [
        {
            "user_id": u,
            "query_id": f"q{q}",
            "query": f"question {q}?",
            "task": "math" if q % 2 else "trivia",
            "llm": llm,
            "performance": float((q + i) % 2),
            "cost": COST[llm],
            "split": SPLIT_OF[q],
        }
        for u in range(2)
        for q in range(6)
        for i, llm in enumerate(LLMS)
    ]
    return pd.DataFrame(rows)


def row(u: int, q: int, llm: int = 0) -> int:
    return 12 * u + 2 * q + llm + 1


def at(df: pd.DataFrame, r: int, col: str, value: Any) -> pd.DataFrame:
    """``df`` with CSV data row ``r`` (1-based) of ``col`` set to ``value``."""
    df = df.astype({col: object})
    df.loc[r - 1, col] = value
    return df


def write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in df.to_dict(orient="records")))
    else:
        df.to_parquet(path, index=False)
    return path


def llms_file(tmp_path: Path, names=LLMS) -> Path:
    p = tmp_path / "llms.json"
    p.write_text(json.dumps({n: {"input_price": PRICES[n], "output_price": PRICES[n]} for n in names}))
    return p


# --------------------------------------------------------------------------- loaders


def read(path: Path, tmp_path: Path, **kwargs) -> Any:
    return read_table(path, **kwargs)


def read_with_llms(path: Path, tmp_path: Path) -> Any:
    """The table with the LLM table file the case wrote (``Bad.llms``)."""
    return read_table(path, llms_path=tmp_path / "llms.json")


def pipeline(split: Any = None, users: Any = None) -> Callable:
    """Read, then users and split as a run does (no text encoder)."""

    def load(path: Path, tmp_path: Path) -> Any:
        return prepare(lambda: read_table(path), users or DataUsers(), split or ProvidedSplit())

    return load


@dataclass
class Bad:
    id: str
    mutate: Callable[[pd.DataFrame], pd.DataFrame]
    fragments: tuple[str, ...]
    load: Callable = read
    suffix: str = ".csv"
    # where it is tested in detail (a family that worked before issue 7)
    see: str = ""
    # False for a config value the run got wrong (the message names the key, not the file)
    names_file: bool = True
    # the LLMs an llms.json written beside the table lists (None: no such file)
    llms: tuple | None = None
    kwargs: dict = field(default_factory=dict)


def no_split(df):
    return df.drop(columns="split")


def only(splits):
    return lambda df: df[df["split"].isin(splits)]


def rename(old, new):
    return lambda df: df.rename(columns={old: new})


def add(col, value):
    return lambda df: df.assign(**{col: value})


def twin_text(split: str):
    """Query q3 (train) again under another id, q3b, in ``split`` (rows 25-26 for user 0)."""

    def mutate(df):
        twin = df[(df["query_id"] == "q3") & (df["user_id"] == 0)].assign(query_id="q3b", split=split)
        return pd.concat([df, twin], ignore_index=True)

    return mutate


BAD = [
    # 1. leak: the same text under two ids in two splits; one id in two splits
    Bad(
        "same-text-two-ids-train-and-test",
        twin_text("test"),
        ("question 3?", "'q3' in 'train' (row 7)", "'q3b' in 'test' (row 25)", "one split"),
    ),
    Bad(
        "same-id-two-splits-for-two-users",
        lambda df: df.assign(split=np.where(df["user_id"] == 1, "test", df["split"])),
        ("query_id 'q0'", "'train' (row 1)", "'test' (row 13)", "one split for every user"),
        see="tests/test_splits.py::test_leaky_provided_split_is_caught (in memory)",
    ),
    # 2. empty splits after the split is applied
    Bad("no-test-rows", only(["train", "val"]), ("'test' split has no rows", "val 1, test 0"), pipeline()),
    Bad("no-val-rows", only(["train", "test"]), ("'val' split has no rows", "ProvidedSplit"), pipeline()),
    Bad("no-train-rows", only(["val", "test"]), ("'train' split has no rows",), pipeline()),
    Bad(
        "split-ratio-zero-for-test",
        no_split,
        ("split_ratio=[0.8, 0.2, 0.0]", "each > 0"),
        pipeline(split=QuerySplit(ratios=[0.8, 0.2, 0.0])),
        names_file=False,
    ),
    # 3. reserved and near-miss column names
    Bad("column-new_user", add("new_user", True), ("column 'new_user' is reserved", "split=new_users")),
    Bad("column-new_llm", add("new_llm", False), ("column 'new_llm' is reserved", "rename it")),
    Bad("column-Split", rename("split", "Split"), ("column 'Split' looks like 'split'",)),
    Bad("column-space-cost", rename("cost", " cost"), ("column ' cost' looks like 'cost'",)),
    Bad(
        "reward-without-users-is-replaced",
        lambda df: df[df["user_id"] == 0].drop(columns="user_id").assign(reward=0.5),
        ("column 'reward' is in a table without 'user_id'", "CostEfficiencyUsers"),
        pipeline(users=CostEfficiencyUsers()),
    ),
    # 4. ranges
    Bad(
        "performance-above-1",
        lambda df: at(df, 9, "performance", 1.5),
        ("row 9: field 'performance' is 1.5", "[0, 1]", "1 of 24 rows"),
    ),
    Bad(
        "performance-in-percent",
        lambda df: df.assign(performance=df["performance"] * 100),
        ("row 2: field 'performance' is 100.0", "12 of 24 rows", "rescale"),
    ),
    Bad(
        "performance-negative",
        lambda df: at(df, 4, "performance", -0.2),
        ("row 4: field 'performance' is -0.2", "outside"),
    ),
    Bad(
        "cost-negative",
        lambda df: at(df, 5, "cost", -1e-5),
        ("row 5: field 'cost' is -1e-05", "expected a cost >= 0", "1 of 24 rows"),
        see="tests/test_table.py::test_negative_cost",
    ),
    # 5. an LLM missing from the LLM table file
    Bad(
        "llm-missing-from-llms_path",
        lambda df: df,
        ("row 2: field 'llm' is 'big-qwen'", "llms.json", "12 rows"),
        read_with_llms,
        llms=(LLMS[0],),
    ),
    # 6. user ids
    Bad(
        "user_id-fraction",
        lambda df: at(df, 14, "user_id", 0.5),
        ("row 14: field 'user_id' is 0.5", "whole number"),
        suffix=".jsonl",
    ),
    Bad(
        "user_id-fraction-parquet",
        lambda df: df.assign(user_id=df["user_id"] + 0.25),
        ("row 1: field 'user_id' is 0.25",),
        suffix=".parquet",
    ),
    # families that already failed loudly, at file level (details: the `see` tests)
    Bad(
        "performance-nan",
        lambda df: at(df, 3, "performance", "nan"),
        ("row 3: field 'performance' is nan", "finite"),
        see="tests/test_table.py::test_non_finite_numbers",
    ),
    Bad(
        "performance-empty-cell",
        lambda df: at(df, 3, "performance", ""),
        ("row 3: field 'performance' is ''", "expected a number"),
        see="tests/test_readers.py::test_native_csv_bad_number_names_row_and_field",
    ),
    Bad(
        "cost-inf",
        lambda df: at(df, 6, "cost", "inf"),
        ("row 6: field 'cost' is inf",),
        see="tests/test_table.py::test_non_finite_numbers",
    ),
    Bad(
        "cost-text",
        lambda df: at(df, 6, "cost", "cheap"),
        ("row 6: field 'cost' is 'cheap'",),
        see="tests/test_table.py::test_non_numeric_value",
    ),
    Bad(
        "performance-bool-jsonl",
        lambda df: at(df, 8, "performance", True),
        ("row 8: field 'performance' is True",),
        suffix=".jsonl",
    ),
    Bad(
        "missing-column",
        lambda df: df.drop(columns="task"),
        ("missing column(s) ['task']",),
        see="tests/test_table.py::test_missing_column",
    ),
    Bad(
        "duplicate-row",
        lambda df: pd.concat([df, df.iloc[[4]]], ignore_index=True),
        ("row 25: duplicate observation", "'query_id': 'q2'"),
        see="tests/test_table.py::test_duplicate_user_query_llm",
    ),
    Bad(
        "empty-query-text",
        lambda df: at(df, 10, "query", "  "),
        ("row 10: field 'query' is empty",),
        see="tests/test_table.py::test_empty_query_text",
    ),
    Bad(
        "unknown-split-name",
        lambda df: at(df, 11, "split", "validation"),
        ("row 11: field 'split' is 'validation'",),
        see="tests/test_table.py::test_unknown_split_name",
    ),
    Bad(
        "missing-task-value",
        lambda df: at(df, 12, "task", ""),
        ("row 12: field 'task' is missing",),
        see="tests/test_readers.py::test_native_structural_errors_name_row_and_field",
    ),
    Bad(
        "query_id-reused-for-another-text",
        lambda df: at(df, 15, "query", "another question?"),
        ("row 15: field 'query_id' is 'q1'", "one text per query_id"),
        see="tests/test_readers.py::test_native_structural_errors_name_row_and_field",
    ),
    Bad("header-only", lambda df: df.iloc[:0], ("no rows",)),
]


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_table_fails_loudly_and_changes_nothing(tmp_path, unchanged, case):
    path = write(case.mutate(good()), tmp_path / f"table{case.suffix}")
    if case.llms is not None:
        llms_file(tmp_path, case.llms)
    with unchanged(tmp_path), pytest.raises(DataError) as err:
        case.load(path, tmp_path, **case.kwargs)
    msg = str(err.value)
    assert (str(path) in msg) == case.names_file, msg
    for fragment in case.fragments:
        assert fragment in msg, (fragment, msg)


def test_the_good_table_passes_the_reader_and_the_pipeline(tmp_path, unchanged, caplog):
    path = write(good(), tmp_path / "table.csv")
    llms = llms_file(tmp_path)
    with unchanged(tmp_path), caplog.at_level(logging.WARNING):
        data = read_table(path, llms_path=llms)
        out = prepare(data, DataUsers(), ProvidedSplit())
    assert len(out.table) == 24 and "cost_unit_warning" not in data.meta
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# ------------------------------------------------------------- 1. one text, two ids


def test_one_text_two_ids_in_one_provided_split_is_accepted(tmp_path, unchanged):
    """Not a leak: both ids are train. They stay two queries (two query nodes)."""
    path = write(twin_text("train")(good()), tmp_path / "table.csv")
    with unchanged(tmp_path):
        out = prepare(lambda: read_table(path), DataUsers(), ProvidedSplit())
    twins = out.table[out.table["query"] == "question 3?"]
    assert set(twins["query_id"]) == {"q3", "q3b"} and set(twins["split"]) == {"train"}


@pytest.mark.parametrize("seed", range(5))
def test_a_drawn_split_keeps_one_text_in_one_split(tmp_path, unchanged, seed):
    """proute draws the split by text: every id of a text gets the text's split."""
    df = no_split(good())
    twins = df[df["query_id"].isin(["q0", "q3"])].assign(query_id=lambda d: d["query_id"] + "-again")
    path = write(pd.concat([df, twins], ignore_index=True), tmp_path / "table.csv")
    with unchanged(tmp_path):
        out = prepare(lambda: read_table(path), DataUsers(), QuerySplit(seed=seed))
    per_text = out.table.groupby("query")["split"].nunique()
    assert (per_text == 1).all()
    assert out.table["query_id"].nunique() == 8


# -------------------------------------------------------------- 2. empty splits


def test_tiny_data_gets_a_query_in_every_split(tmp_path, unchanged, caplog):
    """Three texts in three tasks: per-task rounding gives val and test none; the drawn split
    moves one text into each, with a warning, so the run can select and report."""
    df = no_split(good())
    df = df[df["query_id"].isin(["q0", "q1", "q2"])].assign(task=lambda d: d["query_id"])
    path = write(df, tmp_path / "table.csv")
    with unchanged(tmp_path), caplog.at_level(logging.WARNING):
        out = prepare(lambda: read_table(path), DataUsers(), QuerySplit(ratios=[0.7, 0.1, 0.2]))
    assert out.table.groupby("split")["query_id"].nunique().to_dict() == {"train": 1, "val": 1, "test": 1}
    assert "left the 'val' split without a query text" in caplog.text


# ------------------------------------------------------------------ 4. ranges


def test_a_declared_performance_range_holds_through_the_pipeline(tmp_path, unchanged):
    df = good().assign(performance=lambda d: d["performance"] * 100)
    path = write(df, tmp_path / "table.csv")
    more = write(at(df, 1, "performance", 120.0), tmp_path / "more.csv")
    with unchanged(tmp_path):
        out = prepare(lambda: read_table(path, performance_range=[0, 100]), DataUsers(), ProvidedSplit())
        assert out.table["performance"].max() == 100.0
        with pytest.raises(DataError, match=r"row 1: field 'performance' is 120.0, outside the declared"):
            read_table(more, performance_range=[0, 100])


@pytest.mark.parametrize(
    "scale,fragments",
    [
        pytest.param(
            1000, ["median call would use 9.44e+04 tokens (24 of 24"], id="price-per-thousand-x1000"
        ),
        pytest.param(1e6, ["median call would use 9.44e+07 tokens (24 of 24"], id="micro-dollars-x1e6"),
        pytest.param(
            {"small-llama": 1, "big-qwen": 100},
            ["imply 100 to 8.89e+03 tokens per call, over 10x apart", "'big-qwen' (8.89e+03 tokens)"],
            id="one-llm-x100",
        ),
    ],
)
def test_costs_in_another_unit_are_a_warning_with_counts(tmp_path, unchanged, caplog, scale, fragments):
    """Heuristic (proute.data.source_checks.check_cost_units): at the listed prices the median call
    should use 1 to 10,000 tokens, and the LLMs' medians be within 10x of each other."""
    factor = good()["llm"].map(scale) if isinstance(scale, dict) else scale
    path = write(good().assign(cost=lambda d: d["cost"] * factor), tmp_path / "table.csv")
    llms = llms_file(tmp_path)
    with unchanged(tmp_path), caplog.at_level(logging.WARNING):
        data = read_table(path, llms_path=llms)
    warning = data.meta["cost_unit_warning"]
    assert warning in caplog.text and str(path) in warning and "field 'cost'" in warning
    for fragment in fragments:
        assert fragment in warning, (fragment, warning)


def test_cents_on_short_calls_is_the_cost_checks_blind_spot(tmp_path, unchanged):
    """Documented limitation: 100-token calls in cents imply 9,400 tokens, inside the bounds."""
    path = write(good().assign(cost=lambda d: d["cost"] * 100), tmp_path / "table.csv")
    llms = llms_file(tmp_path)
    with unchanged(tmp_path):
        assert "cost_unit_warning" not in read_table(path, llms_path=llms).meta


# ---------------------------------------------------------------- 5. LLM table file


def test_personalizedrouter_csv_llm_missing_from_llms_path(tmp_path, unchanged):
    src = FIXTURES / "personalizedrouter"
    llms = json.loads((src / "LLM_Descriptions_v1.json").read_text())
    dropped = sorted(pd.read_csv(src / "router_user_data_v1.csv")["llm"].unique())[0]
    (tmp_path / "llms.json").write_text(json.dumps({k: v for k, v in llms.items() if k != dropped}))
    with unchanged(tmp_path), unchanged(src), pytest.raises(DataError) as err:
        read_personalizedrouter_csv(src / "router_user_data_v1.csv", llms_path=tmp_path / "llms.json")
    msg = str(err.value)
    for fragment in (
        "router_user_data_v1.csv: row",
        f"field 'llm' is {dropped!r}",
        str(tmp_path / "llms.json"),
    ):
        assert fragment in msg, (fragment, msg)


def test_llmrouter_jsonl_candidates_describe_only_api_models(tmp_path, unchanged):
    """The LLMRouter candidates file lists API models only: a local model missing there is
    described by its name, as documented (read_llmrouter_jsonl), not rejected."""
    with unchanged(FIXTURES):
        data = read_llmrouter_jsonl(
            FIXTURES / "llmrouter_routing.jsonl", FIXTURES / "llmrouter" / "llm_candidates.json"
        )
    assert data.meta["llms_not_in_llm_table"] == ["my-local-model"]


# ---------------------------------------------------------------------- 6. user ids


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_whole_float_user_ids_are_the_int_users(tmp_path, unchanged, suffix):
    """0.0 and 0 are one user in every format (a float column, as pandas writes ids once a
    value was missing)."""
    df = good().assign(user_id=lambda d: d["user_id"].astype(float))
    path = write(df, tmp_path / f"table{suffix}")
    with unchanged(tmp_path):
        data = read_table(path)
    assert data.table["user_id"].dtype == np.int64 and sorted(data.table["user_id"].unique()) == [0, 1]


def test_mixed_int_and_float_ids_in_jsonl_are_one_user(tmp_path, unchanged):
    df = good().astype({"user_id": object})
    df.loc[df["user_id"] == 1, "user_id"] = 0.0  # user 1's rows now say 0.0: user 0's duplicates
    path = write(df, tmp_path / "table.jsonl")
    with (
        unchanged(tmp_path),
        pytest.raises(DataError, match=r"row 13: duplicate observation for \{'user_id': 0"),
    ):
        read_table(path)


# ------------------------------------------------------- 7. split_ratio with a split column


@pytest.mark.parametrize("splitter", [ProvidedSplit, QuerySplit])
def test_split_ratio_with_the_datas_own_split_is_a_warning(tmp_path, unchanged, caplog, splitter):
    path = write(good(), tmp_path / "table.csv")
    with unchanged(tmp_path), caplog.at_level(logging.WARNING):
        prepare(lambda: read_table(path), DataUsers(), splitter(ratios=[0.7, 0.1, 0.2]))
        assert "split_ratio=[0.7, 0.1, 0.2] is not used" in caplog.text
        assert "its own 'split' column" in caplog.text and str(path) in caplog.text
        caplog.clear()
        prepare(lambda: read_table(path), DataUsers(), splitter())  # the default ratio: silent
    assert "split_ratio" not in caplog.text
