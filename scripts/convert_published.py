"""Rebuild `results/published/` from the collected published data in `../shared/published/`.

The input (`curves.csv.gz`, `atari_baselines.csv`, `other_baselines.csv`, `headline.csv`, `SOURCES.csv`) was
converted from the authors' repositories by the data collection step (see its README). This script does not change
any value: it checks the schema, splits the curves into one gzip CSV per published protocol (so that loading
Atari-100k does not parse 1.3M rows of Atari-200M and DMC curves), keeps every field as the exact published string
(no float re-formatting), and writes the normaliser tables under the names `wmbench.results` reads.

Usage: python scripts/convert_published.py [--src ../shared/published] [--out results/published]
Everything is written to a temporary folder first and moved into place only when all checks pass.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import shutil
import sys
import tempfile
from collections import defaultdict
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
POINT_TYPES = {"curve", "final", "final_mean"}
STEP_UNITS = {"agent_steps", "env_steps", "frames", "episodes"}
# input file -> output file; the outputs are what wmbench.results reads.
TABLES = {
    "atari_baselines.csv": "atari_normalisers.csv",
    "other_baselines.csv": "other_normalisers.csv",
    "headline.csv": "headline.csv",
    "SOURCES.csv": "SOURCES.csv",
}


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def split_curves(src: Path, out: Path, sources: set[str]) -> dict[str, int]:
    """Check every row of curves.csv.gz and write curves/<protocol>.csv.gz; return rows per protocol."""
    per_protocol: dict[str, io.StringIO] = {}
    writers: dict[str, csv.writer] = {}
    counts: dict[str, int] = defaultdict(int)
    problems: list[str] = []
    with gzip.open(src / "curves.csv.gz", "rt", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if header != COLUMNS:
            fail(f"{src / 'curves.csv.gz'}: header {header} differs from the expected {COLUMNS}")
        for line, row in enumerate(reader, start=2):
            if len(row) != len(COLUMNS):
                problems.append(f"line {line}: {len(row)} fields, expected {len(COLUMNS)}")
                continue
            rec = dict(zip(COLUMNS, row, strict=True))
            if rec["source"] not in sources:
                problems.append(f"line {line}: source {rec['source']!r} is not in SOURCES.csv")
            if rec["point_type"] not in POINT_TYPES:
                problems.append(
                    f"line {line}: point_type {rec['point_type']!r} not one of {sorted(POINT_TYPES)}"
                )
            if rec["step_unit"] not in STEP_UNITS:
                problems.append(
                    f"line {line}: step_unit {rec['step_unit']!r} not one of {sorted(STEP_UNITS)}"
                )
            try:
                values = float(rec["env_step"]), float(rec["score"])
            except ValueError:
                problems.append(
                    f"line {line}: env_step/score not numeric: {rec['env_step']!r}, {rec['score']!r}"
                )
                continue
            if any(v != v or v in (float("inf"), float("-inf")) for v in values):
                problems.append(f"line {line}: NaN or inf in env_step/score")
            protocol = rec["protocol"]
            if protocol not in writers:
                per_protocol[protocol] = io.StringIO()
                writers[protocol] = csv.writer(per_protocol[protocol], lineterminator="\n")
                writers[protocol].writerow(COLUMNS)
            writers[protocol].writerow(row)
            counts[protocol] += 1
            if len(problems) > 50:
                break
    if problems:
        fail("curves.csv.gz has bad rows:\n  " + "\n  ".join(problems[:50]))
    (out / "curves").mkdir()
    for protocol, buf in per_protocol.items():
        # mtime=0: the same input gives byte-identical files, so a rebuild shows no spurious git diff.
        with open(out / "curves" / f"{protocol}.csv.gz", "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
                gz.write(buf.getvalue().encode())
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=REPO.parent / "shared" / "published")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "published")
    args = parser.parse_args(argv)
    src, out = args.src.resolve(), args.out.resolve()
    for name in ["curves.csv.gz", *TABLES]:
        if not (src / name).exists():
            fail(f"{src / name} is missing; pass --src pointing at the collected published data")
    with open(src / "SOURCES.csv", newline="") as f:
        sources = {row["source"] for row in csv.DictReader(f)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".published-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the data is meant to be read by everyone
    try:
        counts = split_curves(src, tmp, sources)
        for name, target in TABLES.items():
            shutil.copyfile(src / name, tmp / target)
        readme = out / "README.md"
        if readme.exists():  # the README is written by hand (sources, licences); keep it
            shutil.copyfile(readme, tmp / "README.md")
        # Replace the old folder only now that every check passed: nothing is written half-way.
        old = out.with_name(out.name + ".old")
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    total = sum(counts.values())
    for protocol, n in sorted(counts.items()):
        size = (out / "curves" / f"{protocol}.csv.gz").stat().st_size
        print(f"{protocol:<22} {n:>9,} rows  {size / 1e6:6.2f} MB")
    print(f"{'total':<22} {total:>9,} rows -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
