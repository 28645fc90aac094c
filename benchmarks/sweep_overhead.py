"""Per-run scheduling overhead of sweeps: local subprocesses and Ray vs a plain loop of `runner.run` in one process.

Runs N tiny runs (`random` on fake@1, a few agent steps each, so the run itself costs milliseconds and what is
measured is the sweep's cost: worker start-up, imports, bookkeeping) three ways, each into a fresh root:

  loop   one process calls wmbench.runner.run N times (torch already imported): the floor
  local        wmbench sweep --backend local --workers W (a fresh subprocess per run)
  local-reuse  wmbench sweep --backend local --workers W --reuse-workers (W subprocesses serve all runs)
  ray          wmbench sweep --backend ray --workers W (a local Ray instance; its start-up is reported apart)

Overhead per run = (sweep wall x W - loop wall) / N: worker-seconds the sweep spends per run beyond the run itself
(with perfect scaling and no overhead the sweep would take loop wall / W).

    .venv/bin/python benchmarks/sweep_overhead.py --runs 200 --steps 60 --workers 2 --backends local,local-reuse,ray
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from wmbench.protocols import load_protocol
from wmbench.runner import run
from wmbench.sweep import ExecOptions, make_spec, run_sweep


def runs_for(n: int) -> tuple[tuple[str, ...], int]:
    tasks = load_protocol("fake@1").tasks
    per_task = -(-n // len(tasks))
    return tasks, per_task


def measure(runs: int, steps: int, workers: int, backends: str, root: str | None = None) -> dict:
    """Print one line per way of running and return {way: {wall_s, ms_per_run, overhead_worker_ms_per_run}}."""
    tasks, per_task = runs_for(runs)
    seeds = f"0-{per_task - 1}"
    n = len(tasks) * per_task
    scratch = Path(root or tempfile.mkdtemp(prefix="wmbench-sweep-bench-"))
    print(f"{n} runs of random on fake@1 ({len(tasks)} tasks x {per_task} seeds), {steps} agent steps each, "
          f"{workers} workers, {os.cpu_count()} cores")

    t0 = time.perf_counter()
    for task in tasks:
        for seed in range(per_task):
            run("random", "fake@1", task, seed, root=scratch / "loop", steps=steps, progress=False, threads=1)
    loop = time.perf_counter() - t0
    print(f"{'loop':<12}: {loop:8.2f} s total, {1000 * loop / n:8.1f} ms per run")
    figures = {"loop": {"wall_s": loop, "ms_per_run": 1000 * loop / n, "overhead_worker_ms_per_run": 0.0}}

    spec = make_spec("random", "fake@1", seeds, ",".join(tasks), steps=steps)
    for backend in backends.split(","):
        options = ExecOptions(backend=backend.split("-")[0], workers=workers, progress=False, retries=0,
                              reuse_workers=backend == "local-reuse")
        init = 0.0
        if backend == "ray":
            import ray

            from wmbench.sweep_backends import ray_temp_dir

            t0 = time.perf_counter()
            ray.init(num_cpus=max(os.cpu_count() or 1, workers), include_dashboard=False,
                     log_to_driver=False, _temp_dir=ray_temp_dir())
            init = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = run_sweep(spec, scratch / backend, options)
        wall = time.perf_counter() - t0
        if backend == "ray":
            import ray

            ray.shutdown()
        assert result.complete and len(result.finished) == n, result
        overhead = (wall * workers - loop) / n
        extra = f" (+ ray.init {init:.2f} s)" if backend == "ray" else ""
        print(f"{backend:<12}: {wall:8.2f} s total{extra}, {1000 * wall / n:8.1f} ms per run, "
              f"wall ratio vs loop {wall / loop:6.2f}, overhead {1000 * overhead:8.1f} worker-ms per run")
        figures[backend] = {"wall_s": wall, "ms_per_run": 1000 * wall / n, "overhead_worker_ms_per_run": 1000 * overhead}
    if root is None:
        shutil.rmtree(scratch, ignore_errors=True)
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--steps", type=int, default=60,
                   help="agent steps per run (at least one 50-step fake@1 episode: a run without one is not finished)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--backends", default="local,local-reuse,ray")
    p.add_argument("--root", default=None, help="scratch directory (default: a temp dir, removed at the end)")
    args = p.parse_args()
    measure(args.runs, args.steps, args.workers, args.backends, args.root)


if __name__ == "__main__":
    main()
