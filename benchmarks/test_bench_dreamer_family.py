"""Dreamer-family cost on one pixel configuration (dreamer_family_throughput.py): PlaNet, Dreamer v1, DreamerV2 and
DreamerV3 measured in the same run, stored as ratios to DreamerV2 (no floor: the relative cost is information for
users planning runs, not a target). Quick runs use the `tiny` presets; `--bench-full` the CPU presets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = ("planet", "dreamerv1", "dreamerv2", "dreamerv3")


def _measure(presets: dict[str, str], updates: int) -> dict[str, dict]:
    from dreamerv3_throughput import run_json

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return {
        m: run_json([sys.executable, str(HERE / "dreamer_family_throughput.py"), "--child", m, presets[m],
                     "--updates", str(updates), "--actions", "5", "--threads", "1"], env)
        for m in METHODS
    }


def test_dreamer_family_throughput(benchmark, ratio, full) -> None:
    from dreamer_family_throughput import DEFAULT_PRESETS

    presets = DEFAULT_PRESETS if full else dict.fromkeys(METHODS, "tiny")
    results = benchmark.pedantic(_measure, args=(presets, 3 if full else 1), rounds=1, iterations=1)
    benchmark.extra_info.update(results)
    base = results["dreamerv2"]
    for method, r in results.items():
        assert r["update_s"] > 0 and r["action_s"] > 0 and r["train_h_per_10k_env_steps"] > 0
        if method != "dreamerv2":
            ratio(f"{method} / dreamerv2 hours per 10k env steps",
                  r["train_h_per_10k_env_steps"] / base["train_h_per_10k_env_steps"])
    ratio.check()
