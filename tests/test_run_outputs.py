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


def test_per_user_png_shows_the_gnn_against_the_per_user_task_table_by_preference(
    run_dir, tmp_path, monkeypatch
):
    """The run's per_user.png: the GNN beside the per-(user, task) table baseline (not the
    best fixed LLM per user), users named by their preference, axes zoomed to the data."""
    import json

    import matplotlib.pyplot as plt

    from proute.evaluation import reporting

    profiles = json.loads((run_dir / "user_profiles.json").read_text())
    assert [p["preference"] for p in profiles] == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert (run_dir / "per_user.png").stat().st_size > 5000
    drawn = []
    draw = reporting.plot_run_per_user
    monkeypatch.setattr(reporting, "plot_run_per_user", lambda *a: drawn.append(draw(*a)) or drawn[-1])
    report = json.loads((run_dir / "metrics.json").read_text())
    per_user = pd.read_csv(run_dir / "per_user.csv")
    reporting._write_per_user_figure(tmp_path, per_user, report, profiles)

    (fig,) = drawn
    axes = fig.axes
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["GNN", "per_user_task"]
    ticks = [t.get_text() for t in axes[0].get_xticklabels()]
    assert ticks[0] == "u0 (perf 0.2)" and ticks[-1] == "u8 (perf 1.0)" and len(ticks) == 9
    for ax, col in zip(axes, ("accuracy", "reward_ratio"), strict=True):
        task = pd.DataFrame(report["baselines"]["test"]["per_user_task"]["per_user"]).T[col]
        values = pd.concat([per_user[col], task.astype(float)])
        lo, hi = ax.get_ylim()
        assert lo <= values.min() and hi >= values.max()
        assert hi - lo < 1.5 * max(values.max() - values.min(), 0.05) + 1e-9  # zoomed, not 0..1
    plt.close(fig)
