"""CPU time of MWM's parts on dmc_vision@1-sized inputs (64x64 images, 1-D actions), one thread: one autoencoder
update (batch `mae_batch` x `mae_length` images), one world-model + behaviour update (`batch_size` x
`batch_length`), one action; and the cost per agent step they make (both updates every 5 agent steps).

    OMP_NUM_THREADS=1 python benchmarks/mwm_cost.py [--preset cpu|paper|tiny] [--reps 2] [--json]

`--json` also prints the figures as one JSON object on the last line; `benchmarks/test_bench_mwm_cost.py` runs the
script that way for `make bench` (`--preset tiny --reps 1`; the defaults with `--bench-full`).

Batches are random pixels (the cost does not depend on their content). Figures in docs/mwm.md and
wmbench/expectations.py come from this script (process CPU time; wall time is about twice that at load 6-7 on the
project's 2 shared cores).
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium
import numpy as np
import torch


def main() -> None:
    from wmbench_baselines.mwm import MWM

    from wmbench.method import method_config
    from wmbench.protocols import load_protocol

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON on the last line")
    args = parser.parse_args()
    torch.set_num_threads(1)
    obs_space = {"image": gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)}
    act_space = gymnasium.spaces.Box(-1, 1, (1,), np.float32)
    c = method_config(MWM, load_protocol("dmc_vision@1"), [f"preset={args.preset}"])
    agent = MWM(obs_space, act_space, c, seed=0)
    rng = np.random.default_rng(0)

    def batch(b: int, t: int) -> dict[str, np.ndarray]:
        first = np.zeros((b, t), bool)
        first[:, 0] = True
        return {"image": rng.integers(0, 256, (b, t, 64, 64, 3), dtype=np.uint8),
                "action": rng.uniform(-1, 1, (b, t, 1)).astype(np.float32),
                "reward": rng.normal(size=(b, t)).astype(np.float32), "is_first": first,
                "is_last": np.zeros((b, t), bool), "is_terminal": np.zeros((b, t), bool)}  # fmt: skip

    cost = {}
    for name, fn, shape in (("mae", agent.train_mae_batch, (c.mae_batch, c.mae_length)),
                            ("model", agent.train_batch, (c.batch_size, c.batch_length))):  # fmt: skip
        fn(batch(*shape))  # warm-up
        start = time.process_time()
        for _ in range(args.reps):
            fn(batch(*shape))
        cost[name] = (time.process_time() - start) / args.reps
        print(f"{args.preset}: {name} update {cost[name]:.2f} CPU-s ({shape[0]} x {shape[1]})")
    obs = {"image": rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8), "is_first": np.ones(1, bool),
           "is_last": np.zeros(1, bool)}  # fmt: skip
    agent.acted = c.prefill + 1  # past the random prefill
    state, start = None, time.process_time()
    for _ in range(20):
        _, state = agent.policy(obs, state)
    action = (time.process_time() - start) / 20
    per_step = (cost["mae"] / c.train_mae_every + cost["model"] / c.train_every) + action
    print(
        f"{args.preset}: action {action * 1000:.1f} ms; {per_step:.2f} CPU-s per agent step, "
        f"{per_step * 5000 / 3600:.2f} CPU-h per 10k env steps (action repeat 2)"
    )
    if args.json:
        print(json.dumps({"preset": args.preset, "reps": args.reps, "mae_update_cpu_s": cost["mae"],
                          "model_update_cpu_s": cost["model"], "action_cpu_s": action,
                          "cpu_s_per_agent_step": per_step, "cpu_h_per_10k_env_steps": per_step * 5000 / 3600}))


if __name__ == "__main__":
    main()
