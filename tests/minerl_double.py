"""A test double of a MineRL 0.4.4 environment (DreamerV3's Minecraft world) for adapter tests without Java.

What is copied from MineRL exactly (minerl/herobraine/hero/handlers + spaces, 0.4.4):
- the old gym API: `reset() -> obs`, `step(action) -> (obs, reward, done, info)`, `seed(s)`, `close()`;
  stepping after `done` is an error;
- nested dict observations: `pov` uint8 (H, W, 3); `inventory` {item: int64 scalar, Box(0, 2304, ())};
  `equipped_items` {`mainhand`: {`type`: an Enum value (str), `damage`, `maxDamage`}}; `location_stats`
  {xpos, ypos, zpos, pitch, yaw}; `life_stats` {life 0-20, food 0-20, saturation, xp, is_alive, air 0-300, score};
- the action Dict: forward/back/left/right/jump/sneak/attack Discrete(2), camera Box(-180, 180, (2,)), and
  place/equip/craft/nearbyCraft/nearbySmelt Enum(["none", *items]), with `action_space.noop()`;
- the observation Enum of the main hand has the item values plus "air" (default) and "other".

What is not MineRL: the item list is a short subset of `mc.ALL_ITEMS` (with every item the task uses, `log2` and
`air`), and the world is a scripted toy: attack adds a log (alternately `log` and `log2`), or a cobblestone when a
wooden pickaxe is in hand, or iron ore with a stone pickaxe; craft/nearbyCraft/nearbySmelt apply Minecraft's
recipes when the inventory holds the ingredients; `damage(n)` hurts the player; `kill_after` ends the episode.
"""

from __future__ import annotations

import gymnasium
import numpy as np

ITEMS = (
    "air", "dirt", "log", "log2", "planks", "stick", "crafting_table", "wooden_pickaxe", "cobblestone",
    "stone_pickaxe", "iron_ore", "furnace", "iron_ingot", "iron_pickaxe", "diamond", "coal", "torch",
)  # fmt: skip
RECIPES = {  # item: (ingredients, count made); Minecraft 1.11 recipes
    "planks": ({"log": 1}, 4),
    "stick": ({"planks": 2}, 4),
    "crafting_table": ({"planks": 4}, 1),
    "wooden_pickaxe": ({"planks": 3, "stick": 2}, 1),
    "stone_pickaxe": ({"cobblestone": 3, "stick": 2}, 1),
    "iron_pickaxe": ({"iron_ingot": 3, "stick": 2}, 1),
    "furnace": ({"cobblestone": 8}, 1),
    "iron_ingot": ({"iron_ore": 1}, 1),
}


class Enum(gymnasium.spaces.Discrete):
    """MineRL's Enum space: a Discrete over string `values`; samples and no-ops are the strings."""

    def __init__(self, *values: str, default: str | None = None):
        super().__init__(len(values))
        self.values = np.array(values)
        self.default = default if default is not None else values[0]

    def sample(self, mask=None, probability=None) -> str:
        return str(self.values[super().sample()])

    def no_op(self) -> str:
        return self.default


class ActionDict(gymnasium.spaces.Dict):
    def noop(self) -> dict:
        out = {}
        for key, space in self.spaces.items():
            if isinstance(space, Enum):
                out[key] = space.no_op()
            elif key == "camera":
                out[key] = np.zeros(2, np.float32)
            else:
                out[key] = 0
        return out


class FakeMineRL:
    def __init__(self, size=(64, 64), kill_after: int | None = None):
        self.size = tuple(size)
        self.kill_after = kill_after
        box = gymnasium.spaces.Box
        self.observation_space = gymnasium.spaces.Dict(
            {
                "pov": box(0, 255, (*self.size, 3), np.uint8),
                "inventory": gymnasium.spaces.Dict({i: box(0, 2304, (), np.int64) for i in ITEMS}),
                "equipped_items": gymnasium.spaces.Dict(
                    {
                        "mainhand": gymnasium.spaces.Dict(
                            {
                                "type": Enum(*ITEMS, "other", default="air"),
                                "damage": box(-1, 1562, (), np.int64),
                                "maxDamage": box(-1, 1562, (), np.int64),
                            }
                        )
                    }
                ),
                "location_stats": gymnasium.spaces.Dict(
                    {k: box(-640000.0, 640000.0, (), np.float64) for k in ("xpos", "ypos", "zpos", "pitch", "yaw")}
                ),
                "life_stats": gymnasium.spaces.Dict(
                    {
                        "life": box(0, 20, (), np.float64),
                        "food": box(0, 20, (), np.int64),
                        "saturation": box(0, 20, (), np.float64),
                        "xp": box(0, 2**31 - 1, (), np.int64),
                        "is_alive": gymnasium.spaces.Discrete(2),
                        "air": box(0, 300, (), np.int64),
                        "score": box(0, 2**31 - 1, (), np.int64),
                    }
                ),
            }
        )
        keys = {k: gymnasium.spaces.Discrete(2) for k in ("forward", "back", "left", "right", "jump", "sneak", "attack")}
        enums = {k: Enum("none", *ITEMS) for k in ("place", "equip", "craft", "nearbyCraft", "nearbySmelt")}
        self.action_space = ActionDict({**keys, "camera": box(-180.0, 180.0, (2,), np.float32), **enums})
        self.actions: list[dict] = []
        self.seeds: list[int] = []
        self.start_inventory: dict[str, int] = {}
        self._done = True
        self._rng = np.random.default_rng(0)

    # -- MineRL API --------------------------------------------------------------------------------------------
    def seed(self, seed: int) -> None:
        self.seeds.append(int(seed))
        self._rng = np.random.default_rng(seed)

    def reset(self) -> dict:
        self.inventory = {i: 0 for i in ITEMS}
        self.inventory.update(self.start_inventory)
        self.hand = "air"
        self.life, self.food, self.air = 20.0, 20, 300
        self.pitch = 0.0
        self.t = 0
        self._done = False
        self._logs = 0
        return self._obs()

    def step(self, action: dict):
        if self._done:
            raise RuntimeError("step() after done: MineRL needs reset()")
        assert set(action) == set(self.action_space.spaces), sorted(action)
        self.actions.append({k: (np.array(v).copy() if k == "camera" else v) for k, v in action.items()})
        self.t += 1
        self.pitch += float(action["camera"][0])
        inv = self.inventory
        if action["attack"]:
            if self.hand == "stone_pickaxe":
                inv["iron_ore"] += 1
            elif self.hand == "wooden_pickaxe":
                inv["cobblestone"] += 1
            else:
                inv["log2" if self._logs % 2 else "log"] += 1
                self._logs += 1
        for key in ("craft", "nearbyCraft", "nearbySmelt"):
            item = action[key]
            if item != "none" and item in RECIPES:
                ingredients, count = RECIPES[item]
                if all(self._count(i) >= n for i, n in ingredients.items()):
                    for i, n in ingredients.items():
                        self._take(i, n)
                    inv[item] += count
        if action["equip"] != "none" and inv.get(action["equip"], 0) > 0:
            self.hand = action["equip"]
        if action["place"] != "none" and inv.get(action["place"], 0) > 0:
            inv[action["place"]] -= 1
        done = self.kill_after is not None and self.t >= self.kill_after
        if done:
            self.life = 0.0
        self._done = done
        return self._obs(), 0.0, done, {}

    def close(self) -> None:
        pass

    # -- test hooks --------------------------------------------------------------------------------------------
    def damage(self, amount: float) -> None:
        self.life = max(0.0, self.life - amount)

    def _count(self, item: str) -> int:
        return self.inventory[item] + (self.inventory["log2"] if item == "log" else 0)

    def _take(self, item: str, n: int) -> None:
        if item == "log":
            from_log = min(n, self.inventory["log"])
            self.inventory["log"] -= from_log
            self.inventory["log2"] -= n - from_log
        else:
            self.inventory[item] -= n

    def _obs(self) -> dict:
        pov = self._rng.integers(0, 256, (*self.size, 3), dtype=np.uint8)
        return {
            "pov": pov,
            "inventory": {i: np.array(n, np.int64) for i, n in self.inventory.items()},
            "equipped_items": {"mainhand": {"type": self.hand, "damage": np.array(0), "maxDamage": np.array(0)}},
            "location_stats": {"xpos": 0.0, "ypos": 64.0, "zpos": 0.0, "pitch": self.pitch, "yaw": 0.0},
            "life_stats": {
                "life": np.array(self.life), "food": np.array(self.food), "saturation": np.array(5.0),
                "xp": np.array(0), "is_alive": self.life > 0, "air": np.array(self.air), "score": np.array(0),
            },  # fmt: skip
        }
