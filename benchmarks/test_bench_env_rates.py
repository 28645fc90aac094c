"""Env-step rates of every runnable suite (env_rates.py), one test per default row: agent and env steps/s of the
contract env under random actions, in wall and process CPU time. No floor: the rates are absolute figures for
planning budgets (docs/protocols.md), stored so that a change is seen against the previous run of this machine.
Short runs take 5% of each row's steps; `--bench-full` the script's own. A suite that is not installed skips its row
with the reason."""

from __future__ import annotations

import pytest
from env_rates import DEFAULT_ROWS
from script_json import assert_positive_finite, run_script

SHORT_SCALE = 0.05  # 20-150 steps a row
RATES = ("agent_steps_per_s_wall", "env_steps_per_s_wall", "agent_steps_per_s_cpu", "env_steps_per_s_cpu")


@pytest.mark.parametrize("protocol,task,steps", DEFAULT_ROWS, ids=[p for p, _, _ in DEFAULT_ROWS])
def test_env_rates(benchmark, ratio, full, protocol, task, steps) -> None:
    from wmbench.envs import SuiteNotInstalled, check_installed
    from wmbench.protocols import load_protocol

    try:
        check_installed(load_protocol(protocol).suite)
    except SuiteNotInstalled as e:
        pytest.skip(str(e))
    args = ["--only", protocol, *([] if full else ["--scale", str(SHORT_SCALE)])]
    figures = benchmark.pedantic(run_script, args=("env_rates.py", *args), rounds=1, iterations=1)
    (row,) = figures["rows"]
    if "not_measured" in row:  # installed, but e.g. no working renderer
        pytest.skip(row["not_measured"])
    benchmark.extra_info.update(row)
    assert (row["protocol"], row["task"]) == (protocol, task)
    assert row["steps"] == (steps if full else max(1, int(steps * SHORT_SCALE))) and row["episodes"] >= 0
    assert_positive_finite(row, ("wall_s", "cpu_s", "action_repeat", *RATES))
    ratio("env steps/s cpu", row["env_steps_per_s_cpu"])  # what the env costs; budgets count env steps
    ratio("env steps/s wall", row["env_steps_per_s_wall"])
