"""Environment overhead: what our adapters and the runner loop cost on top of driving the simulator by hand.

Four columns per suite, uniform random policy, all in one process:

  raw      the simulator driven directly with the protocol's settings. Atari: `ale_py.ALEInterface`, minimal
           action set, 4 frames per step with rewards summed, max-pool of the last two frames, Pillow bilinear
           resize to 64x64, reset (+ no-ops) at game over. DMC: `dm_control.suite.load`, action repeat, a
           `physics.render(64, 64)` per agent step (or the flattened state for vector protocols).
  store    raw, plus a copy of each observation into a ring made with np.zeros for the repetition's steps: what
           a hand-written loop that keeps its frames in memory pays on top of raw. runner / store is printed too.
  adapter  `wmbench.envs.make_env(protocol, task, seed)` (the suite adapter inside `ContractEnv`).
  runner   `wmbench.runner.run("random", protocol, task, ...)`: the whole interaction loop (policy, replay with
           its chunk files, score/timing logs).

raw, store and adapter are interleaved in blocks of `--block` steps (the order rotating block by block), so all
see the same machine load even when other processes share the CPUs; the runner, a whole loop, runs once per
repetition, before or after the others (alternating). Its wall time is the steady state from the run's
`timing.csv` (first to last log row: env construction and the final checkpoint are not counted); its CPU time
is a `steps` run minus a run shorter by whole replay chunks, scaled, so the fixed set-up cost and the final
checkpoint (which saves the steps after the last chunk) cancel (runner() says how, below one chunk of steps).

Reported: medians over repetitions of wall and CPU (`time.process_time`, all threads of this process) time per
step, and the median of the per-repetition ratios column / raw (1.00 = no overhead). Floors (CPU time, adapter and
runner): <= 1.10x raw for Atari, <= 1.05x for DMC pixels (benchmarks/test_bench_env.py).

    python benchmarks/env_overhead.py                          # both suites, defaults below
    python benchmarks/env_overhead.py --suite atari --atari-steps 3000 --reps 5
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
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


class RawAtari:
    """Bare ALE with the protocol's preprocessing (what a user would write by hand)."""

    def __init__(self, protocol, task: str, seed: int):
        import ale_py
        from ale_py import roms
        from PIL import Image

        env = protocol.env
        self.repeat, self.noop_max = env["action_repeat"], env["noop_max"]
        height, width = env["size"]
        self.size = (width, height)
        self.Image, self.noop = Image, ale_py.Action.NOOP
        self.ale = ale_py.ALEInterface()
        self.ale.setLoggerMode(ale_py.LoggerMode.Error)
        self.ale.setInt("random_seed", seed)
        self.ale.setFloat("repeat_action_probability", env["sticky_actions"])
        self.ale.loadROM(str(roms.get_rom_path(task)))
        self.actions = self.ale.getMinimalActionSet()
        self.rng = np.random.default_rng(seed)
        self.a, self.b = np.zeros((210, 160, 3), np.uint8), np.zeros((210, 160, 3), np.uint8)
        self.ring: np.ndarray | None = None
        self.reset()

    def keep(self, capacity: int) -> RawAtari:
        """Copy every observation into a fresh ring of `capacity` frames (the `store` column)."""
        height, width = self.size[1], self.size[0]
        self.ring, self.cursor = np.zeros((capacity, height, width, 3), np.uint8), 0
        return self

    def reset(self) -> np.ndarray:
        self.ale.reset_game()
        for _ in range(int(self.rng.integers(self.noop_max + 1))):
            self.ale.act(self.noop)
        self.ale.getScreenRGB(self.a)
        return np.array(self.Image.fromarray(self.a).resize(self.size, self.Image.BILINEAR))

    def run(self, steps: int) -> None:
        ale, a, b, repeat = self.ale, self.a, self.b, self.repeat
        choices = self.rng.integers(0, len(self.actions), steps)
        for i in range(steps):
            act = self.actions[choices[i]]
            reward = 0.0
            for k in range(repeat):
                reward += ale.act(act)
                if k == repeat - 2:
                    ale.getScreenRGB(b)
            ale.getScreenRGB(a)
            obs = np.array(
                self.Image.fromarray(np.maximum(a, b, out=b)).resize(self.size, self.Image.BILINEAR)
            )
            if ale.game_over():
                obs = self.reset()
            if self.ring is not None:
                self.ring[self.cursor % len(self.ring)] = obs
                self.cursor += 1
        del obs, reward


class RawDMC:
    """Bare dm_control with action repeat and one render per agent step (or the flattened state)."""

    def __init__(self, protocol, task: str, seed: int):
        from dm_control import suite

        from wmbench.envs.dmc import split_task

        env = protocol.env
        self.repeat, self.pixels = env["action_repeat"], env.get("obs") == "image"
        domain, name = split_task(task)
        self.camera = env.get("quadruped_camera", 2) if domain == "quadruped" else env.get("camera", 0)
        self.height, self.width = env.get("size", (64, 64))
        self.dm = suite.load(domain, name, task_kwargs={"random": seed})
        self.spec = self.dm.action_spec()
        self.keys = sorted(self.dm.observation_spec())
        self.rng = np.random.default_rng(seed)
        self.ring: np.ndarray | None = None
        self.observe(self.dm.reset())

    def keep(self, capacity: int) -> RawDMC:
        """Copy every observation into a fresh ring of `capacity` observations (the `store` column)."""
        obs = self.observe(self.dm.reset())
        self.ring, self.cursor = np.zeros((capacity, *obs.shape), obs.dtype), 0
        return self

    def observe(self, timestep) -> np.ndarray:
        if self.pixels:
            return self.dm.physics.render(self.height, self.width, camera_id=self.camera)
        return np.concatenate([np.asarray(timestep.observation[k], np.float32).ravel() for k in self.keys])

    def run(self, steps: int) -> None:
        actions = self.rng.uniform(self.spec.minimum, self.spec.maximum, (steps, *self.spec.shape))
        for i in range(steps):
            reward = 0.0
            for _ in range(self.repeat):
                timestep = self.dm.step(actions[i])
                reward += timestep.reward or 0.0
                if timestep.last():
                    break
            obs = self.observe(timestep)
            if timestep.last():
                obs = self.observe(self.dm.reset())
            if self.ring is not None:
                self.ring[self.cursor % len(self.ring)] = obs
                self.cursor += 1
        del obs


class Adapter:
    """`make_env` (adapter + ContractEnv), stepped like the runner does."""

    def __init__(self, protocol, task: str, seed: int):
        from wmbench.envs import make_env

        self.env = make_env(protocol, task, seed)
        self.rng = np.random.default_rng(seed)
        self.env.reset()

    def run(self, steps: int) -> None:
        space = self.env.act_space
        if hasattr(space, "n"):
            actions = self.rng.integers(0, space.n, steps)
        else:
            actions = self.rng.uniform(-1, 1, (steps, *space.shape)).astype(np.float32)
        for i in range(steps):
            step = self.env.step(actions[i])
            if step["is_last"]:
                self.env.reset()


def _timed(fn, *args) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def _scratch() -> Path:
    path = Path.home() / ".cache" / "wmbench" / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run_random(protocol, task: str, steps: int, seed: int) -> tuple[float, list[tuple[float, float]]]:
    """CPU seconds of one whole `run(...)` call, and the run's timing rows (env_step, wall_s)."""
    from wmbench.runner import run

    root = Path(tempfile.mkdtemp(prefix="env_overhead_", dir=_scratch()))
    try:
        from wmbench.runner import RunDirError, run_dir_for

        cpu = time.process_time()
        # A run this short may end before its first episode does, so it has no final score and the runner says
        # it is not finished (RunDirError): expected here, where only its time per step is wanted.
        with contextlib.redirect_stderr(io.StringIO()), contextlib.suppress(RunDirError):
            run("random", protocol, task, seed, root=root, steps=steps, checkpoint_every=10 * steps,
                progress=False)  # fmt: skip
        cpu = time.process_time() - cpu
        with open(run_dir_for(root, protocol, task, "random", seed) / "timing.csv") as f:
            rows = [(float(r["env_step"]), float(r["wall_s"])) for r in csv.DictReader(f)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return cpu, rows


def runner(protocol, task: str, steps: int, seed: int) -> tuple[float, float]:
    """Steady-state (wall, CPU) seconds for `steps` agent steps of `run("random", ...)`.

    The CPU time is that of a `steps` run minus that of a shorter run, scaled. The shorter run is shorter by whole
    replay chunks, so both end with the same number of steps after their last chunk file: those steps are saved in
    the final checkpoint (up to a chunk of frames, ~12 MiB for Atari), a cost of the run's end, not of its steps,
    which a run of another length would not cancel. The difference then holds whole chunk writes, as a long run
    does. Below one chunk plus 10 steps the shorter run has `steps // 10` steps, and the figure is an upper bound."""
    from wmbench.runner import DEFAULT_REPLAY_CHUNK

    cpu_long, rows = _run_random(protocol, task, steps, seed)
    short = steps - max(1, steps * 9 // 10 // DEFAULT_REPLAY_CHUNK) * DEFAULT_REPLAY_CHUNK
    if short < 10:  # fewer steps than a chunk (e.g. the DMC defaults): the final checkpoint's extra steps count too
        short = max(steps // 10, 10)
    cpu_short, _ = _run_random(protocol, task, short, seed)
    (first_step, first_wall), (last_step, last_wall) = rows[0], rows[-1]
    agent_steps = protocol.from_unit(last_step - first_step, protocol.budget.step_unit)
    if agent_steps <= 0:
        raise SystemExit(f"runner logged too few rows ({rows}); use more steps")
    return (last_wall - first_wall) / agent_steps * steps, (cpu_long - cpu_short) / (steps - short) * steps


def measure(label, protocol, task, raw_cls, steps: int, block: int, reps: int, seed: int, with_runner: bool) -> dict:
    """Print the table and return {column: {steps_per_s, wall_ratio, cpu_ratio}} (ratios: median of column / raw),
    plus {"runner/store": {...}} when the runner is measured: the loop's own cost beside the least any loop that keeps
    its frames in memory pays."""
    paired = ("raw", "store", "adapter")
    names = [*paired] + (["runner"] if with_runner else [])
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    warm = [raw_cls(protocol, task, seed), Adapter(protocol, task, seed)]  # imports, JIT-free warm caches
    for w in warm:
        w.run(min(block, 20))
    if with_runner:
        runner(protocol, task, min(steps, 100), seed)
    for rep in range(reps):
        if with_runner and rep % 2 == 0:
            w, c = runner(protocol, task, steps, seed + rep)
            wall["runner"].append(w), cpu["runner"].append(c)
        trio = {
            "raw": raw_cls(protocol, task, seed + rep),
            "store": raw_cls(protocol, task, seed + rep).keep(steps),
            "adapter": Adapter(protocol, task, seed + rep),
        }
        totals = {n: [0.0, 0.0] for n in trio}
        for i in range(steps // block):
            for k in range(len(paired)):
                name = paired[(i + k) % len(paired)]
                w, c = _timed(trio[name].run, block)
                totals[name][0] += w
                totals[name][1] += c
        del trio  # the store column's ring
        for name, (w, c) in totals.items():
            wall[name].append(w)
            cpu[name].append(c)
        if with_runner and rep % 2 == 1:
            w, c = runner(protocol, task, steps, seed + rep)
            wall["runner"].append(w), cpu["runner"].append(c)
        print(
            f"  rep {rep + 1}/{reps}: "
            + ", ".join(f"{n} {steps / wall[n][-1]:.0f}/s" for n in names if wall[n]),
            file=sys.stderr,
            flush=True,
        )
    n_steps = steps // block * block
    print(f"\n{label}: {protocol.id} {task}, {n_steps} agent steps x {reps} reps (medians), random policy")
    print(f"  {'column':<8} {'steps/s':>8} {'us/step':>8} {'x raw':>6} {'CPU us/step':>12} {'CPU x raw':>10}")
    figures = {}
    for n in names:
        w_ratio = statistics.median(x / r for x, r in zip(wall[n], wall["raw"], strict=True))
        c_ratio = statistics.median(x / r for x, r in zip(cpu[n], cpu["raw"], strict=True))
        w_med, c_med = statistics.median(wall[n]), statistics.median(cpu[n])
        steps_n = steps if n == "runner" else n_steps
        print(
            f"  {n:<8} {steps_n / w_med:>8.1f} {w_med / steps_n * 1e6:>8.0f} {w_ratio:>6.3f}"
            f" {c_med / steps_n * 1e6:>12.0f} {c_ratio:>10.3f}"
        )
        figures[n] = {"steps_per_s": steps_n / w_med, "wall_ratio": w_ratio, "cpu_ratio": c_ratio}
    if with_runner:
        scale = steps / n_steps  # the runner's figures are per `steps`, the store's per `n_steps`
        w_ratio = statistics.median(x / (s * scale) for x, s in zip(wall["runner"], wall["store"], strict=True))
        c_ratio = statistics.median(x / (s * scale) for x, s in zip(cpu["runner"], cpu["store"], strict=True))
        print(f"  runner / store (the loop's own cost beside keeping the frames): wall {w_ratio:.3f}, CPU {c_ratio:.3f}")
        figures["runner/store"] = {"wall_ratio": w_ratio, "cpu_ratio": c_ratio}
    return figures


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
    parser.add_argument("--block", type=int, default=20, help="steps per interleaved raw/adapter block")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-runner", action="store_true", help="skip the full-runner column")
    args = parser.parse_args(argv)

    import torch

    from wmbench.protocols import load_protocol

    torch.set_num_threads(1)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with_runner = not args.no_runner
    if args.suite in ("atari", "both"):
        protocol = load_protocol("atari100k@1")
        measure("Atari", protocol, args.atari_task, RawAtari, args.atari_steps, args.block, args.reps, args.seed,
                with_runner)  # fmt: skip
    if args.suite in ("dmc", "both"):
        protocol = load_protocol(args.dmc_protocol)
        measure("DMC", protocol, args.dmc_task, RawDMC, args.dmc_steps, args.block, args.reps, args.seed,
                with_runner)  # fmt: skip
    print(f"load average at the end {os.getloadavg()[0]:.2f} (other processes share these CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
