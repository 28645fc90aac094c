"""Minecraft adapter (minecraft_diamond@1) against a MineRL double with MineRL 0.4.4's spaces and step semantics.

Expected values come from DreamerV3's published task definition (25 actions, 12 milestones, +1 each once, 0.01 x
health change, 36,000-step episodes, jump held 10 steps, pitch within +-60 degrees) and from the double's own
state, never from the adapter's output. The live test needs MineRL (Java 8) and skips with the reason.
"""

import numpy as np
import pytest
from minerl_double import ITEMS, FakeMineRL

from wmbench import cli
from wmbench.envs import SuiteNotInstalled, make_env
from wmbench.envs import minecraft as mc
from wmbench.envs.wrappers import ContractEnv
from wmbench.protocols import load_protocol

PROTOCOL = load_protocol("minecraft_diamond@1")
A = {name: i for i, name in enumerate(mc.ACTION_NAMES)}


def make(**overrides):
    raw = FakeMineRL(size=tuple(PROTOCOL.env["size"]), kill_after=overrides.pop("kill_after", None))
    settings = {**dict(PROTOCOL.env), **overrides}
    return raw, mc.MinecraftDiamondEnv(raw, seed=0, **settings)


def test_protocol_fixes_dreamerv3_settings_and_the_published_unit():
    assert PROTOCOL.suite == "minecraft" and PROTOCOL.tasks == ("minecraft_diamond",)
    assert PROTOCOL.env["length"] == 36000 and PROTOCOL.env["break_speed"] == 100.0
    assert PROTOCOL.action_repeat == 1 and PROTOCOL.budget.step_unit == "env_steps"
    assert PROTOCOL.to_unit(PROTOCOL.budget.agent_steps) == 100_000_000
    from wmbench.results import published

    curves = published(protocol="minecraft_diamond")
    assert set(curves["step_unit"]) == {"env_steps"} and set(curves["task"]) == set(PROTOCOL.tasks)
    assert curves["env_step"].max() <= PROTOCOL.to_unit(PROTOCOL.budget.agent_steps)


def test_spaces_and_vector_layout():
    raw, env = make()
    assert env.action_space.n == 25 and len(set(mc.ACTION_NAMES)) == 25
    assert env.observation_space["image"].shape == (64, 64, 3)
    n_items = len(ITEMS) - 1  # log2 folded into log
    n_equip = len(ITEMS) + 1  # the enum's items + "other"
    assert env.observation_space["vector"].shape == (2 * n_items + n_equip + 3,)
    obs, info = env.reset(seed=3)
    assert raw.seeds == [3] and info["milestones"] == ()
    assert obs["image"].dtype == np.uint8 and obs["vector"].dtype == np.float32
    assert obs["vector"] in env.observation_space["vector"]
    lay = env.vector_layout
    assert obs["vector"][lay["equipped"]][env.equip_types.index("air")] == 1.0
    np.testing.assert_allclose(obs["vector"][lay["health"]], [1.0])  # life 20 / 20
    np.testing.assert_allclose(obs["vector"][lay["breath"]], [1.0])  # air 300 / 300


def test_every_action_sends_a_complete_minerl_action():
    raw, env = make()
    env.reset(seed=0)
    for i in range(env.action_space.n):
        env.step(i)
    assert len(raw.actions) == 25
    sent = dict(zip(mc.ACTION_NAMES, raw.actions, strict=True))
    assert sent["noop"]["craft"] == "none" and not sent["noop"]["attack"]
    np.testing.assert_array_equal(sent["turn_left"]["camera"], [0, -15])
    assert sent["craft_planks"]["craft"] == "planks"
    assert sent["craft_wooden_pickaxe"]["nearbyCraft"] == "wooden_pickaxe"
    assert sent["smelt_iron_ingot"]["nearbySmelt"] == "iron_ingot"
    assert sent["place_furnace"]["place"] == "furnace" and sent["equip_iron_pickaxe"]["equip"] == "iron_pickaxe"


def test_log2_counts_as_log_and_milestones_pay_once():
    raw, env = make()
    env.reset(seed=0)
    _, r1, *_ , info = env.step(A["attack"])  # log
    assert info["milestones"] == ("log",) and r1 == pytest.approx(1.0)
    _, r2, *_ = env.step(A["attack"])  # log2: still "log", no second reward
    obs, r3, *_ = env.step(A["craft_planks"])  # 2 logs -> planks
    assert r2 == 0.0 and r3 == pytest.approx(1.0)
    inv = obs["vector"][env.vector_layout["inventory"]]
    assert inv[env.items.index("log")] == 1 and inv[env.items.index("planks")] == 4
    _, r4, *_ = env.step(A["craft_planks"])  # more planks: no reward
    assert r4 == 0.0


def test_the_full_milestone_chain_earns_twelve():
    raw, env = make()
    raw.start_inventory = {}
    env.reset(seed=0)
    total, got = 0.0, []
    plan = ["attack"] * 3 + ["craft_planks"] * 3 + ["craft_stick", "craft_crafting_table", "craft_wooden_pickaxe",
            "equip_wooden_pickaxe"] + ["attack"] * 11 + ["craft_stick", "craft_stone_pickaxe", "equip_stone_pickaxe",
            "attack", "attack", "attack", "craft_furnace", "smelt_iron_ingot", "smelt_iron_ingot", "smelt_iron_ingot",
            "craft_stick", "craft_iron_pickaxe"]  # fmt: skip
    for name in plan:
        _, reward, terminated, truncated, info = env.step(A[name])
        total += reward
        got += info["milestones"]
        assert not (terminated or truncated)
    assert got == list(mc.MILESTONES[:-1])  # everything but the diamond, in order
    raw.inventory["diamond"] = 1  # the toy world has no diamonds to mine
    _, reward, *_, info = env.step(A["noop"])
    assert info["milestones"] == ("diamond",) and total + reward == pytest.approx(12.0)


def test_items_held_at_reset_earn_nothing_and_health_changes_are_rewarded():
    raw, env = make()
    raw.start_inventory = {"log": 5}
    obs, _ = env.reset(seed=0)
    assert obs["vector"][env.vector_layout["inventory_max"]][env.items.index("log")] == 5
    _, reward, *_ = env.step(A["attack"])
    assert reward == 0.0
    raw.damage(4.0)  # life 20 -> 16: health 1.0 -> 0.8
    _, reward, *_ = env.step(A["noop"])
    assert reward == pytest.approx(0.01 * (0.8 - 1.0))


def test_sticky_jump_and_pitch_limit():
    raw, env = make()
    env.reset(seed=0)
    env.step(A["jump"])
    for _ in range(12):
        env.step(A["noop"])
    jumps = [a["jump"] for a in raw.actions]
    assert jumps == [1] * 10 + [0] * 3 and all(a["forward"] for a in raw.actions[:10])
    raw.actions.clear()
    for _ in range(6):
        env.step(A["turn_down"])  # +15 each: 15, 30, 45, 60, then blocked at the +60 limit
    assert [float(a["camera"][0]) for a in raw.actions] == [15, 15, 15, 15, 0, 0]
    env.step(A["turn_up"])
    assert float(raw.actions[-1]["camera"][0]) == -15


def test_death_is_terminal_and_the_length_cap_truncates():
    raw, env = make(kill_after=3)
    env.reset(seed=0)
    results = [env.step(A["noop"])[2:4] for _ in range(3)]
    assert results == [(False, False), (False, False), (True, False)]
    raw, env = make(length=4)
    env.reset(seed=0)
    results = [env.step(A["noop"])[2:4] for _ in range(4)]
    assert results[-1] == (False, True) and results[:-1] == [(False, False)] * 3
    env.reset(seed=1)  # a new episode restarts the step count
    assert env.step(A["noop"])[2:4] == (False, False)


def test_contract_env_wraps_it():
    _, env = make()
    contract = ContractEnv(env, seed=0)
    first = contract.reset()
    assert first["is_first"] and set(first) >= {"image", "vector", "reward", "is_last", "is_terminal"}
    step = contract.step(contract.act_space.sample())
    assert not step["is_first"] and step["vector"].dtype == np.float32


def test_without_minerl_the_run_says_how_to_install(monkeypatch, capsys, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "minerl" else real(name, *a))
    with pytest.raises(SuiteNotInstalled, match="Java 8.*pip install minerl==0.4.4"):
        make_env(PROTOCOL, "minecraft_diamond", seed=0)
    code = cli.main(["run", "random", "minecraft_diamond@1", "--task", "minecraft_diamond", "--seed", "0",
                     "--smoke", "--root", str(tmp_path)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2 and "pip install minerl==0.4.4" in captured.err and "Traceback" not in captured.err


def test_live_minerl():
    try:
        mc.check_installed()
    except SuiteNotInstalled as e:
        pytest.skip(f"MineRL is not installed (needs Java 8 and a gradle build at install time): {e}")
    env = make_env(PROTOCOL, "minecraft_diamond", seed=0)
    step = env.reset()
    assert step["image"].shape == (64, 64, 3)
    for _ in range(5):
        step = env.step(env.act_space.sample())
    env.close()


def test_random_agent_smoke_run_on_the_double(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "minerl" else real(name, *a))
    monkeypatch.setitem(__import__("sys").modules, "minerl", __import__("types").ModuleType("minerl"))
    # The double's player dies every 300 steps, so a short run (--steps) ends episodes without the 36k-step cap.
    monkeypatch.setattr(mc, "_minerl_env", lambda size, break_speed: FakeMineRL(size=size, kill_after=300))
    code = cli.main(["run", "random", "minecraft_diamond@1", "--task", "minecraft_diamond", "--seed", "0",
                     "--steps", "700", "--root", str(tmp_path), "--no-progress"])  # fmt: skip
    assert code == 0
    rows = next(tmp_path.rglob("scores.csv")).read_text().splitlines()
    assert len(rows) == 3 and all(",env_steps," in r for r in rows[1:])  # two deaths in 700 steps
