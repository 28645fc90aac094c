"""wmbench.results: the score rule on hand-made episodes, final_scores, unit conversion, normalisation, loading
our run directories and score tables, published-data selection, and clear errors for bad input."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from wmbench import results
from wmbench.protocols import load_protocol
from wmbench.results import ResultsError

FAKE = load_protocol("fake@1")  # budget 2000 agent steps x repeat 2 = 4000 env steps; window 400; fallback last


def episodes(steps, scores, phase="train", unit="env_steps"):
    n = len(steps)
    return pd.DataFrame({"env_step": steps, "score": scores, "step_unit": [unit] * n, "phase": [phase] * n,
                         "episode": range(n)})


def with_rule(**kw):
    return dataclasses.replace(FAKE, score=dataclasses.replace(FAKE.score, **kw))


# ---- the rule -------------------------------------------------------------------------------------------------


def test_window_mean_uses_episodes_in_the_half_open_window():
    # (3600, 4000]: 3600 is out, 3601 and 4000 in, 4001 (past the budget) out.
    ep = episodes([1000, 3600, 3601, 4000, 4001], [1.0, 100.0, 2.0, 4.0, 1000.0])
    assert results.final_score(ep, FAKE) == pytest.approx(3.0)


def test_window_mean_falls_back_to_last_episode_before_budget():
    ep = episodes([1000, 2000, 3000], [1.0, 5.0, 7.0])
    assert results.final_score(ep, FAKE) == 7.0
    with pytest.raises(ResultsError, match="fallback none"):
        results.final_score(ep, with_rule(fallback="none"))


def test_rule_ignores_other_phase_and_uses_budget_override():
    ep = pd.concat([episodes([3700, 3800], [10.0, 20.0]), episodes([3900], [999.0], phase="eval")])
    assert results.final_score(ep, FAKE) == 15.0
    # smoke budget: 300 agent steps = 600 env steps, window (200, 600]
    assert results.final_score(episodes([100, 300, 500, 700], [1.0, 2.0, 4.0, 8.0]), FAKE, budget=600) == 3.0


def test_eval_mean_and_last_episodes_mean():
    ep = pd.concat([episodes([1000, 2000, 3000, 4000], [1.0, 2.0, 3.0, 4.0]),
                    episodes([2000, 2000, 4000, 4000], [10.0, 20.0, 30.0, 50.0], phase="eval")])
    assert results.final_score(ep, with_rule(rule="eval_mean", episodes=2)) == 40.0
    assert results.final_score(ep, with_rule(rule="last_episodes_mean", episodes=3)) == 3.0
    with pytest.raises(ResultsError, match="fewer than 5 eval episodes"):
        results.final_score(ep, with_rule(rule="eval_mean", episodes=5))


CRAFTER2 = load_protocol("crafter@2")


def test_success_geomean_is_the_crafter_papers_score_by_hand():
    # Four episodes: collect_wood in all (100 %), wake_up in two (50 %), the other 20 achievements never (0 %):
    # S = exp((ln(1 + 100) + ln(1 + 50) + 20 ln(1)) / 22) - 1 = exp(8.54695 / 22) - 1 = 0.474763 %.
    sets = [["collect_wood"], ["collect_wood", "wake_up"], ["collect_wood"], ["wake_up", "collect_wood"]]
    rates = results.success_rates(sets, CRAFTER2.score.achievements)
    assert rates["collect_wood"] == 100.0 and rates["wake_up"] == 50.0 and rates["collect_diamond"] == 0.0
    assert results.success_geomean(sets, CRAFTER2.score.achievements) == pytest.approx(0.474763, abs=1e-6)
    assert results.success_geomean([CRAFTER2.score.achievements], CRAFTER2.score.achievements) == pytest.approx(100.0)
    assert results.success_geomean([[]], CRAFTER2.score.achievements) == 0.0
    with pytest.raises(ResultsError, match=r"unknown achievements \['collect_wod'\].*collect_wood"):
        results.success_rates([["collect_wod"]], CRAFTER2.score.achievements)


def test_success_geomean_rule_scores_the_runs_recorded_achievements():
    # scores.csv as the runner writes it for crafter@2 (names joined by ';', empty: none unlocked); an eval row and
    # an episode ending past the budget are not scored.
    ep = episodes([150, 400, 700, 1000, 1200], [1.0, 2.0, 0.0, 3.0, 9.0])
    ep["achievements"] = ["collect_wood", "collect_wood;wake_up", np.nan, "collect_wood;wake_up", "collect_diamond"]
    ep = pd.concat([ep, episodes([1000], [5.0], phase="eval").assign(achievements="collect_diamond")])
    # 4 train episodes within 1,000 steps: collect_wood 75 %, wake_up 50 %.
    expected = np.exp((np.log(76) + np.log(51)) / 22) - 1
    assert results.final_score(ep, CRAFTER2, budget=1000) == pytest.approx(expected)
    assert results.scoring_label(CRAFTER2) == "success_geomean(train, 22 achievements, 1e+06 env_steps, fallback none)"
    with pytest.raises(ResultsError, match="needs each episode's unlocked achievements"):
        results.final_score(ep.drop(columns="achievements"), CRAFTER2, budget=1000)


def test_success_geomean_protocol_validation():
    from wmbench.protocols import ProtocolError, parse_protocol

    base = {"name": "x", "version": 1, "suite": "fake", "tasks": ["vector_discrete"], "budget": {"agent_steps": 100}}
    with pytest.raises(ProtocolError, match="needs score.achievements"):
        parse_protocol({**base, "score": {"rule": "success_geomean"}})
    with pytest.raises(ProtocolError, match=r"lists \['a'\] more than once"):
        parse_protocol({**base, "score": {"rule": "success_geomean", "achievements": ["a", "b", "a"]}})
    with pytest.raises(ProtocolError, match="used only by score.rules 'success_geomean' and 'success_rate'"):
        parse_protocol({**base, "score": {"rule": "window_mean", "achievements": ["a"]}})
    # Rules without achievements keep the hash they had before the field existed (values of main at 601570b), so
    # runs made under them still resume and compare.
    assert load_protocol("crafter@1").hash == "3cceb1346b7d5e0e"
    assert load_protocol("atari100k@1").hash == "0a78e645094deaa8"


def test_final_score_without_episodes_and_with_wrong_unit():
    with pytest.raises(ResultsError, match="no train episode ends at or before the budget"):
        results.final_score(episodes([5000], [1.0]), FAKE)
    with pytest.raises(ResultsError, match="convert_units"):
        results.final_score(episodes([4000], [1.0], unit="agent_steps"), FAKE)


# ---- final_scores -----------------------------------------------------------------------------------------------


def table(rows):
    cols = results.SCORE_COLUMNS
    return pd.DataFrame([dict(zip(cols, r, strict=True)) for r in rows])


def test_final_scores_prefers_published_finals_and_applies_rule_to_curves():
    t = table([
        ("a", "m", "fake", "vector_discrete", "0", 3800, 1.0, "env_steps", "curve"),
        ("a", "m", "fake", "vector_discrete", "0", 4000, 9.0, "env_steps", "final"),   # used, curve ignored
        ("a", "m", "fake", "vector_discrete", "1", 3700, 2.0, "env_steps", "curve"),
        ("a", "m", "fake", "vector_discrete", "1", 3900, 4.0, "env_steps", "curve"),
        ("b", "n", "fake@1", "image_discrete", "mean", 4000, 5.0, "env_steps", "final_mean"),
    ])
    out = results.final_scores(t, "fake@1")
    assert list(out.columns[:4]) == ["method", "task", "seed", "final"]
    got = {(r.method, r.seed): (r.final, r.basis) for r in out.itertuples()}
    assert got == {("m", "0"): (9.0, "final"), ("m", "1"): (3.0, "rule"), ("n", "mean"): (5.0, "final_mean")}


def test_final_scores_errors_name_rows_and_runs():
    base = ("a", "m", "fake@1", "vector_discrete", "0", 4000, 1.0, "env_steps", "curve")
    mixed = table([base, base[:5] + (2000, 1.0, "agent_steps", "curve")])
    with pytest.raises(ResultsError, match=r"rows 1\b.*convert_units"):
        results.final_scores(mixed, "fake@1")
    with pytest.raises(ResultsError, match="'vector_discret'.*Did you mean: vector_discrete"):
        results.final_scores(table([base[:3] + ("vector_discret",) + base[4:]]), "fake@1")
    with pytest.raises(ResultsError, match=r"rows 0 belong to protocol\(s\) \['atari100k@1'\]"):
        results.final_scores(table([base[:2] + ("atari100k@1",) + base[3:]]), "fake@1")
    with pytest.raises(ResultsError, match="1 final rows at the budget|0 final rows at the budget"):
        results.final_scores(table([base[:5] + (3000, 1.0, "env_steps", "final")]), "fake@1")
    with pytest.raises(ResultsError, match="empty"):
        results.final_scores(table([base]).iloc[:0], "fake@1")
    with pytest.raises(ResultsError, match=r"score is NaN, inf or not a number in rows 1"):
        results.final_scores(table([base, base[:6] + (float("inf"),) + base[7:]]), "fake@1")


def test_final_scores_lists_every_run_without_a_score():
    late = ("a", "m", "fake@1", "vector_discrete", "0", 5000, 1.0, "env_steps", "curve")
    t = table([late, late[:4] + ("1",) + late[5:], late[:4] + ("2", 100) + late[6:]])
    with pytest.raises(ResultsError, match=r"(?s)2 run\(s\).*a m vector_discrete 0.*a m vector_discrete 1") as e:
        results.final_scores(t, "fake@1")
    assert "vector_discrete 2" not in str(e.value)


# ---- units and normalisation ------------------------------------------------------------------------------------


def test_convert_units_is_explicit_and_uses_action_repeat():
    atari = load_protocol("atari100k@1")  # action repeat 4
    t = table([("s", "m", "atari100k", "pong", "0", 400000, 1.0, "frames", "curve")])
    agent = results.convert_units(t, atari, "agent_steps")
    assert (agent.env_step.iloc[0], agent.step_unit.iloc[0]) == (100000, "agent_steps")
    assert t.env_step.iloc[0] == 400000  # input untouched
    back = results.convert_units(agent, atari, "frames")
    assert back.env_step.iloc[0] == 400000
    with pytest.raises(ResultsError, match="episodes are not steps"):
        results.convert_units(t, atari, "episodes")


def test_normalise_by_hand():
    # Atari: pong random -20.7, human 14.6; breakout 1.7 / 30.5 (standard table, baselines.yaml).
    got = results.normalise([-20.7, 14.6, 30.5], ["pong", "pong", "breakout"], "atari_human")
    np.testing.assert_allclose(got, [0.0, 1.0, 1.0])
    assert results.normalise(16.1, "breakout", "atari100k@1") == pytest.approx((16.1 - 1.7) / (30.5 - 1.7))
    np.testing.assert_allclose(results.normalise([500.0, 1000.0], "walker_walk", "dmc_vision@1"), [0.5, 1.0])
    np.testing.assert_allclose(results.normalise([3.0], ["x"], "none"), [3.0])
    # baselines.yaml: dmlab30 explore_goal_locations_large [3.14, 194.5]; procgen_hard bigfish [0, 40].
    assert results.normalise(194.5, "explore_goal_locations_large", "dmlab30") == pytest.approx(1.0)
    assert results.normalise(10.0, "bigfish", "procgen") == pytest.approx(0.25)


def test_normalise_errors():
    with pytest.raises(ResultsError, match="'pongg'.*Did you mean: pong"):
        results.normalise([1.0], ["pongg"], "atari_human")
    with pytest.raises(ResultsError, match="neither a normaliser"):
        results.normalise([1.0], ["pong"], "atari_humann")


# ---- our run directories and score tables -----------------------------------------------------------------------


def make_run(root, seed, rows, **info):
    run_dir = root / "fake@1" / "vector_discrete" / "random" / f"seed_{seed}"
    run_dir.mkdir(parents=True)
    meta = {"method": "random", "protocol": "fake@1", "task": "vector_discrete", "seed": seed,
            "step_unit": "env_steps", "status": "finished", "smoke": False, **info}
    (run_dir / "run.json").write_text(json.dumps(meta))
    lines = ["env_step,step_unit,episode,score,length,phase"] + [",".join(map(str, r)) for r in rows]
    (run_dir / "scores.csv").write_text("\n".join(lines) + "\n")
    return run_dir


def test_load_scores_from_run_dirs_and_final_scores(tmp_path):
    r0 = make_run(tmp_path, 0, [(3500, "env_steps", 0, 1.0, 50, "train"), (3800, "env_steps", 1, 3.0, 50, "train"),
                                (4000, "env_steps", 2, 5.0, 50, "train"), (4000, "env_steps", 0, 99.0, 50, "eval")])
    make_run(tmp_path, 1, [(3000, "env_steps", 0, 2.0, 50, "train")])
    t = results.load_scores([tmp_path])  # a folder holding run dirs
    assert list(t.columns[:9]) == results.SCORE_COLUMNS
    assert set(t.point_type) == {"curve"} and set(t.phase) == {"train", "eval"}
    assert t[t.seed == "0"].source.iloc[0] == f"wmbench:{r0}"
    finals = results.final_scores(t, "fake@1").set_index("seed")["final"]
    assert finals.to_dict() == {"0": 4.0, "1": 2.0}  # seed 0: mean(3, 5) in (3600, 4000]; seed 1: fallback
    assert len(results.load_scores(r0)) == 4  # a single run dir


def test_load_scores_bad_inputs_name_file_and_line(tmp_path):
    run = make_run(tmp_path, 0, [(100, "env_steps", 0, 1.0, 5, "train"), (200, "env_steps", 1, "nan", 5, "train")])
    with pytest.raises(ResultsError, match=r"scores.csv: score is NaN.*rows 3"):
        results.load_scores(run)
    (run / "scores.csv").write_text("env_step,score\n1,2\n")
    with pytest.raises(ResultsError, match=r"missing columns \['step_unit', 'episode', 'length', 'phase'\]"):
        results.load_scores(run)
    (run / "run.json").write_text("{not json")
    with pytest.raises(ResultsError, match="run.json: cannot read"):
        results.load_scores(run)
    with pytest.raises(ResultsError, match="does not exist"):
        results.load_scores(tmp_path / "nope")
    with pytest.raises(ResultsError, match="no run.json"):
        results.load_scores((tmp_path / "empty").mkdir() or tmp_path / "empty")


def test_load_score_table_csv(tmp_path):
    path = tmp_path / "t.csv"
    header = ",".join(results.SCORE_COLUMNS)
    path.write_text(header + "\ns,m,fake@1,vector_discrete,0,4000,1.5,env_steps,curve\n")
    t = results.load_scores(path)
    assert t.seed.iloc[0] == "0" and t.score.iloc[0] == 1.5
    path.write_text(header + "\ns,m,fake@1,vector_discrete,0,4000,1.5,env_steps,curve\n"
                             "s,m,fake@1,vector_discrete,1,4000,inf,env_steps,curve\n")
    with pytest.raises(ResultsError, match=r"t.csv: score is NaN.*rows 3"):
        results.load_scores(path)
    path.write_text('source,method\n"unterminated,\n')
    with pytest.raises(ResultsError, match="t.csv"):
        results.load_scores(path)
    path.write_text(header + "\ns,m,fake@1,vector_discrete,0,4000,1.5,steps,point\n")
    with pytest.raises(ResultsError, match=r"point_type not one of .* rows 2.*step_unit not one of .* rows 2"):
        results.load_scores(path)


# ---- published ---------------------------------------------------------------------------------------------------


def test_published_selection_and_errors():
    t = results.published(method="iris", protocol="atari100k", task=["pong", "breakout"])
    assert set(t.task) == {"pong", "breakout"} and len(t) == 10  # 5 runs x 2 games
    assert list(t.columns) == results.SCORE_COLUMNS + ["method_raw"]
    with pytest.raises(ResultsError, match="'irs'.*Did you mean: iris"):
        results.published(method="irs", protocol="atari100k")
    with pytest.raises(ResultsError, match="'atari100'.*Did you mean: atari100k"):
        results.published(protocol="atari100")
    with pytest.raises(ResultsError, match="selection is empty"):
        results.published(method="iris", protocol="atari100k", source="twm:results/scores.json")


def test_smoke_runs_are_scored_at_the_smoke_budget_and_never_mixed(tmp_path):
    # fake@1 smoke: 300 agent steps x repeat 2 = 600 env steps, window (200, 600].
    make_run(tmp_path / "smoke", 0, [(100, "env_steps", 0, 1.0, 5, "train"), (500, "env_steps", 1, 3.0, 5, "train"),
                                     (600, "env_steps", 2, 5.0, 5, "train")], smoke=True)
    smoke = results.load_scores(tmp_path / "smoke")
    assert results.final_scores(smoke, "fake@1")["final"].tolist() == [4.0]
    make_run(tmp_path / "full", 1, [(4000, "env_steps", 0, 2.0, 5, "train")])
    both = results.load_scores([tmp_path / "smoke", tmp_path / "full"])
    with pytest.raises(ResultsError, match=r"mixes smoke runs \(rows 0, 1, 2\)"):
        results.final_scores(both, "fake@1")


def test_a_run_under_success_geomean_stops_when_its_suite_reports_no_achievements(tmp_path):
    from pathlib import Path

    from wmbench.errors import WmbenchError
    from wmbench.runner import run

    text = Path(FAKE.path).read_text().replace('name = "fake"', 'name = "fake_achievements"')
    text = text.replace('rule = "window_mean"', 'rule = "success_geomean"\nachievements = ["reach_goal"]')
    path = tmp_path / "fake_achievements@1.toml"
    path.write_text(text)
    with pytest.raises(WmbenchError, match="suite 'fake' reported no info\\['achievements'\\] at the end of train episode 1"):
        run("random", load_protocol(str(path)), "vector_discrete", 0, root=tmp_path / "runs", smoke=True, progress=False)
    run_json = json.loads(next((tmp_path / "runs").rglob("run.json")).read_text())
    assert run_json["status"] == "failed" and "success_geomean" in run_json["error"]
