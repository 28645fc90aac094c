"""Env-step rates of every runnable suite, in one command, so users can plan budgets (docs/protocols.md).

Each row steps one protocol task's contract env (`wmbench.envs.make_env`, the adapter inside `ContractEnv`) with
uniformly random actions, single-threaded, episode resets included, and reports agent steps/s and env steps/s (x
the protocol's action repeat) in wall time and in process CPU time (`time.process_time`). On a shared machine the
wall rate falls with the load; the CPU rate is what the env costs. Env construction and the first reset are not
timed (one warm-up step, for JIT world generation and the first render). Suites that are not installed are listed
with the reason instead of a rate.

    python benchmarks/env_rates.py                              # every default row (a few minutes on 2 cores)
    python benchmarks/env_rates.py --only crafter@2 memory_maze@1
    python benchmarks/env_rates.py --row atari100k@1:pong:5000  # any PROTOCOL:TASK:STEPS, repeatable
    python benchmarks/env_rates.py --only crafter@2 --scale 0.05 --json  # short; the rows as JSON on the last line

`benchmarks/test_bench_env_rates.py` runs each default row through this script for `make bench`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from dataclasses import dataclass

os.environ.setdefault("MUJOCO_GL", "egl")

# (protocol, task, steps): one row per runnable suite; steps sized so each row takes well under a minute of CPU here.
DEFAULT_ROWS = (
    ("atari100k@1", "pong", 3000),
    ("crafter@2", "reward", 2000),
    ("memory_maze@1", "9x9", 1200),
    ("dmc_vision@1", "cartpole_swingup", 400),
    ("dmc_natural_bg_procedural@2", "cartpole_swingup", 400),
)


@dataclass
class Rate:
    protocol: str
    task: str
    steps: int
    episodes: int
    wall_s: float
    cpu_s: float
    action_repeat: int

    @property
    def wall_rate(self) -> float:
        return self.steps / self.wall_s

    @property
    def cpu_rate(self) -> float:
        return self.steps / self.cpu_s

    def figures(self) -> dict[str, object]:
        return {"protocol": self.protocol, "task": self.task, "steps": self.steps, "episodes": self.episodes,
                "wall_s": self.wall_s, "cpu_s": self.cpu_s, "action_repeat": self.action_repeat,
                "agent_steps_per_s_wall": self.wall_rate, "env_steps_per_s_wall": self.wall_rate * self.action_repeat,
                "agent_steps_per_s_cpu": self.cpu_rate, "env_steps_per_s_cpu": self.cpu_rate * self.action_repeat}


def measure(protocol_id: str, task: str, steps: int, seed: int = 0) -> Rate:
    """Step `steps` random actions through the contract env of `protocol_id` / `task` (resets included)."""
    from wmbench.envs import make_env
    from wmbench.protocols import load_protocol

    protocol = load_protocol(protocol_id)
    env = make_env(protocol, task, seed=seed)
    try:
        env.reset()
        env.step(env.act_space.sample())  # warm-up: JIT world generation, first render
        episodes = 0
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            if env.step(env.act_space.sample())["is_last"]:
                env.reset()
                episodes += 1
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        env.close()
    return Rate(protocol.id, task, steps, episodes, wall, cpu, protocol.action_repeat)


def _row(spec: str) -> tuple[str, str, int]:
    parts = spec.split(":")
    if len(parts) != 3 or not parts[2].isdigit() or int(parts[2]) < 1:
        raise argparse.ArgumentTypeError(f"--row {spec!r}: expected PROTOCOL:TASK:STEPS, e.g. crafter@2:reward:2000")
    return parts[0], parts[1], int(parts[2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="PROTOCOL", help="default rows of these protocols only")
    parser.add_argument("--row", type=_row, action="append", default=[], help="PROTOCOL:TASK:STEPS (repeatable)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the default step counts (e.g. 0.1)")
    parser.add_argument("--json", action="store_true",
                        help="also print every row as one JSON object on the last line ({\"rows\": [...]})")
    args = parser.parse_args(argv)

    from wmbench.envs import SuiteNotInstalled
    from wmbench.errors import WmbenchError

    rows = [(p, t, max(1, int(n * args.scale))) for p, t, n in DEFAULT_ROWS]
    if args.only:
        known = {p for p, _, _ in DEFAULT_ROWS}
        unknown = sorted(set(args.only) - known)
        if unknown:
            print(f"--only {unknown[0]!r} is not a default row; default rows: {', '.join(sorted(known))}; any other "
                  "protocol: --row PROTOCOL:TASK:STEPS", file=sys.stderr)
            return 2
        rows = [r for r in rows if r[0] in args.only]
    rows += args.row
    if not rows:
        print("nothing to measure", file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(1)
    load_before = os.getloadavg()
    print(f"# env-step rates, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, MUJOCO_GL={os.environ.get('MUJOCO_GL')}")
    print(f"# load average before: {', '.join(f'{v:.2f}' for v in load_before)}")
    print("| protocol | task | steps (episodes ended) | agent steps/s wall | env steps/s wall | agent steps/s CPU "
          "| env steps/s CPU | load (1 min) after |")
    print("|---|---|---|---|---|---|---|---|")
    failed = 0
    results: list[dict[str, object]] = []
    for protocol_id, task, steps in rows:
        try:
            r = measure(protocol_id, task, steps)
        except SuiteNotInstalled as e:
            print(f"| `{protocol_id}` | {task} | not measured: {e} | | | | | |")
            results.append({"protocol": protocol_id, "task": task, "not_measured": str(e)})
            continue
        except WmbenchError as e:
            print(f"| `{protocol_id}` | {task} | error: {e} | | | | | |")
            results.append({"protocol": protocol_id, "task": task, "error": str(e)})
            failed += 1
            continue
        results.append(r.figures())
        print(f"| `{r.protocol}` | {r.task} | {r.steps} ({r.episodes}) | {r.wall_rate:.0f} | "
              f"{r.wall_rate * r.action_repeat:.0f} | {r.cpu_rate:.0f} | {r.cpu_rate * r.action_repeat:.0f} | "
              f"{os.getloadavg()[0]:.2f} |", flush=True)
    if args.json:
        print(json.dumps({"rows": results}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
