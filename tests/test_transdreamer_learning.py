"""Slow learning check: TransDreamer (tiny TSSM, DreamerV3 behaviour with more replay and a faster actor) learns the
fake point-chasing task on CPU.

fake@1 vector_discrete: a point on a line moves left/stay/right (0.1 per step) and earns 1 - |pos - goal| per env
step; leaving [-1, 1] ends the episode with -1. The uniform random policy scores 14-21 on seeds 0-2
(tests/test_dreamerv3_learning.py, measured).

Threshold: after the protocol's 2,000 agent steps, the protocol's score (mean train return of the last 400 env steps,
sampled actions) >= 30.

Settings: a tiny TSSM (1 layer of width 32, 8 x 8 latents, no dropout), heads of 32 units, batch 16 x 32 with memory
32, train ratio 512 (one update per agent step), imagination horizon 8, world-model and critic lr 3e-4, actor lr 1e-3
(the DreamerV3 learning check's rates). Measured (seed 0, load ~9 on 2 shared CPUs, 7 min 15 s): protocol score 44.3,
final evaluation 46.7 and 47.7. Tried first: width 16, 4 x 4 latents, dropout 0.1, train ratio 256: 12.6 (no
learning).

Run with: pytest -m slow tests/test_transdreamer_learning.py
"""

import pytest

from wmbench.testing import assert_learns

LEARNING = [
    "preset=tiny",
    "width=32",
    "stoch=8",
    "classes=8",
    "hidden=32",
    "units=32",
    "dropout=0.0",
    "batch_size=16",
    "batch_length=32",
    "memory=32",
    "train_ratio=512",
    "imag_horizon=8",
    "actor_lr=1e-3",
    "critic_lr=3e-4",
    "model_lr=3e-4",
]


@pytest.mark.slow
def test_transdreamer_learns_fake_vector_task(tmp_path):
    assert_learns("transdreamer", "fake@1", "vector_discrete", tmp_path, LEARNING, at_least=30.0, random="14-21",
                  final_too=False)
