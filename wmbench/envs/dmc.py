"""DeepMind Control adapter (dm_control + mujoco 3.17): protocol settings -> a Dict-observation gymnasium env.

(Adapter body is being written; schema and task list are final.)
"""

from __future__ import annotations

ENV_SCHEMA = {
    "obs": str,
    "size": tuple[int, ...],
    "camera": int,
    "quadruped_camera": int,
    "action_repeat": int,
    "time_limit": int,
}
TASKS = frozenset(
    "acrobot_swingup ball_in_cup_catch cartpole_balance cartpole_balance_sparse cartpole_swingup "
    "cartpole_swingup_sparse cheetah_run finger_spin finger_turn_easy finger_turn_hard hopper_hop hopper_stand "
    "pendulum_swingup quadruped_run quadruped_walk quadruped_escape reacher_easy reacher_hard walker_run "
    "walker_stand walker_walk humanoid_stand humanoid_walk humanoid_run manipulator_bring_ball fish_swim "
    "fish_upright swimmer_swimmer6 swimmer_swimmer15 point_mass_easy".split()
)
INSTALL_HINT = "pip install 'wmbench[dmc]'   (mujoco==3.17.0 dm-control==1.0.50; pixels: MUJOCO_GL=egl, or apt-get install libosmesa6 and MUJOCO_GL=osmesa)"
