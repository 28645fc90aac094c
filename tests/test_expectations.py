"""CPU-time estimates and the 'GPU-scale run' note (wmbench.expectations), from each method's resolved config."""

from __future__ import annotations

import pytest

from wmbench import expectations
from wmbench.method import get_method, method_config
from wmbench.protocols import load_protocol


def _config(method: str, protocol: str, *overrides: str):
    return method_config(get_method(method), load_protocol(protocol), list(overrides))


def test_dreamerv3_at_atari100k_budget_is_gpu_scale_and_says_why() -> None:
    p = load_protocol("atari100k@1")
    config = _config("dreamerv3", "atari100k@1", "preset=size12m")
    note = expectations.gpu_scale_note("dreamerv3", config, p.budget.agent_steps)
    assert note is not None and note.startswith("GPU-scale run: 100,000 agent steps of dreamerv3")
    assert "--device cuda" in note and "train_ratio 1024" in note  # the protocol default enters the estimate
    # 1024 / (16 x 64) = 1 update per agent step x 8 s per size12m update.
    est = expectations.estimate("dreamerv3", config, p.budget.agent_steps)
    assert est.per_step == pytest.approx(8.0) and "days" in expectations.human_time(est.seconds)
    assert expectations.gpu_scale_note("dreamerv3", config, p.budget.agent_steps, device="cuda") is None


def test_short_runs_and_unmeasured_methods_get_no_note() -> None:
    pets = _config("pets", "control@1", "preset=cpu")
    assert expectations.gpu_scale_note("pets", pets, 3000) is None  # ~6.5 min
    assert expectations.estimate("pets", pets, 3000).seconds == pytest.approx(390)
    smoke = _config("dreamerv3", "atari100k@1", "preset=tiny")
    assert expectations.gpu_scale_note("dreamerv3", smoke, 2000) is None
    assert expectations.estimate("mbmf", _config("mbmf", "control@1"), 3000) is None  # not timed: no guess
    assert expectations.gpu_scale_note("random", _config("random", "atari100k@1"), 100_000) is None


def test_pets_paper_preset_on_the_full_budget_is_gpu_scale() -> None:
    note = expectations.gpu_scale_note("pets", _config("pets", "control@1"), 3000)  # default preset: paper
    assert note and "pets preset paper" in note


def test_dreamerv2_paper_on_dmc_vision_is_gpu_scale_and_atari_settings_are_unmeasured() -> None:
    dmc = _config("dreamerv2", "dmc_vision@1")  # the protocol's defaults: batch 16 x 50, deter 200, train_every 5
    est = expectations.estimate("dreamerv2", dmc, 5000)
    assert est.per_step == pytest.approx(37.0 / 5 + 0.027) and "0.2 updates per agent step" in est.basis
    assert "GPU-scale" in expectations.gpu_scale_note("dreamerv2", dmc, 500_000)
    assert expectations.estimate("dreamerv2", _config("dreamerv2", "atari200m@1"), 1000) is None  # 50 x 50, deter 600


def test_twm_paper_is_gpu_scale_and_its_tiny_smoke_is_not() -> None:
    paper = _config("twm", "atari100k@1")  # default preset: paper
    note = expectations.gpu_scale_note("twm", paper, 100_000)
    assert note and "twm preset paper" in note
    assert expectations.gpu_scale_note("twm", _config("twm", "atari100k@1", "preset=tiny"), 2000) is None
