"""PETS: smoke run through the runner, exact resume after a crash, task recognition; slow: learns the swing-up."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from wmbench_baselines.pets import PETS, TASKS, infer_task

from wmbench.method import register
from wmbench.protocols import load_protocol
from wmbench.runner import run

SHORT_EPISODES = """name = "control_test"
version = 1
suite = "control"
description = "test-only: control@1's cart-pole with 40-step episodes"
tasks = ["cartpole_swingup"]
[env]
action_repeat = 1
time_limit = 40
[budget]
agent_steps = 160
step_unit = "env_steps"
[score]
rule = "last_episodes_mean"
phase = "train"
episodes = 1
[smoke]
agent_steps = 160
"""


def short_protocol(tmp_path: Path):
    path = tmp_path / "control_test@1.toml"
    path.write_text(SHORT_EPISODES)
    return load_protocol(path)


class CrashingPETS(PETS):
    """PETS that raises once at CRASH_AT (a simulated crash between checkpoints)."""

    crash_at = -1

    def update(self, replay, step):
        if step == CrashingPETS.crash_at:
            CrashingPETS.crash_at = -1
            raise RuntimeError("simulated crash")
        return super().update(replay, step)


register("pets_crashing", f"{__name__}:CrashingPETS")

TINY = ["preset=tiny"]


def test_smoke_run_trains_model_after_each_episode(tmp_path):
    result = run(
        "pets",
        short_protocol(tmp_path),
        "cartpole_swingup",
        0,
        root=tmp_path,
        overrides=TINY,
        progress=False,
        threads=1,
    )
    assert result.status == "finished" and np.isfinite(result.final_score)
    scores = (result.run_dir / "scores.csv").read_text().splitlines()
    assert len(scores) == 1 + 4  # header + four 40-step episodes
    metrics = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    data_sizes = sorted({m["model_data"] for m in metrics if "model_data" in m})
    assert data_sizes[:3] == [40.0, 80.0, 120.0]  # retrained on all transitions after episodes 1, 2, 3


def test_resume_after_crash_is_identical(tmp_path):
    proto = short_protocol(tmp_path)
    kwargs = dict(overrides=TINY, progress=False, threads=1, checkpoint_every=40)
    whole = run("pets_crashing", proto, "cartpole_swingup", 0, root=tmp_path / "a", **kwargs)
    CrashingPETS.crash_at = 100  # mid-episode 3, after the checkpoint at the end of episode 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        run("pets_crashing", proto, "cartpole_swingup", 0, root=tmp_path / "b", **kwargs)
    resumed = run("pets_crashing", proto, "cartpole_swingup", 0, root=tmp_path / "b", **kwargs)
    assert resumed.resumed
    for name in ("scores.csv", "metrics.jsonl"):
        assert (whole.run_dir / name).read_bytes() == (resumed.run_dir / name).read_bytes(), name


def test_task_recognised_from_spaces_and_unknown_spaces_rejected():
    import gymnasium

    box = lambda n: gymnasium.spaces.Box(-1, 1, (n,), np.float32)  # noqa: E731
    for name, spec in TASKS.items():
        assert infer_task({"vector": box(spec.obs_dim)}, box(spec.act_dim)) == name
    reason = PETS.supports({"vector": box(3)}, box(1))
    assert reason is not None and "reward" in reason


def test_cartpole_features_are_sin_cos_of_angle():
    s = torch.tensor([[0.5, -1.0, np.pi / 2, 2.0]])
    np.testing.assert_allclose(
        TASKS["cartpole_swingup"].features(s).numpy(), [[1.0, 0.0, 0.5, -1.0, 2.0]], atol=1e-6
    )


@pytest.mark.slow
def test_pets_swings_up_cartpole_within_15_episodes(tmp_path):
    """control@1 budget (15 x 200 steps), `cpu` preset. Threshold: the mean return of the last 3 episodes >= 120
    of a possible 200 (a policy that swings up within ~3 s and then balances; hanging still scores ~0), and the
    pole tip stays above the track (reward > 0.5) over the last 100 steps of the final episode."""
    root = Path(os.environ.get("WMBENCH_SLOW_ROOT", tmp_path))
    result = run("pets", "control@1", "cartpole_swingup", 0, root=root, overrides=["preset=cpu"], threads=1)
    assert result.final_score >= 120, result.final_score
    episodes = _replay_rewards(result.run_dir)
    assert np.all(episodes[-1][-100:] > 0.5)


def _replay_rewards(run_dir: Path) -> list[np.ndarray]:
    """Per-episode rewards of a finished run, from its replay as the final checkpoint describes it (the first
    step's stored reward is 0 and is dropped)."""
    from wmbench.replay import Replay
    from wmbench.runner import load_checkpoint

    state = load_checkpoint(run_dir / "checkpoint")["replay"]
    replay = Replay(state["capacity_bytes"], run_dir / "replay", chunk_size=state["chunk_size"])
    replay.load_state_dict(state)
    return [episode["reward"][1:] for episode in replay.episodes()]
