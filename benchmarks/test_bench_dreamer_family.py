"""Dreamer-family cost on one pixel configuration (dreamer_family_throughput.py): PlaNet, Dreamer v1, DreamerV2,
DreamerV3, TWM and TransDreamer measured in the same run, stored as ratios to DreamerV2 (no floor: the relative cost
is information for users planning runs, not a target). Quick runs use the `tiny` presets; `--bench-full` the CPU presets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = ("planet", "dreamerv1", "dreamerv2", "dreamerv3", "twm", "transdreamer")


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


def test_cached_imagination_step_is_cheaper_than_the_full_pass(benchmark) -> None:
    """The KV cache makes one imagined token O(context): at a 256-token context it must beat re-running the full
    causal pass (O(context^2)) by a wide margin, and its cost may grow at most linearly with the context."""
    from dreamer_family_throughput import imagination_cost

    rows = benchmark.pedantic(imagination_cost, args=(64, 2, 32, [32, 256]), rounds=1, iterations=1)
    benchmark.extra_info["imagination"] = rows
    short, long = rows
    assert long["full_s"] > 4 * long["cached_s"]
    assert long["cached_s"] < 8 * 2 * short["cached_s"]  # 8x the context: at most ~linear growth (2x slack)
