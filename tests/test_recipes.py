"""Recipes (wmbench.recipes): shipped files valid and published, errors that name the bad value, `--recipe` then
`--set` recorded in run.json, `recipe_differences`, and every shipped recipe building and updating at a tiny size."""

import json
import math
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import wmbench_baselines

from wmbench.cli import main
from wmbench.config import to_dict
from wmbench.info import method_rows
from wmbench.method import get_method
from wmbench.nn.networks import Norm
from wmbench.protocols import load_protocol
from wmbench.recipes import (
    RecipeError,
    load_recipe,
    parse_recipe,
    recipe_differences,
    recipe_dir,
    recipe_names,
    resolve_config,
)
from wmbench.results import published

SHIPPED = ["dreamerv3_2023_dmc_proprio@1", "dreamerv3_2024_atari100k@1"]

GOOD = """name = "{name}"
version = 1
method = "dreamerv3"
protocol = "fake@1"
sources = {sources}
origin = "test"
[config]
actor_grad_cont = "backprop"
{extra_key} = {extra_value}
[provenance]
actor_grad_cont = "test"
{extra_key} = "test"
"""


def _write(tmp_path: Path, name="t", sources='["dreamerv3_2023:dmcproprio_dreamerv3"]', extra_key="train_ratio",
           extra_value="16.0", text=None) -> Path:
    path = tmp_path / f"{name}@1.toml"
    path.write_text(text or GOOD.format(name=name, sources=sources, extra_key=extra_key, extra_value=extra_value))
    return path


def test_shipped_recipes_are_listed_and_name_published_sources():
    assert recipe_names("dreamerv3") == SHIPPED
    # beside the method's module, shipped as package data of wmbench_baselines (setup.py)
    assert recipe_dir("dreamerv3") == Path(wmbench_baselines.__file__).parent / "recipes" / "dreamerv3"
    assert "recipes/*/*.toml" in (Path(__file__).parents[1] / "setup.py").read_text()
    for name in SHIPPED:
        r = load_recipe("dreamerv3", name)
        assert r.id == name and len(r.hash) == 16
        for source in r.sources:  # the published table really holds runs of that source
            assert len(published(protocol=r.protocol.split("@")[0], source=source)) > 0
        assert set(r.provenance) == set(r.config)
    assert load_recipe("dreamerv3", "dreamerv3_2023_dmc_proprio").id == SHIPPED[0]  # bare name: highest version
    row = next(r for r in method_rows(True) if r[0] == "dreamerv3")
    assert all(name in row[-1] for name in SHIPPED)


def test_unknown_config_key_is_an_error_naming_it(tmp_path):
    path = _write(tmp_path, extra_key="train_ration")
    with pytest.raises(RecipeError, match=r"unknown config key 'train_ration'.*Did you mean: train_ratio"):
        parse_recipe(path)


def test_unknown_source_is_an_error_naming_it(tmp_path):
    path = _write(tmp_path, sources='["dreamerv3_2023:dmcproprio_dreamerv4"]')
    with pytest.raises(RecipeError, match=r"source 'dreamerv3_2023:dmcproprio_dreamerv4' does not exist"):
        parse_recipe(path)


def test_other_recipe_errors(tmp_path):
    text = GOOD.format(name="t", sources='["dreamerv3_2023:dmcproprio_dreamerv3"]', extra_key="train_ratio",
                       extra_value="16.0")
    with pytest.raises(RecipeError, match="no \\[provenance\\] entry"):
        parse_recipe(_write(tmp_path, text=text.replace('train_ratio = "test"\n', "")))
    with pytest.raises(RecipeError, match="is named 'u@1.toml'"):
        parse_recipe(_write(tmp_path, name="u", text=text))
    with pytest.raises(RecipeError, match="expects a number"):
        parse_recipe(_write(tmp_path, extra_value='"fast"'))
    with pytest.raises(RecipeError, match="no recipe 'dreamerv3_2023_dmc'.*Did you mean"):
        load_recipe("dreamerv3", "dreamerv3_2023_dmc")
    cls = get_method("dreamerv3")
    with pytest.raises(RecipeError, match="on protocol dmc_proprio@1, not atari100k@1"):
        resolve_config(cls, load_protocol("atari100k@1"), (), SHIPPED[0])


def test_recipe_then_set_is_applied_and_recorded_in_run_json(tmp_path, capsys):
    path = _write(tmp_path)
    argv = ["run", "dreamerv3", "fake@1", "--task", "vector_discrete", "--seed", "0", "--root", str(tmp_path / "runs"),
            "--recipe", str(path), "--set", "preset=tiny", "--set", "train_ratio=4", "--steps", "40", "--no-progress"]
    assert main(argv) == 0
    info = json.loads(next((tmp_path / "runs").rglob("run.json")).read_text())
    assert info["recipe"]["name"] == "t@1" and info["recipe"]["file"] == "t@1.toml"
    assert info["recipe"]["hash"] == parse_recipe(path).hash
    assert info["recipe"]["set"] == ["preset=tiny", "train_ratio=4"]
    assert info["config"]["actor_grad_cont"] == "backprop"  # from the recipe
    assert info["config"]["train_ratio"] == 4.0  # --set after the recipe's 16
    assert info["config"]["deter"] == 64  # --set preset=tiny shrinks the recipe's size
    diff = recipe_differences(info["config"], parse_recipe(path))
    assert diff["train_ratio"] == (4.0, 16.0) and "actor_grad_cont" not in diff


def test_recipe_differences_names_differing_keys():
    cls = get_method("dreamerv3")
    r = load_recipe("dreamerv3", SHIPPED[0])
    config, record = resolve_config(cls, load_protocol(r.protocol), (), r.id)
    assert record["name"] == r.id and record["set"] == []
    assert recipe_differences(to_dict(config), r) == {}
    assert recipe_differences(config, SHIPPED[0], method="dreamerv3") == {}
    flat = to_dict(config)
    assert recipe_differences({**flat, "compile": True}, r) == {}  # RECIPE_IGNORED
    changed = {**flat, "actor_grad_cont": "reinforce", "train_ratio": 128.0}
    assert recipe_differences(changed, r) == {"actor_grad_cont": ("reinforce", "backprop"),
                                              "train_ratio": (128.0, 512.0)}
    default, _ = resolve_config(cls, load_protocol(r.protocol), ())  # no recipe: many keys differ
    assert {"rssm_core", "norm", "deter", "actor_grad_cont"} <= set(recipe_differences(to_dict(default), r))
    missing = dict(flat)
    del missing["prefill"]  # e.g. a run.json written before the key existed
    assert recipe_differences(missing, r) == {"prefill": (None, 1024)}


def _spaces(protocol: str):
    if protocol.startswith("dmc"):
        return {"vector": gymnasium.spaces.Box(-np.inf, np.inf, (5,), np.float32)}, gymnasium.spaces.Box(-1, 1, (1,), np.float32)
    return {"image": gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)}, gymnasium.spaces.Discrete(4)


@pytest.mark.parametrize("name", SHIPPED)
def test_each_recipe_builds_and_updates_at_tiny_size(name):
    cls = get_method("dreamerv3")
    r = load_recipe("dreamerv3", name)
    config, _ = resolve_config(cls, load_protocol(r.protocol), ["preset=tiny", "enc_units=32", "enc_layers=1",
                                                                 "batch_length=8", "imag_horizon=3"], name)
    for key in ("rssm_core", "initial", "optimizer", "contdisc", "actor_grad_cont", "loss_dyn", "norm", "bias",
                "norm_eps", "init_fan"):
        assert getattr(config, key) == r.config[key]
    obs, act = _spaces(r.protocol)
    agent = cls(obs, act, config, seed=0)
    norms = [m for m in agent.nets.modules() if isinstance(m, Norm)]
    assert norms and all(m.eps == r.config["norm_eps"] and m.kind == r.config["norm"] for m in norms)
    rng = np.random.default_rng(0)
    B, T = config.batch_size, config.batch_length + config.replay_context
    data = {"reward": rng.normal(size=(B, T)).astype(np.float32), "is_first": np.zeros((B, T), bool),
            "is_last": np.zeros((B, T), bool), "is_terminal": rng.uniform(size=(B, T)) < 0.1}
    data["is_first"][:, 0] = True
    if "vector" in obs:
        data["vector"] = rng.normal(size=(B, T, 5)).astype(np.float32)
        data["action"] = rng.uniform(-1, 1, (B, T, 1)).astype(np.float32)
    else:
        data["image"] = rng.integers(0, 256, (B, T, 64, 64, 3), dtype=np.uint8)
        data["action"] = rng.integers(0, 4, (B, T))
    if config.replay_context:  # latents stored with the steps (none yet: the initial state)
        data["ctx_deter"] = np.full((B, T, agent.rssm.deter), np.nan, np.float16)
        data["ctx_stoch"] = np.full((B, T, agent.rssm.stoch_dim), np.nan, np.float16)
    metrics = agent.train_batch(data)
    assert all(math.isfinite(v) for v in metrics.values())
    for term in ("loss/dyn", "loss/rep", "loss/actor", "loss/critic_return", "loss/critic_slowreg"):
        assert term in metrics
