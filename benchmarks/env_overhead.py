"""Environment overhead: what our adapters and the runner loop cost on top of driving the simulator by hand.

Three columns per suite, measured in one process with interleaved repetitions (order rotated every repetition)
and reported as the median agent steps/s, with a uniform random policy:

  raw      the simulator driven directly with the protocol's settings. Atari: `ale_py.ALEInterface`, minimal
           action set, 4 frames per step with rewards summed, max-pool of the last two frames, Pillow bilinear
           resize to 64x64, reset (+ no-ops) at game over. DMC: `dm_control.suite.load`, action repeat, a
           `physics.render(64, 64)` per agent step (or the flattened state for vector protocols).
  adapter  `wmbench.envs.make_env(protocol, task, seed)` (the suite adapter inside `ContractEnv`).
  runner   `wmbench.runner.run("random", protocol, task, ...)`: the whole interaction loop (policy, replay with
           its chunk files, score/timing logs); its steady-state rate comes from the run's `timing.csv`
           (first to last log row), so env construction and the final checkpoint are not counted.

Ratios are column time per step / raw time per step (1.00 = no overhead), from wall-clock time and from this
process's CPU time (`time.process_time`, less disturbed when other processes share the CPUs). Targets: adapter <= 1.10x raw for
Atari, <= 1.05x for DMC pixels.

    python benchmarks/env_overhead.py                          # both suites, defaults below
    python benchmarks/env_overhead.py --suite atari --steps 3000 --reps 5
    python benchmarks/env_overhead.py --suite dmc --dmc-protocol dmc_proprio@1 --dmc-task walker_walk
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


def raw_atari(protocol, task: str, steps: int, seed: int) -> float:
    """Seconds for `steps` agent steps of bare ALE with the protocol's preprocessing."""
    import ale_py
    from ale_py import roms
    from PIL import Image

    env = protocol.env
    repeat, noop_max = env["action_repeat"], env["noop_max"]
    height, width = env["size"]
    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.setInt("random_seed", seed)
    ale.setFloat("repeat_action_probability", env["sticky_actions"])
    ale.loadROM(str(roms.get_rom_path(task)))
    actions = ale.getMinimalActionSet()
    rng = np.random.default_rng(seed)
    choices = rng.integers(0, len(actions), steps)
    a, b = np.zeros((210, 160, 3), np.uint8), np.zeros((210, 160, 3), np.uint8)

    def reset():
        ale.reset_game()
        for _ in range(int(rng.integers(noop_max + 1))):
            ale.act(ale_py.Action.NOOP)
        ale.getScreenRGB(a)
        return np.array(Image.fromarray(a).resize((width, height), Image.BILINEAR))

    reset()
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(steps):
        act = actions[choices[i]]
        reward = 0.0
        for k in range(repeat):
            reward += ale.act(act)
            if k == repeat - 2:
                ale.getScreenRGB(b)
        ale.getScreenRGB(a)
        obs = np.array(Image.fromarray(np.maximum(a, b, out=b)).resize((width, height), Image.BILINEAR))
        if ale.game_over():
            obs = reset()
    del obs, reward
    return time.perf_counter() - start, time.process_time() - cpu


def raw_dmc(protocol, task: str, steps: int, seed: int) -> float:
    """Seconds for `steps` agent steps of bare dm_control with action repeat and a 64x64 render per step."""
    from dm_control import suite

    from wmbench.envs.dmc import split_task

    env = protocol.env
    repeat, pixels = env["action_repeat"], env.get("obs") == "image"
    domain, name = split_task(task)
    camera = env.get("quadruped_camera", 2) if domain == "quadruped" else env.get("camera", 0)
    height, width = env.get("size", (64, 64))
    dm = suite.load(domain, name, task_kwargs={"random": seed})
    spec = dm.action_spec()
    actions = np.random.default_rng(seed).uniform(spec.minimum, spec.maximum, (steps, *spec.shape))
    keys = sorted(dm.observation_spec())

    def observe(timestep):
        if pixels:
            return dm.physics.render(height, width, camera_id=camera)
        return np.concatenate([np.asarray(timestep.observation[k], np.float32).ravel() for k in keys])

    observe(dm.reset())
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(steps):
        reward = 0.0
        for _ in range(repeat):
            timestep = dm.step(actions[i])
            reward += timestep.reward or 0.0
            if timestep.last():
                break
        obs = observe(timestep)
        if timestep.last():
            obs = observe(dm.reset())
    del obs
    return time.perf_counter() - start, time.process_time() - cpu


def adapter(protocol, task: str, steps: int, seed: int) -> float:
    """Seconds for `steps` agent steps through `make_env` (adapter + ContractEnv)."""
    from wmbench.envs import make_env

    env = make_env(protocol, task, seed)
    space = env.act_space
    rng = np.random.default_rng(seed)
    if hasattr(space, "n"):
        actions = rng.integers(0, space.n, steps)
    else:
        actions = rng.uniform(-1, 1, (steps, *space.shape)).astype(np.float32)
    env.reset()
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(steps):
        step = env.step(actions[i])
        if step["is_last"]:
            env.reset()
    elapsed = time.perf_counter() - start, time.process_time() - cpu
    env.close()
    return elapsed


def _run_random(protocol, task: str, steps: int, seed: int) -> tuple[float, Path]:
    """CPU seconds of one whole `run(...)` call, and the run directory's timing rows."""
    from wmbench.runner import run

    root = Path(tempfile.mkdtemp(prefix="env_overhead_", dir=_scratch()))
    try:
        cpu = time.process_time()
        # A run this short ends mid-episode, so the runner warns that it has no final score: expected here.
        with contextlib.redirect_stderr(io.StringIO()):
            result = run("random", protocol, task, seed, root=root, steps=steps, checkpoint_every=10 * steps,
                         progress=False)  # fmt: skip
        cpu = time.process_time() - cpu
        with open(result.run_dir / "timing.csv") as f:
            rows = [(float(r["env_step"]), float(r["wall_s"])) for r in csv.DictReader(f)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return cpu, rows


def runner(protocol, task: str, steps: int, seed: int) -> tuple[float, float]:
    """Steady-state (wall, CPU) seconds per `steps` agent steps of `wmbench.runner.run` with the random method.

    Wall: from the run's `timing.csv`, first to last log row (excludes env construction and the final save).
    CPU: a `steps` run minus a `steps // 10` run, scaled (the fixed set-up cost cancels).
    """
    cpu_long, rows = _run_random(protocol, task, steps, seed)
    short = max(steps // 10, 10)
    cpu_short, _ = _run_random(protocol, task, short, seed)
    (first_step, first_wall), (last_step, last_wall) = rows[0], rows[-1]
    agent_steps = protocol.from_unit(last_step - first_step, protocol.budget.step_unit)
    if agent_steps <= 0:
        raise SystemExit(f"runner logged too few rows ({rows}); use more steps")
    return (last_wall - first_wall) / agent_steps * steps, (cpu_long - cpu_short) / (steps - short) * steps


def _scratch() -> Path:
    path = Path.home() / ".cache" / "wmbench" / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def measure(label: str, protocol, task: str, columns: dict[str, Callable], steps: int, reps: int, seed: int):
    """Interleaved repetitions (order rotated each time); prints medians of wall and CPU time per column."""
    wall: dict[str, list[float]] = {name: [] for name in columns}
    cpu: dict[str, list[float]] = {name: [] for name in columns}
    names = list(columns)
    for fn in columns.values():  # warm-up: imports, ROM/model loading, GL context creation
        fn(protocol, task, min(steps, 100), seed)
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            w, c = columns[name](protocol, task, steps, seed + rep)
            wall[name].append(w)
            cpu[name].append(c)
        print(
            f"  rep {rep + 1}/{reps}: " + ", ".join(f"{n} {steps / wall[n][-1]:.0f}/s" for n in names),
            file=sys.stderr,
            flush=True,
        )
    w_med = {n: statistics.median(t) for n, t in wall.items()}
    c_med = {n: statistics.median(t) for n, t in cpu.items()}
    print(f"\n{label}: {protocol.id} {task}, {steps} agent steps x {reps} reps (medians), random policy")
    print(f"  {'column':<8} {'steps/s':>8} {'us/step':>8} {'x raw':>6} {'CPU us/step':>12} {'CPU x raw':>10}")
    for n in names:
        print(
            f"  {n:<8} {steps / w_med[n]:>8.0f} {w_med[n] / steps * 1e6:>8.0f} {w_med[n] / w_med['raw']:>6.3f}"
            f" {c_med[n] / steps * 1e6:>12.0f} {c_med[n] / c_med['raw']:>10.3f}"
        )
    return w_med, c_med


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", choices=("atari", "dmc", "both"), default="both")
    parser.add_argument("--atari-task", default="pong")
    parser.add_argument("--atari-steps", type=int, default=2000)
    parser.add_argument("--dmc-protocol", default="dmc_vision@1")
    parser.add_argument("--dmc-task", default="cartpole_swingup")
    parser.add_argument("--dmc-steps", type=int, default=200)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-runner", action="store_true", help="skip the full-runner column")
    args = parser.parse_args(argv)

    import torch

    from wmbench.protocols import load_protocol

    torch.set_num_threads(1)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    if args.suite in ("atari", "both"):
        columns = {"raw": raw_atari, "adapter": adapter} | ({} if args.no_runner else {"runner": runner})
        measure(
            "Atari",
            load_protocol("atari100k@1"),
            args.atari_task,
            columns,
            args.atari_steps,
            args.reps,
            args.seed,
        )
    if args.suite in ("dmc", "both"):
        columns = {"raw": raw_dmc, "adapter": adapter} | ({} if args.no_runner else {"runner": runner})
        measure(
            "DMC",
            load_protocol(args.dmc_protocol),
            args.dmc_task,
            columns,
            args.dmc_steps,
            args.reps,
            args.seed,
        )
    print(f"load average at the end {os.getloadavg()[0]:.2f} (other processes share these CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
