"""Slow learning check: Plan2Explore (small model, the paper's algorithm) explores the fake point-chasing task from
pixels without its reward, and its zero-shot task policy (learnt in imagination from that exploration data alone)
beats uniform random actions once the reward is revealed.

Protocol `fake_zeroshot@1` (written here, test-only): fake@1's image_continuous task (16x16 RGB images of a point,
red, and a goal, green, on a line; the action moves the point by 0.1 x action per env step, action repeat 2; each env
step earns 1 - |pos - goal|) with walls at +-1 instead of terminal edges (`walls = true`: no terminal states, like
DMC; Plan2Explore, as Dreamer v1, has no termination model: with terminal edges its zero-shot policy drove off the
line within 4-7 steps at 1,000 env steps, returns 1.5-7.6), one stage `explore` of all 2,000 agent steps without the
task reward, 5 evaluation episodes of the task policy every 1,000 env steps; score: the 5 at the budget.

Measured (2026-11-30, load average 20-30 on 2 cores, seed 0 for both methods; runs are deterministic): zero-shot score
25.05 (evaluation returns 15.9, 26.8, 30.4, 17.5, 34.7) against random 16.45; random's scores over seeds 0-4 are
16.45, 24.43, 23.31, 14.08, 22.86. The test took 431 s at load average 20 (`pytest -m slow`). Settings: the tiny preset widened to 32 units,
batches 16 x 16, 10 updates per episode, horizon 6, and learning rates 1e-3 (model) and 5e-4 (actors, values): at
the paper's 6e-4 / 8e-5 the zero-shot score was 4.55 (20 updates per episode, horizon 8 at 5.0 with 10).

Not asserted, because not achieved at this budget (printed for the record): that exploration visits more distinct
states than random. Distinct (position bin 0.05, goal bin 0.2) cells over the first 2,048 replayed steps: random
281-311 (seeds 0-4); Plan2Explore 233 with these settings (62% of its steps at a wall, |pos| > 0.9, against random's
5-9%), 298 at the paper's learning rates, 254 with intrinsic_scale 100 (zero-shot 16.6 then). The explorer seeks the
walls, where the clipped dynamics are the hardest to predict.

Run with: pytest -m slow tests/test_plan2explore_learning.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wmbench.protocols import load_protocol
from wmbench.replay import read_chunk
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
walls = true
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
    "ensemble_units=32", "batch_size=16", "batch_length=16", "updates_per_episode=10", "seed_episodes=5",
    "imag_horizon=6", "model_lr=1e-3", "actor_lr=5e-4", "value_lr=5e-4",
]


def visited_cells(run_dir: Path) -> int:
    """Distinct (position, goal) cells among all replayed steps of a run."""
    cells: set[tuple[int, int]] = set()
    for chunk in sorted((run_dir / "replay").glob("chunk_*.tar.zst")):
        cells |= {(int(np.floor(p / 0.05)), int(np.floor(g / 0.2))) for p, g in read_chunk(chunk)["vector"]}
    return len(cells)


def wall_fraction(run_dir: Path) -> float:
    """Fraction of replayed steps with the point at a wall (|pos| > 0.9)."""
    pos = [read_chunk(chunk)["vector"][:, 0] for chunk in sorted((run_dir / "replay").glob("chunk_*.tar.zst"))]
    return float(np.mean(np.abs(np.concatenate(pos)) > 0.9))


@pytest.mark.slow
def test_plan2explore_zero_shot_policy_beats_random(tmp_path):
    (tmp_path / "fake_zeroshot@1.toml").write_text(PROTOCOL)
    protocol = load_protocol(tmp_path / "fake_zeroshot@1.toml")
    rand = run("random", protocol, "image_continuous", 0, tmp_path / "runs", progress=False, threads=1)
    p2e = run("plan2explore", protocol, "image_continuous", 0, tmp_path / "runs", overrides=LEARNING, progress=False,
              threads=1)
    assert rand.status == p2e.status == "finished"
    runs = {"random": rand, "plan2explore": p2e}
    print("distinct (position, goal) cells:", {name: visited_cells(r.run_dir) for name, r in runs.items()})
    print("fraction of steps at a wall:", {name: round(wall_fraction(r.run_dir), 3) for name, r in runs.items()})
    print("zero-shot evaluation returns:", {name: run_returns(r.run_dir)[1] for name, r in runs.items()})
    print("scores:", {name: r.final_score for name, r in runs.items()})
    # random's own score over seeds 0-4 reaches 24.43: the margin asks for more than random's best seed
    assert p2e.final_score > 24.5, f"zero-shot score {p2e.final_score} <= 24.5 (random 14.1-24.4 over seeds 0-4)"
    assert p2e.final_score > rand.final_score
