"""sheeprl's DreamerV3 training throughput on CPU, in the configuration of benchmarks/dreamerv3_throughput.py.

Runs with the python of a separate venv that has sheeprl installed (benchmarks/peers/README.md), never with wmbench's.
The agent comes from sheeprl's own configs (`exp=dreamer_v3_dmc_walker_walk algo=dreamer_v3_XS`, switched to the
proprio observation) and its `build_agent`; every update is sheeprl's `train` plus the target-critic update that its
`main` does before each gradient step. Batches are sampled with sheeprl's `sample_batches` from its replay buffer,
filled with random steps (DMC walker_walk shapes: 24 state floats, 6 actions in [-1, 1]; episodes of 500 steps).

    /root/.cache/wmbench/scratch/sheeprl-venv/bin/python benchmarks/peers/sheeprl_dreamerv3.py --updates 20 --threads 2

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import resource
import time

import gymnasium
import hydra
import numpy as np
import torch
from hydra import compose, initialize_config_module
from lightning.fabric import Fabric
from omegaconf import OmegaConf
from sheeprl.algos.dreamer_v2.utils import reinforce_weight, sample_batches
from sheeprl.algos.dreamer_v3.agent import build_agent
from sheeprl.algos.dreamer_v3.dreamer_v3 import train
from sheeprl.algos.dreamer_v3.utils import Moments
from sheeprl.data.buffers import EnvIndependentReplayBuffer, SequentialReplayBuffer
from sheeprl.utils.metric import MetricAggregator
from sheeprl.utils.utils import dotdict
from torch.distributions import Distribution

OBS_SIZE, ACTION_SIZE, EPISODE_LENGTH, BUFFER_STEPS = 24, 6, 500, 5000
OVERRIDES = [
    "exp=dreamer_v3_dmc_walker_walk",
    "algo=dreamer_v3_XS",  # deter/hidden/dense 256, 1-layer MLPs, 32x32 latents, horizon 15
    "env.wrapper.from_pixels=False",
    "env.wrapper.from_vectors=True",
    "algo.cnn_keys.encoder=[]",
    "algo.cnn_keys.decoder=[]",
    "algo.mlp_keys.encoder=[state]",
    "algo.mlp_keys.decoder=[state]",
    "algo.per_rank_batch_size=16",
    "algo.per_rank_sequence_length=64",
    "fabric.accelerator=cpu",
    "fabric.devices=1",
    "fabric.precision=32-true",
    "buffer.memmap=False",
    "model_manager.disabled=True",
]


def sheeprl_config(threads: int) -> dotdict:
    """sheeprl's composed config, resolved as its CLI (`sheeprl.cli.run`) resolves it."""
    with initialize_config_module(config_module="sheeprl.configs", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*OVERRIDES, f"num_threads={threads}"])
    return dotdict(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True))


def random_buffer(seed: int = 0) -> EnvIndependentReplayBuffer:
    rng = np.random.default_rng(seed)
    steps = np.arange(BUFFER_STEPS)[:, None, None]  # [time, env, 1], the layout of sheeprl's buffers
    data = {
        "state": rng.normal(size=(BUFFER_STEPS, 1, OBS_SIZE)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (BUFFER_STEPS, 1, ACTION_SIZE)).astype(np.float32),
        "rewards": rng.uniform(size=(BUFFER_STEPS, 1, 1)).astype(np.float32),
        "terminated": np.zeros((BUFFER_STEPS, 1, 1), np.float32),
        "truncated": (steps % EPISODE_LENGTH == EPISODE_LENGTH - 1).astype(np.float32),
        "is_first": (steps % EPISODE_LENGTH == 0).astype(np.float32),
    }
    rb = EnvIndependentReplayBuffer(
        BUFFER_STEPS, n_envs=1, memmap=False, buffer_cls=SequentialReplayBuffer, seed=seed
    )
    rb.add(data)
    return rb


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = sheeprl_config(args.threads)
    # What sheeprl's CLI sets before an algorithm runs (`sheeprl.cli.run_algorithm`)
    torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    Distribution.set_default_validate_args(cfg.distribution.validate_args)
    MetricAggregator.disabled = cfg.metric.log_level == 0
    fabric = Fabric(accelerator="cpu", devices=1, precision="32-true")
    fabric.seed_everything(cfg.seed)

    obs_space = gymnasium.spaces.Dict(
        {"state": gymnasium.spaces.Box(-np.inf, np.inf, (OBS_SIZE,), np.float32)}
    )
    actions_dim, is_continuous = (ACTION_SIZE,), True
    world_model, actor, critic, target_critic, _player = build_agent(
        fabric, actions_dim, is_continuous, cfg, obs_space
    )
    trained = ((cfg.algo.world_model, world_model), (cfg.algo.actor, actor), (cfg.algo.critic, critic))
    optimizers = fabric.setup_optimizers(
        *[
            hydra.utils.instantiate(c.optimizer, params=net.parameters(), _convert_="all")
            for c, net in trained
        ]
    )
    percentile = cfg.algo.actor.moments.percentile
    moments = Moments(
        cfg.algo.actor.moments.decay, cfg.algo.actor.moments.max, percentile.low, percentile.high
    )
    aggregator = None
    # sheeprl's default (metric.log_level=1) aggregates the losses at every update
    if not MetricAggregator.disabled:
        aggregator = hydra.utils.instantiate(cfg.metric.aggregator, _convert_="all")
    rb = random_buffer()
    nets = (world_model, actor, critic, target_critic)
    gradient_steps = 0

    def update(batch: dict[str, torch.Tensor]) -> None:
        nonlocal gradient_steps
        # The target critic follows the critic before every gradient step, as in sheeprl's `main`
        if gradient_steps % cfg.algo.critic.per_rank_target_network_update_freq == 0:
            tau = 1 if gradient_steps == 0 else cfg.algo.critic.tau
            for param, target_param in zip(
                critic.module.parameters(), target_critic.parameters(), strict=True
            ):
                target_param.data.copy_(tau * param.data + (1 - tau) * target_param.data)
        train(fabric, *nets, *optimizers, batch, aggregator, cfg, is_continuous, actions_dim, moments)
        gradient_steps += 1

    for batch in sample_batches(fabric, cfg, rb, 2):  # warm-up (allocator, lazy init)
        update(batch)
    start, cpu_start = time.perf_counter(), time.process_time()
    for batch in sample_batches(fabric, cfg, rb, args.updates):
        update(batch)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start

    weight = reinforce_weight(cfg.algo.actor.objective_mix, is_continuous)
    actor_grad = {0.0: "backprop", 1.0: "reinforce"}.get(float(weight), f"mix (reinforce weight {weight})")
    result = {
        "impl": "sheeprl",
        "version": importlib.metadata.version("sheeprl"),
        "torch": torch.__version__,
        "threads": args.threads,
        "updates": args.updates,
        "seconds": seconds,
        "updates_per_s": args.updates / seconds,
        "cpu_s_per_update": cpu_seconds / args.updates,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,  # KiB -> GB
        # Trained parameters: world model, actor and critic (the target critic is a copy)
        "params": sum(p.numel() for net in (world_model, actor, critic) for p in net.parameters()),
        "actor_grad": actor_grad,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
