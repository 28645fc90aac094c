"""Slow learning check: DreamerV2 (small model, the paper's algorithm) learns the fake point-chasing task from pixels.

fake@1 image_continuous (see tests/test_planet_learning.py): 16x16 RGB images of a point and a goal on a line; the
action moves the point, each env step earns 1 - |pos - goal|, leaving [-1, 1] ends the episode with -1. Returns are
at most ~50; the uniform random policy's protocol score is 19.7, 24.1 and 29.1 on seeds 0-2
(`wmbench run random fake@1 --task image_continuous`).

Threshold: after the protocol's 2,000 agent steps (80 episodes), the protocol's score (mean train return of the last
400 env steps, actions sampled from the actor) and the final evaluation (2 episodes, the actor's mode) both average
>= 35.

Settings: DreamerV2's algorithm as on DMC (categorical latents with straight-through gradients, KL balancing 0.8
with 1 free nat, truncated-Normal actor trained by dynamics backpropagation with entropy 1e-4, slow critic, the
discount head (leaving the line ends the episode: without it, imagination never terminates and the actor learnt to
leave, measured), gamma 0.99) with a small model (deter 64, 8 x 8 latents, CNN depth 8, 2 x 64 MLPs), batches of
16 x 16, horizon 10, 200 random prefill steps, 50 pretraining updates, then one update every 2 agent steps, and
learning rates 1e-3 (model), 3e-4 (actor and critic), slow critic every 20 updates.

Run with: pytest -m slow tests/test_dreamerv2_learning.py
"""

import pytest

from wmbench.runner import run
from wmbench.testing import run_returns

LEARNING = [
    "preset=tiny", "deter=64", "hidden=64", "stoch=8", "classes=8", "depth=8", "units=64", "layers=2",
    "batch_size=16", "batch_length=16", "imag_horizon=10", "prefill=200", "pretrain=50", "train_every=2",
    "reward_transform=identity", "gamma=0.99", "loss_kl=1.0", "kl_free=1.0",
    "actor_ent=1e-4", "model_lr=1e-3", "actor_lr=3e-4", "critic_lr=3e-4", "slow_critic_every=20",
]


@pytest.mark.slow
def test_dreamerv2_learns_fake_image_task(tmp_path):
    result = run("dreamerv2", "fake@1", "image_continuous", 0, tmp_path, overrides=LEARNING, progress=False, threads=1)
    assert result.status == "finished"
    train, final = run_returns(result.run_dir)
    print("train returns:", [round(x, 1) for x in train])
    print("final evaluation returns:", final, "protocol score:", result.final_score)
    assert result.final_score >= 35.0, f"protocol score {result.final_score} < 35 (random: 19.7-29.1)"
    assert sum(final) / len(final) >= 35.0, f"final evaluation returns {final} average < 35 (random: 19.7-29.1)"
