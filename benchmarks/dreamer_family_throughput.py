"""The Dreamer family side by side: seconds per gradient update of PlaNet, Dreamer v1, Dreamer v2 and DreamerV3 on
one pixel configuration, measured in the same run, so users see their relative cost (issue 20 item 6).

Configuration: `dmc_vision@1` shapes (64x64x3 image, 1-d action: cartpole), each method at its own resolved config
on that protocol (the paper's network sizes, batch and sequence length, imagination horizon), unless `--set
METHOD:KEY=VALUE` changes it. Batches come from a real `wmbench.replay.Replay` filled with random steps, so sampling
costs are included. Each method runs in its own process (peak RSS per method) with the same thread count.

    .venv/bin/python benchmarks/dreamer_family_throughput.py [--methods planet dreamerv1 dreamerv2 dreamerv3]
        [--updates 5] [--threads 2] [--set dreamerv3:preset=size12m]

Printed per method: s/update, updates/s, batch shape, peak RSS, parameter count, the wall time of the updates that
10k env steps cost under the method's own training schedule (`updates_per_10k_env_steps` x s/update, when the
method's config states its schedule), and s/update relative to DreamerV3 in this run. The CPU flags and load the run
saw are printed with it: absolute times are only comparable on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = ("planet", "dreamerv1", "dreamerv2", "dreamerv3")
PROTOCOL, TASK = "dmc_vision@1", "cartpole_swingup"


def updates_per_10k_env_steps(config, action_repeat: int, episode_env_steps: int) -> float | None:
    """Gradient updates that 10k env steps cost under a method's own schedule, read from its config: a train ratio
    (replayed steps per agent step, DreamerV3), a train period (`train_steps` updates every `train_every` agent
    steps, Dreamer v2), or `updates_per_episode` per collected episode (PlaNet / Dreamer v1's C)."""
    agent_steps = 10_000 / action_repeat
    if getattr(config, "train_ratio", None):
        return agent_steps * config.train_ratio / (config.batch_size * config.batch_length)
    if getattr(config, "train_every", None):
        return agent_steps / config.train_every * getattr(config, "train_steps", 1)
    if getattr(config, "updates_per_episode", None):
        return 10_000 / episode_env_steps * config.updates_per_episode
    return None


def measure(method: str, updates: int, threads: int, overrides: list[str]) -> dict:
    import resource

    import numpy as np
    import torch

    from wmbench.envs import make_env
    from wmbench.method import get_method, method_config
    from wmbench.protocols import load_protocol
    from wmbench.replay import Replay

    torch.set_num_threads(threads)
    proto = load_protocol(PROTOCOL)
    env = make_env(proto, TASK, 0)
    obs_space, act_space = env.obs_space, env.act_space
    env.close()
    cls = get_method(method)
    config = method_config(cls, proto, overrides)
    agent = cls(obs_space, act_space, config, seed=0)
    batch, length = config.batch_size, config.batch_length + getattr(config, "replay_context", 0)
    rng = np.random.default_rng(0)
    replay = Replay(2 * 1024**3, seed=0)
    steps = max(2_000, 2 * length)
    for t in range(steps):
        step = {k: (rng.integers(0, 256, s.shape, dtype=np.uint8) if s.dtype == np.uint8 else
                    rng.normal(size=s.shape).astype(s.dtype)) for k, s in obs_space.items()}
        step.update(reward=np.float32(rng.random()), is_first=t % 500 == 0, is_last=t % 500 == 499,
                    is_terminal=False, action=rng.uniform(-1, 1, act_space.shape).astype(np.float32))
        replay.add(step)

    def one() -> None:
        kw = {"annotations": True, "index": True} if getattr(config, "replay_context", 0) else {}
        agent.train_batch(replay.sample(batch, length, **kw))

    one()  # warm-up: allocator, lazy initialisation
    start = time.perf_counter()
    for _ in range(updates):
        one()
    seconds = (time.perf_counter() - start) / updates
    per10k = updates_per_10k_env_steps(config, proto.action_repeat, int(proto.env.get("time_limit", 1000)))
    nets = [m for m in vars(agent).values() if isinstance(m, torch.nn.Module)]
    params = sum(p.numel() for m in {id(m): m for m in nets}.values() for p in m.parameters())
    return {
        "method": method,
        "s_per_update": seconds,
        "updates_per_s": 1 / seconds,
        "batch": [batch, length],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parameters": int(params),
        "updates_per_10k_env_steps": per10k,
        "update_hours_per_10k_env_steps": per10k * seconds / 3600 if per10k else None,
        "overrides": overrides,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="METHOD:KEY=VALUE")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    overrides: dict[str, list[str]] = {}
    for item in args.set:
        method, sep, kv = item.partition(":")
        if not sep or "=" not in kv:
            parser.error(f"--set {item!r}: expected METHOD:KEY=VALUE, e.g. dreamerv3:preset=size12m")
        overrides.setdefault(method, []).append(kv)
    if args.child:
        print(json.dumps(measure(args.child, args.updates, args.threads, overrides.get(args.child, []))))
        return

    sys.path.insert(0, str(HERE))
    from machine import cpu_flags

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    print(json.dumps(cpu_flags()))
    rows = []
    for method in args.methods:
        cmd = [sys.executable, __file__, "--child", method, "--updates", str(args.updates),
               "--threads", str(args.threads)] + [f"--set={s}" for s in args.set]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode:
            print(f"{method}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = next((r["s_per_update"] for r in rows if r["method"] == "dreamerv3"), None)
    print(f"{'method':<11} {'s/update':>9} {'updates/s':>9} {'batch':>8} {'params':>11} {'RSS MB':>7} "
          f"{'upd/10k env':>11} {'h/10k env':>9} {'vs v3':>6}")
    for r in rows:
        rel = f"{r['s_per_update'] / base:.2f}" if base else "-"
        per = f"{r['updates_per_10k_env_steps']:.0f}" if r["updates_per_10k_env_steps"] else "-"
        hours = f"{r['update_hours_per_10k_env_steps']:.2f}" if r["update_hours_per_10k_env_steps"] else "-"
        print(f"{r['method']:<11} {r['s_per_update']:>9.3f} {r['updates_per_s']:>9.2f} "
              f"{'x'.join(map(str, r['batch'])):>8} {r['parameters']:>11,} {r['peak_rss_mb']:>7.0f} {per:>11} "
              f"{hours:>9} {rel:>6}")
    print(f"load average after the run: {os.getloadavg()[0]:.2f} (figures under load are upper bounds)")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": cpu_flags(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
