"""Slow learning check: TWM (small model, the paper's algorithm) learns the fake point-chasing task from pixels with
discrete actions.

fake@1 image_discrete: 16x16 RGB images of a point and a goal on a line; actions move the point left / stay / right;
each env step earns 1 - |pos - goal|; leaving [-1, 1] ends the episode with -1 (terminal). The uniform random
policy's protocol score is 21.0, 17.9 and 17.6 on seeds 0-2 (tests/test_dreamerv2_learning.py, measured).

Threshold: after the protocol's 2,000 agent steps, the protocol's score (mean train return of the last 400 env steps)
>= 30.

Settings: TWM's losses, balanced sampling (temperature 20), frame stack 4 on grayscale, tanh rewards and actor-critic
(entropy hinge, gamma 0.99, lambda 0.95) with a small model (8 x 8 latents, CNN depth 8, transformer 2 layers of
width 32, memory 8 steps, 2 x 64 heads), batches of 16 x 8, 64 imagined rollouts of 8 steps, 200 random prefill
steps, then one update every 2 agent steps, learning rates 1e-3 (observation model, dynamics), 3e-4 (actor, critic).

Run with: pytest -m slow tests/test_twm_learning.py
"""

import pytest

from wmbench.testing import assert_learns

LEARNING = [
    "preset=tiny",
    "kernels=[4, 4]",
    "dec_kernels=[6, 6]",
    "z_categoricals=8",
    "z_categories=8",
    "obs_channels=8",
    "obs_units=64",
    "embed_dim=32",
    "heads=2",
    "layers=2",
    "ff_dim=64",
    "memory_length=8",
    "head_units=64",
    "head_layers=2",
    "actor_units=64",
    "actor_layers=2",
    "batch_size=16",
    "batch_length=8",
    "ac_batch=64",
    "imag_horizon=8",
    "prefill=200",
    "train_every=2",
    "obs_lr=1e-3",
    "dyn_lr=1e-3",
    "actor_lr=3e-4",
    "critic_lr=3e-4",
]


@pytest.mark.slow
def test_twm_learns_fake_image_task(tmp_path):
    assert_learns("twm", "fake@1", "image_discrete", tmp_path, LEARNING, at_least=30.0, random="17.6-21.0",
                  final_too=False)
