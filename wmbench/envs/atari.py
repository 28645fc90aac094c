"""Atari adapter (ale-py, gymnasium): protocol settings -> a Dict-observation gymnasium env.

(Adapter body is being written; schema and task list are final.)
"""

from __future__ import annotations

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
}
TASKS = frozenset(
    "alien amidar assault asterix bank_heist battle_zone boxing breakout chopper_command crazy_climber "
    "demon_attack freeway frostbite gopher hero jamesbond kangaroo krull kung_fu_master ms_pacman pong "
    "private_eye qbert road_runner seaquest up_n_down".split()
)
INSTALL_HINT = "pip install 'wmbench[atari]'   (ale-py==0.12.1; ROMs are bundled)"
