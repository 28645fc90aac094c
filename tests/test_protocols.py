import dataclasses

import pytest

from wmbench.config import ConfigError, make_config
from wmbench.protocols import ProtocolError, list_protocols, load_protocol, parse_protocol


def test_all_shipped_protocols_load_and_hash_stably():
    ids = list_protocols()
    assert {"atari100k@1", "dmc_proprio@1", "dmc_vision@1", "dmc_vision@2"} <= set(ids)
    for pid in ids:
        p = load_protocol(pid)
        assert p.id == pid
        assert p.hash == load_protocol(pid).hash and len(p.hash) == 16


def test_atari100k_facts():
    p = load_protocol("atari100k@1")
    assert len(p.tasks) == 26 and p.action_repeat == 4
    assert p.to_unit(p.budget.agent_steps) == 400_000 and p.budget.step_unit == "frames"
    assert p.env["sticky_actions"] == 0.0 and p.env["life_loss_terminal"] is False


def test_atari200m_facts_are_dreamerv2s_and_its_published_curves_score():
    from wmbench.results import final_scores, published

    p = load_protocol("atari200m@1")
    assert len(p.tasks) == 55 and p.action_repeat == 4 and p.budget.step_unit == "frames"
    assert p.to_unit(p.budget.agent_steps) == 200_000_000
    # Machado et al. 2018 as DreamerV2 Sec. 4 runs it: sticky actions, full action space, no life information
    assert (p.env["sticky_actions"], p.env["full_action_space"], p.env["life_loss_terminal"]) == (0.25, True, False)
    assert p.env["grayscale"] is True and p.env["max_frames"] == 108_000
    rows = published(protocol="atari200m", source=p.reproduce.published_sources[0], method="dreamerv2")
    assert sorted(rows.task.unique()) == sorted(p.tasks)
    finals = final_scores(rows, p)
    assert finals.task.nunique() == 55 and finals.seed.nunique() >= 5 and finals.final.notna().all()


def test_latest_version_resolves():
    assert load_protocol("dmc_vision").version == 2


def _base():
    return {"name": "x", "version": 1, "suite": "fake", "tasks": ["vector_discrete"], "budget": {"agent_steps": 10}}


@pytest.mark.parametrize(
    "patch, match",
    [
        ({"bogus": 1}, "unknown key 'bogus'"),
        ({"version": "1"}, "version must be an integer"),
        ({"suite": "atary"}, "unknown suite 'atary'"),
        ({"tasks": ["vector_discrte"]}, "Did you mean: vector_discrete"),
        ({"env": {"max_step": 3}}, "Did you mean: max_steps"),
        ({"env": {"max_steps": "3"}}, "max_steps must be an integer"),
        ({"budget": {"agent_steps": 10, "step_unit": "frame"}}, "step_unit 'frame' not one of"),
        ({"score": {"rule": "best"}}, "score.rule 'best' not one of"),
    ],
)
def test_validation_names_field(patch, match):
    data = {**_base(), **patch}
    with pytest.raises(ProtocolError, match=match):
        parse_protocol(data, "t.toml")


def test_unknown_protocol_and_task_suggest():
    with pytest.raises(ProtocolError, match="Did you mean: atari100k@1"):
        load_protocol("atari100k@9")
    with pytest.raises(ProtocolError, match="Did you mean: ms_pacman"):
        load_protocol("atari100k@1").check_task("mspacman")


@dataclasses.dataclass(frozen=True)
class _Inner:
    depth: int = 2


@dataclasses.dataclass(frozen=True)
class _Cfg:
    lr: float = 1e-3
    units: tuple[int, ...] = (64, 64)
    use_x: bool = False
    inner: _Inner = _Inner()
    preset: str = "default"
    PRESETS = {"big": {"inner.depth": 8, "lr": 3e-4}}


def test_config_overrides_types_presets_and_errors():
    c = make_config(_Cfg, ["lr=0.5", "units=1,2,3", "use_x=true", "inner.depth=4"])
    assert c == _Cfg(lr=0.5, units=(1, 2, 3), use_x=True, inner=_Inner(4))
    c = make_config(_Cfg, ["inner.depth=3", "preset=big"])  # preset applies first
    assert c.inner.depth == 3 and c.lr == 3e-4 and c.preset == "big"
    with pytest.raises(ConfigError, match="Did you mean: inner.depth"):
        make_config(_Cfg, ["inner.dept=1"])
    with pytest.raises(ConfigError, match="expects an integer"):
        make_config(_Cfg, ["inner.depth=two"])
    with pytest.raises(ConfigError, match="unknown preset 'bigg'"):
        make_config(_Cfg, ["preset=bigg"])
