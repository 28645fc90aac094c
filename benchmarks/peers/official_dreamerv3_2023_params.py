"""Trained-parameter counts of the official DreamerV3 2023 release (danijar/dreamerv3 at 8fa35f8), DMC proprio.

Builds the official `dreamerv3.Agent` with its `dmc_proprio` config for a domain's observation and action spaces and
prints the counts its own optimisers report (`jaxutils.Optimizer.PARAM_COUNTS`: world model, actor, critic; the
slow critic is not trained, so not counted). Runs with the python of a separate environment (see README.md), never
wmbench's: it imports the official code, not wmbench. Prints one JSON line.

    python official_dreamerv3_2023_params.py cartpole_swingup [--src DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# dm_control observation specs of the domains compared in docs/dreamerv3.md (key -> shape), and action dims
TASKS = {
    "cartpole_swingup": ({"position": (3,), "velocity": (2,)}, 1),
    "ball_in_cup_catch": ({"position": (4,), "velocity": (4,)}, 2),
    "walker_walk": ({"orientations": (14,), "height": (), "velocity": (9,)}, 6),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--src", default=str(Path.home() / ".cache/wmbench/scratch/dv3-2023-src"),
                        help="a checkout of danijar/dreamerv3 at 8fa35f8 (the directory holding dreamerv3/)")
    args = parser.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path[:0] = [args.src, str(Path(args.src) / "dreamerv3")]  # the 2023 code imports `embodied` top-level
    import embodied
    import numpy as np
    import ruamel.yaml as yaml
    from dreamerv3 import agent as official
    from dreamerv3 import jaxutils

    configs = yaml.YAML(typ="safe").load((Path(official.__file__).parent / "configs.yaml").read_text())
    config = embodied.Config(configs["defaults"]).update(configs["dmc_proprio"])
    # batch dims only shape the dummy batch the agent is initialised with; they do not change any parameter
    config = config.update({"jax.platform": "cpu", "batch_size": 2, "batch_length": 4})
    keys, actions = TASKS[args.task]
    obs_space = {k: embodied.Space(np.float32, shape) for k, shape in keys.items()}
    obs_space.update(reward=embodied.Space(np.float32), is_first=embodied.Space(bool),
                     is_last=embodied.Space(bool), is_terminal=embodied.Space(bool))  # fmt: skip
    act_space = {"action": embodied.Space(np.float32, (actions,), -1, 1)}
    official.Agent(obs_space, act_space, embodied.Counter(), config)
    counts = {name.split("/")[-1]: int(n) for name, n in jaxutils.Optimizer.PARAM_COUNTS.items()}
    print(json.dumps({"impl": "dreamerv3-2023", "commit": "8fa35f8", "task": args.task, "counts": counts,
                      "total": sum(counts.values())}))  # fmt: skip


if __name__ == "__main__":
    main()
