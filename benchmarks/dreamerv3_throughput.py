"""DreamerV3 training throughput on CPU: full updates (world model + actor + critic) per second and peak RSS.

Configuration = the peers' measured one (../shared/ENVIRONMENT.md): DMC walker_walk proprio shapes (vector 24,
action 6), batch 16 x 64, deter 256, hidden 256, 1-layer MLPs, 32x32 latents, horizon 15 = our `xs` preset.
Batches come from a real `wmbench.replay.Replay` filled with random steps (so sampling costs are included).
Each precision runs in its own process so that peak RSS is per configuration.

    .venv/bin/python benchmarks/dreamerv3_throughput.py [--updates 20] [--threads 2] [--precision fp32 bf16]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time

CEILING_GFLOPS = {"fp32": 210.0, "bf16": 800.0}  # ENVIRONMENT.md, torch matmul at XS shapes, 2 threads
PEERS_UPDATES_PER_S = {"sheeprl 0.8.4": 0.50, "NM512/dreamerv3-torch": 0.33, "official JAX (fp32)": 0.82}


def measure(precision: str, updates: int, threads: int, compile_: bool) -> dict:
    import resource

    import gymnasium
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(threads)
    from wmbench_baselines.dreamerv3 import DreamerV3, DreamerV3Config, parameter_counts

    from wmbench.config import make_config
    from wmbench.replay import Replay

    obs_space = {"vector": gymnasium.spaces.Box(-np.inf, np.inf, (24,), np.float32)}
    act_space = gymnasium.spaces.Box(-1, 1, (6,), np.float32)
    config = make_config(DreamerV3Config, ["preset=xs", f"precision={precision}", f"compile={compile_}"])
    agent = DreamerV3(obs_space, act_space, config, seed=0)
    rng = np.random.default_rng(0)
    replay = Replay(capacity_bytes=64 << 20, seed=0)
    for t in range(5000):
        replay.add(
            {
                "vector": rng.normal(size=24).astype(np.float32),
                "action": rng.uniform(-1, 1, 6).astype(np.float32),
                "reward": np.float32(rng.uniform()),
                "is_first": t % 500 == 0,
                "is_last": t % 500 == 499,
                "is_terminal": False,
            }
        )
    c = config
    for _ in range(2):  # warm-up (allocator, lazy init, compilation)
        agent.train_batch(replay.sample(c.batch_size, c.batch_length))
    # FLOPs do not depend on the dtype; count them on an fp32 twin (FlopCounterMode's module hooks fail under
    # bf16 autocast in torch 2.13)
    counted = agent if precision == "fp32" else DreamerV3(obs_space, act_space, dataclasses.replace(config, precision="fp32"))
    with FlopCounterMode(display=False) as counter:
        counted.train_batch(replay.sample(c.batch_size, c.batch_length))
    flops = counter.get_total_flops()
    del counted
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(updates):
        agent.train_batch(replay.sample(c.batch_size, c.batch_length))
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    ups = updates / seconds
    return {
        "precision": precision,
        "compile": compile_,
        "threads": threads,
        "params": parameter_counts(obs_space, act_space, config)["total"],
        "updates": updates,
        "seconds": seconds,
        "cpu_s_per_update": cpu_seconds / updates,  # less sensitive to other jobs than wall time
        "updates_per_s": ups,
        "gflop_per_update": flops / 1e9,
        "gflop_per_s": flops / 1e9 * ups,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,  # KiB -> GB
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the per-step functions")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.updates, args.threads, args.compile)))
        return
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    for precision in args.precision:
        cmd = [sys.executable, __file__, "--child", precision, "--updates", str(args.updates), "--threads", str(args.threads)]
        if args.compile:
            cmd.append("--compile")
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        peers = ", ".join(f"{r['updates_per_s'] / v:.2f}x {k}" for k, v in PEERS_UPDATES_PER_S.items())
        print(
            f"{precision}{' compiled' if r['compile'] else ''}: {r['updates_per_s']:.3f} updates/s "
            f"({r['updates']} updates in {r['seconds']:.1f} s, {r['threads']} threads, {r['params'] / 1e6:.2f}M params, "
            f"{r['cpu_s_per_update']:.2f} CPU-s/update), "
            f"{r['gflop_per_update']:.1f} GFLOP/update = {r['gflop_per_s']:.0f} GFLOP/s "
            f"({r['gflop_per_s'] / CEILING_GFLOPS[precision]:.0%} of the ~{CEILING_GFLOPS[precision]:.0f} {precision} "
            f"ceiling), peak RSS {r['peak_rss_gb']:.2f} GB; vs peers: {peers}"
        )
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
