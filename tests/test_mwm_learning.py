"""Slow learning check: MWM (small networks, the paper's algorithm) learns the fake point-chasing task from pixels
with discrete actions.

fake@1 image_discrete: 16x16 RGB images of a point (red column) and a goal (green column) on a line; the actions
move the point left / stay / right by 0.1 per env step (action repeat 2) and each env step earns 1 - |pos - goal|;
leaving [-1, 1] ends the episode with -1 (a real terminal state). Returns are at most ~50; the uniform random
policy's protocol score is 21.0, 17.9 and 17.6 on seeds 0-2 (tests/test_dreamerv2_learning.py, measured).

Settings: MWM's algorithm (masked autoencoder over early-convolution features with 75% of tokens masked and reward
prediction, trained on its own schedule; RSSM on the autoencoder's features, predicting them back; DreamerV2
behaviour: REINFORCE actor for discrete actions with the slow critic as baseline) with small networks (16 tokens of
width 32, one ViT block each, deter 64, 8 x 8 latents, 2 x 64 MLPs), batches of 16 x 16 (model) and 16 x 4 images
(autoencoder), horizon 10, 200 random prefill steps, 200 autoencoder pre-training updates (the last 50 with a
world-model update), then both updates every 2 agent steps; learning rates 1e-3 (model, autoencoder without
warm-up), 3e-4 (actor, critic); and, as in DreamerV2's check, KL scale 0.1 without a floor, a discount head (this
task has terminal states), entropy 1e-3 and the slow critic every 20 updates.

Measured after the autoencoder's blocks became wmbench.nn.transformer.bidirectional_blocks (torch's pre-norm
encoder layer: the same architecture and initialisation scheme, other initial weights since the parameters are
created in another order): PASSES, protocol score 31.3 (random 17.6-21.0); train returns about 0-10 for the first ~100 episodes, then
mostly 25-48 over the last ~45; final evaluation returns 21.0, 24.0 (2 episodes), so the margin is thin (2.6 min,
seed 0, load ~2).

Earlier, with the branch's own ViT block (seed 0, 1 thread, 2 shared cores at load 6-9, 4-5 min each) it failed. With these settings
protocol score 27.0 (above random's 17.6-21.0 but below 30; final evaluation returns 21.0, 18.9): train returns
fall to about 0-10 after the prefill (the policy leaves the line), then from about episode 62 of 116 mostly 30-48,
with some start positions still failed (returns near 0) in the last window. Variants tried once each: actor entropy
3e-3 with the autoencoder at 3e-4: 12.2; these settings with 400 autoencoder and 200 world-model pre-training
updates: 12.2 (the same last-window episodes as the variant before: the learnt policy fails the same starts); these
settings run to 3,000 agent steps (`steps=3000`): 28.9, final evaluation returns 40.2 and 29.0, train returns of
the last 50 episodes averaging about 26.
Open: a budget or settings under which it clears 30 with a margin, on more seeds (docs/mwm.md).

Run with: pytest -m slow tests/test_mwm_learning.py
"""

import pytest

from wmbench.testing import assert_learns

LEARNING = [
    "preset=tiny", "mae_dim=32", "mae_decoder_dim=32", "wm_dim=32", "deter=64", "hidden=64", "stoch=8",
    "classes=8", "units=64", "layers=2", "batch_size=16", "batch_length=16", "mae_batch=16", "mae_length=4",
    "imag_horizon=10", "prefill=200", "mae_pretrain=200", "pretrain=50", "train_every=2", "train_mae_every=2",
    "pred_discount=true", "loss_kl=0.1", "kl_min=0.0", "actor_ent=1e-3", "model_lr=1e-3", "mae_lr=1e-3",
    "actor_lr=3e-4", "critic_lr=3e-4", "slow_critic_every=20", "reward_norm_momentum=1.0",
]  # fmt: skip


@pytest.mark.slow
def test_mwm_learns_fake_image_task(tmp_path):
    assert_learns("mwm", "fake@1", "image_discrete", tmp_path, LEARNING, at_least=30.0, random="17.6-21.0",
                  final_too=False)
