"""`wmbench plot RUN_DIR`: one PNG of a run's episode returns and training metrics, read from its files only.

Reads `scores.csv` (train and eval episode returns against the protocol's record unit) and `metrics.jsonl` (every
numeric training metric against agent steps, one panel each) and writes `RUN_DIR/plot.png` (or `--out`). Works
while the run is going (files are appended as it trains) and on runs copied from elsewhere; it never imports the
method. `--tensorboard` also rebuilds the run's TensorBoard event files (`wmbench.tracking`).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from wmbench.errors import WmbenchError

SKIP_METRICS = {"step", "env_step"}


def read_metrics(run_dir: Path) -> pd.DataFrame:
    """metrics.jsonl as a table (one row per log step); a torn last line (run killed mid-write) is ignored."""
    path = run_dir / "metrics.jsonl"
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return pd.DataFrame(rows)


def plot_run(run_dir: Path, out: Path | None = None, max_metrics: int = 11) -> Path:
    """Write the returns panel and up to `max_metrics` metric panels of one run; returns the PNG's path."""
    from wmbench import plots

    run_dir = Path(run_dir)
    if not (run_dir / "run.json").exists():
        raise WmbenchError(f"{run_dir} has no run.json: pass a run directory (runs/<protocol>/<task>/<method>/seed_<n>)")
    info = json.loads((run_dir / "run.json").read_text())
    scores = pd.read_csv(run_dir / "scores.csv") if (run_dir / "scores.csv").exists() else pd.DataFrame()
    metrics = read_metrics(run_dir)
    names = [c for c in metrics.columns if c not in SKIP_METRICS and pd.api.types.is_numeric_dtype(metrics[c])]
    dropped = names[max_metrics:]
    names = names[:max_metrics]
    panels = 1 + len(names)
    columns = min(3, panels)
    rows = math.ceil(panels / columns)
    import matplotlib.pyplot as plt

    with plt.rc_context(plots.STYLE):
        fig = plt.figure(figsize=(min(plots.MAX_WIDTH, 3.4 * columns), 2.6 * rows + 0.5), dpi=100)
        axes = fig.subplots(rows, columns, squeeze=False).ravel()
        ax = axes[0]
        unit = str(scores["step_unit"].iloc[0]) if len(scores) else "steps"
        for phase, colour in (("train", plots.PALETTE[0]), ("eval", plots.PALETTE[1])):
            part = scores[scores["phase"] == phase] if len(scores) else scores
            if len(part):
                ax.plot(part["env_step"], part["score"], marker="o", markersize=2.5, linewidth=1.2, color=colour,
                        label=f"{phase} ({len(part)} episodes)")
        ax.set_title("episode return")
        ax.set_xlabel(unit)
        if len(scores):
            ax.legend(frameon=False, fontsize=8)
        else:
            ax.text(0.5, 0.5, "no episode finished yet", ha="center", va="center", transform=ax.transAxes)
        for ax, name in zip(axes[1:], names, strict=False):
            data = metrics[["step", name]].dropna() if "step" in metrics else metrics[[name]].dropna()
            x = data["step"] if "step" in data else range(len(data))
            ax.plot(x, data[name], linewidth=1.2, color=plots.PALETTE[2])
            ax.set_title(name)
            ax.set_xlabel("agent steps")
        for ax in axes[panels:]:
            ax.set_visible(False)
        title = (f"{info.get('method')} on {info.get('protocol')} {info.get('task')} seed {info.get('seed')}"
                 f"{' (smoke)' if info.get('smoke') else ''}: {info.get('status')}, "
                 f"{info.get('agent_steps', 0):,} of {info.get('budget_agent_steps', 0):,} agent steps")
        if dropped:
            title += f"; {len(dropped)} more metrics not shown"
        fig.suptitle(title, fontsize=11)
        fig.tight_layout()
    out = Path(out) if out else run_dir / "plot.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def cli_plot(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="wmbench plot", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="+", help="run directories")
    parser.add_argument("--out", type=Path, help="PNG path (one run only; default RUN_DIR/plot.png)")
    parser.add_argument("--max-metrics", type=int, default=11, help="metric panels at most (default 11)")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also (re)write RUN_DIR/tensorboard/ event files from the run's files "
                        "(needs pip install 'wmbench[tracking]'); view with tensorboard --logdir RUN_DIR")
    args = parser.parse_args(argv)
    if args.out and len(args.run_dir) > 1:
        parser.error("--out takes one run directory")
    for run_dir in args.run_dir:
        print(f"wrote {plot_run(run_dir, args.out, args.max_metrics)}")
        if args.tensorboard:
            from wmbench import tracking

            print(f"wrote {tracking.export_run(run_dir)}: {tracking.describe(run_dir)}")
    return 0
