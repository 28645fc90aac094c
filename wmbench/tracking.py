"""TensorBoard event files beside a run's `metrics.jsonl`, for researchers who watch runs in TensorBoard.

Optional: needs the `tensorboard` package (`pip install 'wmbench[tracking]'`); without it every function here is a
no-op that says so once. The event files live in `RUN_DIR/tensorboard/` and are derived data: the run's own files
(`metrics.jsonl`, `scores.csv`) stay the record, and `export_run` rebuilds the events from them at any time (e.g.
for a run made before tensorboard was installed, or copied from another machine):

    wmbench plot RUN_DIR --tensorboard        # then: tensorboard --logdir runs/

`RunWriter` is the live form: `open_writer(run_dir)` returns one when tensorboard is installed (and
WMBENCH_TENSORBOARD is not "0"), else None; the runner calls `metrics(step, values)` where it appends to
metrics.jsonl and `episode(env_step, score, phase)` where it appends to scores.csv. Tags: `metrics/<name>` against
agent steps, `return/<phase>` against the protocol's record unit (as in scores.csv).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

EVENTS_DIR = "tensorboard"


def available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


class RunWriter:
    """Appends one run's metrics and episode returns to TensorBoard event files in RUN_DIR/tensorboard/."""

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(Path(run_dir) / EVENTS_DIR))

    def metrics(self, step: int, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            if name in ("step", "env_step") or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)) and math.isfinite(float(value)):
                self._writer.add_scalar(f"metrics/{name}", float(value), int(step))

    def episode(self, env_step: int, score: float, phase: str = "train") -> None:
        self._writer.add_scalar(f"return/{phase}", float(score), int(env_step))

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()


def open_writer(run_dir: Path) -> RunWriter | None:
    """A writer when tensorboard is installed and not switched off (WMBENCH_TENSORBOARD=0); else None."""
    if os.environ.get("WMBENCH_TENSORBOARD", "1") == "0" or not available():
        return None
    return RunWriter(run_dir)


def export_run(run_dir: Path) -> Path:
    """Rebuild RUN_DIR/tensorboard/ from the run's metrics.jsonl and scores.csv; returns the events folder."""
    import pandas as pd

    from wmbench.errors import WmbenchError
    from wmbench.runplot import read_metrics

    if not available():
        raise WmbenchError("TensorBoard export needs the tensorboard package: pip install 'wmbench[tracking]'")
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").exists():
        raise WmbenchError(f"{run_dir} has no run.json: pass a run directory")
    target = run_dir / EVENTS_DIR
    if target.exists():
        shutil.rmtree(target)  # derived data: rebuilt whole, so an export never doubles points
    writer = RunWriter(run_dir)
    try:
        for row in read_metrics(run_dir).to_dict("records"):
            values = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
            writer.metrics(int(row.get("step", 0)), values)
        if (run_dir / "scores.csv").exists() and (run_dir / "scores.csv").stat().st_size:
            for r in pd.read_csv(run_dir / "scores.csv").itertuples():
                writer.episode(int(r.env_step), float(r.score), str(r.phase))
    finally:
        writer.close()
    return target


def read_scalars(events_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} of the event files in `events_dir` (for tests and quick checks)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def describe(run_dir: Path) -> str:
    """One line on the exported events, for the CLI."""
    scalars = read_scalars(Path(run_dir) / EVENTS_DIR)
    return json.dumps({tag: len(points) for tag, points in sorted(scalars.items())})
