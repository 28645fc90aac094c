"""Sweep fault tolerance with real processes: kill -9 of a worker mid-run, kill -9 of the sweep driver.

The worker-kill test uses the real runner (`random` on fake@1): the killed run must be retried, resume from its
checkpoint and end with scores.csv byte-identical to an uninterrupted run. The driver-kill test uses the stand-in
target (tests/test_sweep_support.py) because it checks the sweep's bookkeeping, not the run's content.
Disk-full while writing a checkpoint is the runner's test (tests/test_resume.py), not repeated here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from wmbench.runner import run
from wmbench.sweep import ExecOptions, make_spec, run_sweep

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (killed, not yet reaped by its parent) counts as dead
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def test_kill9_worker_mid_run_resumes_to_identical_scores(tmp_path):
    steps, every = 1500, 300
    reference = run("random", "fake@1", "vector_discrete", 0, root=tmp_path / "reference", steps=steps,
                    checkpoint_every=every, progress=False, threads=1)

    root = tmp_path / "sweep"
    run_dir = root / "fake@1/vector_discrete/random/seed_0"
    killed: list[int] = []

    def kill_at_first_checkpoint() -> None:
        _wait_for(lambda: (run_dir / "checkpoint" / "state.pt").exists(), 120, "the first checkpoint")
        info = json.loads((run_dir / "lock.json").read_text())
        assert info["pid"] != os.getpid()
        os.kill(int(info["pid"]), signal.SIGKILL)
        killed.append(int(info["pid"]))

    killer = threading.Thread(target=kill_at_first_checkpoint, daemon=True)
    killer.start()
    spec = make_spec("random", "fake@1", "0", "vector_discrete", steps=steps)
    result = run_sweep(spec, root, ExecOptions(workers=1, threads=1, retries=2, checkpoint_every=every,
                                               progress=False, poll_s=0.05))
    killer.join(timeout=5)
    assert killed, "the worker was not killed mid-run"
    assert result.complete
    attempts = [json.loads(x) for x in (result.sweep_dir / "attempts.jsonl").read_text().splitlines()]
    assert [a["status"] for a in attempts] == ["crashed", "finished"]
    assert attempts[1]["resumed"] is True  # continued from the checkpoint, not restarted
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["resumes"] == 1
    for name in ("scores.csv", "metrics.jsonl"):
        assert (run_dir / name).read_bytes() == (reference.run_dir / name).read_bytes(), name
    assert (result.sweep_dir / "scores.csv").exists()


def test_killed_driver_rerun_completes_the_rest_without_redoing(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    root.mkdir()
    runs = [("vector_discrete", s) for s in range(4)]
    (root / "plan.json").write_text(json.dumps({f"{t}/{s}": "sleep:1.0" for t, s in runs}))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    env = dict(os.environ)
    argv = ["random", "fake@1", "--tasks", "vector_discrete", "--seeds", "0-3", "--root", str(root),
            "--workers", "1", "--target", "test_sweep_support:fake_run", "--no-progress"]
    driver = subprocess.Popen([sys.executable, "-m", "wmbench.cli", "sweep", *argv], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    executions = root / "executions.jsonl"
    calls = root / "calls.jsonl"

    def records(path: Path) -> list[dict]:
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    try:
        # Kill the driver while its third run is in flight (two done).
        _wait_for(lambda: len(records(executions)) >= 2 and len(records(calls)) >= 3, 120, "two finished runs")
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
    finally:
        if driver.poll() is None:
            driver.kill()
    in_flight = records(calls)[-1]
    # The worker dies with its driver (no orphan keeps the run lock).
    _wait_for(lambda: not _alive(in_flight["pid"]), 10, "the orphaned worker to exit")
    # RunLock counts a zombie as alive (os.kill(pid, 0) succeeds), and this VM's init reaps orphans lazily: wait
    # for the reaping so the re-run sees a stale lock, as it would at once on a machine with a prompt init.
    _wait_for(lambda: not Path(f"/proc/{in_flight['pid']}").exists(), 120, "the dead worker to be reaped")
    done_before = {(e["task"], e["seed"]) for e in records(executions)}
    assert len(done_before) == 2

    spec = make_spec("random", "fake@1", "0-3", "vector_discrete")
    result = run_sweep(spec, root, ExecOptions(target="test_sweep_support:fake_run", workers=2, progress=False,
                                               poll_s=0.05))
    assert result.complete and sorted(result.finished) == runs
    done = [(e["task"], e["seed"]) for e in records(executions)]
    assert sorted(done) == runs  # each run executed exactly once over both invocations
