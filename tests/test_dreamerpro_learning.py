"""Slow learning check: DreamerPro (small model, the official algorithm: no decoder, prototypes with Sinkhorn-Knopp
over two augmented views, temporal prototype prediction, dynamics backpropagation) learns the fake point-chasing
task from pixels with continuous actions.

fake@1 image_continuous: 16x16 RGB images of a point (red column) and a goal (green column) on a line; the action
moves the point by up to 0.1 per env step (action repeat 2) and each env step earns 1 - |pos - goal|; leaving
[-1, 1] ends the episode with -1. Returns are at most ~50; the uniform random policy's protocol score is 19.7, 24.1
and 29.1 on seeds 0-2 (`wmbench run random fake@1 --task image_continuous --seed S`, measured).

Threshold: after the protocol's 2,000 agent steps, the protocol's score (mean train return of the last 400 env
steps, actor samples) >= 33 and the final evaluation (2 episodes, tanh of the actor's mean) averages >= 30, both
above every random seed. Measured once with these settings (seed 0, `wmbench run` with the same --set values, 5 min
wall at load ~6 on 2 cores): protocol score 39.50, final evaluation 43.9 and 29.8.

Settings: a small model (deter 64, 8 Gaussian latents, CNN depth 8, 2 x 64 MLPs, 32 prototypes of 16 dims), batches
of 16 x 16, horizon 10, shifts of up to 1 pixel (16x16 images, not 64x64), prototypes frozen for 100 updates, 200
random prefill steps, 50 pretraining updates, then one update every 2 agent steps, learning rates 1e-3 (model), 3e-4
(actor and critic), slow critic every 20 updates.

Run with: pytest -m slow tests/test_dreamerpro_learning.py
"""

import pytest

from wmbench.testing import assert_learns

LEARNING = [
    "preset=tiny", "deter=64", "hidden=64", "stoch=8", "depth=8", "units=64", "layers=2", "prototypes=32",
    "proto_dim=16", "batch_size=16", "batch_length=16", "imag_horizon=10", "prefill=200", "pretrain=50",
    "train_every=2", "model_lr=1e-3", "actor_lr=3e-4", "critic_lr=3e-4", "slow_critic_every=20",
    "freeze_prototypes=100", "aug_max_delta=1.0",
]  # fmt: skip


@pytest.mark.slow
def test_dreamerpro_learns_fake_image_task(tmp_path):
    assert_learns("dreamerpro", "fake@1", "image_continuous", tmp_path, LEARNING, at_least=33.0, random="19.7-29.1",
                  final_at_least=30.0)
