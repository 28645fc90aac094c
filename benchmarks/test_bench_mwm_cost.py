"""CPU time of MWM's parts (mwm_cost.py) on dmc_vision@1-sized inputs, one thread: the autoencoder update, the
world-model + behaviour update, one action, and the CPU per agent step they make. No floor: the figures are the
basis of docs/mwm.md and wmbench/expectations.py, stored so that a change is seen against the previous run of this
machine. Short runs use the `tiny` preset and one repetition; `--bench-full` the script's defaults (`cpu`, 2)."""

from __future__ import annotations

from script_json import measure_preset_script

FIGURES = (
    "mae_update_cpu_s",
    "model_update_cpu_s",
    "action_cpu_s",
    "cpu_s_per_agent_step",
    "cpu_h_per_10k_env_steps",
)


def test_mwm_cost(benchmark, ratio, full) -> None:
    figures = measure_preset_script(benchmark, "mwm_cost.py", full, "cpu", FIGURES)
    ratio("cpu s per agent step", figures["cpu_s_per_agent_step"])
    ratio("mae update / model update", figures["mae_update_cpu_s"] / figures["model_update_cpu_s"])
