"""Relative CPU cost of the Dreamer family on one pixel configuration, measured in the same run: PlaNet, Dreamer v1,
DreamerV2, DreamerV3, DreamerPro and the transformer world models TWM and TransDreamer.

Configuration: dmc_vision@1 shapes (64x64 RGB images, a 6-dim action in [-1, 1], e.g. walker), each method's config
as `wmbench run METHOD dmc_vision@1 --set preset=P` resolves it (paper defaults, the method's dmc_vision defaults,
the preset). Batches come from a real `wmbench.replay.Replay` filled with random steps. Each method runs in its own
process (peak RSS per method; the process and the dreamerv3 benchmark's `run_json` are shared with
dreamerv3_throughput.py). Reported per method: seconds per update, seconds per action (evaluation mode: no
random seed / prefill actions), its updates per agent step on dmc_vision@1 (PlaNet and Dreamer v1: C updates per
500-step episode; DreamerV2 and DreamerPro: 1 / train_every; DreamerV3: train_ratio / (B x T)), and from these the training wall
time per 10k env steps (5,000 agent steps at action repeat 2; environment stepping and rendering not included).
TWM is discrete-action only: it runs on the same 64x64x3 images with 6 discrete actions, with its config as
atari100k@1 resolves it and its own schedule (one update per `train_every` agent steps).

`--imagination` also times the shared transformer (wmbench/nn/transformer.py) continuing a context by one token:
with the KV cache (what imagination and acting do, O(context) per token) against re-running the full causal pass
over the context (O(context^2)), at a given width/depth, for growing contexts.

    .venv/bin/python benchmarks/dreamer_family_throughput.py [--updates 3] [--actions 20] [--threads 1]
        [--methods planet dreamerv1 dreamerv2 dreamerv3 dreamerpro twm transdreamer] [--preset planet=cpu dreamerv3=size1m ...]
        [--imagination] [--imag-width 256 --imag-depth 10 --imag-batch 400]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from dreamerv3_throughput import run_json

METHODS = ("planet", "dreamerv1", "dreamerv2", "dreamerv3", "dreamerpro", "twm", "transdreamer")
DEFAULT_PRESETS = {"planet": "cpu", "dreamerv1": "cpu", "dreamerv2": "cpu", "dreamerv3": "size1m", "dreamerpro": "cpu",
                   "twm": "small", "transdreamer": "small"}
# discrete-action methods: the protocol resolving their config, and the number of actions
DISCRETE = {"twm": ("atari100k@1", 6)}
EPISODE_AGENT_STEPS = 500  # dmc_vision@1: 1,000 env steps at action repeat 2
AGENT_STEPS_PER_10K_ENV = 5000


def updates_per_agent_step(method: str, config) -> float:
    """How many updates the method's own schedule runs per agent step on dmc_vision@1 (after its prefill)."""
    if method in ("planet", "dreamerv1"):
        return config.updates_per_episode / EPISODE_AGENT_STEPS
    if method in ("dreamerv2", "dreamerpro"):
        return config.train_steps / config.train_every
    if method in ("dreamerv3", "transdreamer"):
        return config.train_ratio / (config.batch_size * config.batch_length)
    if method == "twm":
        return 1.0 / config.train_every
    raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")


def measure(method: str, preset: str, updates: int, actions: int, threads: int) -> dict:
    import resource

    import gymnasium
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from wmbench.method import get_method, method_config
    from wmbench.protocols import load_protocol
    from wmbench.replay import Replay

    obs_space = {"image": gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)}
    protocol, discrete = DISCRETE.get(method, ("dmc_vision@1", 0))
    act_space = gymnasium.spaces.Discrete(discrete) if discrete else gymnasium.spaces.Box(-1, 1, (6,), np.float32)
    cls = get_method(method)
    config = method_config(cls, load_protocol(protocol), [f"preset={preset}"])
    agent = cls(obs_space, act_space, config, seed=0)
    rng = np.random.default_rng(0)
    replay = Replay(capacity_bytes=256 << 20, seed=0)
    for t in range(1500):
        replay.add({
            "image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
            "action": np.int64(rng.integers(discrete)) if discrete else rng.uniform(-1, 1, 6).astype(np.float32),
            "reward": np.float32(rng.uniform()),
            "is_first": t % EPISODE_AGENT_STEPS == 0,
            "is_last": t % EPISODE_AGENT_STEPS == EPISODE_AGENT_STEPS - 1,
            "is_terminal": False,
        })
    # TWM replays one context step and the frames its first step stacks besides the batch length
    length = config.batch_length + (config.frame_stack if method == "twm" else 0)
    batch = lambda: replay.sample(config.batch_size, length)  # noqa: E731
    agent.train_batch(batch())  # warm-up
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(updates):
        agent.train_batch(batch())
    update_s, update_cpu_s = (time.perf_counter() - start) / updates, (time.process_time() - cpu_start) / updates
    obs = {"image": rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8), "is_first": np.array([True]),
           "is_last": np.array([False]), "is_terminal": np.array([False]), "reward": np.zeros(1, np.float32)}
    _, state = agent.policy(obs, None, mode="eval")
    obs["is_first"] = np.array([False])
    start = time.perf_counter()
    for _ in range(actions):
        _, state = agent.policy(obs, state, mode="eval")
    action_s = (time.perf_counter() - start) / actions
    per_step = updates_per_agent_step(method, config)
    params = sum(p.numel() for p in agent.nets.parameters())
    return {
        "method": method, "preset": preset, "threads": threads, "params": params,
        "batch": [config.batch_size, config.batch_length], "update_s": update_s, "update_cpu_s": update_cpu_s,
        "action_s": action_s, "updates_per_agent_step": per_step,
        "train_h_per_10k_env_steps": AGENT_STEPS_PER_10K_ENV * (per_step * update_s + action_s) / 3600,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }


def imagination_cost(width: int, depth: int, batch: int, contexts: list[int], reps: int = 3) -> list[dict]:
    """Seconds to continue a context of n tokens by one token: with the KV cache vs the full causal pass."""
    import torch

    from wmbench.nn.transformer import TransformerXL

    rows = []
    for n in contexts:
        model = TransformerXL(width, depth, 4, 4 * width, memory=n).eval()
        x = torch.randn(batch, n + 1, width)
        with torch.no_grad():
            _, cache = model(x[:, :n])
            times = {}
            for name, args in (("cached", (x[:, n:], cache)), ("full", (x, None))):
                model(*args)
                start = time.perf_counter()
                for _ in range(reps):
                    model(*args)
                times[name] = (time.perf_counter() - start) / reps
        rows.append({"context": n, "cached_s": times["cached"], "full_s": times["full"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--actions", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--preset", nargs="*", default=[], help="METHOD=PRESET (defaults: " + ", ".join(
        f"{k}={v}" for k, v in DEFAULT_PRESETS.items()) + ")")
    parser.add_argument("--imagination", action="store_true", help="also time cached vs full transformer steps")
    parser.add_argument("--imag-width", type=int, default=256)
    parser.add_argument("--imag-depth", type=int, default=10)
    parser.add_argument("--imag-batch", type=int, default=400)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], args.updates, args.actions, args.threads)))
        return
    presets = dict(DEFAULT_PRESETS)
    for item in args.preset:
        method, sep, preset = item.partition("=")
        if not sep or method not in METHODS:
            parser.error(f"--preset {item!r}: expected METHOD=PRESET with METHOD one of {', '.join(METHODS)}")
        presets[method] = preset
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; "
          f"{args.threads} thread(s), 64x64x3 images, 6 actions, dmc_vision@1 schedules")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for method in args.methods:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", method, presets[method], "--updates",
               str(args.updates), "--actions", str(args.actions), "--threads", str(args.threads)]
        r = run_json(cmd, env)
        print(
            f"{method:10s} {r['preset']:7s} {r['params'] / 1e6:6.2f}M params, batch {r['batch'][0]}x{r['batch'][1]}: "
            f"{r['update_s']:6.2f} s/update ({r['update_cpu_s']:.2f} CPU-s), {r['action_s'] * 1e3:7.1f} ms/action, "
            f"{r['updates_per_agent_step']:.3g} updates/agent step -> {r['train_h_per_10k_env_steps']:.2f} h per 10k "
            f"env steps; peak RSS {r['peak_rss_gb']:.2f} GB"
        )
    if args.imagination:
        import torch

        torch.set_num_threads(args.threads)
        print(f"one imagined token, transformer width {args.imag_width}, depth {args.imag_depth}, batch "
              f"{args.imag_batch}:")
        for r in imagination_cost(args.imag_width, args.imag_depth, args.imag_batch, [16, 64, 256]):
            print(f"  context {r['context']:4d} tokens: cached {r['cached_s'] * 1e3:8.1f} ms, full pass "
                  f"{r['full_s'] * 1e3:8.1f} ms ({r['full_s'] / r['cached_s']:.1f}x)")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
