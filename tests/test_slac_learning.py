"""Slow learning check: SLAC (small networks, the paper's algorithm) learns the fake point-chasing task from pixels.

fake@1 image_continuous: 16x16 RGB images of a point (red column) and a goal (green column) on a line; the action
in [-1, 1] moves the point by 0.1 x action per env step (action repeat 2) and each env step earns 1 - |pos - goal|;
leaving [-1, 1] ends the episode with -1. Returns are at most ~50; the uniform random policy's protocol score is
19.7, 24.1 and 29.1 on seeds 0-2 (`wmbench run random fake@1 --task image_continuous`, tests/test_planet_learning.py).

Settings: the paper's algorithm (uniform random steps, then model pre-training, then one model and one actor-critic
update per agent step; twin critics on latent samples, the actor on the history of encoder features and actions,
automatic temperature with target entropy -|A|) with small networks (z1 16, z2 32, conv depth 8, 64-unit layers),
batches of 32 (actor-critic) and 16 (model) sequences, an actor history of 2 observations and 1 action, and, for
this 25-agent-step task: 500 random agent steps, 1,500 pre-training updates at model learning rate 1e-3, alpha
starting at 0.1, gamma 0.9.

Measured (seed 0, 1 thread, 2 shared cores): protocol score 38.9 in 972 s at load ~28 and again in 430 s; final evaluation returns 46.0 and
10.0 (one of the two evaluation episodes still drifts, so only the protocol score is asserted). What was tried
before (seed 0, docs/slac.md): the paper's model learning rate 1e-4 with 200 pre-training updates left the latent
without the columns (reward log-likelihood stuck near -1.2) and the score in the random range (27.8 with alpha
starting at 1); all learning rates at 1e-3 made the policy saturate and leave the line for a while (32.8 with gamma 0.9); a history of
4 observations learnt more slowly (not run to the end).

Run with: pytest -m slow tests/test_slac_learning.py
"""

import pytest

from wmbench.testing import assert_learns

LEARNING = [
    "preset=tiny", "latent1=16", "latent2=32", "depth=8", "model_units=64", "units=64", "batch_size=32",
    "model_batch_size=16", "initial_collect_steps=500", "initial_model_train_steps=1500", "model_lr=1e-3",
    "init_alpha=0.1", "gamma=0.9", "sequence_length=2",
]
THRESHOLD = 33.0  # above the random policy's 19.7-29.1


@pytest.mark.slow
def test_slac_learns_fake_image_task(tmp_path):
    assert_learns("slac", "fake@1", "image_continuous", tmp_path, LEARNING, at_least=THRESHOLD, random="19.7-29.1",
                  final_too=False)
