"""`python -m wmbench.demo` (what `make demo` runs): watch a model-based method learn, in about two minutes on a CPU.

Measured 2026-11-30 on this project's 2-core machine type at load 3.0 from other jobs: 1:58 wall, 110 s CPU.

By default: PETS (`preset=cpu`) and the `random` floor on the control suite's cart-pole swing-up (`control@1`), for
10 of the protocol's 15 episodes, seed 0, under ./demo_runs. PETS swings the pole up within about 8 episodes here
(docs/classic_mbrl.md), so the gap to random is visible in minutes. Then a comparison report (HTML + Markdown) of
these runs, and the next commands to try.

These are smoke runs (recorded as such in run.json): fewer episodes than the protocol's budget and one seed where
the protocol asks for at least 3. They show that the pipeline works and that the method learns; their scores are
not benchmark results. Runs resume if interrupted and are not re-run once finished (delete ./demo_runs to start
over). A suite that is not installed is skipped with the command that installs it.

DreamerV3 is not in the default demo: within minutes of CPU it does not learn yet (at its smoke budget the old demo
showed random beating it on cartpole_balance, 341 vs 261, which says nothing about either); `--methods random
dreamerv3:preset=tiny --cases dmc_proprio@1:cartpole_balance --steps 0` runs it anyway, at the smoke budget.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from wmbench.envs import SuiteNotInstalled
from wmbench.errors import WmbenchError

DEFAULT_CASES = ("control@1:cartpole_swingup",)
DEFAULT_METHODS = ("random", "pets:preset=cpu")
DEFAULT_STEPS = 2000  # 10 of control@1's 15 episodes of 200 steps: PETS is past the swing-up by then

NEXT_COMMANDS = """\
next commands to try (CPU times measured on this project's shared 2-core machines):
  .venv/bin/wmbench run pets control@1 --task cartpole_swingup --seed 0 --set preset=cpu --threads 1
      # the protocol's full budget (15 episodes): about 3-6 min
  .venv/bin/wmbench sweep pets control@1 --seeds 0-2 --set preset=cpu --root runs
      # the protocol's minimum of 3 seeds, 2 at a time: about 10 min; then
  .venv/bin/wmbench report runs/control@1 --against random   # (with a random sweep beside it)
  .venv/bin/wmbench report --published dreamerv3 ppo --protocol atari100k@1 --against dreamerv3 --out atari.html
      # published per-seed scores shipped with wmbench: seconds
  .venv/bin/wmbench new-method my_method   # your own method; the whole path: docs/submitting.md
  .venv/bin/wmbench run dreamerv3 atari100k@1 --task pong --seed 0 --device cuda
      # GPU-scale: DreamerV3 at the protocol's budget takes days on a CPU (docs/dreamerv3.md)"""


@dataclass
class Row:
    label: str
    protocol: str
    task: str
    outcome: str  # final score, or skipped / error / failed
    note: str  # time, or the reason
    run_dir: Path | None = None
    returns: tuple[float, ...] = ()


def parse_method(spec: str) -> tuple[str, list[str]]:
    """`pets:preset=cpu,horizon=10` -> ("pets", ["preset=cpu", "horizon=10"])."""
    name, _, overrides = spec.partition(":")
    return name, [o for o in overrides.split(",") if o]


def episode_returns(run_dir: Path) -> tuple[float, ...]:
    import pandas as pd

    scores = pd.read_csv(run_dir / "scores.csv")
    return tuple(scores.loc[scores["phase"] == "train", "score"].astype(float))


def run_cases(cases, methods, seeds, root, steps, device, progress, threads=None) -> list[Row]:
    from wmbench.runner import Terminated, run

    # Finished runs are reused, not re-run: a run whose run.json is untouched by the call was finished before it.
    before = {p.resolve(): p.stat().st_mtime_ns for p in Path(root).rglob("run.json")} if Path(root).exists() else {}
    rows = []
    for case in cases:
        protocol, _, task = case.partition(":")
        for spec in methods:
            method, overrides = parse_method(spec)
            label = f"{method}{' (' + ' '.join(overrides) + ')' if overrides else ''}"
            for seed in seeds:
                print(f"== {label} on {protocol} {task}, seed {seed}, {steps or 'smoke'} agent steps (smoke run)",
                      file=sys.stderr, flush=True)
                started = time.monotonic()
                try:
                    res = run(method, protocol, task, seed, root=root, overrides=overrides, smoke=True, steps=steps,
                              device=device, progress=progress, threads=threads)
                except Terminated:
                    raise  # SIGTERM stops the whole demo, not just this run
                except SuiteNotInstalled as e:
                    rows.append(Row(label, protocol, task, "skipped", str(e).splitlines()[0]))
                    continue
                except WmbenchError as e:
                    rows.append(Row(label, protocol, task, "error", str(e).splitlines()[0]))
                    continue
                except Exception as e:  # keep demonstrating the other runs; the traceback is the bug report
                    traceback.print_exc()
                    rows.append(Row(label, protocol, task, "failed", f"{type(e).__name__}: {e}"))
                    continue
                score = "n/a" if res.final_score is None else f"{res.final_score:.1f}"
                took = f"{time.monotonic() - started:.0f} s" + (" (resumed)" if res.resumed else "")
                info = (res.run_dir / "run.json").resolve()
                if res.status == "finished" and before.get(info) == info.stat().st_mtime_ns:
                    took = "reused (finished earlier)"
                rows.append(Row(label, protocol, task, score, took, res.run_dir, episode_returns(res.run_dir)))
    return rows


def print_table(rows: list[Row]) -> None:
    header = ("method", "protocol", "task", "final score", "time / note", "returns by episode")
    cells = [header] + [
        (r.label, r.protocol, r.task, r.outcome, r.note, " ".join(f"{x:.0f}" for x in r.returns)) for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header) - 1)]
    for k, c in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(c[:-1], widths, strict=False)) + "  " + c[-1])
        if k == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * len(header[-1]))


def write_reports(rows: list[Row], root: Path, reps: int) -> list[str]:
    """One report per protocol from the demo's own runs (smoke entries, labelled); returns lines to print."""
    from wmbench import report

    lines = []
    by_protocol: dict[str, list[Path]] = {}
    for r in rows:
        if r.run_dir is not None:
            by_protocol.setdefault(r.protocol, []).append(r.run_dir)
    for protocol, dirs in by_protocol.items():
        name = protocol.replace("@", "_")
        out = root / f"report_{name}.html"
        try:
            c = report.collect(dirs, protocol=protocol, include_smoke=True)
            labels = [e.label for e in c.entries]
            against = next((lab for lab in labels if lab.startswith("random ")), None) if len(labels) > 1 else None
            command = f"python -m wmbench.demo (report of {len(dirs)} run(s))"
            built = report.build_report(c, against, reps=reps, poi_reps=reps, command=command)
            out.write_text(built.html())
            out.with_suffix(".md").write_text(built.markdown())
        except WmbenchError as e:
            lines.append(f"report for {protocol} not written: {e}")
            continue
        lines.append(f"report: {out} (and {out.with_suffix('.md').name}); entries: {', '.join(labels)}")
        for label, value in built.improvement.items():
            lines.append(f"  P({label} > {against}) = {value[0]:.2f} [{value[1]:.2f}, {value[2]:.2f}] "
                         "(one seed each: the interval says how little one seed establishes)")
    return lines


def learning_summary(rows: list[Row]) -> list[str]:
    """Plain-language comparison of each method with the random floor on the same case."""
    lines = []
    for r in rows:
        if not r.returns or r.label.startswith("random") or r.outcome == "n/a":
            continue
        floor = [f for f in rows if f.label == "random" and (f.protocol, f.task) == (r.protocol, r.task)
                 and f.returns and f.outcome != "n/a"]
        if not floor:
            continue
        mine, base = float(r.outcome), float(floor[0].outcome)
        verdict = "above" if mine > base else "not above"
        lines.append(f"{r.label} on {r.protocol} {r.task}: final score {mine:.1f}, {verdict} random's {base:.1f} "
                     "(the protocol's rule: mean return of the last episodes).")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wmbench.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="demo_runs", help="where the run directories go (default ./demo_runs)")
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), metavar="PROTOCOL:TASK",
                        help=f"protocol:task pairs (default: {' '.join(DEFAULT_CASES)})")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD[:KEY=VALUE,...]",
                        help=f"methods with config overrides (default: {' '.join(DEFAULT_METHODS)})")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                        help=f"agent steps per run (default {DEFAULT_STEPS}; 0: the protocol's smoke budget)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap replications of the report")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per run (default 1: PETS's small matmuls gain little from a second thread, "
                        "and one thread keeps the demo fast on a busy machine: 126 s vs 444 s at load 3-4; "
                        "0: torch's default)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    for case in args.cases:
        if not case.partition(":")[2]:
            parser.error(f"case {case!r} must be PROTOCOL:TASK, e.g. control@1:cartpole_swingup")

    root = Path(args.root)
    print(f"wmbench demo: {', '.join(args.methods)} on {', '.join(args.cases)}, {args.steps or 'smoke-budget'} agent "
          f"steps per run, under {root}/ (about 2 minutes on an idle 2-core CPU with the defaults)", file=sys.stderr)
    t0 = time.monotonic()
    rows = run_cases(args.cases, args.methods, args.seeds, root, args.steps or None, args.device,
                     not args.no_progress, args.threads or None)
    print()
    print_table(rows)
    print()
    for line in learning_summary(rows):
        print(line)
    print("Not a result: these are smoke runs (fewer episodes than the protocol's budget, one seed where the protocol "
          "asks for at least 3). They show that the pipeline works and whether a method learns; a benchmark score "
          "needs the protocol's full budget and seeds (wmbench sweep), and smoke scores are never comparable with "
          "scores at another budget.")
    for line in write_reports(rows, root, args.reps):
        print(line)
    print(f"total time: {time.monotonic() - t0:.0f} s (finished runs are reused; delete {root} to run them again)")
    print()
    print(NEXT_COMMANDS)
    return 0 if all(r.outcome not in ("failed", "error") for r in rows) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeyboardInterrupt, WmbenchError) as e:  # Terminated (SIGTERM) is a WmbenchError
        print(f"\nstopped: {e or 'interrupted'}; run `python -m wmbench.demo` again to resume", file=sys.stderr)
        sys.exit(130 if isinstance(e, KeyboardInterrupt) else 2)
