"""Wall time of SLAC's parts on dmc_vision@1 (64x64 images), one thread: env step, action, model update, actor-critic
update, and what they make per 10k env steps and for the one-off model pre-training.

    OMP_NUM_THREADS=1 python benchmarks/slac_cost.py [--task cartpole_swingup] [--preset paper|cpu|tiny] [--reps 3]
        [--json]

The replay is filled with random-policy steps of the real task; each update samples from it as in training.
`--json` also prints the figures as one JSON object on the last line; `benchmarks/test_bench_slac_cost.py` runs the
script that way for `make bench` (`--preset tiny --reps 1`; the defaults with `--bench-full`).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main() -> None:
    from wmbench_baselines.slac import SLAC

    from wmbench.config import make_config
    from wmbench.envs import make_env
    from wmbench.protocols import load_protocol
    from wmbench.replay import Replay

    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="cartpole_swingup")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--set", nargs="*", default=[])
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON on the last line")
    args = parser.parse_args()
    torch.set_num_threads(1)
    protocol = load_protocol("dmc_vision@1")
    env = make_env(protocol, args.task, 0)
    run_config = make_config(SLAC.Config, [f"preset={args.preset}", *args.set])
    config = make_config(SLAC.Config, [f"preset={args.preset}", *args.set, "initial_collect_steps=0"])
    agent = SLAC(env.obs_space, env.act_space, config, seed=0)
    replay = Replay(2**30, seed=0)
    rng = np.random.default_rng(0)
    step = env.reset()
    env_times = []
    for _ in range(200):  # random steps: enough for 9-step windows
        action = rng.uniform(-1, 1, env.act_space.shape).astype(np.float32)
        replay.add({**step, "action": action})
        start = time.perf_counter()
        step = env.step(action)
        env_times.append(time.perf_counter() - start)
    obs = {k: np.asarray(v)[None] for k, v in step.items()}

    def timed(fn, reps):
        fn()  # warm-up
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    length = config.sequence_length + 1
    t_act = timed(lambda: agent.policy(obs, None, "train"), 10)
    t_model = timed(lambda: agent.train_model(replay.sample(config.model_batch_size, length)), args.reps)
    t_ac = timed(lambda: agent.train_actor_critic(replay.sample(config.batch_size, length)), args.reps)
    t_env = float(np.median(env_times))
    per_agent_step = t_env + t_act + (t_model + t_ac) / config.train_every
    agent_steps = 10_000 // protocol.action_repeat
    print(f"dmc_vision@1 {args.task}, preset {args.preset} {' '.join(args.set)}, 1 thread")
    print(f"env step {t_env * 1e3:.1f} ms, action {t_act * 1e3:.1f} ms, model update ({config.model_batch_size} x "
          f"{length}) {t_model:.2f} s, actor-critic update ({config.batch_size} x {length}) {t_ac:.2f} s")
    print(f"per agent step {per_agent_step:.2f} s (one model + one actor-critic update every {config.train_every}); "
          f"per 10k env steps ({agent_steps} agent steps): {per_agent_step * agent_steps / 3600:.2f} h")
    print(f"model pre-training: {run_config.initial_model_train_steps} updates x {t_model:.2f} s = "
          f"{run_config.initial_model_train_steps * t_model / 3600:.2f} h; random phase "
          f"{run_config.initial_collect_steps} agent steps")
    if args.json:
        print(json.dumps({"task": args.task, "preset": args.preset, "set": args.set, "reps": args.reps,
                          "env_step_s": t_env, "action_s": t_act, "model_update_s": t_model,
                          "actor_critic_update_s": t_ac, "s_per_agent_step": per_agent_step,
                          "h_per_10k_env_steps": per_agent_step * agent_steps / 3600,
                          "pretrain_h": run_config.initial_model_train_steps * t_model / 3600}))


if __name__ == "__main__":
    main()
