"""Crafter adapter (crafter@1, crafter@2): spaces, Crafter's reward and episode ends, seeding, the recorded
achievements and the paper's score, and runs.

Expected values come from Crafter itself (stepped by hand here) and the Crafter paper's score formula (the rule
itself is tested on hand-computed values in tests/test_results.py); tests skip with the reason when crafter is not
installed.
"""


import numpy as np
import pytest

from wmbench import cli
from wmbench.envs import SuiteNotInstalled, make_env
from wmbench.envs import crafter as crafter_suite
from wmbench.protocols import load_protocol

PROTOCOL = load_protocol("crafter@1")
CRAFTER2 = load_protocol("crafter@2")


try:
    crafter_suite.check_installed()
    INSTALLED = None
except SuiteNotInstalled as e:
    INSTALLED = str(e)
needs_crafter = pytest.mark.skipif(INSTALLED is not None, reason=f"crafter not installed: {INSTALLED}")


@needs_crafter
def test_random_steps_follow_crafter():
    import crafter

    env = make_env(PROTOCOL, "reward", seed=0)
    assert env.obs_space["image"].shape == (64, 64, 3) and env.act_space.n == 17
    raw = crafter.Env(area=(64, 64), view=(9, 9), size=(64, 64), length=10000, seed=5)
    first = env.env.reset(seed=5)[0]
    np.testing.assert_array_equal(first["image"], raw.reset())
    rng = np.random.default_rng(0)
    ended = None
    for _ in range(2000):
        action = int(rng.integers(17))
        obs, reward, terminated, truncated, info = env.env.step(action)
        image, raw_reward, done, raw_info = raw.step(action)
        np.testing.assert_array_equal(obs["image"], image)
        assert reward == pytest.approx(raw_reward) and (terminated or truncated) == done
        if done:
            ended = (terminated, raw_info, info)
            break
    assert ended is not None, "a random agent dies within 2000 steps"
    terminated, raw_info, info = ended
    assert terminated == (raw_info["discount"] == 0.0)
    assert set(info["achievements"]) == {k for k, n in raw_info["achievements"].items() if n > 0}


@needs_crafter
def test_length_cap_truncates():
    env = crafter_suite.CrafterEnv(seed=0, length=5)
    env.reset(seed=0)
    ends = [env.step(0)[2:4] for _ in range(5)]
    assert ends == [(False, False)] * 4 + [(False, True)]


@needs_crafter
def test_random_smoke_run(tmp_path):
    code = cli.main(["run", "random", "crafter@1", "--task", "reward", "--seed", "0", "--smoke",
                     "--root", str(tmp_path), "--no-progress"])  # fmt: skip
    assert code == 0
    rows = next(tmp_path.rglob("scores.csv")).read_text().splitlines()
    assert len(rows) >= 3  # several random-agent episodes in 1,000 steps


@needs_crafter
def test_dreamerv3_tiny_runs_end_to_end(tmp_path):
    # Shorter than the smoke budget (1,000 steps take ~1 min on 2 cores): 300 steps end at least one episode (seeded),
    # which crafter@2 scores by the achievements the runner recorded.
    code = cli.main(["run", "dreamerv3", "crafter@2", "--task", "reward", "--seed", "0", "--steps", "300",
                     "--set", "preset=tiny", "--set", "batch_length=8", "--root", str(tmp_path), "--no-progress",
                     "--threads", "1"])  # fmt: skip
    assert code == 0
    assert len(next(tmp_path.rglob("scores.csv")).read_text().splitlines()) >= 2


@needs_crafter
def test_crafter2_lists_crafters_own_achievements_and_refuses_others():
    import dataclasses

    import crafter.constants

    from wmbench.protocols import ProtocolError

    assert sorted(CRAFTER2.score.achievements) == sorted(crafter.constants.achievements)
    assert len(CRAFTER2.score.achievements) == 22
    assert {k: v for k, v in CRAFTER2.env.items()} == {k: v for k, v in PROTOCOL.env.items()}
    wrong = dataclasses.replace(
        CRAFTER2, score=dataclasses.replace(CRAFTER2.score, achievements=CRAFTER2.score.achievements[1:] + ("fly",))
    )
    with pytest.raises(ProtocolError, match=r"missing \['collect_coal'\], not Crafter's \['fly'\]"):
        make_env(wrong, "reward", seed=0)


@needs_crafter
def test_crafter2_random_run_records_achievements_and_scores_the_geometric_mean(tmp_path):
    import json

    import pandas as pd

    code = cli.main(["run", "random", "crafter@2", "--task", "reward", "--seed", "0", "--smoke",
                     "--root", str(tmp_path), "--no-progress"])  # fmt: skip
    assert code == 0
    run_dir = next(tmp_path.rglob("scores.csv")).parent
    header = (run_dir / "scores.csv").read_text().splitlines()[0]
    assert header == "env_step,step_unit,episode,score,length,phase,achievements"
    rows = pd.read_csv(run_dir / "scores.csv", dtype={"achievements": str}, keep_default_na=False)
    assert len(rows) >= 3 and set(rows["phase"]) == {"train"}
    sets = [set(a.split(";")) - {""} for a in rows["achievements"]]
    assert set().union(*sets) <= set(CRAFTER2.score.achievements) and any(sets)
    # Each episode's return counts +1 per unlocked achievement plus health changes / 10 (Crafter's reward).
    for ret, unlocked in zip(rows["score"], sets, strict=True):
        assert abs(ret - len(unlocked)) < 1.0
    rates = [100.0 * sum(a in s for s in sets) / len(sets) for a in CRAFTER2.score.achievements]
    expected = np.exp(np.mean(np.log1p(rates))) - 1
    assert json.loads((run_dir / "run.json").read_text())["final_score"] == pytest.approx(expected)
