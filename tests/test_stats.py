"""wmbench.stats: point estimates checked against hand computations, intervals reproducible for a fixed seed,
the caller's RNG untouched, score matrices that refuse to average over missing cells, and input validation."""

import numpy as np
import pandas as pd
import pytest

from wmbench import stats
from wmbench.results import ResultsError

# 4 runs x 2 tasks. Values sorted: 0 1 2 3 4 5 6 7 -> IQM (trim 25% each end) = mean(2, 3, 4, 5) = 3.5.
SCORES = np.array([[0.0, 4.0], [1.0, 5.0], [2.0, 6.0], [3.0, 7.0]]) / 4.0


def test_aggregate_point_estimates_by_hand():
    out = stats.aggregate(SCORES, reps=50)
    assert out["iqm"].point == pytest.approx(3.5 / 4)
    # task means 1.5/4 and 5.5/4: mean 3.5/4, median of two = 3.5/4
    assert out["mean"].point == pytest.approx(3.5 / 4)
    assert out["median"].point == pytest.approx(3.5 / 4)
    # optimality gap (gamma 1): 1 - mean(min(s, 1)) with 5/4, 6/4, 7/4 clipped to 1 -> 1 - (0+1+2+3+4+4+4+4)/32
    assert out["optimality_gap"].point == pytest.approx(1 - 22 / 32)
    for interval in out.values():
        point, low, high = interval
        assert low <= point <= high


def test_aggregate_is_reproducible_and_leaves_global_rng_alone():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = stats.aggregate(SCORES, reps=200, seed=7)
    assert np.array_equal(np.random.get_state()[1], before)
    b = stats.aggregate(SCORES, reps=200, seed=7)
    c = stats.aggregate(SCORES, reps=200, seed=8)
    assert a == b
    assert a["mean"] != c["mean"]


def test_aggregate_constant_scores_have_zero_width_intervals_and_dict_input():
    out = stats.aggregate({"x": np.full((3, 4), 0.5), "y": SCORES}, metrics=("mean", "iqm"), reps=100)
    assert set(out) == {"x", "y"}
    assert out["x"]["mean"] == (0.5, 0.5, 0.5)
    assert set(out["y"]) == {"mean", "iqm"}


def test_confidence_width_grows_with_confidence():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(10, 5))
    narrow = stats.aggregate(scores, metrics=("mean",), reps=500, confidence=0.5)["mean"]
    wide = stats.aggregate(scores, metrics=("mean",), reps=500, confidence=0.99)["mean"]
    assert wide.high - wide.low > narrow.high - narrow.low


def test_bad_matrices_are_named():
    frame = pd.DataFrame([[1.0, np.nan], [np.inf, 2.0]], index=["s0", "s1"], columns=["pong", "qbert"])
    with pytest.raises(ResultsError, match=r"\(run 's0', task 'qbert'\), \(run 's1', task 'pong'\)"):
        stats.aggregate(frame)
    with pytest.raises(ResultsError, match=r"expected a 2-D array"):
        stats.aggregate(np.ones(3))
    with pytest.raises(ResultsError, match="unknown metric"):
        stats.aggregate(SCORES, metrics=("iqr",))
    with pytest.raises(ResultsError, match="empty score matrix"):
        stats.aggregate(np.ones((0, 3)))


def test_probability_of_improvement_by_hand():
    x = np.array([[2.0, 2.0], [3.0, 3.0]])
    y = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    assert stats.probability_of_improvement(x, y, reps=20).point == 1.0
    assert stats.probability_of_improvement(y, x, reps=20).point == 0.0
    assert stats.probability_of_improvement(x, x, reps=20).point == 0.5
    # one task: x = [1, 3], y = [2]: P(X > Y) = 1/2
    assert stats.probability_of_improvement([[1.0], [3.0]], [[2.0]], reps=20).point == 0.5
    with pytest.raises(ResultsError, match="same tasks"):
        stats.probability_of_improvement(x, y[:, :1])


def test_performance_profile_by_hand():
    curve = stats.performance_profile(SCORES, taus=[0.0, 0.5, 2.0], reps=100)
    # fraction of the 8 runs x tasks scores strictly above tau: > 0: 7/8; > 0.5: 5/8 (0.75..1.75); > 2: 0
    np.testing.assert_allclose(curve.point, [7 / 8, 5 / 8, 0.0])
    assert np.all(curve.low <= curve.point) and np.all(curve.point <= curve.high)
    with pytest.raises(ResultsError, match="taus"):
        stats.performance_profile(SCORES, taus=[])


def test_sample_efficiency_is_the_metric_at_each_step():
    curves = np.stack([SCORES * 0.5, SCORES], axis=2)  # [runs, tasks, steps]
    out = stats.sample_efficiency({"m": curves}, steps=[5e4, 1e5], metric="mean", reps=100)["m"]
    np.testing.assert_allclose(out.point, [3.5 / 8, 3.5 / 4])
    np.testing.assert_allclose(out.x, [5e4, 1e5])
    with pytest.raises(ResultsError, match="2 points per run, steps has 3"):
        stats.sample_efficiency(curves, steps=[1, 2, 3])


def finals(rows):
    return pd.DataFrame(rows, columns=["method", "task", "seed", "final"])


def test_score_matrix_normalises_and_orders_seeds_numerically():
    df = finals([("m", "walker_walk", s, 100.0 * int(s)) for s in ("10", "2", "1")]
                + [("m", "cheetah_run", s, 1000.0) for s in ("1", "2", "10")])
    m = stats.score_matrix(df, "dmc")["m"]
    # columns sorted by task (cheetah_run, walker_walk); rows seeds 1, 2, 10
    np.testing.assert_allclose(m, [[1.0, 0.1], [1.0, 0.2], [1.0, 1.0]])


def test_score_matrix_never_averages_over_missing_cells():
    df = finals([("m", "a", "0", 1.0), ("m", "a", "1", 2.0), ("m", "b", "0", 3.0), ("n", "a", "0", 1.0)])
    with pytest.raises(ResultsError, match=r"missing \(method, task, seed\) cells \[\('m', 'b', '1'\)\]"):
        stats.score_matrix(df[df.method == "m"], "none")
    with pytest.raises(ResultsError, match=r"method 'n' has no runs on tasks \['b'\]"):
        stats.score_matrix(df, "none")
    np.testing.assert_allclose(stats.score_matrix(df[df.method == "m"], "none", allow_missing="drop_seeds")["m"],
                               [[1.0, 3.0]])
    np.testing.assert_allclose(stats.score_matrix(df[df.method == "m"], "none", allow_missing="min_runs")["m"],
                               [[1.0, 3.0]])
    dup = pd.concat([df, df.iloc[:1]])
    with pytest.raises(ResultsError, match=r"several final scores.*\('m', 'a', '0'\)"):
        stats.score_matrix(dup, "none")
    with pytest.raises(ResultsError, match="allow_missing"):
        stats.score_matrix(df, "none", allow_missing="ignore")


def test_difference_by_hand():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])  # mean 2.5
    y = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])  # mean 1.0
    d = stats.difference(x, y, metric="mean", reps=200, seed=3)
    assert d.point == pytest.approx(1.5)
    assert d.low <= 1.5 <= d.high
    assert d == stats.difference(x, y, metric="mean", reps=200, seed=3)
    assert stats.difference(x, x + 0.0, metric="mean", reps=50).point == 0.0
    with pytest.raises(ResultsError, match="same tasks"):
        stats.difference(x, y[:, :1])


def test_bad_reps_and_confidence():
    with pytest.raises(ResultsError, match="reps must be a positive integer"):
        stats.aggregate(SCORES, reps=0)
    with pytest.raises(ResultsError, match=r"confidence must be in \(0, 1\)"):
        stats.aggregate(SCORES, confidence=95)


def test_vectorised_poi_equals_rliable_mann_whitney():
    from rliable import metrics as rly_metrics

    from wmbench.stats import mann_whitney_poi

    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 7)).round(1)  # rounding makes ties, which count one half
    y = rng.normal(0.3, size=(4, 7)).round(1)
    assert mann_whitney_poi(x, y) == pytest.approx(rly_metrics.probability_of_improvement(x, y), abs=1e-12)
    assert mann_whitney_poi(x, x) == pytest.approx(0.5)


def test_each_methods_intervals_are_independent_of_the_other_methods_in_the_call():
    rng = np.random.default_rng(7)
    a, b, c = rng.random((5, 4)), rng.random((6, 4)), rng.random((3, 4))
    alone = stats.aggregate({"b": b}, reps=300, seed=2)["b"]
    assert stats.aggregate({"a": a, "b": b}, reps=300, seed=2)["b"] == alone
    assert stats.aggregate({"c": c, "a": a, "b": b}, reps=300, seed=2)["b"] == alone
    assert stats.aggregate(b, reps=300, seed=2) == alone
    taus = np.linspace(0, 1, 5)
    prof = stats.performance_profile({"b": b}, taus, reps=200, seed=1)["b"]
    prof_with = stats.performance_profile({"a": a, "b": b}, taus, reps=200, seed=1)["b"]
    assert np.array_equal(prof.low, prof_with.low) and np.array_equal(prof.high, prof_with.high)
    curves = {"a": rng.random((5, 4, 3)), "b": rng.random((6, 4, 3))}
    eff = stats.sample_efficiency({"b": curves["b"]}, [1, 2, 3], reps=200, seed=1)["b"]
    eff_with = stats.sample_efficiency(curves, [1, 2, 3], reps=200, seed=1)["b"]
    assert np.array_equal(eff.low, eff_with.low)
