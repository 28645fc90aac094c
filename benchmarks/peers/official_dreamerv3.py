"""The official DreamerV3 (JAX, danijar/dreamerv3) training throughput in the configuration of
benchmarks/dreamerv3_throughput.py, printed as one JSON line.

Run with the python of a separate venv that holds the official code's dependencies (never wmbench's `.venv`; this
script does not import wmbench), with the official source tree given by --src (see README.md beside this file):

    python official_dreamerv3.py --src ~/.cache/wmbench/scratch/dreamerv3-src --updates 10 --threads 2 [--size xs|size1m]

Configuration: configs.yaml `defaults` on CPU in float32 (jax.compute_dtype), no replay context (ours has none),
batch 16 x 64, imagination horizon 15 (the defaults), the DMC walker proprio spaces (vector 24, action 6) and:
  xs      deter 256, hidden 256, 32 classes, units 256, 1-layer MLPs (the peers' XS configuration, our `xs` preset)
  size1m  configs.yaml's size1m block (deter 512, hidden 64, 4 classes, units 64; 3-layer MLPs as the defaults)
Each update is the official `Agent.train` on a random batch of the agent's own spaces (its jitted, compiled train
step); 2 warm-up updates (compilation) are not timed. The actor gradient is the official one (REINFORCE).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--src", default=os.environ.get(
        "DREAMERV3_SRC", os.path.expanduser("~/.cache/wmbench/scratch/dreamerv3-src")),
        help="checkout of danijar/dreamerv3 at e3f0224 (default: $DREAMERV3_SRC or ~/.cache/wmbench/scratch/dreamerv3-src)")
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", choices=("xs", "size1m"), default="xs")
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = (f"--xla_cpu_multi_thread_eigen={'true' if args.threads > 1 else 'false'} "
                               f"intra_op_parallelism_threads={args.threads}")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    # XLA's single-thread flags still leave work on other cores (measured at size1m on an idle machine: 1.10 CPU-s
    # per 0.65 s update), so one thread means one core here, as for ours (dreamerv3_throughput.py)
    if args.threads == 1:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    sys.path.insert(0, args.src)

    import elements
    import numpy as np
    import ruamel.yaml as yaml
    from dreamerv3.agent import Agent
    from embodied.jax import internal

    configs = yaml.YAML(typ="safe").load(elements.Path(os.path.join(args.src, "dreamerv3", "configs.yaml")).read())
    config = elements.Config(configs["defaults"])
    if args.size == "xs":
        size = {r".*\.rssm": {"deter": 256, "hidden": 256, "classes": 32}, r".*\.units": 256, r".*\.layers": 1}
    else:
        size = configs["size1m"]
    config = config.update(size)
    config = config.update({
        "jax.platform": "cpu", "jax.compute_dtype": "float32", "jax.prealloc": False,
        "batch_size": 16, "batch_length": 64, "replay_context": 0,
    })
    f32 = np.float32
    obs_space = {
        "vector": elements.Space(f32, (24,)),
        "reward": elements.Space(f32),
        "is_first": elements.Space(bool),
        "is_last": elements.Space(bool),
        "is_terminal": elements.Space(bool),
    }
    act_space = {"action": elements.Space(f32, (6,), -1.0, 1.0)}
    agent = Agent(obs_space, act_space, elements.Config(
        **config.agent, logdir="/tmp/official_dreamerv3_bench", seed=0, jax=config.jax,
        batch_size=config.batch_size, batch_length=config.batch_length, replay_context=config.replay_context,
        report_length=config.report_length, replica=0, replicas=1,
    ))
    rng = np.random.default_rng(0)
    B, T = config.batch_size, config.batch_length

    def batch(counter: int) -> dict:
        data = agent._zeros(agent.spaces, (B, T))
        data["vector"] = rng.normal(size=(B, T, 24)).astype(f32)
        data["action"] = rng.uniform(-1, 1, (B, T, 6)).astype(f32)
        data["reward"] = rng.uniform(size=(B, T)).astype(f32)
        data["is_first"][:, 0] = True
        # as the official Agent.stream does: the batch on the train sharding, then a seed per batch
        data = internal.device_put(data, agent.train_sharded)
        return {**data, "seed": agent._seeds(counter, agent.train_mirrored)}

    carry = agent.init_train(B)
    for i in range(2):
        carry, _, _ = agent.train(carry, batch(i))
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(args.updates):
        carry, _, mets = agent.train(carry, batch(2 + i))
    import jax

    jax.block_until_ready(carry)
    seconds = time.perf_counter() - start
    # trained networks only (not the optimiser's moments, the slow critic copy or the normalisers' statistics)
    nets = ("enc/", "dyn/", "dec/", "rew/", "con/", "pol/", "val/")
    params = sum(int(np.prod(v.shape)) for k, v in agent.params.items() if k.startswith(nets))
    print(json.dumps({
        "implementation": "danijar/dreamerv3 (official JAX)", "size": args.size, "actor_grad": "reinforce",
        "precision": "fp32", "threads": args.threads, "updates": args.updates, "seconds": seconds,
        "updates_per_s": args.updates / seconds, "cpu_s_per_update": (time.process_time() - cpu_start) / args.updates,
        "params": params, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "jax": jax.__version__,
    }))


if __name__ == "__main__":
    main()
