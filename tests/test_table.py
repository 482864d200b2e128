"""The routing-table contract: every validation error names the source, the row and the field.

The frames here are indexed 101, 102, ... so a message that names a *position* instead of
the row label (the line/record number a reader put in the index) would fail.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from proute.data.table import (
    DataError,
    RoutingData,
    make_llm_table,
    make_task_table,
    validate_table,
)

SOURCE = "file /data/routing.csv"


def table(n_users: int = 2, with_split: bool = True) -> pd.DataFrame:
    rows = []
    for u in range(n_users):
        for q in range(2):
            for llm in ("small-llama", "big-qwen"):
                rows.append(
                    {
                        "user_id": u,
                        "query_id": f"q{q}",
                        "query": f"question {q}?",
                        "task": "math" if q else "trivia",
                        "llm": llm,
                        "performance": float(q),
                        "cost": 0.5 if llm == "big-qwen" else 0.1,
                        "reward": 0.25,
                        "split": "train" if q == 0 else "test",
                    }
                )
    df = pd.DataFrame(rows, index=pd.RangeIndex(101, 101 + len(rows), name="row"))
    return df if with_split else df.drop(columns="split")


def expect_error(df: pd.DataFrame, *fragments: str, **kwargs) -> str:
    with pytest.raises(DataError) as err:
        validate_table(df, SOURCE, **kwargs)
    msg = str(err.value)
    assert msg.startswith(SOURCE + ":"), msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    return msg


def test_valid_table_passes_with_canonical_dtypes():
    df = table()
    df["performance"] = df["performance"].astype(int)
    out = validate_table(df, SOURCE, llms=["small-llama", "big-qwen"])
    assert len(out) == 8 and list(out.index) == list(range(101, 109))
    assert out["performance"].dtype == np.float64 and out["cost"].dtype == np.float64
    assert df["performance"].dtype != np.float64  # the input is not modified
    no_users = table(n_users=1).drop(columns="user_id")
    assert len(validate_table(no_users, SOURCE, require_users=False)) == 4


@pytest.mark.parametrize("column", ["user_id", "query_id", "query", "task", "llm", "performance", "cost"])
def test_missing_column(column):
    msg = expect_error(table().drop(columns=column), f"missing column(s) ['{column}']")
    assert "a routing table needs" in msg


def test_user_id_only_required_with_users():
    expect_error(table().drop(columns="user_id"), "missing column(s) ['user_id']")
    validate_table(table(n_users=1).drop(columns="user_id"), SOURCE, require_users=False)


def test_empty_table():
    expect_error(table().iloc[:0], "no rows")


@pytest.mark.parametrize("bad", ["", "   ", None, np.nan])
def test_empty_query_text(bad):
    df = table()
    df["query"] = df["query"].astype(object)
    df.loc[104, "query"] = bad
    msg = expect_error(df, "row 104", "field 'query' is empty")
    assert msg == f"{SOURCE}: row 104: field 'query' is empty; expected non-empty text"


@pytest.mark.parametrize("column", ["user_id", "query_id", "task", "llm"])
def test_missing_id_value(column):
    df = table()
    df[column] = df[column].astype(object)
    df.loc[106, column] = None
    expect_error(df, "row 106", f"field {column!r} is missing")


@pytest.mark.parametrize("column", ["performance", "cost", "reward"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_numbers(column, bad):
    df = table()
    df.loc[103, column] = bad
    msg = expect_error(df, "row 103", f"field {column!r} is {bad!r}", "expected a finite number")
    assert msg == f"{SOURCE}: row 103: field {column!r} is {bad!r}; expected a finite number"


@pytest.mark.parametrize("column", ["performance", "cost", "reward"])
def test_non_numeric_value(column):
    df = table()
    df[column] = df[column].astype(object)
    df.loc[107, column] = "high"
    expect_error(df, "row 107", f"field {column!r} is 'high'", "expected a finite number")


def test_negative_cost():
    df = table()
    df.loc[105, "cost"] = -0.01
    expect_error(df, "row 105", "field 'cost' is -0.01", "expected a cost >= 0")


def test_duplicate_user_query_llm():
    df = table()
    dup = df.loc[[102]].copy()
    dup.index = pd.Index([200], name="row")
    dup["performance"] = 0.0  # a second, different observation of the same triple
    msg = expect_error(pd.concat([df, dup]), "row 200", "duplicate observation")
    assert "'user_id': 0" in msg and "'query_id': 'q0'" in msg and "'llm': 'big-qwen'" in msg
    assert "expected one row per (user_id, query_id, llm)" in msg
    # the same (query, llm) for two users is not a duplicate
    validate_table(table(n_users=2), SOURCE)


def test_duplicate_query_llm_without_users():
    df = table(n_users=2).drop(columns="user_id")  # user 1's rows repeat user 0's
    msg = expect_error(df, "row 105", "duplicate observation", require_users=False)
    assert "expected one row per (query_id, llm)" in msg


def test_unknown_llm():
    df = table()
    df.loc[108, "llm"] = "gpt-9"
    msg = expect_error(
        df, "row 108", "field 'llm' is 'gpt-9'", "not in the LLM table", llms=["small-llama", "big-qwen"]
    )
    assert "['big-qwen', 'small-llama']" in msg


@pytest.mark.parametrize("bad", ["validation", "Train", "", None])
def test_unknown_split_name(bad):
    df = table()
    df["split"] = df["split"].astype(object)
    df.loc[102, "split"] = bad
    msg = expect_error(df, "row 102", "field 'split' is")
    assert "expected one of ['train', 'val', 'test']" in msg


def test_tuple_index_labels_are_named():
    df = table()
    df.index = pd.MultiIndex.from_tuples([("a.json", i) for i in range(len(df))])
    df.loc[("a.json", 3), "cost"] = np.nan
    expect_error(df, "row ('a.json', 3)", "field 'cost'")


def test_routing_data_validate_checks_llm_and_task_tables():
    df = table()
    llms = make_llm_table({"small-llama": {}, "big-qwen": {"input_price": 0.9}})
    data = RoutingData(df, llms, make_task_table({"math": "", "trivia": "Trivia."}), "toy")
    assert data.validate().table["cost"].dtype == np.float64
    assert data.tasks.loc["math", "description"] == "math"
    assert data.llms.loc["small-llama", "family"] == "llama"
    with pytest.raises(DataError, match=r"toy: row 101: field 'llm' is 'small-llama'"):
        RoutingData(df, make_llm_table({"big-qwen": {}}), data.tasks, "toy").validate()
    with pytest.raises(
        DataError,
        match=r"toy: task\(s\) \['trivia'\] appear in the routing "
        r"table but not in the task table",
    ):
        RoutingData(df, llms, make_task_table({"math": ""}), "toy").validate()
