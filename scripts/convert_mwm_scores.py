"""Convert Masked World Models' published per-run Meta-World curves into the published score table.

Input: `scores/score.json` of younggyoseo/MWM (commit 8394788bf4dcdc94c8b8ad1afb6ee36741716620, MIT licence; the raw
logs behind the paper's figures, README "Updates, 10 August 2022"): a list of runs {task: "metaworld_<name>", seed,
method: "mwm" | "dreamerv2", steps: [...], success_rates: [...]}, 50 tasks x 5 seeds x 2 methods. `steps` count
env steps (MWM's logger multiplies its agent-step counter by the action repeat, 2); each success rate is over
MWM's 10 evaluation episodes at that point.

Output (no value changed: env_step and score are the published JSON number strings):
- `results/published/curves/metaworld.csv.gz`: rows `source, method, protocol, task, seed, env_step, score,
  step_unit, point_type, method_raw` with source `mwm:scores/score.json`, protocol `metaworld`, task without the
  `metaworld_` prefix, step_unit `env_steps`, point_type `curve`;
- the source's row in `results/published/SOURCES.csv` (added or replaced);
- with `--collected DIR` also the same rows in DIR/curves.csv.gz and DIR/SOURCES.csv (the collected input that
  scripts/convert_published.py rebuilds results/published from, e.g. ../shared/published), replacing earlier ones.

Usage: python scripts/convert_mwm_scores.py SCORE_JSON [--out results/published] [--collected DIR]
SCORE_JSON: the file, e.g. from `git -C <MWM clone> show 8394788:scores/score.json > score.json`.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLUMNS = [
    "source",
    "method",
    "protocol",
    "task",
    "seed",
    "env_step",
    "score",
    "step_unit",
    "point_type",
    "method_raw",
]
SOURCE = "mwm:scores/score.json"
COMMIT = "8394788bf4dcdc94c8b8ad1afb6ee36741716620"
SOURCE_ROW = {
    "source": SOURCE,
    "repo": "younggyoseo/MWM",
    "commit": COMMIT,
    "path": "scores/score.json",
    "license": "MIT (LICENSE)",
    "contains": "Meta-World eval success-rate curves (10 episodes per point, action repeat 2, x = env steps), methods "
    "mwm and dreamerv2 (the MWM authors' DreamerV2 runs), 50 tasks x 5 seeds each; 500 runs",
    "notes": "full resolution; 47 first-point (10k) rates are multiples of 1/11, i.e. over 11 episodes (likely the prefill's one random-policy eval episode logged with the first evaluation); 28 tasks end at 490k env steps, 11 at 990k, 6 at 1.99M, 5 at 2.99M",
}
METHODS = {"mwm": "mwm", "dreamerv2": "dreamerv2"}


def rows_from(text: str) -> list[list[str]]:
    """CSV rows of every run, numbers kept as the published strings; ValueError on an unexpected shape."""
    runs = json.loads(text, parse_float=str, parse_int=str)
    out = []
    for i, run in enumerate(runs):
        if set(run) != {"task", "seed", "method", "steps", "success_rates"}:
            raise ValueError(
                f"run {i}: keys {sorted(run)} differ from task, seed, method, steps, success_rates"
            )
        if not run["task"].startswith("metaworld_") or run["method"] not in METHODS:
            raise ValueError(f"run {i}: unexpected task {run['task']!r} or method {run['method']!r}")
        if len(run["steps"]) != len(run["success_rates"]):
            raise ValueError(
                f"run {i}: {len(run['steps'])} steps but {len(run['success_rates'])} success rates"
            )
        task = run["task"].removeprefix("metaworld_")
        for step, rate in zip(run["steps"], run["success_rates"], strict=True):
            if not 0 <= float(rate) <= 1:
                raise ValueError(f"run {i}: success rate {rate} outside [0, 1]")
            out.append([SOURCE, METHODS[run["method"]], "metaworld", task, run["seed"], step, rate, "env_steps",
                        "curve", run["method"]])  # fmt: skip
    return out


def _csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return buf.getvalue()


def _write_gzip(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    with (
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
    ):
        gz.write(text.encode())  # mtime 0: the same input gives a byte-identical file
    tmp.replace(path)


def _upsert_source(path: Path) -> None:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, existing = reader.fieldnames, [r for r in reader if r["source"] != SOURCE]
    if fields != list(SOURCE_ROW):
        raise ValueError(f"{path}: columns {fields} differ from {list(SOURCE_ROW)}")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows([*existing, SOURCE_ROW])
    path.write_text(buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("score_json", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "published")
    parser.add_argument("--collected", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        rows = rows_from(args.score_json.read_text())
    except (OSError, ValueError) as e:
        print(f"error: {args.score_json}: {e}", file=sys.stderr)
        return 2
    _write_gzip(args.out / "curves" / "metaworld.csv.gz", _csv_text(rows))
    _upsert_source(args.out / "SOURCES.csv")
    if args.collected is not None:
        curves = args.collected / "curves.csv.gz"
        with gzip.open(curves, "rt", newline="") as f:
            kept = [r for r in csv.reader(f)]
        if kept[0] != COLUMNS:
            print(f"error: {curves}: header {kept[0]} differs from {COLUMNS}", file=sys.stderr)
            return 2
        _write_gzip(curves, _csv_text([r for r in kept[1:] if r[0] != SOURCE] + rows))
        _upsert_source(args.collected / "SOURCES.csv")
    print(f"{len(rows):,} rows of {SOURCE} -> {args.out / 'curves' / 'metaworld.csv.gz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
