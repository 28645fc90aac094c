"""DreamerV3 training throughput on CPU: full updates (world model + actor + critic) per second and peak RSS.

Configuration = the peers' measured one (../shared/ENVIRONMENT.md): DMC walker_walk proprio shapes (vector 24,
action 6), batch 16 x 64, deter 256, hidden 256, 1-layer MLPs, 32x32 latents, horizon 15 = our `xs` preset.
Batches come from a real `wmbench.replay.Replay` filled with random steps (so sampling costs are included).
Each precision runs in its own process so that peak RSS is per configuration.

    .venv/bin/python benchmarks/dreamerv3_throughput.py [--updates 20] [--threads 2] [--precision fp32 bf16]
        [--actor-grad reinforce backprop] [--peer-python /path/to/sheeprl-venv/bin/python]

Each configuration also reports achieved GFLOP/s against the fp32/bf16 matmul rate *measured in the same run* at the
XS layer shapes (ENVIRONMENT.md's figures are for an AVX-512 machine of this type; other machines of the type lack
AVX-512 and reach about 60% of them). `--actor-grad`: `reinforce` is the default DreamerV3 (2024 release: REINFORCE for
every action space, gradient-free rollout); `backprop` is the 2023 continuous-action gradient through the dynamics,
the algorithm sheeprl and NM512/dreamerv3-torch run in this configuration. `--peer-python` runs
benchmarks/peers/sheeprl_dreamerv3.py with that interpreter in the same run and prints the measured ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time

ENV_DOC_CEILING_GFLOPS = {"fp32": 210.0, "bf16": 800.0}  # ENVIRONMENT.md, torch matmul at XS shapes, 2 threads
XS_SHAPES = [(1024, 1280, 256), (15360, 1280, 256), (1024, 512, 768)]  # (m, k, n) of the ENVIRONMENT.md measurement
PEERS_UPDATES_PER_S = {"sheeprl 0.8.4": 0.50, "NM512/dreamerv3-torch": 0.33, "official JAX (fp32)": 0.82}


def matmul_ceiling(threads: int, reps: int = 10) -> dict[str, float]:
    """Median GFLOP/s of torch matmuls at the XS layer shapes, fp32 and bf16 (the ceiling of this machine, now)."""
    import torch

    torch.set_num_threads(threads)
    out = {}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        rates = []
        for m, k, n in XS_SHAPES:
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            a @ b
            start = time.perf_counter()
            for _ in range(reps):
                a @ b
            rates.append(2 * m * k * n * reps / (time.perf_counter() - start) / 1e9)
        out[name] = sorted(rates)[len(rates) // 2]
    return out


def measure(precision: str, updates: int, threads: int, compile_: bool, actor_grad: str, preset: str = "xs") -> dict:
    import resource

    import gymnasium
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(threads)
    if threads == 1:  # one core, as the official JAX peer is pinned to (benchmarks/peers/official_dreamerv3.py)
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from wmbench_baselines.dreamerv3 import DreamerV3, DreamerV3Config, parameter_counts

    from wmbench.config import make_config
    from wmbench.replay import Replay

    obs_space = {"vector": gymnasium.spaces.Box(-np.inf, np.inf, (24,), np.float32)}
    act_space = gymnasium.spaces.Box(-1, 1, (6,), np.float32)
    config = make_config(
        DreamerV3Config, [f"preset={preset}", f"precision={precision}", f"compile={compile_}",
                          f"actor_grad_cont={actor_grad}"]
    )
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
        "actor_grad": actor_grad,
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


def run_json(cmd: list[str], env: dict[str, str]) -> dict:
    """Run a measuring process and return the JSON object on the last line of its stdout."""
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the per-step functions")
    parser.add_argument("--actor-grad", nargs="+", default=["reinforce", "backprop"], choices=["reinforce", "backprop"])
    parser.add_argument("--peer-python", help="python of a venv with sheeprl (benchmarks/peers/README.md)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="xs", help="DreamerV3 size preset (xs: the peers' configuration; size1m)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.updates, args.threads, args.compile, args.child[1], args.preset)))
        return
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    ceiling = matmul_ceiling(args.threads)
    print(
        f"matmul ceiling now ({args.threads} threads, XS shapes): fp32 {ceiling['fp32']:.0f} GFLOP/s, bf16 "
        f"{ceiling['bf16']:.0f} GFLOP/s (ENVIRONMENT.md: {ENV_DOC_CEILING_GFLOPS['fp32']:.0f} / "
        f"{ENV_DOC_CEILING_GFLOPS['bf16']:.0f})"
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    peer = None
    if args.peer_python:
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers", "sheeprl_dreamerv3.py")
        cmd = [args.peer_python, script, "--updates", str(args.updates), "--threads", str(args.threads)]
        peer = run_json(cmd, env)
        print(
            f"sheeprl {peer.get('version', '?')} (measured now, actor grad {peer.get('actor_grad', '?')}): "
            f"{peer['updates_per_s']:.3f} updates/s, peak RSS {peer['peak_rss_gb']:.2f} GB"
        )
    for precision in args.precision:
        for grad in args.actor_grad:
            cmd = [sys.executable, __file__, "--child", precision, grad, "--updates", str(args.updates),
                   "--threads", str(args.threads), "--preset", args.preset]  # fmt: skip
            if args.compile:
                cmd.append("--compile")
            r = run_json(cmd, env)
            peers = ", ".join(f"{r['updates_per_s'] / v:.2f}x {k}" for k, v in PEERS_UPDATES_PER_S.items())
            measured = f"; {r['updates_per_s'] / peer['updates_per_s']:.2f}x sheeprl measured now" if peer else ""
            print(
                f"{args.preset} {precision} {grad}{' compiled' if r['compile'] else ''}: {r['updates_per_s']:.3f} updates/s "
                f"({r['updates']} updates in {r['seconds']:.1f} s, {r['threads']} threads, {r['params'] / 1e6:.2f}M "
                f"params, {r['cpu_s_per_update']:.2f} CPU-s/update), "
                f"{r['gflop_per_update']:.1f} GFLOP/update = {r['gflop_per_s']:.0f} GFLOP/s "
                f"({r['gflop_per_s'] / ceiling[precision]:.0%} of the {ceiling[precision]:.0f} {precision} ceiling "
                f"measured now), peak RSS {r['peak_rss_gb']:.2f} GB; vs peers' ENVIRONMENT.md figures: {peers}{measured}"
            )
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
