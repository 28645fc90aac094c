"""Cost of one World Models CMA-ES generation per worker, at the paper's sizes, measured here:
`python scripts/worldmodels_cost.py [carracing|doom] [REPEATS]`, or
`python scripts/worldmodels_cost.py pool [STEPS] [WORKERS]` for a reduced real-env generation through the rollout pool.

carracing: the time of one real-environment step of a candidate (CarRacing-v3 env step + V's encoder on the frame +
the LSTM step + the controller, batch 1, one thread), times 64 candidates x 16 rollouts x 1,000 steps = one
generation on one worker (an upper bound: an episode that leaves the track ends earlier).
doom: the time of one batched dream step of all 64 x 16 rollouts (LSTM 512 step, MDN sample at tau 1.15, controller,
done flag), times 2,100 steps = one generation in the dream on one worker (an upper bound: rollouts end when M
predicts death).
pool: one reduced CarRacing generation at the paper's sizes (V z 32, M LSTM 256, C 867) through the candidate-rollout
pool of the method (`rollout_backend`): population 8 x 1 rollout, each rollout cut at STEPS env steps (default 100),
inline and on WORKERS (default 2) local worker processes; prints the wall time of two generations (the first
includes the local workers' start-up) (untrained V and M: the cost per step does not depend on the weights)."""

import os
import sys
import time

import gymnasium
import numpy as np
import torch

from wmbench.method import get_method, method_config
from wmbench.protocols import load_protocol


def _agent(protocol: str, act_space: gymnasium.Space):
    cls = get_method("worldmodels")
    obs_space = {"image": gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)}
    return cls(obs_space, act_space, method_config(cls, load_protocol(protocol)), "cpu", 0)


def carracing(repeats: int) -> None:
    from wmbench.envs import make_env

    agent = _agent("carracing@1", gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32))
    agent.stage = "evolve"
    env = make_env(load_protocol("carracing@1"), "car_racing", 0)
    obs, state = env.reset(), None
    env_s = policy_s = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        batch = {k: np.asarray(v)[None] for k, v in obs.items()}
        action, state = agent.policy(batch, state, "eval")
        t1 = time.perf_counter()
        obs = env.step(action[0])
        t2 = time.perf_counter()
        if obs["is_last"]:
            obs, state = env.reset(), None
        policy_s += t1 - t0
        env_s += t2 - t1
    step = (env_s + policy_s) / repeats
    per_gen = step * 64 * 16 * 1000
    print(f"carracing: env step {1e3 * env_s / repeats:.2f} ms + policy step {1e3 * policy_s / repeats:.2f} ms = "
          f"{1 / step:.0f} steps/s per worker; one generation (64 x 16 rollouts x 1,000 steps) = {per_gen / 3600:.1f} "
          f"worker-hours ({per_gen / 60 / 64:.1f} min with 64 workers)")


class CutFactory:
    """The run's env factory with every episode cut after `steps` env steps (a shorter rollout, same cost per step)."""

    def __init__(self, factory, steps: int):
        self.factory, self.steps = factory, steps

    def __call__(self, seed: int, mode: str = "train"):
        return CutEnv(self.factory(seed, mode), self.steps)


class CutEnv:
    def __init__(self, env, steps: int):
        self.env, self.steps, self.t = env, steps, 0

    def reset(self):
        self.t = 0
        return self.env.reset()

    def step(self, action):
        self.t += 1
        obs = self.env.step(action)
        return {**obs, "is_last": bool(obs["is_last"]) or self.t >= self.steps}

    def close(self):
        self.env.close()


def pool(steps: int, workers: int) -> None:
    import worldmodels_cost  # this file as a module: pool workers import CutFactory by that name, never __main__

    from wmbench.envs import EnvFactory

    cls = get_method("worldmodels")
    proto = load_protocol("carracing@1")
    obs_space = {"image": gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)}
    act_space = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32)
    for backend, n in (("inline", 1), ("local", workers)):
        overrides = ["population=8", "rollouts=1", f"rollout_backend={backend}", f"rollout_workers={n}"]
        agent = cls(obs_space, act_space, method_config(cls, proto, overrides), "cpu", 0)
        agent.stage = "evolve"
        agent.set_env_factory(worldmodels_cost.CutFactory(EnvFactory(proto, "car_racing"), steps))
        load0 = os.getloadavg()[0]
        walls, fitness = [], []
        for _ in range(2):
            t0 = time.perf_counter()
            metrics = agent._pool_generation(None)
            walls.append(time.perf_counter() - t0)
            fitness.append((metrics["es/best"], metrics["es/mean"]))
        agent._close_pool()
        rollout_steps = int(metrics["es/rollout_steps"])
        per_step = walls[1] * n / rollout_steps  # worker-seconds per rollout step, from the second generation
        print(f"pool {backend} x {n}: generations of 8 x 1 rollouts, {rollout_steps} env steps each: {walls[0]:.1f} s "
              f"(with the workers' start-up), {walls[1]:.1f} s ({rollout_steps / walls[1]:.1f} steps/s, "
              f"{1e3 * per_step:.1f} worker-ms per step: a paper generation of 64 x 16 x 1,000 steps = "
              f"{per_step * 1_024_000 / 3600:.1f} worker-hours); (best, mean) {fitness}; load average at start "
              f"{load0:.2f}, at the end {os.getloadavg()[0]:.2f}")


def doom(repeats: int) -> None:
    agent = _agent("vizdoom_takecover@1", gymnasium.spaces.Discrete(3))
    params = np.random.default_rng(0).normal(0, 0.1, (64 * 16, agent.controller.size))
    z = torch.randn(64 * 16, agent.config.z_dim)
    agent.dream_fitness(params[:2], z[:2])  # warm-up
    cfg = agent.config
    object.__setattr__(cfg, "dream_max_steps", repeats)  # measure `repeats` steps of the full batch
    agent.rnn.done.weight.data.zero_()
    agent.rnn.done.bias.data.fill_(-30.0)  # nobody dies: every step runs the whole batch
    t0 = time.perf_counter()
    survived = agent.dream_fitness(params, z)
    step = (time.perf_counter() - t0) / repeats
    assert survived.min() == repeats
    per_gen = step * 2100
    print(f"doom dream: one step of 64 x 16 rollouts {1e3 * step:.1f} ms; one generation (up to 2,100 steps) = "
          f"{per_gen / 60:.1f} worker-minutes")
    # a rollout pool's task is one candidate's 16 rollouts as a batch: the same steps in 64 smaller batches
    t0 = time.perf_counter()
    for k in range(64):
        agent.dream_fitness(params[16 * k:16 * (k + 1)], z[16 * k:16 * (k + 1)])
    step16 = (time.perf_counter() - t0) / repeats
    print(f"doom dream, per candidate (a rollout pool's task): 64 batches of 16 rollouts {1e3 * step16:.1f} ms per "
          f"step; one generation = {step16 * 2100 / 60:.1f} worker-minutes, {step16 / step:.1f} x the single batch")


if __name__ == "__main__":
    torch.set_num_threads(1)
    which = sys.argv[1] if len(sys.argv) > 1 else "carracing"
    if which == "pool":
        pool(int(sys.argv[2]) if len(sys.argv) > 2 else 100, int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    else:
        repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 300
        {"carracing": carracing, "doom": doom}[which](repeats)
    print(f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, 1 thread")
