"""Reproduction verdicts (wmbench.reproduce): decision rule, Welch interval, and verdicts on the shipped published data.

Expected values come from the definitions (TOST, Welch) or from SciPy's independent implementation, and from the
published data's known structure (DreamerV3 vs PPO on Atari100k differ by ~0.5 human-normalised IQM).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from wmbench import reproduce, results
from wmbench.reproduce import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

PROTOCOL = "atari100k@1"
REPS = 200


@pytest.fixture(scope="module")
def dreamer_finals() -> pd.DataFrame:
    return results.final_scores(results.published(protocol=PROTOCOL, method="dreamerv3"), PROTOCOL)


@pytest.fixture(scope="module")
def ppo_finals() -> pd.DataFrame:
    return results.final_scores(results.published(protocol=PROTOCOL, method="ppo"), PROTOCOL)


def test_decide_follows_tost() -> None:
    # (1 - 2 alpha) interval inside (-m, m) <=> both one-sided tests reject: reproduced.
    assert reproduce.decide(-0.05, 0.08, 0.1) == REPRODUCED
    # Interval entirely above +m or below -m: the equivalence region is excluded.
    assert reproduce.decide(0.12, 0.4, 0.1) == NOT_REPRODUCED
    assert reproduce.decide(-0.4, -0.11, 0.1) == NOT_REPRODUCED
    # Straddling a margin, or wider than the whole region: the data cannot tell.
    assert reproduce.decide(0.05, 0.15, 0.1) == INCONCLUSIVE
    assert reproduce.decide(-0.3, 0.3, 0.1) == INCONCLUSIVE
    # Touching the margin is not inside the open region (TOST's nulls include the boundary).
    assert reproduce.decide(-0.1, 0.0, 0.1) == INCONCLUSIVE


def test_welch_interval_matches_scipy_and_hand_computation() -> None:
    x, y = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0])
    diff, low, high, df, se = reproduce.welch_interval(x, y, alpha=0.05)
    # By hand: var(x)/3 = 1/3, var(y)/2 = 1, se = sqrt(4/3), df = (4/3)^2 / ((1/3)^2/2 + 1^2/1) = 32/19.
    assert diff == pytest.approx(-1.0)
    assert se == pytest.approx(np.sqrt(4 / 3))
    assert df == pytest.approx(32 / 19)
    ref = scipy_stats.ttest_ind(x, y, equal_var=False).confidence_interval(confidence_level=0.90)
    assert (low, high) == pytest.approx((ref.low, ref.high))


def test_task_verdict_tost_p_value_agrees_with_interval() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(0.50, 0.02, 10), rng.normal(0.51, 0.02, 10)
    untrained = np.zeros(10)  # both sides far above the untrained level, which gained 0.51 >> 2 x margin
    t = reproduce.task_verdict("pong", x, y, x, y, margin=0.1, alpha=0.05, untrained=untrained)
    assert t.verdict == REPRODUCED and t.p_equivalence < 0.05
    t = reproduce.task_verdict("pong", x + 0.3, y, x, y, margin=0.1, alpha=0.05, untrained=untrained)
    assert t.verdict == NOT_REPRODUCED and t.p_equivalence > 0.05
    # Without an untrained level nothing shows that ours learned: never "reproduced".
    t = reproduce.task_verdict("pong", x, y, x, y, margin=0.1, alpha=0.05)
    assert t.verdict == INCONCLUSIVE and "untrained" in t.reason


def _random_halves(finals: pd.DataFrame, n_first: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split each task's seeds at random into two disjoint groups (n_first and the rest)."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for _, group in finals.groupby("task"):
        order = rng.permutation(len(group))
        first.append(group.iloc[order[:n_first]])
        second.append(group.iloc[order[n_first:]])
    return pd.concat(first), pd.concat(second)


def test_disjoint_halves_of_published_seeds_reproduce_each_other(dreamer_finals: pd.DataFrame) -> None:
    """2 vs 3 of the 5 published DreamerV3 seeds per game, 26 games, aggregate IQM.

    Margin 0.3 human-normalised IQM: over 40 random 2-vs-3 splits of these data the IQM difference has a standard
    deviation of ~0.08 and its 90% bootstrap interval reaches out to 0.14 (median) / 0.26 (worst) from zero, so 0.3
    is the tightest margin 5 seeds can support; it is still well below the 0.50 DreamerV3-PPO gap. The seeds are
    split at random within each game: the 2024 files' seed labels are not exchangeable (per-game Spearman
    correlation of seed index with final score averages 0.61), so "seeds 0-1 vs 2-4" would compare the
    weaker with the stronger runs.
    """
    ours, published = _random_halves(dreamer_finals, 2, seed=3)
    assert set(ours.index).isdisjoint(published.index)
    v = reproduce.verdict(ours, published, PROTOCOL, margin=0.3, reps=REPS, improvement=False, min_seeds=2)
    assert v.verdict == REPRODUCED
    assert v.aggregate.n_ours == 2 and v.aggregate.n_published == 3 and len(v.aggregate.tasks) == 26
    low, high = v.aggregate.difference["iqm"][1:]
    assert -0.3 < low < high < 0.3
    assert any("lowered by the user to 2 (protocol atari100k@1: 5)" in n for n in v.notes)
    # At the protocol's margin (0.1) five seeds are not enough to claim equivalence, but never a failure.
    v = reproduce.verdict(ours, published, PROTOCOL, reps=REPS, improvement=False, min_seeds=2)
    assert v.margin == 0.1 and v.verdict != NOT_REPRODUCED
    # Below the protocol's minimum of 5 seeds, without the user lowering it: inconclusive, with the reason.
    v = reproduce.verdict(ours, published, PROTOCOL, margin=0.3, reps=REPS, improvement=False)
    assert v.verdict == INCONCLUSIVE and "needs >= 5 seeds per task on each side (ours 2, published 3)" in v.text


def test_dreamerv3_vs_ppo_is_not_reproduced(dreamer_finals: pd.DataFrame, ppo_finals: pd.DataFrame) -> None:
    v = reproduce.verdict(dreamer_finals, ppo_finals, PROTOCOL, reps=REPS, improvement=False)
    assert v.verdict == NOT_REPRODUCED
    point, low, high = v.aggregate.difference["iqm"]
    assert low > 0.1  # DreamerV3 is far above PPO: the whole interval is beyond the margin
    # Both sides' IQMs come from stats.aggregate on the same normalised matrices: difference = ours - published.
    assert point == pytest.approx(v.aggregate.ours["iqm"][0] - v.aggregate.published["iqm"][0])
    # PPO gains little over random (IQM ~0.02), so the margin is narrowed to half of that gain.
    assert v.margin < 0.1 and f"±{v.margin:.3g}" in v.text
    assert "400,000 frames" in v.text and "5 seeds/task" in v.text
    assert "NOT REPRODUCED" in v.text


def test_two_vs_two_seeds_of_a_noisy_task_is_inconclusive(dreamer_finals: pd.DataFrame) -> None:
    # up_n_down: published finals range 17,900 .. 125,290 (HNS 1.5 .. 11): 2 vs 2 seeds cannot settle +-0.1.
    game = dreamer_finals[dreamer_finals.task == "up_n_down"].sort_values("seed")
    ours, published = game.iloc[[0, 2]], game.iloc[[1, 3]]
    v = reproduce.verdict(ours, published, PROTOCOL, tasks=["up_n_down"], reps=REPS, improvement=False)
    assert v.tasks[0].verdict == INCONCLUSIVE
    assert v.verdict == INCONCLUSIVE
    # One seed per side: no variance, inconclusive by construction (with the reason stated).
    v = reproduce.verdict(game.iloc[[0]], game.iloc[[1]], PROTOCOL, tasks=["up_n_down"], reps=REPS,
                          improvement=False)
    assert v.tasks[0].verdict == INCONCLUSIVE and "seeds" in v.tasks[0].reason
    assert v.verdict == INCONCLUSIVE


def test_verdict_to_dict_and_table(dreamer_finals: pd.DataFrame) -> None:
    ours, published = _random_halves(dreamer_finals[dreamer_finals.task.isin(["pong", "boxing"])], 2, seed=0)
    v = reproduce.verdict(ours, published, PROTOCOL, tasks=["pong", "boxing"], reps=50, min_seeds=2)
    d = json.loads(json.dumps(v.to_dict()))
    assert d["verdict"] == v.verdict and d["margin"] == 0.1 and d["unit"] == "frames" and d["budget"] == 400000
    assert [t["task"] for t in d["tasks"]] == ["pong", "boxing"]
    low, high = d["aggregate"]["probability_of_improvement"][1:]
    assert 0 <= low <= high <= 1
    table = v.table()
    assert "pong" in table and "aggregate iqm" in table and "<- verdict" in table


def _curve_table(task: str, seeds: int, early: float, late: float) -> pd.DataFrame:
    """Synthetic Atari100k curves: episodes every 5k frames scoring `early` up to 200k frames and `late` after."""
    steps = np.arange(5000, 400001, 5000, dtype=float)
    rows = [
        ("synthetic", "m", "atari100k", task, str(s), x, early if x <= 200000 else late, "frames", "curve")
        for s in range(seeds) for x in steps
    ]
    return pd.DataFrame(rows, columns=results.SCORE_COLUMNS)


def test_at_step_applies_the_rule_at_the_earlier_budget() -> None:
    table = _curve_table("pong", 3, early=-10.0, late=5.0)
    # A shipped `final` row at the budget must not leak into an earlier comparison.
    final_rows = table.groupby("seed").tail(1).assign(point_type="final", score=20.0)
    table = pd.concat([table, final_rows], ignore_index=True)
    at_budget = reproduce.finals_at(table, PROTOCOL)
    assert set(at_budget["final"]) == {20.0}
    early = reproduce.finals_at(table, PROTOCOL, at_step=200000)
    # Window (190k, 200k] holds the episodes at 195k and 200k, both scoring -10.
    assert set(early["final"]) == {-10.0} and len(early) == 3


def test_at_step_out_of_range_is_a_clear_error() -> None:
    table = _curve_table("pong", 2, early=0.0, late=0.0)
    with pytest.raises(reproduce.ReproduceError, match="at-step"):
        reproduce.compare(table, table, PROTOCOL, at_step=500000)


def _write_run(root, task: str, seed: int, curve: pd.DataFrame, status: str = "finished") -> None:
    from wmbench.protocols import load_protocol
    from wmbench.runner import run_dir_for

    protocol = load_protocol(PROTOCOL)
    run_dir = run_dir_for(root, protocol, task, "dreamerv3", seed)
    run_dir.mkdir(parents=True)
    info = {"method": "dreamerv3", "protocol": protocol.id, "protocol_hash": protocol.hash, "task": task,
            "seed": seed, "smoke": False, "status": status, "agent_steps": 100000 if status == "finished" else 50000}
    (run_dir / "run.json").write_text(json.dumps(info))
    pd.DataFrame({"env_step": curve["env_step"].astype(int), "step_unit": "frames",
                  "episode": np.arange(len(curve)), "score": curve["score"], "length": 1000, "phase": "train"}
                 ).to_csv(run_dir / "scores.csv", index=False)


def test_cli_reads_runs_skips_unfinished_and_prints_sweep_command(tmp_path, capsys) -> None:
    """Our 'runs' are the published DreamerV3 pong/boxing curves themselves: the difference must be ~0."""
    pub = results.published(protocol=PROTOCOL, method="dreamerv3", task=["pong", "boxing"])
    curves = pub[pub.point_type == "curve"]
    for (task, seed), curve in curves.groupby(["task", "seed"]):
        _write_run(tmp_path, task, int(seed), curve)
    _write_run(tmp_path, "pong", 7, curves[curves.task == "pong"].head(5), status="running")
    out = tmp_path / "verdict.json"
    rc = reproduce.cli_reproduce(["dreamerv3", PROTOCOL, "--tasks", "pong,boxing,krull", "--root", str(tmp_path),
                                  "--reps", "50", "--json", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "wmbench sweep dreamerv3 atari100k@1 --seeds 0-4 --tasks krull" in printed
    assert "seed_7: unfinished (status 'running'" in printed
    d = json.loads(out.read_text())
    assert d["source"] == "dreamerv3_2024:atari100k-dreamerv3"
    by_task = {t["task"]: t for t in d["tasks"]}
    assert by_task["pong"]["n_ours"] == 5  # seed_7 (unfinished) left out
    # krull has published finals but no runs of ours: listed, inconclusive, and outside the aggregate.
    assert by_task["krull"]["n_ours"] == 0 and by_task["krull"]["verdict"] == INCONCLUSIVE
    assert d["aggregate"]["tasks"] == ["pong", "boxing"]
    # Rule on the shipped curve vs the shipped finals (computed from full-resolution logs): near-identical.
    for task in ("pong", "boxing"):
        assert abs(by_task[task]["difference"]) < 0.05


def test_cli_runs_folder_and_missing_runs(tmp_path, capsys) -> None:
    pub = results.published(protocol=PROTOCOL, method="dreamerv3", task="pong")
    for seed, curve in pub[pub.point_type == "curve"].groupby("seed"):
        _write_run(tmp_path / "mine", "pong", int(seed), curve)
    rc = reproduce.cli_reproduce(["dreamerv3", PROTOCOL, "--tasks", "pong", "--runs", str(tmp_path / "mine"),
                                  "--reps", "50"])
    assert rc == 0
    assert "pong                         5     5" in capsys.readouterr().out
    with pytest.raises(reproduce.ReproduceError, match="wmbench sweep dreamerv3 atari100k@1 --seeds 0-4"):
        reproduce.cli_reproduce(["dreamerv3", PROTOCOL, "--root", str(tmp_path / "empty")])


def _rising_table(method: str, seeds: int, start: float, at_200k: float, rng: np.random.Generator) -> pd.DataFrame:
    """Pong curves (frames) starting at `start` and reaching `at_200k` + small per-seed noise from 100k frames on."""
    steps = np.arange(5000, 400001, 5000, dtype=float)
    rows = []
    for s in range(seeds):
        noise = float(rng.normal(0, 0.2))
        for x in steps:
            score = start if x < 100000 else at_200k + noise
            rows.append(("synthetic", method, "atari100k", "pong", str(s), x, score, "frames", "curve"))
    return pd.DataFrame(rows, columns=results.SCORE_COLUMNS)


def test_margin_wider_than_the_published_gain_is_narrowed_so_no_learning_is_not_reproduced() -> None:
    """Early in training a published curve may have moved less than the protocol's margin above its first (untrained)
    point; an agent that learns nothing would then be 'reproduced'. The default margin becomes half that gain,
    measured on the deciding metric, and 'reproduced' needs ours above the untrained level."""
    rng = np.random.default_rng(0)
    published = _rising_table("m", 5, start=-20.7, at_200k=-18.0, rng=rng)  # gain 2.7 / 35.3 = 0.076 normalised
    flat = _rising_table("m", 5, start=-20.7, at_200k=-20.7, rng=rng)  # never leaves the starting level
    narrowed = reproduce.compare(flat, published, PROTOCOL, at_step=200000, reps=REPS, tasks=["pong"])
    gain = narrowed.aggregate.published_gain
    assert gain == pytest.approx(2.7 / (14.6 + 20.7), abs=0.01)
    assert narrowed.margin == pytest.approx(gain / 2)
    assert narrowed.verdict != REPRODUCED and any("half that gain" in n for n in narrowed.notes)
    # An explicit wide margin is kept (with a warning) but still no "reproduced": ours is not above untrained.
    wide = reproduce.compare(flat, published, PROTOCOL, at_step=200000, reps=REPS, tasks=["pong"], margin=0.1)
    assert wide.margin == 0.1 and any(n.startswith("Warning: the margin") for n in wide.notes)
    assert wide.verdict == INCONCLUSIVE and "ours is not above the untrained level" in wide.aggregate.reason
    assert wide.tasks[0].verdict == INCONCLUSIVE and "not above the untrained level" in wide.tasks[0].reason
    learned = reproduce.compare(published, published, PROTOCOL, at_step=200000, reps=REPS, tasks=["pong"])
    assert learned.verdict == REPRODUCED  # the same runs still reproduce themselves under the narrowed margin


def _untrained_construct(at_step: float | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Issue 26's sceptical agent: one run per published DreamerV3 run, scoring that run's first (untrained) curve
    point in every episode, logged at the published run's own curve steps."""
    pub = results.published(protocol=PROTOCOL, method="dreamerv3")
    curve = pub[pub.point_type == "curve"]
    first = curve.loc[curve.groupby(["task", "seed"])["env_step"].idxmin(), ["task", "seed", "score"]]
    flat = curve.drop(columns="score").merge(first, on=["task", "seed"]).assign(source="constant", method="constant")
    return flat[results.SCORE_COLUMNS], pub


@pytest.mark.parametrize("at_step", [40000, 80000, 200000, 320000, None])
def test_an_agent_that_learned_nothing_is_never_reproduced(at_step) -> None:
    """Constant runs at each published run's first score vs DreamerV3 on Atari100k: before this rule the verdict at
    80k frames was REPRODUCED (the guard measured the gain with the mean, the verdict decided with the IQM), and at
    the full budget amidar, freeway, private_eye and seaquest were 'reproduced' per task."""
    flat, pub = _untrained_construct(at_step)
    flat = flat.assign(method="dreamerv3")
    v = reproduce.compare(flat, pub, PROTOCOL, at_step=at_step, reps=REPS, improvement=False)
    assert v.verdict != REPRODUCED, v.text
    assert not [t.task for t in v.tasks if t.verdict == REPRODUCED]
    for metric in ("iqm", "mean"):
        w = reproduce.compare(flat, pub, PROTOCOL, at_step=at_step, reps=REPS, improvement=False, metric=metric)
        assert w.verdict != REPRODUCED


def test_random_runs_as_the_untrained_level() -> None:
    """--untrained-runs: a `random`-like table on the same protocol replaces the published first points."""
    rng = np.random.default_rng(1)
    published = _rising_table("m", 5, start=-20.7, at_200k=-5.0, rng=rng)
    ours = _rising_table("m", 5, start=-20.7, at_200k=-5.0, rng=rng)
    random_runs = _rising_table("random", 5, start=-20.5, at_200k=-20.5, rng=rng)
    v = reproduce.compare(ours, published, PROTOCOL, at_step=200000, reps=REPS, tasks=["pong"],
                          untrained_runs=random_runs)
    assert v.verdict == REPRODUCED and v.untrained.startswith("random runs at the same step (5 seeds)")
    assert "Untrained level: random runs" in v.text
    # The random runs themselves, as "ours", are never reproduced.
    r = reproduce.compare(random_runs.assign(method="m"), published, PROTOCOL, at_step=200000, reps=REPS,
                          tasks=["pong"], untrained_runs=random_runs, margin=1.0)
    assert r.verdict != REPRODUCED


def test_no_untrained_level_means_no_reproduced() -> None:
    """DMC has no random level in its normaliser: with neither published curves nor random runs, no 'reproduced'."""
    rng = np.random.default_rng(2)
    finals = pd.DataFrame([{"method": "m", "task": "walker_walk", "seed": str(s), "final": 500 + rng.normal(0, 5),
                            "source": "s", "basis": "final"} for s in range(5)])
    v = reproduce.verdict(finals, finals, "dmc_proprio@1", tasks=["walker_walk"], reps=REPS, improvement=False)
    assert v.verdict == INCONCLUSIVE and "no untrained level" in v.aggregate.reason
    assert any("No untrained level" in n for n in v.notes)


def test_mixed_scoring_rules_are_refused_or_flagged(dreamer_finals: pd.DataFrame) -> None:
    """TWM's finals are its authors' end-of-training evaluation; ours are the protocol's training window."""
    twm = results.final_scores(results.published(protocol="atari100k", source="twm:results/scores.json"), PROTOCOL)
    assert set(twm.scoring) == {results.AUTHORS_EVAL}
    assert set(dreamer_finals.scoring) == {"window_mean(train, 10000 frames, fallback last)"}
    ours = dreamer_finals.assign(method="twm")
    with pytest.raises(reproduce.ReproduceError, match="different measurements.*--allow-mixed-scoring"):
        reproduce.verdict(ours, twm, PROTOCOL, reps=REPS, improvement=False)
    v = reproduce.verdict(ours, twm, PROTOCOL, reps=REPS, improvement=False, allow_mixed_scoring=True)
    assert any(n.startswith("Mixed scoring rules") for n in v.notes)


def test_published_runs_that_stopped_early_are_left_out() -> None:
    """dmcvision_dreamerv3 cartpole_swingup_sparse seed 0 ships a final of 0 at 1M env steps while its curve ends at
    390k: it is left out of the comparison, by the same rule as our unfinished runs."""
    pub = results.published(protocol="dmc_vision", source="dreamerv3_2023:dmcvision_dreamerv3",
                            task="cartpole_swingup_sparse")
    finals = results.final_scores(pub, "dmc_vision@1")
    assert finals.loc[finals.seed == "0", "reached"].item() == 390000 and not finals.loc[finals.seed == "0", "complete"].item()
    kept, notes = results.usable_finals(finals, results._protocol("dmc_vision@1"), 1_000_000)
    assert sorted(kept.seed) == ["1", "2", "3", "4"] and "ends at 390,000" in notes[0]
    v = reproduce.compare(pub, pub, "dmc_vision@1", tasks=["cartpole_swingup_sparse"], reps=REPS, improvement=False,
                          min_seeds=2)
    assert v.tasks[0].n_published == 4 and v.tasks[0].n_ours == 4
    assert any("stopped early" in n and "390,000" in n for n in v.notes)


def test_reproduce_compares_only_runs_made_with_the_sources_recipe(tmp_path, capsys) -> None:
    """dreamerv3_2024:atari100k-dreamerv3 has a recipe: runs with other settings are 'not comparable' (naming the
    keys), unless --allow-reduced, which states every reduced key."""
    from wmbench.config import to_dict
    from wmbench.method import get_method
    from wmbench.protocols import load_protocol
    from wmbench.recipes import resolve_config

    protocol = load_protocol(PROTOCOL)
    recipe_config = to_dict(resolve_config(get_method("dreamerv3"), protocol, (), "dreamerv3_2024_atari100k")[0])
    reduced = to_dict(resolve_config(get_method("dreamerv3"), protocol, ["train_ratio=64"],
                                     "dreamerv3_2024_atari100k")[0])
    pub = results.published(protocol=PROTOCOL, method="dreamerv3", task="pong")
    curves = dict(list(pub[pub.point_type == "curve"].groupby("seed")))

    def write(root, config) -> None:
        for seed, curve in curves.items():
            _write_run(root, "pong", int(seed), curve)
            info_path = next((root / "atari100k@1" / "pong" / "dreamerv3").glob(f"seed_{seed}")) / "run.json"
            info = json.loads(info_path.read_text())
            info_path.write_text(json.dumps({**info, "config": config}))

    write(tmp_path / "same", recipe_config)
    write(tmp_path / "reduced", reduced)
    base = ["dreamerv3", PROTOCOL, "--tasks", "pong", "--reps", "50"]
    out = tmp_path / "v.json"
    assert reproduce.cli_reproduce([*base, "--root", str(tmp_path / "same"), "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["recipe"] == "dreamerv3_2024_atari100k@1" and d["differences"] == [] and d["verdict"] != "not comparable"
    assert reproduce.cli_reproduce([*base, "--root", str(tmp_path / "reduced"), "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["verdict"] == reproduce.NOT_COMPARABLE and d["differences"] == ["train_ratio=64.0 (recipe: 256.0)"]
    assert "NOT COMPARABLE" in d["text"] and "train_ratio=64.0 (recipe: 256.0)" in d["text"]
    assert reproduce.cli_reproduce([*base, "--root", str(tmp_path / "reduced"), "--allow-reduced", "--json",
                                    str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["verdict"] != reproduce.NOT_COMPARABLE and "Reduced recipe (dreamerv3_2024_atari100k@1): train_ratio=64.0" in d["text"]


def _dmc_curves(source: str, every: int, seeds: int, last: int = 60000) -> pd.DataFrame:
    steps = np.arange(every, last + 1, every, dtype=float)
    rows = [(source, "m", "dmc_proprio", "cartpole_swingup", str(s), x, x / 100 + s, "env_steps", "curve")
            for s in range(seeds) for x in steps]
    return pd.DataFrame(rows, columns=results.SCORE_COLUMNS)


def test_at_step_between_the_points_of_a_sparse_curve_is_refused() -> None:
    """A curve logged every 10,000 env steps has no score at 16,000: the window there holds only the point at 10,000,
    which would be compared with our runs at 16,000 (found on the shipped DreamerV3 DMC curves)."""
    published, ours = _dmc_curves("paper", 10000, 3), _dmc_curves("wmbench:m", 1000, 3)
    with pytest.raises(reproduce.ReproduceError, match=r"--at-step 16,000 falls between the curve points of 3 run\(s\)"
                       r".*last point at or before it 10,000, next 20,000.*--at-step 10000 or 20000"):
        reproduce.finals_at(published, "dmc_proprio@1", at_step=16000)
    on_grid = reproduce.finals_at(published, "dmc_proprio@1", at_step=20000)
    assert list(on_grid["final"]) == [200.0, 201.0, 202.0]  # the window (10k, 20k] holds the point at 20,000
    # Ours, one point per 1,000-step episode, is on the grid at any step; so is a curve that ends before the step
    # (the completeness rule sets it aside, with its own note).
    assert len(reproduce.finals_at(ours, "dmc_proprio@1", at_step=16500)) == 3
    assert len(reproduce.finals_at(_dmc_curves("paper", 10000, 2, last=10000), "dmc_proprio@1", at_step=16000)) == 2
    with pytest.raises(reproduce.ReproduceError, match="falls between"):  # the verdict refuses it too
        reproduce.compare(ours, published, "dmc_proprio@1", at_step=16000, reps=REPS)


def test_recipe_check_takes_the_latest_version_on_the_runs_protocol() -> None:
    """Versions of a recipe share their sources (slac_2020_dmc_vision@1-@3, dreamerv1_2020_dmc_vision@1-@2); a later
    version adds settings of the released code, so it is the one runs are checked against (it was @1 before), and a
    run made with an earlier version is not comparable: the differences name what it lacks."""
    from wmbench.config import to_dict
    from wmbench.method import get_method
    from wmbench.protocols import load_protocol
    from wmbench.recipes import load_recipe, resolve_config

    def info(method, recipe_id, record=True, overrides=()):
        r = load_recipe(method, recipe_id)
        config, rec = resolve_config(get_method(method), load_protocol(r.protocol), list(overrides), r.id)
        return {"config": to_dict(config), "protocol": r.protocol, **({"recipe": rec} if record else {})}

    source = "slac:data/slac/dm_control_cheetah_run_slac.csv"
    assert reproduce.recipe_check("slac", source, [info("slac", "slac_2020_dmc_vision@1")]) == (
        "slac_2020_dmc_vision@1", [])  # the only version on dmc_vision@1
    for record in (True, False):
        run = info("slac", "slac_2020_dmc_vision@3", record=record)
        assert reproduce.recipe_check("slac", source, [run]) == ("slac_2020_dmc_vision@3", [])
        older = info("slac", "slac_2020_dmc_vision@2", record=record)  # same protocol as @3, lacks @3's keys
        assert reproduce.recipe_check("slac", source, [older]) == (
            "slac_2020_dmc_vision@3", ["history_padding='zeros' (recipe: 'first')",
                                       "resample_boundary_windows=False (recipe: True)"])
    reduced = info("dreamerv1", "dreamerv1_2020_dmc_vision@2", overrides=["batch_size=10"])
    name, differences = reproduce.recipe_check("dreamerv1", "dreamer_v1:scores/dreamer.json", [reduced])
    assert name == "dreamerv1_2020_dmc_vision@2" and differences == ["batch_size=10 (recipe: 50)"]
    name, differences = reproduce.recipe_check(
        "dreamerv1", "dreamer_v1:scores/dreamer.json", [info("dreamerv1", "dreamerv1_2020_dmc_vision@1")])
    assert name == "dreamerv1_2020_dmc_vision@2" and differences == ["free_nats_mean=False (recipe: True)"]
    older_code = info("dreamerv1", "dreamerv1_2020_dmc_vision@2")  # a run whose code predates the key
    del older_code["config"]["free_nats_mean"]
    _, differences = reproduce.recipe_check("dreamerv1", "dreamer_v1:scores/dreamer.json", [older_code])
    assert differences == ["free_nats_mean=<not recorded: the run's code predates the key> (recipe: True)"]
