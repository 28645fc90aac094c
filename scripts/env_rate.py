"""Env-step rate of one protocol task with uniformly random actions: `python scripts/env_rate.py PROTOCOL TASK [STEPS]`.

Steps the contract env (`wmbench.envs.make_env`, resets included) single-threaded and prints steps/s with the load
average, so a user can plan budgets (docs/protocols.md)."""

import os
import sys
import time

from wmbench.envs import make_env
from wmbench.protocols import load_protocol


def main() -> None:
    protocol, task = load_protocol(sys.argv[1]), sys.argv[2]
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
    env = make_env(protocol, task, seed=0)
    env.reset()
    env.step(env.act_space.sample())  # warm-up (JIT of world generation, first render)
    start, episodes = time.perf_counter(), 0
    for _ in range(steps):
        if env.step(env.act_space.sample())["is_last"]:
            env.reset()
            episodes += 1
    elapsed = time.perf_counter() - start
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    gl = f", MUJOCO_GL={os.environ['MUJOCO_GL']}" if "MUJOCO_GL" in os.environ else ""
    print(
        f"{protocol.id} {task}: {steps / elapsed:.0f} agent steps/s = {steps * protocol.action_repeat / elapsed:.0f} "
        f"env steps/s ({steps} steps, {episodes} episodes, {elapsed:.1f} s), load average {load}, "
        f"{os.cpu_count()} CPUs{gl}"
    )


if __name__ == "__main__":
    main()
