"""Running a measuring script as its `make bench` wrapper does: in its own process, one torch thread, with `--json`.
Its human-readable lines are printed (seen with `pytest -s`) and the JSON object on its last line is returned; a
script that exits non-zero or prints no JSON fails the test with its output."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def run_script(script: str, *args: str) -> dict:
    cmd = [sys.executable, str(HERE / script), *args, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = proc.stdout.strip().splitlines()
    shown = f"{script} {' '.join(args)}"
    if proc.returncode != 0:
        pytest.fail(
            f"{shown} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}", pytrace=False
        )
    try:
        figures = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"{shown} printed no JSON on its last line:\n{proc.stdout[-3000:]}", pytrace=False)
    print("\n".join(lines[:-1]))
    return figures


def assert_positive_finite(figures: dict, names: Iterable[str]) -> None:
    """Every named figure is there, a number, finite and above zero (a time or a rate that was measured)."""
    bad = {n: figures.get(n) for n in names
           if not (isinstance(figures.get(n), (int, float)) and math.isfinite(figures[n]) and figures[n] > 0)}  # fmt: skip
    assert not bad, f"figures missing, not finite or not positive: {bad}"


def measure_preset_script(benchmark, script: str, full: bool, full_preset: str, names: Iterable[str]) -> dict:
    """A cost script with `--preset`/`--reps`: the `tiny` preset and one repetition in short runs, the script's own
    defaults (`full_preset`) with `--bench-full`; the figures are stored in the benchmark's record and checked to be
    measured (`assert_positive_finite`)."""
    args = [] if full else ["--preset", "tiny", "--reps", "1"]
    figures = benchmark.pedantic(run_script, args=(script, *args), rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    assert figures["preset"] == (full_preset if full else "tiny")
    assert_positive_finite(figures, names)
    return figures
