"""Readers: every source format becomes the routing table, with its rules and its errors.

Fixtures in tests/data/ (see tests/data/README.md): a cut of the bundled LLMRouter files
(12 dcrouter records, one text in both files, two texts under two tasks), 5 NQ records,
and small hand-written files in the native, LLMRouter-JSONL and PersonalizedRouter formats.
Expected values below are worked out by hand from those files.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from proute.data.readers import (
    DEFAULT_OUTPUT_TOKENS,
    TASK_DESCRIPTIONS,
    read_llmrouter,
    read_llmrouter_jsonl,
    read_nq,
    read_personalizedrouter_csv,
    read_table,
    text_id,
)
from proute.data.table import DataError

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
LLMROUTER = DATA / "llmrouter"
CANDIDATES = LLMROUTER / "llm_candidates.json"
NATIVE = DATA / "native"
PR_CSV = DATA / "personalizedrouter" / "router_user_data_v1.csv"
PR_LLMS = DATA / "personalizedrouter" / "LLM_Descriptions_v1.json"

# Texts of the llmrouter fixture.
HUMAN_EVAL_DUP = "\ndef rounded_avg(n, m):"  # prefix; in both dcrouter files, scores differ
BEE = "A bee can enjoy a lovely snack on"  # mmlu (3 texts) and openbook_qa (2 texts)
DOG = "Which of the following is a trait that a dog does NOT inherit from its parents?"
FAUCET = "A faucet drips"  # mmlu, 14 characters
SIX_BOTTLES = "Six bottles of 2 liters of water cost $12."  # gsm8k prefix, 81 characters


def rows_of(table: pd.DataFrame, text_prefix: str) -> pd.DataFrame:
    out = table[table["query"].str.startswith(text_prefix)]
    assert out["query_id"].nunique() == 1, text_prefix
    return out.set_index("llm")


def copy_llmrouter(tmp_path: Path) -> Path:
    d = tmp_path / "llmrouter"
    shutil.copytree(LLMROUTER, d)
    return d


# --------------------------------------------------------------------------- text_id


def test_text_id_is_sha1_prefix_of_exact_text():
    assert text_id("hello") == "q" + hashlib.sha1(b"hello").hexdigest()[:16]
    assert text_id("hello") == "qaaf4c61ddcc5e8a2"
    assert text_id("hello ") != text_id("hello")  # exact text, no stripping
    assert text_id("Écrivez") == "q" + hashlib.sha1("Écrivez".encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- llmrouter


def test_llmrouter_fixture_shape_and_tables():
    data = read_llmrouter(LLMROUTER)
    data.validate()
    t = data.table
    # 12 records, one text in both files -> 11 queries x 9 LLMs.
    assert len(t) == 99
    assert t["query_id"].nunique() == 11
    assert not data.has_users and "user_id" not in t.columns
    assert list(t.columns) == ["query_id", "query", "task", "llm", "performance", "cost"]
    assert t.index.is_unique
    assert (t["query_id"] == t["query"].map(text_id)).all()
    assert t.groupby("task")["query_id"].nunique().to_dict() == {
        "arc_challenge": 3,
        "gsm8k": 4,
        "human_eval": 1,
        "mmlu": 1,
        "openbook_qa": 2,
    }
    assert list(data.llms.index) == sorted(data.llms.index)
    assert len(data.llms) == 9
    codegemma = data.llms.loc["codegemma-7b"]
    assert codegemma["description"].startswith("CodeGemma-7B is a specialized variant")
    assert (codegemma["input_price"], codegemma["output_price"]) == (0.2, 0.2)
    assert codegemma["size"] == "7B" and codegemma["family"] == "gemma"
    assert data.llms.loc["llama3-chatqa-1.5-70b", "input_price"] == 0.9
    assert set(data.tasks.index) == {"arc_challenge", "gsm8k", "human_eval", "mmlu", "openbook_qa"}
    assert data.tasks.loc["gsm8k", "description"] == TASK_DESCRIPTIONS["gsm8k"]
    assert data.tasks.loc["gsm8k", "description"].startswith("GSM8K: grade-school math")


def test_llmrouter_duplicate_text_is_merged_by_mean():
    data = read_llmrouter(LLMROUTER)
    dup = rows_of(data.table, HUMAN_EVAL_DUP)
    assert len(dup) == 9 and set(dup["task"]) == {"human_eval"}
    # train record: codegemma 0, nemotron-51b 0; test record: both 1 -> mean 0.5.
    assert dup.loc["codegemma-7b", "performance"] == 0.5
    assert dup.loc["llama-3.1-nemotron-51b-instruct", "performance"] == 0.5
    # equal in both records: unchanged.
    assert dup.loc["llama3-chatqa-1.5-70b", "performance"] == 1.0
    assert dup.loc["qwen2.5-7b-instruct", "performance"] == 0.0
    assert data.meta["duplicate_rule"] == "mean"
    assert data.meta["n_duplicate_texts_merged"] == 1
    assert data.meta["n_duplicates_with_different_scores"] == 1
    assert data.meta["n_records"] == {"dcrouter_train.json": 9, "dcrouter_test.json": 3}


def test_llmrouter_duplicate_rule_first_keeps_train_record():
    data = read_llmrouter(LLMROUTER, duplicate_rule="first")
    dup = rows_of(data.table, HUMAN_EVAL_DUP)
    assert dup.loc["codegemma-7b", "performance"] == 0.0
    assert dup.loc["llama-3.1-nemotron-51b-instruct", "performance"] == 0.0
    assert len(data.table) == 99
    with pytest.raises(DataError, match="duplicate_rule.*'median'"):
        read_llmrouter(LLMROUTER, duplicate_rule="median")


def test_llmrouter_multi_task_text_takes_task_with_fewest_texts_ties_by_name():
    data = read_llmrouter(LLMROUTER)
    # Fixture query files: mmlu has 3 distinct texts (bee, dog, faucet), openbook_qa 2
    # (bee, deer), arc_challenge 3 (dog and two more).
    assert set(rows_of(data.table, BEE)["task"]) == {"openbook_qa"}  # 2 < 3
    assert set(rows_of(data.table, DOG)["task"]) == {"arc_challenge"}  # 3 = 3, by name
    multi = {m["query"]: m for m in data.meta["multi_task_texts"]}
    assert multi[BEE]["candidates"] == {"mmlu": 3, "openbook_qa": 2}
    assert multi[BEE]["task"] == "openbook_qa"
    assert multi[DOG]["candidates"] == {"arc_challenge": 3, "mmlu": 3}
    assert multi[DOG]["task"] == "arc_challenge"
    assert multi[DOG]["query_id"] == text_id(DOG)
    assert len(multi) == 2


def test_llmrouter_cost_by_hand():
    data = read_llmrouter(LLMROUTER)
    faucet = rows_of(data.table, FAUCET)
    # 14 chars -> ceil(14 / 4) = 4 input tokens; mmlu -> 64 output tokens; gemma $0.1/M.
    assert math.isclose(faucet.loc["gemma-2-9b-it", "cost"], (4 * 0.1 + 64 * 0.1) / 1e6)
    assert math.isclose(faucet.loc["gemma-2-9b-it", "cost"], 6.8e-6)
    # nemotron-49b $0.9/M: 68 * 0.9 / 1e6
    assert math.isclose(faucet.loc["llama-3.3-nemotron-super-49b-v1", "cost"], 6.12e-5)
    six = rows_of(data.table, SIX_BOTTLES)
    # 81 chars -> 21 input tokens; gsm8k -> 256 output tokens; qwen $0.2/M: 277 * 0.2 / 1e6
    assert math.isclose(six.loc["qwen2.5-7b-instruct", "cost"], 5.54e-5)
    dup = rows_of(data.table, HUMAN_EVAL_DUP)
    # 440 chars -> 110 input tokens; human_eval -> 256; 366 * 0.9 / 1e6
    assert math.isclose(dup.loc["llama3-chatqa-1.5-70b", "cost"], 3.294e-4)
    assert (data.table["cost"] > 0).all()
    cost_meta = data.meta["cost"]
    assert cost_meta["chars_per_token"] == 4.0 and cost_meta["output_tokens"]["gsm8k"] == 256


def test_llmrouter_token_estimate_options():
    data = read_llmrouter(LLMROUTER, output_tokens={"default": 10}, chars_per_token=2.0)
    faucet = rows_of(data.table, FAUCET)
    # ceil(14 / 2) = 7 input tokens + 10 output tokens at $0.1/M.
    assert math.isclose(faucet.loc["gemma-2-9b-it", "cost"], 1.7e-6)
    assert data.meta["cost"]["output_tokens"] == {t: 10.0 for t in data.tasks.index}
    with pytest.raises(DataError, match="output_tokens has no entry for task 'arc_challenge'"):
        read_llmrouter(LLMROUTER, output_tokens={"gsm8k": 256})
    with pytest.raises(DataError, match="output_tokens: field 'gsm8k' is 'many'"):
        read_llmrouter(LLMROUTER, output_tokens={"gsm8k": "many", "default": 1})


def test_llmrouter_record_without_scores(tmp_path):
    d = copy_llmrouter(tmp_path)
    records = json.loads((d / "dcrouter_train.json").read_text())
    del records[2]["scores"]
    (d / "dcrouter_train.json").write_text(json.dumps(records))
    with pytest.raises(DataError) as err:
        read_llmrouter(d)
    msg = str(err.value)
    assert f"file {d / 'dcrouter_train.json'}, record 2: missing field 'scores'" in msg


def test_llmrouter_non_numeric_score(tmp_path):
    d = copy_llmrouter(tmp_path)
    records = json.loads((d / "dcrouter_test.json").read_text())
    records[1]["scores"]["gemma-2-9b-it"] = "n/a"
    (d / "dcrouter_test.json").write_text(json.dumps(records))
    with pytest.raises(DataError) as err:
        read_llmrouter(d)
    assert str(err.value) == (
        f"file {d / 'dcrouter_test.json'}, record 1: field 'scores'['gemma-2-9b-it'] is "
        "'n/a'; expected a number"
    )


def test_llmrouter_text_in_no_query_file(tmp_path):
    d = copy_llmrouter(tmp_path)
    records = json.loads((d / "dcrouter_test.json").read_text())
    records[2]["question"] = "A question nobody listed"
    (d / "dcrouter_test.json").write_text(json.dumps(records))
    with pytest.raises(
        DataError,
        match=r"dcrouter_test\.json, record 2: field 'question' "
        r"\('A question nobody listed'\) is in no query file",
    ):
        read_llmrouter(d)


def test_llmrouter_malformed_query_line(tmp_path):
    d = copy_llmrouter(tmp_path)
    lines = (d / "query_train.jsonl").read_text().split("\n")
    lines[2] = lines[2][:40]  # truncate line 3
    (d / "query_train.jsonl").write_text("\n".join(lines))
    with pytest.raises(DataError) as err:
        read_llmrouter(d)
    assert str(err.value).startswith(
        f"file {d / 'query_train.jsonl'}, line 3: invalid JSON: Unterminated string"
    )


def test_llmrouter_scored_llm_without_price(tmp_path):
    d = copy_llmrouter(tmp_path)
    cands = json.loads((d / "llm_candidates.json").read_text())
    del cands["gemma-2-9b-it"]
    (d / "llm_candidates.json").write_text(json.dumps(cands))
    with pytest.raises(
        DataError,
        match=r"dcrouter_train\.json, record 0: field 'scores' names "
        r"LLM 'gemma-2-9b-it', which is not in .*llm_candidates",
    ):
        read_llmrouter(d)


def test_llmrouter_missing_file_and_bad_json(tmp_path):
    d = copy_llmrouter(tmp_path)
    (d / "dcrouter_test.json").unlink()
    with pytest.raises(DataError, match=r"dcrouter_test\.json: not found"):
        read_llmrouter(d)
    (d / "dcrouter_test.json").write_text('[{"question": "x", "scores": {"a": 1.0}},\n oops]')
    with pytest.raises(DataError, match=r"dcrouter_test\.json, line 2: invalid JSON"):
        read_llmrouter(d)


def test_bundled_default_dataset_loads():
    """The project's default dataset (about 1 s)."""
    data = read_llmrouter(ROOT / "data" / "llmrouter")
    data.validate()
    t = data.table
    assert len(t) == 53_901
    assert t["query_id"].nunique() == 5_989
    assert t["llm"].nunique() == 9 and len(data.llms) == 9
    assert t["task"].nunique() == 14 and len(data.tasks) == 14
    assert (t.groupby("query_id")["llm"].nunique() == 9).all()
    cost = t["cost"].to_numpy()
    assert np.isfinite(cost).all() and (cost > 0).all()
    assert t["performance"].between(0, 1).all()
    assert data.meta["n_duplicate_texts_merged"] == 119
    assert data.meta["n_duplicates_with_different_scores"] == 50
    chosen = sorted(m["task"] for m in data.meta["multi_task_texts"])
    assert chosen == ["arc_challenge"] * 2 + ["openbook_qa"] * 4
    per_task = t.groupby("task")["query_id"].nunique()
    assert (per_task["mmlu"], per_task["openbook_qa"], per_task["arc_challenge"]) == (544, 500, 500)
    assert set(data.tasks["description"]) == {TASK_DESCRIPTIONS[x] for x in data.tasks.index}


# --------------------------------------------------------------------------- NQ


def test_nq_literal_strings_and_name_mapping():
    data = read_nq(LLMROUTER / "nq_router_data.json", candidates_path=CANDIDATES)
    data.validate()
    t = data.table
    assert len(t) == 30 and t["query_id"].nunique() == 5
    assert set(t["task"]) == {"natural_qa"} and not data.has_users
    assert sorted(data.llms.index) == [
        "gemma-2-27b-it",
        "llama-3.1-70b-instruct",
        "llama-3.1-8b-instruct",
        "mistral-7b-instruct-v0.3",
        "mixtral-8x22b-instruct-v0.1",
        "qwen2.5-7b-instruct",
    ]
    # record 0 (JSON lists): mixtral-8x22b cost 50.4, perf 1.0; qwen cost 3.0, perf 0.0
    r0 = rows_of(t, "when does a wrinkle in time come out in canada?")
    assert r0.loc["mixtral-8x22b-instruct-v0.1", ["cost", "performance"]].tolist() == [50.4, 1.0]
    assert r0.loc["qwen2.5-7b-instruct", ["cost", "performance"]].tolist() == [3.0, 0.0]
    # record 4 (Python-literal strings): llama-3.1-8b cost 45.54, perf 1.0; mistral 0.1333...
    r4 = rows_of(t, "when did end of the road come out?")
    assert r4.loc["llama-3.1-8b-instruct", ["cost", "performance"]].tolist() == [45.54, 1.0]
    assert r4.loc["mistral-7b-instruct-v0.3", "performance"] == 0.13333333333333333
    assert r4.loc["mixtral-8x22b-instruct-v0.1", "cost"] == 55.199999999999996
    # in the candidates (via `model`): their description and price; not there: the name.
    assert data.llms.loc["qwen2.5-7b-instruct", "description"].startswith("Qwen2.5-7B-Instruct")
    assert data.llms.loc["mixtral-8x22b-instruct-v0.1", "input_price"] == 1.2
    assert data.llms.loc["gemma-2-27b-it", "description"] == "gemma-2-27b-it"
    assert data.llms.loc["gemma-2-27b-it", "size"] == "27B"
    assert data.llms.loc["gemma-2-27b-it", "family"] == "gemma"
    assert data.meta["llms_not_in_candidates"] == ["gemma-2-27b-it", "llama-3.1-70b-instruct"]
    assert data.meta["llm_model_ids"]["gemma-2-27b-it"] == "google/gemma-2-27b-it"


def test_nq_without_candidates_uses_last_path_part_and_cost_scale():
    data = read_nq(LLMROUTER / "nq_router_data.json", cost_scale=1e-6)
    assert "meta-llama" not in "".join(data.llms.index)
    assert "llama-3.1-70b-instruct" in data.llms.index
    assert (data.llms["description"] == data.llms.index).all()
    r0 = rows_of(data.table, "when does a wrinkle in time come out in canada?")
    assert math.isclose(r0.loc["mixtral-8x22b-instruct-v0.1", "cost"], 50.4e-6)


def test_nq_maps_model_id_through_candidates_model_field(tmp_path):
    cands = {
        "my-qwen": {
            "feature": "Qwen under another name.",
            "input_price": 0.3,
            "output_price": 0.3,
            "size": "7B",
            "model": "qwen/qwen2.5-7b-instruct",
        }
    }
    (tmp_path / "cands.json").write_text(json.dumps(cands))
    data = read_nq(LLMROUTER / "nq_router_data.json", candidates_path=tmp_path / "cands.json")
    assert "my-qwen" in data.llms.index and "qwen2.5-7b-instruct" not in data.llms.index
    assert data.llms.loc["my-qwen", "description"] == "Qwen under another name."
    assert (data.table["llm"] == "my-qwen").sum() == 5


def _nq_with(tmp_path: Path, index: int, **fields) -> Path:
    records = json.loads((LLMROUTER / "nq_router_data.json").read_text())
    records[index].update(fields)
    p = tmp_path / "nq.json"
    p.write_text(json.dumps(records))
    return p


def test_nq_errors_name_file_record_and_field(tmp_path):
    p = _nq_with(tmp_path, 3, cost_list="[1.0, 2.0,")
    with pytest.raises(DataError) as err:
        read_nq(p)
    assert str(err.value) == (
        f"file {p}, record 3: field 'cost_list' is '[1.0, 2.0,', not a list literal "
        "(SyntaxError); expected a list"
    )
    # literal_eval, never eval: code in the file is rejected, not run.
    p = _nq_with(tmp_path, 4, perf_list="__import__('os').getcwd()")
    with pytest.raises(DataError, match=r"record 4: field 'perf_list' .* not a list literal"):
        read_nq(p)
    p = _nq_with(tmp_path, 1, perf_list=[0, 0, 0, 0, 0])
    with pytest.raises(
        DataError,
        match=r"record 1: fields 'llm_name_list', 'cost_list', "
        r"'perf_list' have lengths 6, 6, 5",
    ):
        read_nq(p)
    p = _nq_with(tmp_path, 2, perf_list=[0, "good", 0, 0, 0, 0])
    with pytest.raises(
        DataError,
        match=r"record 2: field 'perf_list'\[1\] is 'good'; "
        r"expected a number",
    ):
        read_nq(p)
    records = json.loads((LLMROUTER / "nq_router_data.json").read_text())
    del records[0]["query"]
    p.write_text(json.dumps(records))
    with pytest.raises(DataError, match=r"record 0: missing field 'query'"):
        read_nq(p)


# --------------------------------------------------------------------------- native tables


def test_native_csv_values():
    data = read_table(NATIVE / "table.csv")
    data.validate()
    t = data.table
    assert data.name == "table" and data.has_users
    assert list(t.columns) == [
        "user_id",
        "query_id",
        "query",
        "task",
        "llm",
        "performance",
        "cost",
        "reward",
        "split",
    ]
    assert len(t) == 12 and list(t.index) == list(range(1, 13))
    assert t["user_id"].dtype == np.int64 and sorted(t["user_id"].unique()) == [0, 1]
    row2 = t.loc[2]
    assert row2[["query_id", "llm", "performance", "cost", "reward", "split"]].tolist() == [
        "n1",
        "gemma-2-9b-it",
        0.0,
        1.2e-05,
        -0.25,
        "train",
    ]
    assert t.loc[3, "query"] == 'Name a city in France, e.g. "Paris".'
    assert t.loc[5, "query"] == "Écrivez une fonction qui inverse une liste."
    assert sorted(data.llms.index) == ["gemma-2-9b-it", "qwen2.5-7b-instruct"]
    assert (data.llms["description"] == data.llms.index).all()  # no llms_path
    assert data.tasks.loc["mbpp", "description"] == TASK_DESCRIPTIONS["mbpp"]


def test_native_formats_round_trip_identically(tmp_path):
    from_csv = read_table(NATIVE / "table.csv").table
    from_jsonl = read_table(NATIVE / "table.jsonl").table
    pd.testing.assert_frame_equal(from_csv, from_jsonl)
    from_csv.to_parquet(tmp_path / "table.parquet")
    pd.testing.assert_frame_equal(from_csv, read_table(tmp_path / "table.parquet").table)
    # and back out through each text format
    from_csv.to_csv(tmp_path / "again.csv", index=False)
    pd.testing.assert_frame_equal(from_csv, read_table(tmp_path / "again.csv").table)
    from_csv.to_json(tmp_path / "again.jsonl", orient="records", lines=True, force_ascii=False)
    pd.testing.assert_frame_equal(from_csv, read_table(tmp_path / "again.jsonl").table)


def test_native_without_users_or_query_id(tmp_path):
    df = pd.read_csv(NATIVE / "table.csv")
    df[df["user_id"] == 0].drop(columns=["user_id", "query_id", "reward"]).to_csv(
        tmp_path / "q.csv", index=False
    )
    data = read_table(tmp_path / "q.csv", name="mine")
    data.validate()
    assert data.name == "mine" and not data.has_users
    assert list(data.table.columns) == ["query_id", "query", "task", "llm", "performance", "cost", "split"]
    assert (data.table["query_id"] == data.table["query"].map(text_id)).all()


def test_native_llm_and_task_tables_from_files(tmp_path):
    (tmp_path / "tasks.json").write_text(json.dumps({"gsm8k": "Sums.", "other": "Unused."}))
    data = read_table(NATIVE / "table.csv", llms_path=CANDIDATES, tasks_path=tmp_path / "tasks.json")
    assert list(data.llms.index) == ["gemma-2-9b-it", "qwen2.5-7b-instruct"]
    assert data.llms.loc["gemma-2-9b-it", "input_price"] == 0.1
    assert data.llms.loc["gemma-2-9b-it", "description"].startswith("Gemma-2-9B-IT")
    assert data.tasks["description"].to_dict() == {
        "gsm8k": "Sums.",
        "mbpp": TASK_DESCRIPTIONS["mbpp"],
        "natural_qa": TASK_DESCRIPTIONS["natural_qa"],
    }
    both = {"gemma-2-9b-it": {"description": "G"}, "qwen2.5-7b-instruct": {}}
    (tmp_path / "llms.json").write_text(json.dumps(both))
    data = read_table(NATIVE / "table.csv", llms_path=tmp_path / "llms.json")
    assert data.llms.loc["gemma-2-9b-it", "description"] == "G"
    # An LLM missing from the LLM table file is rejected (README, "Data"): more cases in
    # tests/faults/test_faults_tables.py.
    (tmp_path / "llms.json").write_text(json.dumps({"gemma-2-9b-it": {"description": "G"}}))
    with pytest.raises(DataError, match=r"row 1: field 'llm' is 'qwen2.5-7b-instruct', which is not in"):
        read_table(NATIVE / "table.csv", llms_path=tmp_path / "llms.json")


def test_native_unknown_suffix(tmp_path):
    p = tmp_path / "table.tsv"
    shutil.copy(NATIVE / "table.csv", p)
    with pytest.raises(DataError) as err:
        read_table(p)
    assert str(err.value) == (
        f"file {p}: unknown suffix '.tsv'; expected one of ['.csv', '.jsonl', '.parquet']"
    )
    with pytest.raises(DataError, match=r"table\.xlsx: not found"):
        read_table(tmp_path / "table.xlsx")


def test_native_csv_bad_number_names_row_and_field(tmp_path):
    text = (NATIVE / "table.csv").read_text().replace("2.4e-05,0.5,train", "cheap,0.5,train", 1)
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(DataError) as err:
        read_table(tmp_path / "t.csv")
    assert str(err.value) == (f"file {tmp_path / 't.csv'}: row 1: field 'cost' is 'cheap'; expected a number")


def test_native_jsonl_bad_line_and_missing_value(tmp_path):
    lines = (NATIVE / "table.jsonl").read_text().splitlines()
    bad = lines.copy()
    bad[3] = bad[3].replace('"task": ', '"task" ')
    (tmp_path / "t.jsonl").write_text("\n".join(bad) + "\n")
    with pytest.raises(DataError) as err:
        read_table(tmp_path / "t.jsonl")
    assert str(err.value).startswith(
        f"file {tmp_path / 't.jsonl'}, line 4: invalid JSON: Expecting ':' delimiter"
    )
    rec = json.loads(lines[6])
    rec["performance"] = float("nan")
    bad = lines.copy()
    bad[6] = json.dumps(rec)
    (tmp_path / "t.jsonl").write_text("\n".join(bad) + "\n")
    with pytest.raises(
        DataError,
        match=r"t\.jsonl: row 7: field 'performance' is nan; "
        r"expected a finite number",
    ):
        read_table(tmp_path / "t.jsonl")


def test_native_structural_errors_name_row_and_field(tmp_path):
    df = pd.read_csv(NATIVE / "table.csv")
    df.drop(columns=["cost"]).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(DataError, match=r"a\.csv: missing column\(s\) \['cost'\]"):
        read_table(tmp_path / "a.csv")
    dup = pd.concat([df, df.iloc[[4]]])
    dup.to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(DataError, match=r"b\.csv: row 13: duplicate observation"):
        read_table(tmp_path / "b.csv")
    clash = df.copy()
    clash.loc[7, "query"] = "A different text under the id n1"
    clash.to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(
        DataError,
        match=r"c\.csv: row 8: field 'query_id' is 'n1', which an "
        r"earlier row uses for a different query text",
    ):
        read_table(tmp_path / "c.csv")
    empty = df.copy()
    empty["task"] = empty["task"].astype(object)
    empty.loc[2, "task"] = ""
    empty.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match=r"d\.csv: row 3: field 'task' is missing"):
        read_table(tmp_path / "d.csv")


# --------------------------------------------------------------------------- LLMRouter JSONL


def test_llmrouter_jsonl_values():
    data = read_llmrouter_jsonl(DATA / "llmrouter_routing.jsonl", candidates_path=CANDIDATES)
    data.validate()
    t = data.table
    assert len(t) == 8 and data.has_users
    assert list(t.index) == [1, 2, 3, 4, 5, 7, 8, 9]  # line numbers; line 6 is blank
    assert sorted(t["user_id"].unique()) == ["alice", "bob"]
    assert t.loc[3, "llm"] == "my-local-model"  # given as "llm"
    assert t.loc[4, ["task", "performance", "cost"]].tolist() == ["gsm8k", 1.0, 5.5e-05]
    assert list(t.columns) == ["user_id", "query_id", "query", "task", "llm", "performance", "cost"]
    assert t["query_id"].nunique() == 2
    assert data.llms.loc["qwen2.5-7b-instruct", "description"].startswith("Qwen2.5-7B")
    assert data.llms.loc["my-local-model", "description"] == "my-local-model"
    assert data.meta["llms_not_in_llm_table"] == ["my-local-model"]
    assert data.meta["n_missing_cost"] == 0


def test_llmrouter_jsonl_missing_cost_and_task(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text(
        '{"query": "hi", "model_name": "a", "performance": 1}\n'
        '{"query": "hi", "model_name": "b", "performance": 0, "cost": 2.5}\n'
        '{"query": "bye", "model_name": "a", "performance": 0.5, "task_name": "chat"}\n'
    )
    data = read_llmrouter_jsonl(p)
    t = data.table
    assert not data.has_users
    assert t["cost"].tolist() == [0.0, 2.5, 0.0]
    assert t["task"].tolist() == ["default", "default", "chat"]
    assert data.meta["n_missing_cost"] == 2
    assert "2 of 3 lines have no cost" in data.meta["cost_note"]
    assert data.meta["n_missing_task"] == 2
    assert data.tasks.loc["default", "description"] == "default"


def test_llmrouter_jsonl_errors_name_line_and_field(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"query": "hi", "model_name": "a", "performance": 1}\n{"query": "hi", "model_name": "b"}\n')
    with pytest.raises(DataError) as err:
        read_llmrouter_jsonl(p)
    assert str(err.value) == f"file {p}, line 2: missing field 'performance'; expected a number"
    p.write_text(
        '{"query": "hi", "model_name": "a", "performance": 1}\n'
        '{"query": "hi", "model_name": "b", "performance": 1,}\n'
    )
    with pytest.raises(DataError, match=rf"file {re.escape(str(p))}, line 2: invalid JSON"):
        read_llmrouter_jsonl(p)
    p.write_text('{"query": "hi", "model_name": "a", "performance": "high"}\n')
    with pytest.raises(DataError, match=r"line 1: field 'performance' is 'high'; expected a"):
        read_llmrouter_jsonl(p)
    p.write_text(
        '{"query": "hi", "model_name": "a", "performance": 1, "user_id": 1}\n'
        '{"query": "hi", "model_name": "b", "performance": 1}\n'
    )
    with pytest.raises(DataError, match=r"line 2: field 'user_id' is missing, unlike line 1"):
        read_llmrouter_jsonl(p)
    p.write_text(
        '{"query": "hi", "model_name": "a", "performance": 1}\n'
        '{"query": "hi", "llm": "a", "performance": 0}\n'
    )
    with pytest.raises(DataError, match=rf"file {re.escape(str(p))}: row 2: duplicate"):
        read_llmrouter_jsonl(p)
    p.write_text('["not", "an", "object"]\n')
    with pytest.raises(DataError, match=r"line 1: expected a JSON object per line, got list"):
        read_llmrouter_jsonl(p)


# --------------------------------------------------------------------------- PersonalizedRouter


def test_personalizedrouter_csv_values_and_computed_reward():
    data = read_personalizedrouter_csv(PR_CSV)
    data.validate()
    t = data.table
    assert len(t) == 12 and data.has_users
    assert t["user_id"].dtype == np.int64 and sorted(t["user_id"].unique()) == [1, 9]
    assert "query_embedding" not in t.columns and "best_llm" not in t.columns
    assert list(t.columns) == [
        "user_id",
        "query_id",
        "query",
        "task",
        "llm",
        "performance",
        "cost",
        "reward",
        "performance_preference",
    ]
    assert sorted(data.tasks.index) == ["GSM8K", "alpaca_data"]
    assert data.tasks.loc["alpaca_data", "description"] == "Follow a general instruction."
    assert sorted(data.llms.index) == ["LLaMA-3 (70b)", "LLaMA-3 (8b)", "Mixtral-8x7B"]

    def reward(user, task, llm):
        sel = t[(t["user_id"] == user) & (t["task"] == task) & (t["llm"] == llm)]
        assert len(sel) == 1
        return float(sel["reward"].iloc[0])

    # GSM8K costs 2e-5, 6e-5, 1e-4 -> cost_norm 0, 0.5, 1 within the task.
    # user 1, p = 0.2: Mixtral effect 1.0 -> 0.2 * 1.0 - 0.8 * 0.5 = -0.2
    assert math.isclose(reward(1, "GSM8K", "Mixtral-8x7B"), -0.2)
    assert math.isclose(reward(1, "GSM8K", "LLaMA-3 (8b)"), 0.2)
    # alpaca costs 1e-5, 3e-5, 5e-5 -> 0, 0.5, 1; LLaMA-70b effect 0.75: 0.15 - 0.8 = -0.65
    assert math.isclose(reward(1, "alpaca_data", "LLaMA-3 (70b)"), -0.65)
    # user 9, p = 1.0: reward = effect
    assert math.isclose(reward(9, "alpaca_data", "LLaMA-3 (70b)"), 0.75)
    assert (t.loc[t["user_id"] == 9, "performance_preference"] == 1.0).all()
    assert data.meta["reward"].startswith("computed")


def test_personalizedrouter_csv_reward_from_file_and_llm_table(tmp_path):
    df = pd.read_csv(PR_CSV)
    df["reward"] = np.arange(len(df)) / 10
    df.to_csv(tmp_path / "pr.csv", index=False)
    data = read_personalizedrouter_csv(tmp_path / "pr.csv", llms_path=PR_LLMS)
    np.testing.assert_array_equal(data.table["reward"].to_numpy(), np.arange(12) / 10)
    assert data.meta["reward"] == "read from the file"
    assert data.llms.loc["Mixtral-8x7B", "input_price"] == 0.6
    assert data.llms.loc["Mixtral-8x7B", "family"] == "mixtral"
    assert data.llms.loc["LLaMA-3 (8b)", "description"].startswith("LLaMA-3 (8b) is a small")


def test_personalizedrouter_csv_errors(tmp_path):
    df = pd.read_csv(PR_CSV)
    df.drop(columns=["effect"]).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(DataError, match=r"a\.csv: missing column\(s\) \['effect'\]"):
        read_personalizedrouter_csv(tmp_path / "a.csv")
    bad = df.astype({"effect": object})
    bad.loc[4, "effect"] = "good"
    bad.to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(DataError) as err:
        read_personalizedrouter_csv(tmp_path / "b.csv")
    assert str(err.value) == (
        f"file {tmp_path / 'b.csv'}: row 5: field 'effect' is 'good'; expected a number"
    )


# --------------------------------------------------------------------------- Hydra configs


def _dataset_cfg(name: str, data_dir: Path, **overrides):
    node = OmegaConf.load(ROOT / "conf" / "dataset" / f"{name}.yaml")
    cfg = OmegaConf.create({"paths": {"data_dir": str(data_dir)}, "dataset": node})
    for key, value in overrides.items():
        cfg.dataset[key] = value
    return cfg


def test_dataset_configs_instantiate_their_readers():
    expected = {
        "llmrouter": read_llmrouter,
        "nq": read_nq,
        "table": read_table,
        "llmrouter_jsonl": read_llmrouter_jsonl,
        "personalizedrouter_csv": read_personalizedrouter_csv,
    }
    names = sorted(p.stem for p in (ROOT / "conf" / "dataset").glob("*.yaml"))
    assert set(expected) <= set(names)
    for name, fn in expected.items():
        node = OmegaConf.load(ROOT / "conf" / "dataset" / f"{name}.yaml")
        assert node["_target_"] == f"proute.data.readers.{fn.__name__}"
    # The output-token table lives in the code only; the yaml defers to it.
    llmrouter = OmegaConf.load(ROOT / "conf" / "dataset" / "llmrouter.yaml")
    assert llmrouter.output_tokens is None

    # The fixture folder mirrors data/ (llmrouter/...), so it can stand in for paths.data_dir.
    data = instantiate(_dataset_cfg("llmrouter", DATA).dataset)
    assert len(data.table) == 99 and data.meta["cost"]["output_tokens"]["gsm8k"] == 256
    assert data.meta["cost"]["output_tokens"] == {
        t: float(DEFAULT_OUTPUT_TOKENS.get(t, DEFAULT_OUTPUT_TOKENS["default"])) for t in data.tasks.index
    }
    data = instantiate(_dataset_cfg("nq", DATA).dataset)
    assert len(data.table) == 30 and "gemma-2-27b-it" in data.llms.index
    data = instantiate(_dataset_cfg("table", DATA, path=str(NATIVE / "table.jsonl")).dataset)
    assert len(data.table) == 12
    cfg = _dataset_cfg("llmrouter_jsonl", DATA, path=str(DATA / "llmrouter_routing.jsonl"))
    assert len(instantiate(cfg.dataset).table) == 8
    cfg = _dataset_cfg("personalizedrouter_csv", DATA, path=str(PR_CSV))
    assert len(instantiate(cfg.dataset).table) == 12


def test_llmrouter_output_tokens_override_through_hydra():
    from proute.config import compose

    cfg = compose("data", [f"paths.data_dir={DATA}", "dataset.output_tokens={default:10}"])
    data = instantiate(cfg.dataset)
    assert data.meta["cost"]["output_tokens"] == {t: 10.0 for t in data.tasks.index}
    default = instantiate(compose("data", [f"paths.data_dir={DATA}"]).dataset)
    assert (data.table["cost"] < default.table["cost"]).all()
