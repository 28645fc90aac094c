"""Long background runs of the classic model-based baselines (PETS, MB-MF) on half-cheetah, checkpointed.

    nice .venv/bin/python scripts/classic_long_runs.py pets --steps 30000 --set preset=cpu &
    nice .venv/bin/python scripts/classic_long_runs.py mbmf --steps 30000 --set preset=cpu &

Runs go to ~/.cache/wmbench/classic_long/ (or --root) through `wmbench.runner.run`, one checkpoint per episode:
re-running the same command resumes a killed run, and a finished run returns at once. The protocol is
`control_cheetah@1` from protocols/ when it exists, else the proposed file below written to
~/.cache/wmbench/protocols/ (a protocol holds one budget, so half-cheetah's 300-episode PETS budget cannot live
in control@1; see docs/classic_mbrl.md). `--steps` stops early (recorded in run.json as steps_override).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wmbench.protocols import load_protocol
from wmbench.runner import run

CACHE = Path.home() / ".cache" / "wmbench"


def cheetah_protocol():
    return load_protocol("control_cheetah@1")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("method", choices=["pets", "mbmf"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="stop after this many agent steps")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override k=v")
    parser.add_argument("--root", type=Path, default=CACHE / "classic_long")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    result = run(
        args.method,
        cheetah_protocol(),
        "half_cheetah",
        args.seed,
        root=args.root,
        overrides=args.overrides,
        steps=args.steps,
        checkpoint_every=1000,
        threads=args.threads,
    )
    print(result)


if __name__ == "__main__":
    main()
