"""`wmbench archive`: keep the evidence of runs where it outlives the machine that made them.

A run directory holds checkpoints and replay (gigabytes) beside the few small files that verdicts, reports and plots
read: `run.json` (method, protocol, task, seed, resolved config, recipe, status) and `scores.csv` (every episode),
plus `timing.csv` (wall time) and, with `--metrics`, `metrics.jsonl`. Machines are lent and taken back; a run
directory under `~/.cache` is lost with its machine. `archive` copies those files of each run into DEST in the
runner's layout (`runner.run_dir_for`), so `wmbench reproduce --root DEST`, `wmbench report DEST` and `wmbench plot`
read the archive exactly as they read the runs, and writes `ARCHIVE.json` beside them: where the run came from, when,
its status and agent steps then, and the sha256 of each file copied. `--check` recomputes those hashes.

Archiving is idempotent and follows a run as it goes on: archiving the same run again, further on, replaces the
copy; a copy is never replaced by another run (another run seed, or scores that do not continue the archived ones).
A run still being written is copied up to its last complete line.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
from pathlib import Path

from wmbench.errors import WmbenchError
from wmbench.results import load_scores, read_run_info

FILES = ("run.json", "scores.csv", "timing.csv")
METRICS = "metrics.jsonl"
MANIFEST = "ARCHIVE.json"


class ArchiveError(WmbenchError, ValueError):
    pass


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _complete_lines(data: bytes) -> bytes:
    """The bytes up to and including the last newline: a line being appended is left for the next archive."""
    end = data.rfind(b"\n")
    return data[: end + 1] if end >= 0 else b""


def find_run_dirs(paths: list[Path], exclude: Path | None = None) -> list[Path]:
    """Run directories among `paths` (each a run directory or a folder holding some), outside `exclude`."""
    found: list[Path] = []
    for path in paths:
        if (path / "run.json").is_file():
            found.append(path)
        elif path.is_dir():
            runs = sorted(p.parent for p in path.rglob("run.json"))
            if exclude is not None:
                runs = [r for r in runs if not r.resolve().is_relative_to(exclude.resolve())]
            if not runs:
                raise ArchiveError(f"{path}: no run.json in it or below; pass run directories or folders holding them")
            found += runs
        else:
            raise ArchiveError(f"{path} does not exist; pass run directories or folders holding them")
    return found


def archive_run(run_dir: Path, dest_root: Path, metrics: bool = False) -> tuple[Path, str]:
    """Copy one run's evidence files into `dest_root` in the runner's layout; returns (archive dir, what happened)."""
    from wmbench.runner import run_dir_for

    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    dest = run_dir_for(dest_root, str(info["protocol"]), str(info["task"]), str(info["method"]), int(info["seed"]),
                       smoke=bool(info.get("smoke", False)))
    if dest.resolve() == run_dir.resolve():
        raise ArchiveError(f"{run_dir} is already the archive's copy; pass another --to folder")
    load_scores(run_dir)  # refuses a run whose scores.csv cannot be read, naming the file and line
    names = FILES + ((METRICS,) if metrics else ())
    data = {}
    for name in names:
        path = run_dir / name
        if path.is_file():
            raw = path.read_bytes()
            data[name] = raw if name == "run.json" else _complete_lines(raw)
    old_scores = dest / "scores.csv"
    if (dest / "run.json").is_file():
        old = read_run_info(dest)
        if old.get("run_seed") != info.get("run_seed") or old.get("started") != info.get("started"):
            raise ArchiveError(
                f"{dest} holds another run of {info['method']} on {info['protocol']} {info['task']} seed {info['seed']} "
                f"(run_seed {old.get('run_seed')}, started {old.get('started')}; this one: run_seed "
                f"{info.get('run_seed')}, started {info.get('started')}): archive it to another --to folder")
        before = old_scores.read_bytes() if old_scores.is_file() else b""
        if not data.get("scores.csv", b"").startswith(before):
            raise ArchiveError(
                f"{run_dir}/scores.csv does not continue the archived {old_scores} (the run was restarted or its file "
                "edited): archive it to another --to folder, or remove the old copy if it is no longer wanted")
        if all((dest / n).is_file() and (dest / n).read_bytes() == b for n, b in data.items()):
            return dest, "unchanged"
        what = "updated"
    else:
        what = "archived"
    dest.mkdir(parents=True, exist_ok=True)
    for name, raw in data.items():
        tmp = dest / f".{name}.tmp"
        tmp.write_bytes(raw)
        os.replace(tmp, dest / name)
    episodes = max(data.get("scores.csv", b"").count(b"\n") - 1, 0)
    manifest = {
        "source": str(run_dir.resolve()),
        "host": info.get("host"),
        "archived": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "status": info.get("status"),
        "agent_steps": info.get("agent_steps"),
        "episodes": episodes,
        "sha256": {name: _sha256(raw) for name, raw in data.items()},
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return dest, what


def check_archive(dest_root: Path) -> list[str]:
    """Problems of an archive: a file whose sha256 differs from its ARCHIVE.json, or that is missing ([] if none)."""
    problems = []
    manifests = sorted(Path(dest_root).rglob(MANIFEST))
    if not manifests:
        raise ArchiveError(f"{dest_root}: no {MANIFEST} in it or below; is this a folder `wmbench archive` wrote?")
    for manifest in manifests:
        recorded = json.loads(manifest.read_text()).get("sha256", {})
        for name, digest in recorded.items():
            path = manifest.parent / name
            if not path.is_file():
                problems.append(f"{path}: missing")
            elif _sha256(path.read_bytes()) != digest:
                problems.append(f"{path}: sha256 differs from {manifest} (edited after archiving)")
    return problems


def _summary(dest: Path) -> str:
    m = json.loads((dest / MANIFEST).read_text())
    return f"status {m['status']}, {m['agent_steps'] or 0:,} agent steps, {m['episodes']} episodes"


def cli_archive(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="wmbench archive", description=__doc__.splitlines()[0],
                                     epilog="e.g. wmbench archive ~/.cache/wmbench/runs/dv2 --to results/runs/dv2")
    parser.add_argument("runs", type=Path, nargs="*", help="run directories or folders holding them")
    parser.add_argument("--to", type=Path, required=True, help="archive folder (created; the runner's layout below)")
    parser.add_argument("--metrics", action="store_true", help=f"also copy {METRICS} (training metrics, for plots)")
    parser.add_argument("--check", action="store_true", help="only check the archive's files against their sha256")
    args = parser.parse_args(argv)
    if args.check:
        problems = check_archive(args.to)
        for line in problems:
            print(line)
        print(f"{args.to}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    if not args.runs:
        parser.error("give run directories to archive (or --check)")
    for run_dir in find_run_dirs(args.runs, exclude=args.to):
        dest, what = archive_run(run_dir, args.to, metrics=args.metrics)
        print(f"{what} {dest} ({_summary(dest)})")
    return 0
