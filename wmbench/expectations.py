"""How long a run will take on a CPU, before it starts: estimates from figures measured on this project's machines.

Owns the "GPU-scale run: ..." note that `wmbench run` prints once at the start when the estimated CPU time of the
remaining budget exceeds a few hours, and the figures behind it. An estimate is a cost per agent step from the
method's resolved config (for DreamerV3: updates per agent step = train_ratio / (batch_size x batch_length) times the
measured seconds per update of the size preset), multiplied by the agent steps left. Every figure names where it was
measured; methods or presets without a figure get no estimate (and no note) rather than a guess.

Measured on the project's CPU machine type (2 shared cores):
- PETS `cpu` preset, control@1 cart-pole: 15 episodes (3,000 steps) in 382 s wall / 285 s CPU at load 2-3
  (docs/classic_mbrl.md) -> 0.13 s per agent step. `paper` preset: ~1 TFLOP per planned step, minutes per step
  (same page) -> 120 s taken. MB-MF `cpu`: not timed -> no estimate.
- PILCO `fast`: 3 control@1 episodes (600 steps) in 2,194 s at load 13-21 (docs/pilco.md), one policy search per
  episode growing with the data -> 4 s per agent step; the default preset runs 3x the policy iterations -> 12 s.
- DreamerV3 seconds per update (docs/dreamerv3.md): `size1m` 1.1 s (1 thread, 16 x 64), XS 1.22 s (0.82
  updates/s, 2 threads), `tiny` about 0.05 s (tests). `size12m` has 9x the parameters of XS and was not timed on
  this machine; 8 s per update is an extrapolation from XS's 60 GFLOP per update at its achieved 50 GFLOP/s,
  labelled as such in the note.
- PlaNet (docs/planet.md, 1 thread at load 4): `cpu` 5.6 s per update and 0.10 s per planned action, `paper` 24 s
  and 1.4 s; per agent step with dmc_vision@1's 500-step episodes 0.66 s and 6.2 s.
- Dreamer v1 (docs/dreamerv1.md, 1 thread at load 2.4, 64x64 images): `cpu` 6.2 s per update (16 x 50) and 3 ms
  per action, `paper` 20 s per update (50 x 50); per agent step 0.63 s and 4.0 s.
- DreamerV2 (docs/dreamerv2.md, 1 thread, 64x64 images, dmc_vision@1 settings: batch 16 x 50, deter 200): `paper`
  37 s per update at load 10 and 27 ms per action; one update per `train_every` agent steps. Figures are keyed by
  preset, batch and deter, so the Atari settings (50 x 50, deter 600) get no estimate until measured.
- SLAC (docs/slac.md, 1 thread at load 20-28, 64x64 images): `paper` 28.6 s and `cpu` 9.2 s per agent step
  (benchmarks/slac_cost.py), plus the one-off model pre-training (100,000 / 2,000 model updates).
- DreamerPro (docs/dreamerpro.md, 1 thread, 64x64): `paper` 111 s and `cpu` 6.3 s wall per update at load 6-7,
  one update per 5 agent steps. Director (docs/director.md): `cpu` 14.2 s per update at load 7.5 with the settings
  before issue 23, ~16% more with the released ones (7.29 vs 6.28 CPU-s in one paired measurement), one per 16
  agent steps; `paper` not measured (no estimate).
- MWM (docs/mwm.md, 1 thread at load 6-7, 64x64 images, dmc_vision@1 settings: MAE batch 32 x 32, world model
  16 x 50, both every 5 agent steps): `paper` 24.1 + 27.0 CPU-s per 5 agent steps, 27 ms per action; `cpu` 0.53 +
  3.18 CPU-s, 6 ms per action. Meta-World's 50 x 50 world-model batches cost more (not timed).
- TWM (docs/twm.md, benchmarks/dreamer_family_throughput.py, 1 thread at load 6-7, 64x64 images): `paper` 58.2 s
  per update (100 x 16, 400 x 15 imagined) at 1.32 updates per agent step, `small` 3.14 s at 0.25 (fixed by the
  preset's `train_every`).
- Random: environment-bound, milliseconds per step: never GPU-scale.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

GPU_SCALE_HOURS = 3.0  # a CPU run longer than this gets the note

# (seconds per agent step, where the figure comes from), per method and preset, for methods whose cost per step
# does not depend on a replay ratio.
PER_STEP: dict[str, dict[str, tuple[float, str]]] = {
    "pets": {
        "cpu": (0.13, "measured: docs/classic_mbrl.md"),
        "paper": (120.0, "~1 TFLOP per planned step: docs/classic_mbrl.md"),
        "tiny": (0.005, "tests"),
    },
    "pilco": {
        "fast": (4.0, "measured: docs/pilco.md"),
        "default": (12.0, "3x the policy iterations of `fast`: docs/pilco.md"),
        "tiny": (0.01, "tests"),
    },
    # one planned action plus C updates per 500-agent-step dmc_vision@1 episode (docs/planet.md, measured at load 4)
    "planet": {
        "cpu": (0.66, "0.10 s per action + 50 x 5.6 s updates per 500-step episode: docs/planet.md"),
        "paper": (6.2, "1.4 s per action + 100 x 24 s updates per 500-step episode: docs/planet.md"),
        "tiny": (0.005, "tests"),
    },
    # C updates per 500-agent-step dmc_vision@1 episode; the actor costs milliseconds (docs/dreamerv1.md)
    "dreamerv1": {
        "cpu": (0.63, "50 x 6.2 s updates per 500-step episode: docs/dreamerv1.md"),
        "paper": (4.0, "100 x 20 s updates per 500-step episode: docs/dreamerv1.md"),
        "tiny": (0.005, "tests"),
    },
    # one model (32 x 9) and one actor-critic update per agent step, plus env step and action (docs/slac.md,
    # benchmarks/slac_cost.py at load ~20-28); the one-off model pre-training is not in the per-step figure
    "slac": {
        "cpu": (9.2, "15.3 s model + 2.5 s actor-critic update every 2 agent steps at load ~28: docs/slac.md"),
        "paper": (28.6, "11.5 s model + 16.7 s actor-critic update per agent step at load ~20: docs/slac.md"),
        "tiny": (0.05, "tests"),
    },
    # one update (two augmented views of each sequence) per `train_every` = 5 agent steps (docs/dreamerpro.md)
    "dreamerpro": {
        "cpu": (1.25, "one 6.3 s update (12 x 51, two views) per 5 agent steps at load 5.9: docs/dreamerpro.md"),
        "paper": (22.2, "one 111 s update (50 x 51, two views) per 5 agent steps at load 7.4: docs/dreamerpro.md"),
        "tiny": (0.05, "tests"),
    },
    # one update (world model, goal autoencoder, 16-step hierarchical imagination) per 16 agent steps (docs/director.md)
    "director": {
        "cpu": (1.03, "one 14.2 s update (16 x 64) per 16 agent steps at load 7.5, +16% for the released settings (categorical "
                "latents, adaptive scales): docs/director.md"),
        "tiny": (0.05, "tests"),
    },
    # one MAE and one world-model + behaviour update every 5 agent steps (dmc_vision@1 batches; docs/mwm.md)
    "mwm": {
        "cpu": (0.75, "(0.53 s MAE + 3.18 s model update) / 5 agent steps + 6 ms per action: docs/mwm.md"),
        "paper": (10.2, "(24.1 s MAE + 27.0 s model update) / 5 agent steps + 27 ms per action: docs/mwm.md"),
        "tiny": (0.05, "tests"),
    },
    # one update per `train_every` agent steps (paper 0.76, small 4) plus a few ms per action (docs/twm.md)
    "twm": {
        "paper": (76.6, "58.2 s per update x 1.32 updates per agent step at load ~7: docs/twm.md"),
        "small": (0.79, "3.14 s per update every 4 agent steps at load ~6: docs/twm.md"),
        "tiny": (0.02, "tests"),
    },
    "random": {"default": (0.001, "environment-bound")},
}

# DreamerV3: (seconds per update, where from) per size preset.
DREAMER_UPDATE: dict[str, tuple[float, str]] = {
    "tiny": (0.05, "tests"),
    "size1m": (1.1, "measured: docs/dreamerv3.md"),
    "xs": (1.22, "measured: docs/dreamerv3.md"),
    "size12m": (8.0, "extrapolated from XS: docs/dreamerv3.md"),
}


# DreamerV2: (seconds per update, seconds per action, where from) per (preset, batch_size, deter).
DREAMERV2_UPDATE: dict[tuple[str, int, int], tuple[float, float, str]] = {
    ("paper", 16, 200): (37.0, 0.027, "measured at load 10: docs/dreamerv2.md"),
    ("tiny", 4, 16): (0.05, 0.002, "tests"),
}


class Estimate(NamedTuple):
    seconds: float
    per_step: float  # seconds per agent step
    basis: str


def _as_dict(config: Any) -> Mapping[str, Any]:
    if dataclasses.is_dataclass(config):
        return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return dict(config or {})


def estimate(method: str, config: Any, agent_steps: int) -> Estimate | None:
    """Estimated CPU wall time of `agent_steps` more steps of `method` with its resolved `config` (None: no figure)."""
    cfg = _as_dict(config)
    preset = str(cfg.get("preset", "default"))
    if method == "dreamerv3":
        if preset not in DREAMER_UPDATE:
            return None
        per_update, basis = DREAMER_UPDATE[preset]
        updates_per_step = float(cfg.get("train_ratio", 32.0)) / (int(cfg.get("batch_size", 16))
                                                                   * int(cfg.get("batch_length", 64)))
        per_step = per_update * updates_per_step
        basis = (f"{updates_per_step:.3g} updates per agent step (train_ratio {cfg.get('train_ratio')}) x "
                 f"{per_update:g} s per {preset} update ({basis})")
    elif method == "dreamerv2":
        key = (preset, int(cfg.get("batch_size", 0)), int(cfg.get("deter", 0)))
        if key not in DREAMERV2_UPDATE:
            return None
        per_update, per_action, source = DREAMERV2_UPDATE[key]
        updates_per_step = int(cfg.get("train_steps", 1)) / int(cfg.get("train_every", 1))
        per_step = per_update * updates_per_step + per_action
        basis = (f"{updates_per_step:.3g} updates per agent step x {per_update:g} s per {preset} update "
                 f"(batch {key[1]}, deter {key[2]}) + {per_action:g} s per action ({source})")
    else:
        figures = PER_STEP.get(method, {})
        if preset not in figures:
            return None
        per_step, source = figures[preset]
        basis = f"{per_step:g} s per agent step for {method} preset {preset} ({source})"
    return Estimate(per_step * max(0, int(agent_steps)), per_step, basis)


def human_time(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def gpu_scale_note(method: str, config: Any, agent_steps: int, device: str = "cpu",
                   threshold_hours: float = GPU_SCALE_HOURS) -> str | None:
    """The one-line note `wmbench run` prints at the start when `agent_steps` more steps on the CPU are estimated to
    take longer than `threshold_hours`; None on a GPU, below the threshold, or without a figure for the method."""
    if not str(device).startswith("cpu"):
        return None
    est = estimate(method, config, agent_steps)
    if est is None or est.seconds <= threshold_hours * 3600:
        return None
    return (f"GPU-scale run: {agent_steps:,} agent steps of {method} are estimated at {human_time(est.seconds)} on "
            f"this CPU ({est.basis}). Use --device cuda on a GPU machine, a smaller preset (--set preset=...), or "
            "--smoke / --steps N to try the pipeline first.")
