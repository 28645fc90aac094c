"""Minecraft adapter (MineRL 0.4.4): the DreamerV3 "Minecraft Diamond" task as a gymnasium env.

The mapping follows DreamerV3 (Hafner et al. 2023, Sec. "Minecraft" and appendix; danijar/dreamerv3
`embodied/envs/minecraft.py`, `minecraft_base.py`, `minecraft_flat.py`), written here from those facts:

- World: a MineRL `EnvSpec` with a default (random) survival world, passage of time and mob spawning on, the block
  break speed multiplied by `break_speed` (100: one hit breaks a block), no MineRL reward; the episode ends when the
  player dies (terminal) or after `length` agent steps (truncation, not terminal).
- Observation (`Dict`): `image` = the first-person view rendered at `size` (64x64 RGB); `vector` (float32) = the
  concatenation, in this order, of
    inventory counts of every item in MineRL's item list except `log2` (whose count is added to `log`),
    the running maximum of those counts since the episode started,
    a one-hot of the item type in the main hand (MineRL's `equipped_items.mainhand.type` values),
    health = life / 20, hunger = food / 20, breath = air / 300.
  `VECTOR_LAYOUT` names the slices.
- Actions: `Discrete(25)`, the 12 basic actions and 13 crafting actions of `ACTIONS` (names as DreamerV3's); every
  other MineRL key takes its no-op value. Movement keys are held for `action_repeat - 1` further MineRL steps
  (repeat is 1 in the protocol). A jump is held for `sticky_jump` steps (jump + forward), attack for `sticky_attack`
  steps (DreamerV3 turns sticky attack off whenever `break_speed` != 1), and a camera pitch change that would leave
  `pitch_limit` degrees is dropped.
- Reward: +1 the first time in an episode each of the 12 milestone items (`MILESTONES`: log ... diamond) appears in
  the inventory (counts present at reset do not count), plus 0.01 x the change of health (life / 20). A full episode
  return is at most 12 plus the bounded health term.

MineRL is driven through its own (old gym) API: `reset() -> obs`, `step(action) -> (obs, reward, done, info)` with
nested dict observations. `MinecraftDiamondEnv` takes that env object, so tests drive it with a double that has
MineRL's spaces and step semantics (`tests/minerl_double.py`); `make` builds the real one.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import gymnasium
import numpy as np

from wmbench.envs import SuiteNotInstalled

ENV_SCHEMA = {
    "size": tuple[int, ...],
    "action_repeat": int,
    "break_speed": float,
    "length": int,
    "sticky_attack": int,
    "sticky_jump": int,
    "pitch_limit": tuple[int, ...],
    "health_reward": float,
}
TASKS = frozenset({"minecraft_diamond"})
INSTALL_HINT = (
    "MineRL 0.4.4 needs a Java 8 JDK and network access at install time (it builds Minecraft with gradle): "
    "1) install JDK 8 (apt-get install openjdk-8-jdk on Ubuntu <= 22.04, or Adoptium Temurin 8) and put it first "
    "on PATH / JAVA_HOME; 2) pip install minerl==0.4.4; 3) on a headless machine apt-get install xvfb and run "
    "wmbench under xvfb-run"
)

DEFAULTS: dict[str, Any] = {
    "size": (64, 64),
    "action_repeat": 1,
    "break_speed": 100.0,
    "length": 36000,
    "sticky_attack": 0,
    "sticky_jump": 10,
    "pitch_limit": (-60, 60),
    "health_reward": 0.01,
}

# (name, MineRL action entries); all other keys stay at their no-op value. Camera is (pitch, yaw) in degrees.
ACTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("noop", {}),
    ("attack", {"attack": 1}),
    ("turn_up", {"camera": (-15.0, 0.0)}),
    ("turn_down", {"camera": (15.0, 0.0)}),
    ("turn_left", {"camera": (0.0, -15.0)}),
    ("turn_right", {"camera": (0.0, 15.0)}),
    ("forward", {"forward": 1}),
    ("back", {"back": 1}),
    ("left", {"left": 1}),
    ("right", {"right": 1}),
    ("jump", {"jump": 1, "forward": 1}),
    ("place_dirt", {"place": "dirt"}),
    ("craft_planks", {"craft": "planks"}),
    ("craft_stick", {"craft": "stick"}),
    ("craft_crafting_table", {"craft": "crafting_table"}),
    ("place_crafting_table", {"place": "crafting_table"}),
    ("craft_wooden_pickaxe", {"nearbyCraft": "wooden_pickaxe"}),
    ("craft_stone_pickaxe", {"nearbyCraft": "stone_pickaxe"}),
    ("craft_iron_pickaxe", {"nearbyCraft": "iron_pickaxe"}),
    ("equip_stone_pickaxe", {"equip": "stone_pickaxe"}),
    ("equip_wooden_pickaxe", {"equip": "wooden_pickaxe"}),
    ("equip_iron_pickaxe", {"equip": "iron_pickaxe"}),
    ("craft_furnace", {"nearbyCraft": "furnace"}),
    ("place_furnace", {"place": "furnace"}),
    ("smelt_iron_ingot", {"nearbySmelt": "iron_ingot"}),
)
ACTION_NAMES = tuple(name for name, _ in ACTIONS)
MILESTONES = (
    "log", "planks", "stick", "crafting_table", "wooden_pickaxe", "cobblestone",
    "stone_pickaxe", "iron_ore", "furnace", "iron_ingot", "iron_pickaxe", "diamond",
)  # fmt: skip
# Movement keys a repeated step keeps pressing (DreamerV3 minecraft_base: the "following" action).
HELD_KEYS = ("attack", "forward", "back", "left", "right")


def check_installed() -> None:
    if importlib.util.find_spec("minerl") is None:
        raise SuiteNotInstalled(f"suite 'minecraft' needs MineRL, which is not installed. Install: {INSTALL_HINT}")
    try:
        import minerl  # noqa: F401
    except Exception as e:  # a half-built MineRL (no Minecraft jar, no Java) fails at import
        raise SuiteNotInstalled(f"MineRL is installed but cannot be imported ({e}). Install: {INSTALL_HINT}") from e


def _settings(protocol: Any) -> dict[str, Any]:
    from wmbench.protocols import ProtocolError

    cfg = {**DEFAULTS, **dict(protocol.env)}
    cfg["size"] = tuple(cfg["size"])
    cfg["pitch_limit"] = tuple(cfg["pitch_limit"])
    where = f"protocol {getattr(protocol, 'id', '?')}: env"
    if len(cfg["size"]) != 2 or min(cfg["size"]) <= 0:
        raise ProtocolError(f"{where}.size must be [height, width] of positive integers, got {list(cfg['size'])}")
    if len(cfg["pitch_limit"]) != 2 or cfg["pitch_limit"][0] >= cfg["pitch_limit"][1]:
        raise ProtocolError(f"{where}.pitch_limit must be [low, high] degrees with low < high")
    for key in ("action_repeat", "length"):
        if cfg[key] < 1:
            raise ProtocolError(f"{where}.{key} must be >= 1, got {cfg[key]}")
    for key in ("sticky_attack", "sticky_jump"):
        if cfg[key] < 0:
            raise ProtocolError(f"{where}.{key} must be >= 0, got {cfg[key]}")
    if cfg["break_speed"] <= 0:
        raise ProtocolError(f"{where}.break_speed must be positive, got {cfg['break_speed']}")
    return cfg


def _get(obs: dict, path: str) -> Any:
    for key in path.split("/"):
        obs = obs[key]
    return obs


def _noop(action_space: Any) -> dict[str, Any]:
    """MineRL's no-op action: its Dict space's own `noop()` when present, else built from the entry types."""
    if hasattr(action_space, "noop"):
        return dict(action_space.noop())
    noop: dict[str, Any] = {}
    for key, space in action_space.spaces.items():
        if hasattr(space, "values"):  # MineRL Enum
            noop[key] = "none"
        elif key == "camera":
            noop[key] = np.zeros(2, np.float32)
        else:
            noop[key] = 0
    return noop


class MinecraftDiamondEnv(gymnasium.Env):
    """DreamerV3's Minecraft Diamond on top of a MineRL env object (old gym API, nested dict observations)."""

    metadata = {"render_modes": []}

    def __init__(self, minerl_env: Any, seed: int = 0, **settings: Any):
        cfg = {**DEFAULTS, **settings}
        self.raw = minerl_env
        self.repeat = int(cfg["action_repeat"])
        self.length = int(cfg["length"])
        self.sticky_attack = int(cfg["sticky_attack"])
        self.sticky_jump = int(cfg["sticky_jump"])
        self.pitch_limit = tuple(float(v) for v in cfg["pitch_limit"])
        self.health_scale = float(cfg["health_reward"])
        height, width = cfg["size"]
        self._seed = int(seed)

        obs_spaces = minerl_env.observation_space.spaces
        items = list(obs_spaces["inventory"].spaces)
        for needed in (*MILESTONES, "log2"):
            if needed not in items:
                raise ValueError(f"MineRL inventory observation lacks item {needed!r}; items: {items}")
        self.items = tuple(i for i in items if i != "log2")
        self.equip_types = tuple(str(v) for v in obs_spaces["equipped_items"]["mainhand"]["type"].values)
        n_items, n_equip = len(self.items), len(self.equip_types)
        self.vector_layout = {
            "inventory": slice(0, n_items),
            "inventory_max": slice(n_items, 2 * n_items),
            "equipped": slice(2 * n_items, 2 * n_items + n_equip),
            "health": slice(2 * n_items + n_equip, 2 * n_items + n_equip + 1),
            "hunger": slice(2 * n_items + n_equip + 1, 2 * n_items + n_equip + 2),
            "breath": slice(2 * n_items + n_equip + 2, 2 * n_items + n_equip + 3),
        }
        self.observation_space = gymnasium.spaces.Dict(
            {
                "image": gymnasium.spaces.Box(0, 255, (height, width, 3), np.uint8),
                "vector": gymnasium.spaces.Box(0.0, np.inf, (2 * n_items + n_equip + 3,), np.float32),
            }
        )
        self.action_space = gymnasium.spaces.Discrete(len(ACTIONS))
        self._noop = _noop(minerl_env.action_space)
        self._actions = []
        for _name, entries in ACTIONS:
            action = {**self._noop, **entries}
            if "camera" in entries:
                action["camera"] = np.array(entries["camera"], np.float32)
            self._actions.append(action)
        self._milestone_index = np.array([self.items.index(m) for m in MILESTONES])
        self._inventory_max = np.zeros(n_items, np.float32)
        self._start_inventory = np.zeros(n_items, np.float32)
        self._health = 1.0
        self._steps = 0
        self._pitch = 0.0
        self._attack_left = 0
        self._jump_left = 0

    # -- observations -----------------------------------------------------------------------------------------
    def _inventory(self, obs: dict) -> np.ndarray:
        inv = obs["inventory"]
        counts = np.array([float(inv[i]) for i in self.items], np.float32)
        counts[self.items.index("log")] += float(inv["log2"])
        return counts

    def _observe(self, obs: dict, inventory: np.ndarray) -> dict[str, np.ndarray]:
        equipped = np.zeros(len(self.equip_types), np.float32)
        held = str(_get(obs, "equipped_items/mainhand/type"))
        # MineRL reports items outside its enum as "other"; both are in the enum values.
        equipped[self.equip_types.index(held if held in self.equip_types else "other")] = 1.0
        life = obs["life_stats"]
        vector = np.concatenate(
            [
                inventory,
                self._inventory_max,
                equipped,
                np.array(
                    [float(life["life"]) / 20.0, float(life["food"]) / 20.0, float(life["air"]) / 300.0], np.float32
                ),
            ]
        ).astype(np.float32)
        return {"image": np.asarray(obs["pov"], np.uint8), "vector": vector}

    # -- gymnasium API -----------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None and hasattr(self.raw, "seed"):
            self.raw.seed(int(seed))  # MineRL seeds the world generator for the next reset
        obs = self.raw.reset()
        inventory = self._inventory(obs)
        self._start_inventory = inventory.copy()
        self._inventory_max = inventory.copy()
        self._health = float(obs["life_stats"]["life"]) / 20.0
        self._steps = 0
        self._pitch = 0.0
        self._attack_left = self._jump_left = 0
        return self._observe(obs, inventory), {"milestones": ()}

    def _shape(self, index: int) -> dict[str, Any]:
        """The MineRL action of a discrete index, with DreamerV3's sticky attack/jump and pitch limit."""
        action = dict(self._actions[int(index)])
        if self.sticky_attack:
            if action["attack"]:
                self._attack_left = self.sticky_attack
            if self._attack_left > 0:
                action["attack"], action["jump"] = 1, 0
                self._attack_left -= 1
        if self.sticky_jump:
            if action["jump"]:
                self._jump_left = self.sticky_jump
            if self._jump_left > 0:
                action["jump"], action["forward"] = 1, 1
                self._jump_left -= 1
        pitch = float(action["camera"][0])
        if pitch:
            low, high = self.pitch_limit
            if not low <= self._pitch + pitch <= high:
                action["camera"] = np.array([0.0, action["camera"][1]], np.float32)
                pitch = 0.0
            self._pitch += pitch
        return action

    def step(self, action: Any):
        if not 0 <= int(action) < len(ACTIONS):
            raise ValueError(f"action {action!r} outside Discrete({len(ACTIONS)})")
        first = self._shape(action)
        following = dict(self._noop)
        for key in HELD_KEYS:
            following[key] = first[key]
        done, info = False, {}
        for act in [first] + [following] * (self.repeat - 1):
            obs, _, done, info = self.raw.step(act)
            if done or (info and "error" in info):
                break
        self._steps += 1
        inventory = self._inventory(obs)
        new = (self._inventory_max[self._milestone_index] == 0) & (inventory[self._milestone_index] > 0)
        milestones = tuple(m for m, hit in zip(MILESTONES, new, strict=True) if hit)
        self._inventory_max = np.maximum(self._inventory_max, inventory)
        health = float(obs["life_stats"]["life"]) / 20.0
        reward = float(len(milestones)) + self.health_scale * (health - self._health)
        self._health = health
        error = bool(info) and "error" in info
        terminated = bool(done) and not error
        # A MineRL error (lost connection to Minecraft) ends the episode without a real terminal state.
        truncated = not terminated and (error or self._steps >= self.length)
        out_info = {"milestones": milestones}
        if error:
            out_info["minerl_error"] = str(info["error"])
        return self._observe(obs, inventory), reward, terminated, truncated, out_info

    def close(self) -> None:
        if self.raw is not None:
            self.raw.close()
            self.raw = None


def _minerl_env(size: tuple[int, int], break_speed: float) -> Any:
    """The MineRL world of DreamerV3's Minecraft tasks (needs MineRL 0.4.4; untested here: no Java 8)."""
    from minerl.herobraine.env_spec import EnvSpec
    from minerl.herobraine.hero import handler, handlers, mc
    from minerl.herobraine.hero.mc import INVERSE_KEYMAP

    class BreakSpeed(handler.Handler):
        def __init__(self, multiplier: float):
            self.multiplier = multiplier

        def to_string(self) -> str:
            return f"break_speed({self.multiplier})"

        def xml_template(self) -> str:
            return "<BreakSpeedMultiplier>{{multiplier}}</BreakSpeedMultiplier>"

    class DiamondSpec(EnvSpec):
        def __init__(self):
            super().__init__(name="WmbenchMinecraftDiamond-v1")

        def create_agent_start(self):
            return [BreakSpeed(break_speed)]

        def create_agent_handlers(self):
            return []

        def create_server_world_generators(self):
            return [handlers.DefaultWorldGenerator(force_reset=True)]

        def create_server_quit_producers(self):
            return [handlers.ServerQuitWhenAnyAgentFinishes()]

        def create_server_initial_conditions(self):
            return [
                handlers.TimeInitialCondition(allow_passage_of_time=True, start_time=0),
                handlers.SpawningInitialCondition(allow_spawning=True),
            ]

        def create_observables(self):
            return [
                handlers.POVObservation(tuple(size)),
                handlers.FlatInventoryObservation(mc.ALL_ITEMS),
                handlers.EquippedItemObservation(mc.ALL_ITEMS, _default="air", _other="other"),
                handlers.ObservationFromCurrentLocation(),
                handlers.ObservationFromLifeStats(),
            ]

        def create_actionables(self):
            enum = {"_other": "none", "_default": "none"}
            keys = [handlers.KeybasedCommandAction(k, INVERSE_KEYMAP[k]) for k in
                    ("forward", "back", "left", "right", "jump", "sneak", "attack")]  # fmt: skip
            return [
                *keys,
                handlers.CameraAction(),
                handlers.PlaceBlock(["none", *mc.ALL_ITEMS], **enum),
                handlers.EquipAction(["none", *mc.ALL_ITEMS], **enum),
                handlers.CraftAction(["none", *mc.ALL_ITEMS], **enum),
                handlers.CraftNearbyAction(["none", *mc.ALL_ITEMS], **enum),
                handlers.SmeltItemNearby(["none", *mc.ALL_ITEMS], **enum),
            ]

        def is_from_folder(self, folder):
            return folder == "none"

        def get_docstring(self):
            return "wmbench minecraft_diamond (DreamerV3 Minecraft Diamond world)"

        def determine_success_from_rewards(self, rewards):
            return True

        def create_rewardables(self):
            return []

        def create_server_decorators(self):
            return []

        def create_mission_handlers(self):
            return []

        def create_monitors(self):
            return []

    return DiamondSpec().make()


def make(protocol: Any, task: str, seed: int) -> gymnasium.Env:
    cfg = _settings(protocol)
    return MinecraftDiamondEnv(_minerl_env(cfg["size"], cfg["break_speed"]), seed=seed, **cfg)
