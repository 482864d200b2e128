"""proute.evaluation.analysis on hand-computed examples: AIQ, the paired bootstrap, cost–quality points."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from proute.evaluation import analysis  # noqa: E402
from proute.evaluation.analysis import aiq, frontier, mean_std_over_seeds, paired_bootstrap  # noqa: E402


# --------------------------------------------------------------------------- AIQ
def test_aiq_of_a_single_point_is_its_performance():
    assert aiq([(0.3, 0.7)]) == pytest.approx(0.7)
    # over a wider range: nothing is affordable below the point, its performance above it
    assert aiq([(0.5, 0.8)], cost_range=(0.0, 1.0)) == pytest.approx(0.5 * 0 + 0.5 * 0.8)


def test_aiq_of_two_points_is_the_trapezoid_and_a_dominated_point_changes_nothing():
    line = [(0.0, 0.5), (1.0, 1.0)]
    assert aiq(line) == pytest.approx(0.75)
    for dominated in [(0.5, 0.6), (0.5, 0.75), (1.0, 0.9), (0.0, 0.2), (0.8, 0.5)]:
        assert aiq(line + [dominated]) == pytest.approx(0.75), dominated
        np.testing.assert_allclose(frontier(line + [dominated]), line)


def test_aiq_concave_and_convex_sets():
    # concave: the middle point lifts the hull: 0.5 * (0 + 0.8) / 2 + 0.5 * (0.8 + 1) / 2
    assert aiq([(0.0, 0.0), (0.5, 0.8), (1.0, 1.0)]) == pytest.approx(0.65)
    # convex: the middle point lies below the chord, which mixing the ends reaches
    assert aiq([(0.0, 0.0), (0.5, 0.2), (1.0, 1.0)]) == pytest.approx(0.5)
    np.testing.assert_allclose(frontier([(0.0, 0.0), (0.5, 0.2), (1.0, 1.0)]), [(0, 0), (1, 1)])


def test_aiq_hull_is_non_decreasing_and_order_free():
    # a dearer, worse point adds nothing: the hull stays flat at the best performance
    assert aiq([(0.0, 0.5), (1.0, 0.2)]) == pytest.approx(0.5)
    pts = [(0.0, 0.5), (0.5, 1.0), (1.0, 1.0), (0.0, 0.3), (0.7, 0.4)]
    assert aiq(pts) == pytest.approx(0.875)
    assert aiq(pts[::-1]) == pytest.approx(0.875)
    # costs in dollars: only the ratio to the range matters
    assert aiq([(c * 1e-5, p) for c, p in pts]) == pytest.approx(0.875)


def test_aiq_range_and_input_errors():
    with pytest.raises(ValueError, match="cost_range"):
        aiq([(0.0, 1.0)], cost_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="finite"):
        aiq([(0.0, np.nan)])
    with pytest.raises(ValueError, match="at least one"):
        aiq(np.zeros((0, 2)))


# --------------------------------------------------------------------------- bootstrap
def _rewards(values, users=3):
    n = len(values)
    index = pd.MultiIndex.from_arrays(
        [[str(i % users) for i in range(n)], [f"q{i // users}" for i in range(n)]], names=analysis.KEY
    )
    return pd.Series(values, index=index, name="reward")


def test_bootstrap_of_identical_rewards_is_zero():
    r = _rewards(np.random.default_rng(1).random(60))
    res = paired_bootstrap(r, r, n=500)
    assert res.mean_diff == 0 and res.ci_low == 0 and res.ci_high == 0
    assert res.ci_low <= 0 <= res.ci_high
    assert res.frac_le_zero == 1.0 and res.n_pairs == 60 and res.n_resamples == 500


def test_bootstrap_of_a_clearly_better_router_excludes_zero():
    rng = np.random.default_rng(2)
    b = rng.random(300)
    a = b + 0.1 + rng.normal(0, 0.05, 300)
    res = paired_bootstrap(_rewards(a), _rewards(b), n=2000, seed=3)
    assert res.mean_diff == pytest.approx(float(np.mean(a - b)))
    assert 0 < res.ci_low < res.mean_diff < res.ci_high
    assert res.frac_le_zero == 0.0
    assert "95% CI" in str(res)
    # the reverse comparison is its mirror image
    rev = paired_bootstrap(_rewards(b), _rewards(a), n=2000, seed=3)
    assert rev.ci_high < 0 and rev.frac_le_zero == 1.0
    # whole clusters (the users of one query) resampled: still clearly better
    clustered = paired_bootstrap(_rewards(a), _rewards(b), n=2000, cluster="query_id")
    assert clustered.ci_low > 0 and clustered.mean_diff == pytest.approx(res.mean_diff)


def test_bootstrap_aligns_pairs_by_key():
    rng = np.random.default_rng(4)
    a, b = _rewards(rng.random(90)), _rewards(rng.random(90))
    shuffled = b.sample(frac=1, random_state=0)
    assert paired_bootstrap(a, shuffled, n=300) == paired_bootstrap(a, b, n=300)
    frame_a = a.reset_index().assign(user_id=lambda f: f["user_id"].astype(int))  # CSV ids are ints
    assert paired_bootstrap(frame_a, shuffled.reset_index(), n=300) == paired_bootstrap(a, b, n=300)
    with pytest.raises(ValueError, match="same pairs"):
        paired_bootstrap(a, b.iloc[1:], n=10)
    with pytest.raises(ValueError, match="same pairs"):
        paired_bootstrap(a, b.rename(index={"q0": "x"}, level="query_id"), n=10)
    assert paired_bootstrap([1.0, 2.0], [0.0, 1.0], n=50).mean_diff == 1.0  # arrays: by position


# --------------------------------------------------------------------------- seeds
def test_mean_std_over_seeds_formats_cells():
    frames = [
        pd.DataFrame({"reward": [r, 0.5], "router": ["gnn", "per_user"]}, index=["a", "b"])
        for r in (0.35, 0.36, 0.37)
    ]
    table = mean_std_over_seeds(frames)
    assert table.loc["a", "reward"] == "0.3600 ± 0.0100"
    assert table.loc["b", "reward"] == "0.5000 ± 0.0000"
    assert list(table["router"]) == ["gnn", "per_user"]
    assert analysis.format_mean_std(0.35541, 0.00531) == "0.3554 ± 0.0053"
    assert mean_std_over_seeds(frames[:1]).loc["a", "reward"] == "0.3500"  # one seed: no std
    assert mean_std_over_seeds([f["reward"] for f in frames], digits=2).loc["a", "reward"] == "0.36 ± 0.01"
    with pytest.raises(ValueError, match="share"):
        mean_std_over_seeds([frames[0], frames[1].iloc[::-1]])


# --------------------------------------------------------------------------- cost–quality
@pytest.fixture
def outcomes() -> pd.DataFrame:
    """2 users × 2 queries × 2 LLMs: "cheap" (cost 1) and "strong" (cost 3)."""
    rows = []
    perf = {("q1", "cheap"): 0.0, ("q1", "strong"): 1.0, ("q2", "cheap"): 1.0, ("q2", "strong"): 1.0}
    for user, weight in ((0, 0.2), (1, 1.0)):  # user 1 ignores cost
        for (q, llm), p in perf.items():
            cost = 1.0 if llm == "cheap" else 3.0
            reward = weight * p - (1 - weight) * (cost - 1) / 2
            rows.append((user, q, "math", llm, p, cost, reward))
    return pd.DataFrame(rows, columns=["user_id", "query_id", "task", "llm", "performance", "cost", "reward"])


def test_cost_quality_points_known_means(outcomes):
    gnn = pd.DataFrame({"user_id": [0, 0, 1, 1], "query_id": ["q1", "q2", "q1", "q2"]})
    gnn["llm"] = ["cheap", "cheap", "strong", "strong"]
    pts = analysis.cost_quality_points(outcomes, {"gnn": gnn}).set_index(["user_id", "name"])
    assert set(pts.index.get_level_values(0)) == {"0", "1"}
    np.testing.assert_allclose(pts.loc[("0", "cheap"), ["cost", "performance"]].astype(float), [1.0, 0.5])
    np.testing.assert_allclose(pts.loc[("1", "strong"), ["cost", "performance"]].astype(float), [3.0, 1.0])
    np.testing.assert_allclose(pts.loc[("0", "gnn"), ["cost", "performance"]].astype(float), [1.0, 0.5])
    np.testing.assert_allclose(pts.loc[("1", "gnn"), ["cost", "performance"]].astype(float), [3.0, 1.0])
    # user 0's oracle: cheap on q2; on q1 cheap (reward 0) beats strong (0.2 - 0.8 = -0.6)
    np.testing.assert_allclose(pts.loc[("0", "oracle"), ["cost", "performance"]].astype(float), [1.0, 0.5])
    # user 1's oracle: strong on q1; on q2 both tie at reward 1, the cheaper is taken
    np.testing.assert_allclose(
        pts.loc[("1", "oracle"), ["cost", "performance", "n"]].astype(float), [2.0, 1.0, 2]
    )
    assert dict(pts["kind"].droplevel(0).items()) == {
        "gnn": "router",
        "oracle": "oracle",
        "cheap": "llm",
        "strong": "llm",
    }
    overall = analysis.cost_quality_points(outcomes, by=None)
    assert set(overall["user_id"]) == {"all"}
    assert overall.set_index("name").loc["oracle", "cost"] == pytest.approx(1.5)


def test_cost_quality_points_skip_pairs_outside_the_outcomes_and_reject_unobserved_picks(outcomes):
    extra = pd.DataFrame({"user_id": [0, 5], "query_id": ["q1", "q9"], "llm": ["strong", "cheap"]})
    pts = analysis.cost_quality_points(outcomes, {"r": extra})
    row = pts[(pts["name"] == "r")].iloc[0]
    assert (row["user_id"], row["cost"], row["n"]) == ("0", 3.0, 1)
    with pytest.raises(ValueError, match="unobserved"):
        analysis.cost_quality_points(outcomes, {"r": extra.assign(llm="missing")})


def test_router_points_tables_and_plots(outcomes, tmp_path):
    def block(r):
        users = {
            u: {"n": 2, "reward": r + i, "accuracy": 0.5, "cost": 1.0 + i, "performance": 0.5}
            for i, u in enumerate("01")
        }
        return {"per_user": users}

    oracle = {**block(1.0), "upper_bound": True}
    metrics = {"test": block(0.1), "baselines": {"test": {"per_user": block(0.0), "oracle": oracle}}}
    table = analysis.per_user_table(metrics, "reward")
    assert list(table.columns) == ["gnn", "per_user"] and list(table.index) == ["0", "1"]
    assert list(analysis.per_user_table(metrics, upper_bounds=True).columns) == ["gnn", "per_user", "oracle"]
    assert table.loc["1", "gnn"] == pytest.approx(1.1)
    router_pts = analysis.router_points_from_metrics(metrics)
    assert len(router_pts) == 4 and set(router_pts["kind"]) == {"router"}
    pts = analysis.cost_quality_points(outcomes, router_points=router_pts)
    none = analysis.router_points_from_metrics(metrics, names=[])
    assert set(analysis.cost_quality_points(outcomes, router_points=none)["kind"]) == {"llm", "oracle"}
    aiqs = analysis.aiq_table(pts)
    assert list(aiqs.columns) == [analysis.LLM_FRONTIER, "gnn", "per_user"]
    # user 0: LLMs (1, .5) and (3, 1); the routers sit on the cheap LLM: the chord's AIQ
    assert aiqs.loc["0", analysis.LLM_FRONTIER] == pytest.approx(0.75)
    assert aiqs.loc["0", "gnn"] == pytest.approx(0.75)

    fig = analysis.plot_cost_quality(pts, ncols=2, path=tmp_path / "cq.png")
    assert (tmp_path / "cq.png").stat().st_size > 0
    assert fig.axes[0].get_title() == "user 0\nAIQ: single LLMs 0.750, gnn 0.750"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["single LLM", "single LLMs: frontier", "gnn", "per_user", "oracle"]
    plt.close(fig)
    fig = analysis.plot_per_user(table, "reward", "t", tmp_path / "pu.png")
    plt.close(fig)
    fig = analysis.plot_heatmap(analysis.choice_shares(outcomes), "t", tmp_path / "hm.png")
    plt.close(fig)
    assert (tmp_path / "pu.png").is_file() and (tmp_path / "hm.png").is_file()


def test_choice_shares_and_disagreements():
    picks = pd.DataFrame(
        {
            "user_id": [0, 1, 0, 1, 0, 1],
            "query_id": ["a", "a", "b", "b", "c", "c"],
            "llm": ["x", "y", "x", "x", "x", "z"],
        }
    )
    shares = analysis.choice_shares(picks, ["x", "y", "z", "w"])
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    assert shares.loc["0", "x"] == 1.0 and shares.loc["1", "w"] == 0.0
    assert shares.loc["1", "y"] == pytest.approx(1 / 3)
    ex = analysis.disagreements(picks)
    assert list(ex["query_id"]) == ["a", "a", "c", "c"]
    assert len(analysis.disagreements(picks, limit=1)) == 2


def test_baseline_picks_refit_on_train_rows(outcomes):
    train = outcomes.assign(split="train", query_id=outcomes["query_id"] + "_train")
    table = pd.concat([train, outcomes.assign(split="test")], ignore_index=True)
    pairs = outcomes.drop_duplicates(analysis.KEY)[analysis.KEY + ["task"]]
    picks = analysis.baseline_picks(table, pairs, ["cheap", "strong"], names=["per_user"])["per_user"]
    # user 0 (cost-minded) is best off with "cheap" on train, user 1 with "strong"
    assert dict(zip(picks["user_id"], picks["llm"], strict=False)) == {0: "cheap", 1: "strong"}
    assert picks["user_id"].dtype == pairs["user_id"].dtype
    assert {"reward", "performance", "cost"} <= set(picks.columns)
    analysis.check_picks_in_outcomes(picks, outcomes)
    with pytest.raises(ValueError, match="data changed"):
        analysis.check_picks_in_outcomes(picks.assign(reward=picks["reward"] + 1), outcomes)


def test_latest_and_resolved_run_dirs(tmp_path, monkeypatch):
    runs = tmp_path / "outputs" / "train" / "runs"
    for name, state in (("a", "finished"), ("b", "failed"), ("c", None)):
        (runs / name).mkdir(parents=True)
        if state:
            (runs / name / "status.json").write_text(json.dumps({"state": state}))
        if name != "c":
            (runs / name / "metrics.json").write_text("{}")
    assert analysis.latest_run_dir(tmp_path) == runs / "a"
    monkeypatch.setenv("PROUTE_RUN_DIR", str(runs / "a"))
    assert analysis.resolve_run_dir() == runs / "a"
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        analysis.resolve_run_dir(runs / "c")
    with pytest.raises(FileNotFoundError, match="PROUTE_RUN_DIR"):
        analysis.latest_run_dir(tmp_path / "empty")


def test_loaders_read_the_files_a_run_may_write(outcomes, tmp_path):
    """With test_outcomes.parquet, test_baseline_picks.csv and test_queries.parquet in the
    run, nothing is rebuilt (the run has no config.yaml here)."""
    picks = analysis.oracle_picks(outcomes)
    picks.to_csv(tmp_path / "test_picks.csv", index=False)
    outcomes.to_parquet(tmp_path / analysis.OUTCOMES_FILE, index=False)
    pd.concat([picks.assign(router="per_user"), picks.assign(router="random")]).to_csv(
        tmp_path / analysis.BASELINE_PICKS_FILE, index=False
    )
    texts = pd.DataFrame({"query_id": ["q1", "q2"], "task": "math", "query": ["1 + 1", "2 + 2"]})
    texts.to_parquet(tmp_path / analysis.QUERIES_FILE, index=False)
    (tmp_path / "metrics.json").write_text(json.dumps({"baselines": {"test": {"per_user": {}}}}))

    pd.testing.assert_frame_equal(analysis.load_test_outcomes(tmp_path), outcomes)
    loaded = analysis.load_baseline_picks(tmp_path)
    assert list(loaded) == ["per_user"] and len(loaded["per_user"]) == len(picks)
    assert analysis.load_queries(tmp_path).to_dict() == {"q1": "1 + 1", "q2": "2 + 2"}
    assert analysis.load_picks(tmp_path)["query_id"].tolist() == picks["query_id"].tolist()


def test_only_lookup_table_baselines_are_refitted(outcomes):
    assert analysis.refittable(["random", "per_user", "per_user_task", "no_such"]) == [
        "random",
        "per_user",
        "per_user_task",
    ]
    from proute.baselines import BASELINES

    for name in ("oracle", "knn", "mlp", "mf"):  # where the installed proute has them
        if name in BASELINES:
            assert analysis.refittable([name]) == []
            with pytest.raises(ValueError, match="cannot be refitted"):
                analysis.baseline_picks(outcomes.assign(split="test"), outcomes, ["cheap", "strong"], [name])


def test_reference_baseline_is_the_per_user_task_table_else_the_best_baseline():
    def block(reward, **extra):
        return {"overall": {"reward": reward}, "per_user": {}, **extra}

    metrics = {
        "test": block(0.3),
        "baselines": {
            "test": {
                "per_user": block(0.2),
                "per_user_task": block(0.25),
                "knn": block(0.28),
                "oracle": block(0.9, upper_bound=True),
            }
        },
    }
    assert analysis.reference_baseline(metrics) == "per_user_task"
    del metrics["baselines"]["test"]["per_user_task"]
    assert analysis.reference_baseline(metrics) == "knn"  # the oracle is an upper bound, not a method
    assert analysis.reference_baseline({"test": block(0.3)}) is None


def test_user_labels_name_each_users_preference(tmp_path):
    profiles = [
        {"user_id": 3, "preference": 0.8},
        {"user_id": 4, "archetype": "noisy", "preference": 0.4312, "family": "", "task_preferences": {}},
        {"user_id": 5, "archetype": "family_loyal", "preference": 0.61, "family": "qwen"},
        {"user_id": 6, "archetype": "task_specialist", "preference": 0.5, "task_preferences": {"a": 0.1}},
    ]
    assert analysis.user_labels(profiles) == {
        "3": "u3 (perf 0.8)",
        "4": "u4 (noisy, perf 0.43)",
        "5": "u5 (loyal to qwen, perf 0.61)",
        "6": "u6 (per-task)",
    }
    assert analysis.load_user_labels(tmp_path) == {}  # the data's own users: bare ids
    (tmp_path / analysis.USERS_FILE).write_text(json.dumps(profiles[:1]))
    assert analysis.load_user_labels(tmp_path) == {"3": "u3 (perf 0.8)"}


def test_per_user_dots_zoom_to_the_data_and_name_users():
    from proute.evaluation.figures import plot_run_per_user, zoomed_limits

    assert zoomed_limits([0.6, 0.9]) == pytest.approx((0.555, 0.945))
    assert zoomed_limits([0.5, 0.5]) == pytest.approx((0.4675, 0.5325))  # at least min_span wide
    gnn = pd.DataFrame({"user_id": [0, 1], "accuracy": [0.6, 0.9], "reward_ratio": [0.7, 0.8]})
    base = pd.DataFrame({"user_id": ["1", "0"], "accuracy": [0.85, 0.65], "reward_ratio": [0.75, 0.72]})
    fig = plot_run_per_user(gnn, base, "per_user_task", {"0": "u0 (perf 0.2)", "1": "u1 (perf 1.0)"})
    acc = fig.axes[0]
    assert acc.get_ylim()[0] > 0.5 and acc.get_ylim()[1] < 1.0
    assert [t.get_text() for t in acc.get_xticklabels()] == ["u0 (perf 0.2)", "u1 (perf 1.0)"]
    gnn_pts, base_pts = (c.get_offsets()[:, 1] for c in acc.collections[1:])
    assert list(gnn_pts) == [0.6, 0.9] and list(base_pts) == [0.65, 0.85]  # aligned by user, not row
    plt.close(fig)


def _many_router_points() -> pd.DataFrame:
    """Two users' points: three LLMs (one expensive), the oracle, and eleven routers named
    as in a study run (the oracle baseline among them, as load_baseline_picks returns it)."""
    names = ["gnn", "best_llm", "cheapest", "knn", "mf", "mlp", "oracle", "per_user", "per_user_task"]
    names += ["random", "strongest"]
    rows = []
    for u in ("0", "1"):
        rows += [
            {"user_id": u, "kind": "llm", "name": n, "cost": c, "performance": p}
            for n, c, p in (("small", 0.1, 0.4), ("mid", 0.4, 0.6), ("big", 9.0, 0.95))
        ]
        rows.append({"user_id": u, "kind": "oracle", "name": "oracle", "cost": 0.3, "performance": 0.9})
        rows += [
            {"user_id": u, "kind": "router", "name": n, "cost": 0.1 + 0.05 * i, "performance": 0.5 + 0.02 * i}
            for i, n in enumerate(names)
        ]
    return pd.DataFrame(rows).assign(reward=0.0, n=1)


def test_cost_quality_gives_every_method_its_own_style_and_one_legend_outside_the_panels():
    from proute.evaluation.figures import method_styles

    pts = _many_router_points()
    fig = analysis.plot_cost_quality(pts, ncols=2, labels={"0": "u0 (perf 0.2)"})
    legend = fig.legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(texts) == len(set(texts)) and texts.count("oracle") == 1
    assert {"gnn", "strongest", "per_user_task"} <= set(texts)
    gnn, strongest = (c for c in fig.axes[0].collections if c.get_label() in ("gnn", "strongest"))
    assert not np.array_equal(gnn.get_paths()[0].vertices, strongest.get_paths()[0].vertices)  # markers
    assert not np.allclose(gnn.get_facecolor(), strongest.get_facecolor())
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("u0 (perf 0.2)\n") and titles[1].startswith("user 1")
    fig.canvas.draw()  # the legend hides no point: it lies outside every panel
    box = legend.get_window_extent()
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent())
    plt.close(fig)
    styles = method_styles([n for n in pts["name"].unique() if n != "oracle"] + ["oracle"])
    others = [v for k, v in styles.items() if k != "oracle"]
    assert len({m for m, _ in others}) == len(others) and len({c for _, c in others}) == len(others)
    assert styles["oracle"] == ("*", "gold") and styles["small"] == ("o", "#1f77b4")  # first gets o/blue


def test_per_user_chart_shows_gnn_reference_and_oracle_at_a_readable_size():
    def block(reward):
        users = {
            str(u): {"reward": reward + 0.01 * u, "accuracy": 0.5, "oracle_reward": 0.9} for u in range(9)
        }
        return {"overall": {"reward": reward}, "per_user": users}

    names = ["random", "best_llm", "cheapest", "strongest", "per_user", "per_user_task", "knn", "mlp", "mf"]
    baselines = {n: block(0.1 + 0.04 * i) for i, n in enumerate(names)}
    metrics = {"test": block(0.5), "baselines": {"test": baselines}}
    metrics["baselines"]["test"]["oracle"] = {**block(0.9), "upper_bound": True}
    shown = analysis.per_user_headline(metrics, "reward")
    assert list(shown.columns) == ["gnn", "per_user_task", "oracle"]  # not 11 bars per user
    assert shown.loc["3"].tolist() == pytest.approx([0.53, 0.33, 0.9])
    assert list(analysis.per_user_headline(metrics, "accuracy").columns) == ["gnn", "per_user_task"]
    fig = analysis.plot_per_user(shown, "mean test reward", "t", labels={"0": "u0 (perf 0.2)"})
    width, height = fig.get_size_inches()
    assert 6 <= width <= 16 and 3 <= height <= 5 and width / height < 4  # was 26 x 3.6 inches
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["gnn", "per_user_task", "oracle"]
    assert ax.get_xticklabels()[0].get_text() == "u0 (perf 0.2)"
    assert ax.get_ylim()[0] > 0.2  # zoomed: the smallest value is 0.33
    plt.close(fig)
