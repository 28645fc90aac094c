"""Stand-in run target for the sweep tests (no tests here).

`fake_run` has `wmbench.runner.run`'s signature and run-directory contract (run.json status, the run lock,
error.txt, finished runs return at once) but no torch, so sweep logic is tested in milliseconds per run. What each
run does is scripted by `<root>/plan.json` ({"task/seed": "ok" | "fail" | "crash_once" | "sleep:S"}); every call
and every completed execution is appended to `<root>/calls.jsonl` / `<root>/executions.jsonl`.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from wmbench.io import RunLock, RunLocked, append_text, atomic_write_json, atomic_write_text

BUDGET = 7  # agent steps the fake "runs"; written as budget_agent_steps


@dataclass
class FakeResult:
    run_dir: Path
    status: str
    final_score: float | None
    resumed: bool


def fake_dir(root: Path | str, protocol: str, task: str, method: str, seed: int) -> Path:
    # The layout of docs/design.md, written out by hand (independent of the code under test).
    return Path(root) / protocol / task / method / f"seed_{seed}"


def fake_run(method, protocol, task, seed, root="runs", overrides=(), smoke=False, device="cpu", steps=None,
             checkpoint_every=None, progress=True, threads=None):
    root = Path(root)
    plan_path = root / "plan.json"
    plan = json.loads(plan_path.read_text()) if plan_path.exists() else {}
    action = plan.get(f"{task}/{seed}", "ok")
    directory = fake_dir(root, protocol, task, method, seed)
    call = {"task": task, "seed": seed, "pid": os.getpid(), "threads": threads,
            "omp": os.environ.get("OMP_NUM_THREADS")}
    append_text(root / "calls.jsonl", json.dumps(call) + "\n")
    info_path = directory / "run.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if info["status"] == "finished":
            return FakeResult(directory, "finished", info["final_score"], False)
    directory.mkdir(parents=True, exist_ok=True)
    with RunLock(directory):
        record = {"method": method, "protocol": protocol, "task": task, "seed": seed, "smoke": smoke,
                  "budget_agent_steps": steps or BUDGET, "config": {"preset": "default"}, "status": "running",
                  "agent_steps": 0}
        atomic_write_json(info_path, record)
        if action.startswith("sleep:"):
            time.sleep(float(action.split(":")[1]))
        if action == "fail":
            atomic_write_text(directory / "error.txt", "Traceback: ValueError: bad config\n")
            atomic_write_json(info_path, {**record, "status": "failed", "error": "ValueError: bad config"})
            raise ValueError(f"bad config for {task} seed {seed}")
        if action == "crash_once" and not (directory / "crashed").exists():
            (directory / "crashed").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        score = 10.0 * seed + len(task)
        atomic_write_text(directory / "scores.csv", "env_step,step_unit,episode,score,length,phase\n"
                          f"{BUDGET},env_steps,1,{score},{BUDGET},train\n")
        atomic_write_json(info_path, {**record, "status": "finished", "final_score": score,
                                      "agent_steps": record["budget_agent_steps"]})
        append_text(root / "executions.jsonl", json.dumps(call) + "\n")
        return FakeResult(directory, "finished", score, False)


def locked_run(method, protocol, task, seed, **kwargs):
    """What the runner does when a live process holds the run directory."""
    raise RunLocked(f"run directory of {task} seed {seed} is in use by pid 1 on elsewhere")
