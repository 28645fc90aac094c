"""`wmbench analyze <analysis> ...`: command line of the analyses (today: `mismatch`, wmbench.analysis.mismatch).

`wmbench analyze mismatch --env cartpole --models 200 --datasets expert,onpolicy,grid --objectives nll
--backend local --workers 2 --out DIR --seed 0` collects the datasets (cached in DIR/data), trains and evaluates
the models on a sweep backend (each model's record in DIR/models; re-running the command resumes), then writes
the tables and figures into DIR. Run it again with other --objectives/--models on the same DIR to add models.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import fields, replace
from pathlib import Path

from wmbench.errors import WmbenchError

ANALYSES = ("mismatch",)
# A tiny configuration for smoke tests and CI (seconds, not hours): short episodes, small search, little data.
QUICK = {"hidden": 32, "max_epochs": 4, "horizon": 5, "population": 16, "elites": 4, "iterations": 2,
         "episode_steps": 12, "expert_episodes": 3, "expert_horizon": 6, "expert_population": 24,
         "onpolicy_episodes": 3, "grid_points": 200, "unroll": 3, "curve_every": 1,
         "pets_episodes": 4, "pets_expert_episodes": 2, "pets_members": 2, "pets_particles": 2, "pets_epochs": 2,
         "lattice_points": 3, "vagram_value_epochs": 3}


def _csv(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise WmbenchError(f"{flag} {text!r}: unknown {bad or 'empty'}; choose from {','.join(allowed)}")
    return list(dict.fromkeys(items))


def build_parser() -> argparse.ArgumentParser:
    from wmbench.analysis.mismatch import DATASETS, OBJECTIVES, PAPER_DATASETS

    p = argparse.ArgumentParser(prog="wmbench analyze mismatch", description=__doc__.split("\n\n")[1])
    p.add_argument("--env", default="cartpole")
    p.add_argument("--models", type=int, default=200, help="models per dataset and objective")
    p.add_argument("--datasets", default=",".join(PAPER_DATASETS),
                   help=f"comma-separated, of {','.join(DATASETS)} (the last three: the first version's kinds)")
    p.add_argument("--objectives", default="nll", help=f"comma-separated, of {','.join(OBJECTIVES)}")
    p.add_argument("--backend", default="local", choices=("local", "ray", "inline"))
    p.add_argument("--workers", type=int, default=max(1, len(os.sched_getaffinity(0))))
    p.add_argument("--chunk", type=int, default=5, help="models per backend job")
    p.add_argument("--out", default=str(Path.home() / ".cache" / "wmbench" / "mismatch"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--curves", type=int, default=2, help="models per dataset and objective evaluated every epoch")
    p.add_argument("--attack", action="store_true",
                   help="also run the CMA-ES adversarial attack (on the expert data: pets_expert, or legacy expert)")
    p.add_argument("--attack-generations", type=int, default=6)
    p.add_argument("--attack-dataset", default=None,
                   help="dataset whose best stored NLL model is attacked (default: the expert kind)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples for the correlation CIs")
    p.add_argument("--quick", action="store_true", help="tiny config (short episodes, small search): smoke tests")
    p.add_argument("--report-only", action="store_true", help="only rebuild tables and figures from DIR")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a MismatchConfig field, e.g. --set episode_steps=200")
    return p


def config_from(args: argparse.Namespace):
    from wmbench.analysis.mismatch import MismatchConfig

    cfg = MismatchConfig(env=args.env)
    if args.quick:
        cfg = replace(cfg, **QUICK)
    types = {f.name: f.type for f in fields(MismatchConfig)}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            raise WmbenchError(f"--set {item!r}: use KEY=VALUE with KEY one of {', '.join(types)}")
        cast = {"int": int, "float": float, "str": str}[str(types[key])]
        cfg = replace(cfg, **{key: cast(value)})
    cfg.task  # noqa: B018 - validates --env
    return cfg


def cli_analyze(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: wmbench analyze {{{'|'.join(ANALYSES)}}} [options]   (wmbench analyze mismatch --help)")
        return 0
    if not argv or argv[0] not in ANALYSES:
        raise WmbenchError(f"usage: wmbench analyze {{{'|'.join(ANALYSES)}}} [options]; got {argv[:1] or 'nothing'}")
    from wmbench.analysis import mismatch as mm

    args = build_parser().parse_args(argv[1:])
    out = Path(args.out).expanduser().resolve()
    if not args.report_only:
        if args.models < 1:
            raise WmbenchError(f"--models must be >= 1, got {args.models}")
        datasets = _csv(args.datasets, mm.DATASETS, "--datasets")
        objectives = _csv(args.objectives, mm.OBJECTIVES, "--objectives")
        if args.attack_dataset is not None and args.attack_dataset not in datasets:
            raise WmbenchError(f"--attack-dataset {args.attack_dataset!r} is not among --datasets {','.join(datasets)}")
        started = time.perf_counter()
        spec = mm.Spec(config_from(args), args.seed, str(out))
        mm.write_spec(spec)
        spec = mm.prepare_data(spec, datasets, with_expert="weighted" in objectives or args.attack)
        expert = mm.expert_kind(datasets)
        tasks = [(f"{d}.{o}", args.models) for d in datasets for o in objectives]
        tasks += [(f"{d}.{o}.curve", args.curves) for d in datasets for o in objectives if args.curves > 0]
        mm.run_jobs(spec, tasks, args.backend, args.workers, args.chunk)
        if args.attack:
            result = mm.adversarial_attack(spec, args.attack_dataset or expert, generations=args.attack_generations)
            (out / "attack.json").write_text(json.dumps(result, indent=1))
        print(f"models done in {time.perf_counter() - started:.0f} s")
    table = mm.write_report(out, args.reps, args.seed)
    print(mm.markdown_table(table))
    print(f"report: {out}/correlations.md, models.csv, correlations.csv, *.png")
    return 0
