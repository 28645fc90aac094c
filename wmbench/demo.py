"""`python -m wmbench.demo` (what `make demo` runs): a few smoke-budget runs end to end, then a table of results.

By default: the `random` floor and DreamerV3 (`preset=tiny`, the smallest preset: seconds-scale updates on a CPU)
on Atari100k Pong and DMC-proprio cartpole_balance, each at its protocol's smoke budget, under ./demo_runs.
Runs resume if interrupted and are not re-run once finished (delete ./demo_runs to start over). A suite that is
not installed is skipped with the command that installs it; a method that cannot be imported falls back to the
runs that can be done, and the table says so.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from wmbench.envs import SuiteNotInstalled
from wmbench.errors import WmbenchError

DEFAULT_CASES = ("atari100k@1:pong", "dmc_proprio@1:cartpole_balance")


def learning_method() -> tuple[str, list[str], str | None]:
    """DreamerV3 with its `tiny` preset when available; otherwise (None, reason)."""
    try:
        from wmbench.method import get_method

        cls = get_method("dreamerv3")
    except Exception as e:  # not installed / import error in the method package: the demo still runs the floor
        return "dreamerv3", [], f"dreamerv3 unavailable ({type(e).__name__}: {e}); running the random floor only"
    if "tiny" not in getattr(cls.Config, "PRESETS", {}):
        return "dreamerv3", [], "dreamerv3 has no preset 'tiny'; running the random floor only"
    return "dreamerv3", ["preset=tiny"], None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wmbench.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="demo_runs", help="where the run directories go (default ./demo_runs)")
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), metavar="PROTOCOL:TASK",
                        help=f"protocol:task pairs (default: {' '.join(DEFAULT_CASES)})")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="methods to run (default: random and dreamerv3 preset=tiny)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from wmbench.runner import Terminated, run

    notes = []
    if args.methods is None:
        name, overrides, problem = learning_method()
        methods = [("random", [])] + ([] if problem else [(name, overrides)])
        if problem:
            notes.append(problem)
    else:
        # dreamerv3 keeps its tiny preset when named explicitly (its default size12m takes hours per run on a CPU)
        methods = []
        for m in args.methods:
            name, overrides, problem = learning_method() if m == "dreamerv3" else (m, [], None)
            if problem:
                notes.append(problem)
            methods.append((name, overrides))

    t0 = time.monotonic()
    rows = []
    for case in args.cases:
        protocol, _, task = case.partition(":")
        if not task:
            parser.error(f"case {case!r} must be PROTOCOL:TASK, e.g. atari100k@1:pong")
        for method, overrides in methods:
            label = f"{method}{' (' + ' '.join(overrides) + ')' if overrides else ''}"
            print(f"== {label} on {protocol} {task} (smoke budget)", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                res = run(method, protocol, task, args.seed, root=args.root, overrides=overrides, smoke=True,
                          device=args.device, progress=not args.no_progress)
            except Terminated:
                raise  # SIGTERM stops the whole demo, not just this run
            except SuiteNotInstalled as e:
                rows.append((label, protocol, task, "skipped", str(e).splitlines()[0], "", ""))
                continue
            except WmbenchError as e:
                rows.append((label, protocol, task, "error", str(e).splitlines()[0], "", ""))
                continue
            except Exception as e:  # keep demonstrating the other runs; the traceback is the bug report
                traceback.print_exc()
                rows.append((label, protocol, task, "failed", f"{type(e).__name__}: {e}", "", ""))
                continue
            score = "n/a" if res.final_score is None else f"{res.final_score:.4g}"
            took = f"{time.monotonic() - started:.0f} s" + (" (resumed)" if res.resumed else "")
            rows.append((label, protocol, task, score, took, str(res.run_dir), str(res.run_dir / "scores.csv")))
    total = time.monotonic() - t0

    header = ("method", "protocol", "task", "final score", "time / note", "run directory", "scores.csv")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    print("\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]]))
    for note in notes:
        print(f"note: {note}")
    print(f"total time: {total:.0f} s (finished runs are reused; delete {Path(args.root)} to run them again)")
    return 0 if all(r[3] not in ("failed", "error") for r in rows) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeyboardInterrupt, WmbenchError) as e:  # Terminated (SIGTERM) is a WmbenchError
        print(f"\nstopped: {e or 'interrupted'}; run `python -m wmbench.demo` again to resume", file=sys.stderr)
        sys.exit(130 if isinstance(e, KeyboardInterrupt) else 2)
