"""Every shipped protocol: an explicit smoke budget, and its first task stepped with uniformly random actions through
the contract env (skipped, with the reason, when its suite cannot run here).

Distractor protocols that read user-supplied videos get small generated frame folders in a temporary
$WMBENCH_VIDEO_DIR (training and held-out sets with distinct video names), so they run too.
"""

import tomllib
from pathlib import Path

import numpy as np
import pytest

from wmbench.envs import SuiteNotInstalled, distracting, make_env, suite_module
from wmbench.protocols import list_protocols, load_protocol

PROTOCOLS = list_protocols()


@pytest.mark.parametrize("pid", PROTOCOLS)
def test_protocol_declares_its_smoke_budget(pid):
    protocol = load_protocol(pid)
    data = tomllib.loads(Path(protocol.path).read_text())
    assert "smoke" in data, f"{pid} has no [smoke] section"
    assert 0 < protocol.smoke.agent_steps < protocol.budget.agent_steps


def supply_videos(protocol, root: Path) -> None:
    """Generated frame folders for the protocol's folder video sets; each set's videos get their own names."""
    for key in ("videos", "eval_videos"):
        name = protocol.env.get(key, "")
        if name and name not in distracting.PROCEDURAL_SEEDS:
            folder = distracting.write_frame_folders(distracting.procedural_videos(count=2, frames=3), root / name)
            for video in sorted(folder.iterdir()):
                video.rename(folder / f"{key}_{video.name}")


@pytest.mark.parametrize("pid", PROTOCOLS)
def test_random_actions_step_the_first_task(pid, tmp_path, monkeypatch):
    protocol = load_protocol(pid)
    try:
        suite_module(protocol.suite).check_installed()
    except SuiteNotInstalled as e:
        pytest.skip(f"suite {protocol.suite!r} cannot run here: {e}")
    monkeypatch.setenv("WMBENCH_VIDEO_DIR", str(tmp_path))
    supply_videos(protocol, tmp_path)
    task = protocol.tasks[0]
    for mode in ("train", "eval"):
        env = make_env(protocol, task, seed=0, mode=mode)
        step = env.reset()
        assert step["is_first"] and not step["is_last"]
        for _ in range(5):
            step = env.step(env.act_space.sample())
            assert np.isfinite(step["reward"])
            for key, space in env.obs_space.items():
                assert step[key].shape == space.shape and step[key].dtype == space.dtype, (pid, key)
            if step["is_last"]:
                step = env.reset()
        env.close()


def test_env_rates_benchmark_prints_one_row_per_protocol():
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "env_rates.py"
    run = subprocess.run([sys.executable, str(script), "--only", "memory_maze@1", "--scale", "0",
                          "--row", "fake@1:vector_discrete:300"], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr
    rows = [line for line in run.stdout.splitlines() if line.startswith("| `")]
    assert [r.split("|")[1].strip() for r in rows] == ["`memory_maze@1`", "`fake@1`"]
    fake = [c.strip() for c in rows[1].split("|")[1:-1]]
    assert fake[2].startswith("300 (") and float(fake[3]) > 0 and abs(float(fake[4]) - 2 * float(fake[3])) <= 1  # repeat 2
    bad = subprocess.run([sys.executable, str(script), "--only", "crafter@3"], capture_output=True, text=True)
    assert bad.returncode == 2 and "'crafter@3' is not a default row" in bad.stderr and "crafter@2" in bad.stderr
