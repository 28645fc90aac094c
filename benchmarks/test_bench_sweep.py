"""Per-run scheduling overhead of sweeps against a plain loop of runner.run (sweep_overhead.py). No floor is set
by the issues; the figures are stored so that a change is seen against the previous run."""

from __future__ import annotations

import os


def test_sweep_overhead(benchmark, ratio, full) -> None:
    from sweep_overhead import measure

    workers = os.cpu_count() or 1
    backends = "local,local-reuse,ray" if full else "local-reuse"
    figures = benchmark.pedantic(measure, args=(200 if full else 12, 60, workers, backends), rounds=1, iterations=1)
    for backend in backends.split(","):
        ratio(f"{backend} wall/loop", figures[backend]["wall_s"] / figures["loop"]["wall_s"])
        ratio(f"{backend} overhead ms/run", figures[backend]["overhead_worker_ms_per_run"])
