"""Overhead of `wmbench.stats.aggregate` over calling rliable directly, in the same process.

Workload: 26 tasks x 3 methods x 10 seeds, 2,000 stratified-bootstrap reps, the four aggregates (IQM, mean, median,
optimality gap). Direct rliable call: `get_interval_estimates` with one function returning all four metrics (the
usage rliable's README recommends), after seeding NumPy's global RNG. Runs alternate between the two to share the
machine's drift; the ratio of medians is printed (target <= 1.2x).

Usage: python benchmarks/stats_overhead.py [--repeats 5] [--reps 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from rliable import library as rly
from rliable import metrics as rly_metrics

from wmbench import stats


def direct(scores: dict[str, np.ndarray], reps: int, seed: int) -> dict:
    def all_metrics(x: np.ndarray) -> np.ndarray:
        return np.array([rly_metrics.aggregate_iqm(x), rly_metrics.aggregate_mean(x),
                         rly_metrics.aggregate_median(x), rly_metrics.aggregate_optimality_gap(x)])

    np.random.seed(seed)
    return rly.get_interval_estimates(scores, all_metrics, reps=reps)


def measure(repeats: int = 5, reps: int = 2000) -> dict:
    """Median seconds of both paths and their ratio (wmbench / rliable), alternating runs."""
    rng = np.random.default_rng(0)
    scores = {m: rng.gamma(2.0, 0.5, size=(10, 26)) for m in ("a", "b", "c")}

    # Same numbers from both paths (same seed, same resamples): the comparison is like for like.
    ours = stats.aggregate(scores, reps=reps, seed=0)
    points, intervals = direct(scores, reps, seed=0)
    assert np.isclose(ours["a"]["iqm"].low, intervals["a"][0, 0]), "wmbench and rliable disagree"

    t_ours, t_direct = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        direct(scores, reps, seed=0)
        t_direct.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        stats.aggregate(scores, reps=reps, seed=0)
        t_ours.append(time.perf_counter() - t0)
    d, o = statistics.median(t_direct), statistics.median(t_ours)
    return {"rliable_s": d, "wmbench_s": o, "ratio": o / d}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reps", type=int, default=2000)
    args = parser.parse_args(argv)
    r = measure(args.repeats, args.reps)
    print(f"26 tasks x 3 methods x 10 seeds, {args.reps} reps, 4 metrics, {args.repeats} repeats (median)")
    print(f"rliable direct:         {r['rliable_s']:.3f} s")
    print(f"wmbench.stats.aggregate: {r['wmbench_s']:.3f} s")
    print(f"ratio: {r['ratio']:.3f}x (target <= 1.2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
