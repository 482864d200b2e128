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


def test_the_run_writes_its_learning_curve(run_dir):
    png = run_dir / "learning_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert len(pd.read_csv(run_dir / "history.csv")) == 3


def test_learning_curve_draws_each_epochs_loss_and_validation_reward():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from proute.evaluation.figures import plot_learning_curve

    history = [{"epoch": e, "train/loss": 1.0 / (e + 1), "val/reward": 0.1 * e} for e in range(4)]
    fig = plot_learning_curve(history, best_epoch=2)
    loss_ax, reward_ax = fig.axes
    assert loss_ax.get_ylabel() == "train loss" and reward_ax.get_ylabel() == "validation reward"
    assert list(loss_ax.lines[0].get_ydata()) == [r["train/loss"] for r in history]
    assert list(reward_ax.lines[0].get_ydata()) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert list(reward_ax.lines[1].get_xdata()) == [2, 2]  # the selected epoch, dashed
    plt.close(fig)
    with pytest.raises(ValueError, match=r"missing \['val/reward'\]"):
        plot_learning_curve([{"epoch": 0, "train/loss": 1.0}])
