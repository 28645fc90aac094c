"""Wall time of SLAC's parts (slac_cost.py) on dmc_vision@1 cartpole_swingup, one thread: env step, action, model
update, actor-critic update, the time per agent step and per 10k env steps they make, and the model pre-training.
No floor: the figures are the basis of docs/slac.md, stored so that a change is seen against the previous run of
this machine. Short runs use the `tiny` preset and one repetition; `--bench-full` the script's defaults (`paper`,
3). Skipped with the reason when DMC pixels are unavailable."""

from __future__ import annotations

import pytest
from script_json import measure_preset_script

FIGURES = ("env_step_s", "action_s", "model_update_s", "actor_critic_update_s", "s_per_agent_step",
           "h_per_10k_env_steps", "pretrain_h")  # fmt: skip


def test_slac_cost(benchmark, ratio, full) -> None:
    from wmbench.envs import SuiteNotInstalled, dmc

    try:
        dmc.check_installed(render=True)
    except SuiteNotInstalled as e:
        pytest.skip(str(e))
    figures = measure_preset_script(benchmark, "slac_cost.py", full, "paper", FIGURES)
    ratio("s per agent step", figures["s_per_agent_step"])
    ratio("env step / agent step", figures["env_step_s"] / figures["s_per_agent_step"])
