"""Lambert et al. (2020) objective-mismatch replication on cart-pole, in resumable steps under a time budget.

Steps (each a `wmbench analyze mismatch` call on the same --out, so every finished model is kept and later steps
resume the earlier ones): (1) NLL models on the three data kinds + one per-epoch curve each, (2) value-equivalent
and expert-weighted and value-gradient-weighted models, (3) the CMA-ES adversarial attack, (4) grow the NLL study towards --max-models until
the budget is spent; then the report is rebuilt from every stored model.

    nice python scripts/mismatch_replication.py --out ~/.cache/wmbench/mismatch/cartpole --budget-min 55

Stopping it (Ctrl-C, kill) loses at most the models in flight; running it again resumes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(Path.home() / ".cache" / "wmbench" / "mismatch" / "cartpole"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--backend", default="local", choices=("local", "ray", "inline"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nll-models", type=int, default=30, help="NLL models per data kind in step 1")
    p.add_argument("--other-models", type=int, default=10, help="value/weighted models per data kind in step 2")
    p.add_argument("--max-models", type=int, default=1000, help="NLL models per data kind step 4 grows towards")
    p.add_argument("--budget-min", type=float, default=60.0, help="wall-clock budget; step 4 is stopped at it")
    args = p.parse_args(argv)
    common = ["--env", "cartpole", "--datasets", "pets_expert,pets_onpolicy,grid_lattice", "--backend", args.backend,
              "--workers", str(args.workers), "--out", args.out, "--seed", str(args.seed)]
    steps = [
        ["--models", str(args.nll_models), "--objectives", "nll", "--curves", "1"],
        ["--models", str(args.other_models), "--objectives", "value,weighted,vagram", "--curves", "0"],
        ["--models", str(args.nll_models), "--objectives", "nll", "--curves", "1", "--attack",
         "--attack-generations", "4"],
        ["--models", str(args.max_models), "--objectives", "nll", "--curves", "1"],
    ]
    deadline = time.monotonic() + 60 * args.budget_min
    for k, step in enumerate(steps, 1):
        left = deadline - time.monotonic()
        if left <= 0:
            print(f"budget spent before step {k}", flush=True)
            break
        started = time.monotonic()
        cmd = [sys.executable, "-m", "wmbench.cli", "analyze", "mismatch", *common, *step]
        print(f"step {k}: {' '.join(cmd[3:])}", flush=True)
        try:
            subprocess.run(cmd, check=True, timeout=left)
        except subprocess.TimeoutExpired:
            print(f"step {k} stopped at the budget ({args.budget_min} min)", flush=True)
            break
        print(f"step {k} wall {time.monotonic() - started:.0f} s", flush=True)
    subprocess.run([sys.executable, "-m", "wmbench.cli", "analyze", "mismatch", "--report-only", "--out", args.out],
                   check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
