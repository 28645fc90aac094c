"""wmbench.stats.aggregate against calling rliable directly, same workload and seed (stats_overhead.py).
Floor from the issues: <= 1.2x rliable."""

from __future__ import annotations


def test_stats_overhead(benchmark, ratio, full) -> None:
    from stats_overhead import measure

    r = benchmark.pedantic(measure, args=(5 if full else 3, 2000 if full else 1000), rounds=1, iterations=1)
    ratio("wmbench/rliable", r["ratio"], at_most=1.2)
    ratio.check()
