"""Slow learning check: Dreamer v1 (small model, the paper's algorithm) learns the fake point-chasing task from pixels.

fake@1 image_continuous: 16x16 RGB images of a point (red column) and a goal (green column) on a line; the action
in [-1, 1] moves the point by 0.1 x action per env step (action repeat 2) and each env step earns 1 - |pos - goal|;
leaving [-1, 1] ends the episode with -1. Returns are at most ~50; the uniform random policy's protocol score is
19.7, 24.1 and 29.1 on seeds 0-2 (`wmbench run random fake@1 --task image_continuous`).

Threshold: after the protocol's 2,000 agent steps (80 episodes), the protocol's score (mean train return of the last
400 env steps, actor samples plus exploration noise 0.3) and the final evaluation (2 episodes, tanh of the actor's
mean) both average >= 35, as PlaNet's check (tests/test_planet_learning.py).

Settings: the paper's algorithm (5 random seed episodes, free nats 3, imagination horizon 15, lambda 0.95, gamma
0.99, Adam 6e-4 / 8e-5 / 8e-5 with clip 100, exploration noise 0.3) with PlaNet's check's small model (deter 64,
stoch 16, hidden 64, CNN depth 16, 2 x 64 reward MLP) and 64-unit actor and value MLPs, batches of 16 x 16 and 50
updates per episode.

Measured 2026-12-01 00:53-01:05 UTC (seed 0, one thread, nice 5, load 5-6 on the 2 cores): protocol score 39.4,
final evaluation returns 42.0 and 28.1 (mean 35.09: a margin of 0.09 on this assertion; the two evaluation
episodes are noisy); 89 training episodes, 28 of the last 50 above 40 and 40 of them above 35; 692 s wall under pytest. First setting
tried; none other. With the released code's batch-mean free nats (`free_nats_mean=true`, the recipe's) the same
settings scored 28.0 on 2026-12-01 (final evaluation 41.3 and 19.9; 41 min wall beside two training runs), so the
check keeps the method's default, the paper's per-step clip.

Run with: pytest -m slow tests/test_dreamerv1_learning.py
"""

import pytest

from wmbench.testing import assert_learns

LEARNING = [
    "preset=tiny", "deter=64", "stoch=16", "hidden=64", "depth=16", "reward_units=64", "units=64",
    "batch_size=16", "batch_length=16", "updates_per_episode=50", "seed_episodes=5", "imag_horizon=15",
]


@pytest.mark.slow
def test_dreamerv1_learns_fake_image_task(tmp_path):
    assert_learns("dreamerv1", "fake@1", "image_continuous", tmp_path, LEARNING, at_least=35.0, random="19.7-29.1")
