"""A tiny-preset run of a method on the real `atari100k@1` through `wmbench run` (issue 24.4: the smoke runs of TWM
and TransDreamer on Atari were manual, docs/twm.md and docs/transdreamer.md). Tests that use it skip with the reason
when ale-py or the task's ROM is missing.

Asterix rather than the docs' Pong: random play ends an Asterix episode in ~200-400 agent steps (Pong ~900), so a
600-step run ends at least one episode, and trains past the tiny presets' prefill, in seconds.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from wmbench import cli
from wmbench.envs import SuiteNotInstalled
from wmbench.envs import atari as atari_suite
from wmbench.runner import run_dir_for

PROTOCOL = "atari100k@1"
TASK = "asterix"
STEPS = 600

try:
    atari_suite.check_installed()
    atari_suite.rom_path(TASK)
    MISSING = None
except SuiteNotInstalled as e:
    MISSING = str(e)
needs_atari = pytest.mark.skipif(MISSING is not None, reason=f"Atari unavailable: {MISSING}")


def tiny_atari_run(method: str, root: Path) -> Path:
    """Run `method` with `preset=tiny` for STEPS agent steps on atari100k@1 and check what the run left: status
    finished at the budget, at least one scored training episode, finite scores, and updates with finite losses."""
    code = cli.main(["run", method, PROTOCOL, "--task", TASK, "--seed", "0", "--steps", str(STEPS),
                     "--set", "preset=tiny", "--root", str(root), "--no-progress", "--threads", "1"])  # fmt: skip
    assert code == 0
    run_dir = run_dir_for(root, PROTOCOL, TASK, method, 0)
    info = json.loads((run_dir / "run.json").read_text())
    assert (info["status"], info["agent_steps"], info["error"]) == ("finished", STEPS, None)
    assert math.isfinite(info["final_score"])
    with open(run_dir / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 1
    for row in rows:
        assert row["phase"] == "train" and row["step_unit"] == "frames"
        assert math.isfinite(float(row["score"])) and 0 < int(row["length"]) <= STEPS
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [v for m in metrics for k, v in m.items() if k.startswith("loss/")]
    assert losses and all(math.isfinite(v) for v in losses)
    return run_dir
