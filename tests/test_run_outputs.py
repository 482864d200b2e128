"""What a tiny ``proute.train`` run writes for people to read: ``per_user.csv``,
``per_user.png`` and the learning curve, checked from the files themselves."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import train_overrides


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, cache_dir):
    """One tiny run (``debug=default`` on the fixtures, three epochs) for every test here."""
    from proute.config import compose
    from proute.train import run

    out = tmp_path_factory.mktemp("run")
    run(compose("train", train_overrides(out, cache_dir) + ["train_epoch=3"]), out)
    return out


def test_per_user_csv_counts_pairs_as_integers(run_dir):
    text = (run_dir / "per_user.csv").read_text().splitlines()
    header, first = text[0].split(","), text[1].split(",")
    assert first[header.index("n")].isdigit(), text[1]  # "2", not "2.0"
    frame = pd.read_csv(run_dir / "per_user.csv")
    assert pd.api.types.is_integer_dtype(frame["n"])
    assert frame["n"].sum() == len(pd.read_csv(run_dir / "test_picks.csv"))
