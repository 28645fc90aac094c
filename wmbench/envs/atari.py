"""Atari adapter (ale-py 0.12, driven directly through `ALEInterface`): protocol `[env]` -> a gymnasium env.

Every setting comes from the protocol; nothing is left to ale-py or gymnasium defaults:

- `action_repeat` emulator frames per agent step, rewards summed; with `max_pool` the observation is the
  pixel-wise max of the last two frames (Mnih et al. 2015, "Preprocessing": removes sprite flicker).
- `sticky_actions` = ALE `repeat_action_probability` per frame (Machado et al. 2018, Sec. 5.2).
- `noop_max`: at reset, a number of no-op frames drawn uniformly from {noop_min, ..., noop_max} (`noop_min` 0 unless
  stated) with the env's `np_random`, so the gymnasium reset seed fixes them (danijar/dreamerv3
  `embodied/envs/atari.py`: `noops`). `eval_noop_max` (when stated) replaces `noop_max` in the evaluation env
  (`make(..., mode="eval")`; jrobine/twm evaluates without no-ops).
- `fire_reset`: in games whose minimal action set has FIRE second, a reset presses FIRE and then the third action,
  one agent step each (jrobine/twm `FireAfterLifeLoss.reset`, after baselines' `FireResetEnv`), and the no-ops
  follow as whole agent steps of `action_repeat` frames each (jrobine/twm's `NoopStart` steps the frame-skipping
  env; its games without FIRE take single no-op frames in gym's `AtariPreprocessing`, as here); with
  `fire_after_life_loss`, a life lost during those no-op steps is followed by a FIRE step too (as there).
  `fire_after_life_loss`: in those games, a step that loses a life (game not over) is followed, within the same
  agent step, by one agent step of FIRE whose reward counts (jrobine/twm `FireAfterLifeLoss.step`).
- `full_action_space` false = the game's minimal action set.
- `grayscale`: ALE's own luminance screen (`getScreenGrayscale`), observation (H, W, 1); else RGB (H, W, 3).
- `resize` "bilinear": Pillow's antialiased bilinear filter, as the DreamerV3 adapter (`resize='pillow'`); "area":
  Pillow's box filter, each output pixel the area-weighted mean of the input pixels it covers (the definition of
  OpenCV's INTER_AREA, which gym's AtariPreprocessing uses for jrobine/twm; not checked bit for bit against OpenCV).
- Game over is terminal. `life_loss_terminal` true makes every life its own episode (DreamerV3 `lives='reset'`):
  losing a life ends the episode as terminal, and the next `reset()` continues the same game from there (no
  game reset, no no-ops) until the game is over. Scores are then per life.
- `episodic_lives` (jrobine/twm `EpisodicLives`, baselines' `EpisodicLifeEnv`): the same, except that the lives are
  compared after the whole action repeat (the step is not cut short) and that losing the last life is the game's own
  end, and the SCORE is the game's: an episode ended by a lost life carries `info["score_continues"] = True`, and the
  runner records one score per game, the sum over its lives (docs/contracts.md). Not with `life_loss_terminal`.
  `life_reset_noop` (training env only): the reset that continues a game after a lost life first takes one NOOP
  agent step whose reward is dropped (jrobine/twm `EpisodicLives.reset`); the evaluation env goes on at once, as
  jrobine/twm's evaluation (`NoAutoReset` hands back the last observation).
- `max_frames`: the episode is truncated (not terminal) once the agent's steps have emulated this many frames
  (no-ops at reset not counted, as DreamerV3's `length`): 108,000 frames = 27,000 agent steps at repeat 4.

Speed: frames are read with `getScreenRGB` into two preallocated buffers, only for the last two frames of a step,
pooled in place; the one unavoidable allocation per step is the small resized observation returned.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from wmbench.envs import SuiteNotInstalled

ENV_SCHEMA = {
    "size": tuple[int, ...],
    "action_repeat": int,
    "max_pool": bool,
    "sticky_actions": float,
    "grayscale": bool,
    "noop_max": int,
    "full_action_space": bool,
    "life_loss_terminal": bool,
    "max_frames": int,
    "resize": str,
    "noop_min": int,
    "eval_noop_max": int,
    "fire_reset": bool,
    "fire_after_life_loss": bool,
    "episodic_lives": bool,
    "life_reset_noop": bool,
}
# The 55 games of the DreamerV2 / Atari-200M benchmark (Hafner et al. 2021); the 26 Atari-100k games are among them.
TASKS = frozenset(
    "alien amidar assault asterix asteroids atlantis bank_heist battle_zone beam_rider berzerk bowling boxing "
    "breakout centipede chopper_command crazy_climber demon_attack double_dunk enduro fishing_derby freeway "
    "frostbite gopher gravitar hero ice_hockey jamesbond kangaroo krull kung_fu_master montezuma_revenge ms_pacman "
    "name_this_game phoenix pitfall pong private_eye qbert riverraid road_runner robotank seaquest skiing solaris "
    "space_invaders star_gunner tennis time_pilot tutankham up_n_down venture video_pinball wizard_of_wor "
    "yars_revenge zaxxon".split()
)
INSTALL_HINT = "pip install 'wmbench[atari]'   (ale-py==0.12.1; ROMs are bundled)"

# Defaults when a protocol leaves a key out (the atari100k@1 values; protocols should state them all).
DEFAULTS: dict[str, Any] = {
    "size": (64, 64),
    "action_repeat": 4,
    "max_pool": True,
    "sticky_actions": 0.0,
    "grayscale": False,
    "noop_max": 30,
    "full_action_space": False,
    "life_loss_terminal": False,
    "max_frames": 108000,
    "resize": "bilinear",
    # jrobine/twm's settings (atari100k_twm@1); off here, so that protocols without these keys behave as before.
    "noop_min": 0,
    "eval_noop_max": None,  # None: as noop_max
    "fire_reset": False,
    "fire_after_life_loss": False,
    "episodic_lives": False,
    "life_reset_noop": False,
}
RESIZE_METHODS = ("bilinear", "area")


def check_installed() -> None:
    try:
        import ale_py  # noqa: F401
        from ale_py import roms  # noqa: F401
    except ImportError as e:
        raise SuiteNotInstalled(f"suite 'atari' needs ale-py ({e}). Install: {INSTALL_HINT}") from e


def rom_path(task: str) -> str:
    """Path of the bundled ROM of a snake_case task (ALE ROM ids are snake_case: `ms_pacman`, `up_n_down`)."""
    from ale_py import roms

    try:
        return str(roms.get_rom_path(task))
    except Exception as e:  # ale-py raises a bare Error type for unknown ids
        raise SuiteNotInstalled(
            f"ale-py has no ROM {task!r} ({e}); ale-py>=0.9 bundles the ROMs. Install: {INSTALL_HINT}"
        ) from e


def _settings(protocol: Any) -> dict[str, Any]:
    from wmbench.protocols import ProtocolError

    cfg = {**DEFAULTS, **dict(protocol.env)}
    cfg["size"] = tuple(cfg["size"])
    where = f"protocol {getattr(protocol, 'id', '?')}: env"
    if len(cfg["size"]) != 2 or min(cfg["size"]) <= 0:
        raise ProtocolError(
            f"{where}.size must be [height, width] of positive integers, got {list(cfg['size'])}"
        )
    if cfg["resize"] not in RESIZE_METHODS:
        raise ProtocolError(f"{where}.resize {cfg['resize']!r} is not one of {RESIZE_METHODS}")
    if cfg["action_repeat"] < 1:
        raise ProtocolError(f"{where}.action_repeat must be >= 1, got {cfg['action_repeat']}")
    if not 0.0 <= cfg["sticky_actions"] <= 1.0:
        raise ProtocolError(f"{where}.sticky_actions must lie in [0, 1], got {cfg['sticky_actions']}")
    if cfg["noop_max"] < 0 or cfg["max_frames"] <= 0:
        raise ProtocolError(f"{where}: noop_max must be >= 0 and max_frames > 0")
    if not 0 <= cfg["noop_min"] <= cfg["noop_max"]:
        raise ProtocolError(
            f"{where}.noop_min must lie in [0, noop_max = {cfg['noop_max']}], got {cfg['noop_min']}"
        )
    if cfg["eval_noop_max"] is not None and cfg["eval_noop_max"] < 0:
        raise ProtocolError(f"{where}.eval_noop_max must be >= 0, got {cfg['eval_noop_max']}")
    if cfg["episodic_lives"] and cfg["life_loss_terminal"]:
        raise ProtocolError(
            f"{where}: episodic_lives and life_loss_terminal are both true; choose one (episodic_lives: scores per "
            "game, lives compared after the action repeat; life_loss_terminal: scores per life)"
        )
    return cfg


class AtariEnv(gymnasium.Env):
    """One ALE game with the protocol's preprocessing; observations `{"image": uint8 (H, W, C)}`."""

    metadata = {"render_modes": []}

    def __init__(self, task: str, seed: int = 0, **settings: Any):
        import ale_py
        from PIL import Image

        cfg = {**DEFAULTS, **settings}
        self.task = task
        self.repeat = int(cfg["action_repeat"])
        self.max_pool = bool(cfg["max_pool"])
        self.sticky = float(cfg["sticky_actions"])
        self.grayscale = bool(cfg["grayscale"])
        self.noop_max = int(cfg["noop_max"])
        self.noop_min = int(cfg["noop_min"])
        self.life_loss_terminal = bool(cfg["life_loss_terminal"])
        self.episodic_lives = bool(cfg["episodic_lives"])
        self.life_reset_noop = bool(cfg["life_reset_noop"])
        self.max_frames = int(cfg["max_frames"])
        height, width = cfg["size"]
        self._pil_size = (width, height)
        self._filter = Image.Resampling.BOX if cfg["resize"] == "area" else Image.Resampling.BILINEAR
        self._fromarray = Image.fromarray

        # Seeded here so that reset() without a seed is still reproducible from the constructor's seed.
        self._np_random, _ = gymnasium.utils.seeding.np_random(seed)
        self._rom = rom_path(task)
        self.ale = ale_py.ALEInterface()
        self.ale.setLoggerMode(ale_py.LoggerMode.Error)
        self.ale.setFloat("repeat_action_probability", self.sticky)
        self._load(np.random.SeedSequence(seed).generate_state(1)[0])
        get_set = self.ale.getLegalActionSet if cfg["full_action_space"] else self.ale.getMinimalActionSet
        self.actions = list(get_set())
        self._noop = ale_py.Action.NOOP
        # FIRE second in the action set (jrobine/twm: `get_action_meanings()[1] == 'FIRE'`, minimal set)
        has_fire = len(self.actions) >= 3 and self.actions[1] == ale_py.Action.FIRE
        self.fire_reset = bool(cfg["fire_reset"]) and has_fire
        self.fire_after_life_loss = bool(cfg["fire_after_life_loss"]) and has_fire

        screen_h, screen_w = self.ale.getScreenDims()
        shape = (screen_h, screen_w) if self.grayscale else (screen_h, screen_w, 3)
        self._read = self.ale.getScreenGrayscale if self.grayscale else self.ale.getScreenRGB
        self._frames = (np.zeros(shape, np.uint8), np.zeros(shape, np.uint8))
        self.observation_space = gymnasium.spaces.Dict(
            {"image": gymnasium.spaces.Box(0, 255, (height, width, 1 if self.grayscale else 3), np.uint8)}
        )
        self.action_space = gymnasium.spaces.Discrete(len(self.actions))
        self._episode_frames = 0
        self._lives = 0
        self._continue_game = False

    def _load(self, ale_seed: int) -> None:
        # ALE reads `random_seed` (its sticky-action RNG) only when a ROM is loaded.
        self.ale.setInt("random_seed", int(ale_seed) & 0x7FFFFFFF)
        self.ale.loadROM(self._rom)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        ale = self.ale
        continuing = self._continue_game
        if continuing:
            # life_loss_terminal: the last episode ended with a lost life, the game goes on from there.
            self._continue_game = False
            if self.life_reset_noop:  # one NOOP agent step, reward dropped, frames not the episode's
                lives = ale.lives()
                self._act_repeat(self._noop)
                if self.fire_after_life_loss and ale.lives() < lives and not ale.game_over():
                    self._act_repeat(self.actions[1])
        # (a game that ended during that NOOP step ends the episode at its first step, as in jrobine/twm, so that
        # the scored game ends there too)
        if not continuing:
            if seed is not None and self.sticky > 0.0:
                # Reloading costs ~0.1 s, so only when ALE's own RNG matters (sticky actions).
                self._load(self.np_random.integers(2**31))
            ale.reset_game()
            if self.fire_reset:
                for action in self.actions[1:3]:  # FIRE, then the third action, one agent step each
                    for _ in range(self.repeat):
                        ale.act(action)
                    if ale.game_over():
                        ale.reset_game()
            noops = int(self.np_random.integers(self.noop_min, self.noop_max + 1))
            if self.fire_reset:  # after the FIRE, the no-ops are agent steps
                for _ in range(noops):
                    lives = ale.lives()
                    self._act_repeat(self._noop)
                    if self.fire_after_life_loss and ale.lives() < lives and not ale.game_over():
                        self._act_repeat(self.actions[1])
                    if ale.game_over():
                        ale.reset_game()
            else:
                for _ in range(noops):
                    ale.act(self._noop)
                    if ale.game_over():
                        ale.reset_game()
            self._episode_frames = 0
        self._lives = ale.lives()
        self._read(self._frames[0])
        return {"image": self._resize(self._frames[0])}, {}

    def step(self, action: Any):
        ale = self.ale
        act = self.actions[int(action)]
        last, prev = self._frames
        reward = 0.0
        terminated = life_lost = False
        repeat = self.repeat
        done_at = repeat - 1
        for i in range(repeat):
            reward += ale.act(act)
            if i == repeat - 2 and self.max_pool:
                self._read(prev)
            if ale.game_over():
                terminated = True
            elif self.life_loss_terminal:
                lives = ale.lives()
                if lives < self._lives:
                    life_lost = terminated = True
                self._lives = lives
            if terminated or self._episode_frames + i + 1 >= self.max_frames:
                done_at = i
                break
        self._episode_frames += done_at + 1
        self._read(last)
        if self.max_pool and done_at == repeat - 1 and repeat > 1:
            image = np.maximum(last, prev, out=prev)
        else:
            # Ended early (or no pooling): the frame before the last was not captured, so the last stands alone.
            image = last
        info = {"lives": ale.lives()}
        if (self.episodic_lives or self.fire_after_life_loss) and not terminated:
            lives = ale.lives()
            if lives < self._lives and not ale.game_over():
                if self.fire_after_life_loss:
                    # FIRE for one agent step, its frames not counted (TimeLimit counts wrapper steps): a new life
                    reward += self._act_repeat(self.actions[1])
                    image, terminated = self._frames[0], ale.game_over()
                if self.episodic_lives and not terminated and lives > 0:  # lives 0 before game over: Q*bert
                    life_lost = terminated = True
                    info["score_continues"] = True  # the game goes on in the next episode: one score per game
            self._lives = ale.lives()
            info["lives"] = self._lives
        truncated = not terminated and self._episode_frames >= self.max_frames
        self._continue_game = life_lost and not ale.game_over()
        return {"image": self._resize(image)}, reward, terminated, truncated, info

    def _act_repeat(self, action: Any) -> float:
        """One agent step of `action` outside `step` (FIRE after a lost life): `repeat` frames, the observation pooled
        into `self._frames[0]` like a step's; stops at game over."""
        ale, (last, prev) = self.ale, self._frames
        reward = 0.0
        for i in range(self.repeat):
            reward += ale.act(action)
            if i == self.repeat - 2 and self.max_pool:
                self._read(prev)
            if ale.game_over():
                self._read(last)
                return reward
        self._read(last)
        if self.max_pool and self.repeat > 1:
            np.maximum(last, prev, out=last)
        return reward

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        small = self._fromarray(frame).resize(self._pil_size, self._filter)
        out = np.array(small)  # owns its memory and is writable (np.asarray of a PIL image is read-only)
        return out[:, :, None] if self.grayscale else out

    def close(self) -> None:
        self.ale = None


def make(protocol: Any, task: str, seed: int, mode: str = "train") -> gymnasium.Env:
    """`mode` "eval": the evaluation env, whose no-ops are at most `eval_noop_max` where the protocol states it, and
    which takes no `life_reset_noop` step."""
    cfg = _settings(protocol)
    if mode == "eval":
        cfg["life_reset_noop"] = False
    if mode == "eval" and cfg["eval_noop_max"] is not None:
        cfg["noop_max"] = cfg["eval_noop_max"]
        cfg["noop_min"] = min(cfg["noop_min"], cfg["noop_max"])
    return AtariEnv(task, seed=seed, **cfg)
