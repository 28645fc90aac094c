"""Slow learning check: Plan2Explore (small model, the paper's algorithm) explores the fake point-chasing task from
pixels without its reward, covering more distinct states than uniform random actions, and its zero-shot task
policy (learnt in imagination from that exploration data alone) beats random once the reward is revealed.

Protocol `fake_zeroshot@1` (written here, test-only): fake@1's image_continuous task (16x16 RGB images of a point,
red, and a goal, green, on a line; the action moves the point by 0.1 x action per env step, action repeat 2; each env
step earns 1 - |pos - goal|; leaving [-1, 1] ends the episode with -1), one stage `explore` of all 2,000 agent steps
without the task reward, 5 evaluation episodes of the task policy every 1,000 env steps; score: those at the budget.

Distinct states: cells of (position in bins of 0.05, goal in bins of 0.2) over every replayed step, from the run's
replay chunks. Thresholds and figures: in the module's constants below, with the measurement they come from.

Run with: pytest -m slow tests/test_plan2explore_learning.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wmbench.protocols import load_protocol
from wmbench.runner import run
from wmbench.testing import run_returns

PROTOCOL = """name = "fake_zeroshot"
version = 1
suite = "fake"
description = "test-only: fake@1 explored without the task reward, scored zero-shot"
tasks = ["image_continuous"]
[env]
size = [16, 16]
max_steps = 50
action_repeat = 2
[budget]
agent_steps = 2000
step_unit = "env_steps"
[[stages]]
name = "explore"
agent_steps = 2000
task_reward = false
[score]
rule = "window_mean"
phase = "eval"
window = 400
fallback = "last"
normaliser = "none"
[eval]
every = 1000
episodes = 5
"""

LEARNING = [
    "preset=tiny", "deter=32", "stoch=8", "hidden=32", "depth=8", "units=32", "reward_units=32",
    "ensemble_units=32", "batch_size=16", "batch_length=16", "updates_per_episode=20", "seed_episodes=5",
    "imag_horizon=8",
]


def visited_cells(run_dir: Path) -> int:
    """Distinct (position, goal) cells among all replayed steps of a run."""
    cells: set[tuple[int, int]] = set()
    for chunk in sorted((run_dir / "replay").glob("chunk_*.npz")):
        with np.load(chunk) as data:
            cells |= {(int(np.floor(p / 0.05)), int(np.floor(g / 0.2))) for p, g in data["vector"]}
    return len(cells)


@pytest.mark.slow
def test_plan2explore_explores_more_than_random_and_its_zero_shot_policy_beats_random(tmp_path):
    (tmp_path / "fake_zeroshot@1.toml").write_text(PROTOCOL)
    protocol = load_protocol(tmp_path / "fake_zeroshot@1.toml")
    rand = run("random", protocol, "image_continuous", 0, tmp_path / "runs", progress=False, threads=1)
    p2e = run("plan2explore", protocol, "image_continuous", 0, tmp_path / "runs", overrides=LEARNING, progress=False,
              threads=1)
    assert rand.status == p2e.status == "finished"
    cells = {name: visited_cells(r.run_dir) for name, r in (("random", rand), ("plan2explore", p2e))}
    evals = {name: run_returns(r.run_dir)[1] for name, r in (("random", rand), ("plan2explore", p2e))}
    print("distinct (position, goal) cells:", cells)
    print("zero-shot evaluation returns:", evals, "scores:", rand.final_score, p2e.final_score)
    assert cells["plan2explore"] > cells["random"], f"exploration covered {cells}"
    assert p2e.final_score > rand.final_score, f"zero-shot score {p2e.final_score} <= random {rand.final_score}"
