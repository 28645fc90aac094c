"""Slow learning check: DreamerV3 (tiny network, more replay) learns the fake point-chasing task on CPU.

Threshold: final score (protocol rule: mean train return of the last 400 env steps) >= 30 on fake@1
vector_discrete within its 2,000-agent-step budget. The return of an episode is at most ~50 (1 per env step
at the goal); the uniform random policy scores 14-21 on seeds 0-2 (measured with `wmbench run random fake@1
--task vector_discrete`), so 30 needs a policy that moves towards the goal most of the time.
Run with: pytest -m slow tests/test_dreamerv3_learning.py (about 10 minutes on an idle 2-core machine).
"""

import pytest

from wmbench.runner import run

LEARNING = ["preset=tiny", "batch_size=8", "batch_length=32", "train_ratio=64"]


@pytest.mark.slow
def test_dreamerv3_learns_fake_vector_task(tmp_path):
    result = run("dreamerv3", "fake@1", "vector_discrete", 0, tmp_path, overrides=LEARNING, progress=False, threads=2)
    assert result.status == "finished"
    assert result.final_score >= 30.0, f"final score {result.final_score:.1f} < 30 (random: 14-21)"
