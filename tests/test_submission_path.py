"""docs/submitting.md walked end to end, as a newcomer types it, each step a separate process:

    wmbench new-method my_method
    pip install ./wmbench-my-method            (here: into a temp folder put on PYTHONPATH, see below)
    wmbench sweep my_method dmc_proprio@1 --tasks cartpole_balance --seeds 0-4 --smoke
    wmbench validate <sweep>/scores.csv
    wmbench report <sweep>/scores.csv --published dreamerv3 --include-smoke --against dreamerv3
    wmbench leaderboard <sweep>/scores.csv --published dreamerv3 --out board

Installing: the scaffolded package is really built and installed by pip (`pip install --no-deps --target DIR`),
but into a temporary folder that the commands get on PYTHONPATH instead of into the test's environment, so the test
leaves no package behind; the method is found the way an installed one is, through its entry point
(`wmbench.methods`) in the installed dist-info. Building needs setuptools >= 68 from the package index (pip's
build isolation). About 1 minute on a loaded 2-core machine, most of it the 5 smoke runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dm_control", reason="the path uses dmc_proprio@1: pip install 'wmbench[dmc]'")

SEEDS = "0-4"  # dmc_proprio@1's minimum of 5 seeds


def wmbench(cwd: Path, env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "wmbench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"wmbench {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def walked(tmp_path_factory) -> dict:
    """Steps 1-3: scaffold, install, smoke sweep. Returns the folder, environment and the sweep's score table."""
    work = tmp_path_factory.mktemp("newcomer")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = wmbench(work, env, "new-method", "my_method").stdout
    package = work / "wmbench-my-method"
    assert f"created {package.name}" in out or str(package) in out
    site = work / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site),
                          str(package)], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    assert "my_method" in wmbench(work, env, "list", "methods").stdout
    sweep = wmbench(work, env, "sweep", "my_method", "dmc_proprio@1", "--tasks", "cartpole_balance", "--seeds",
                    SEEDS, "--smoke", "--root", "runs", "--workers", "2", "--threads", "1", "--no-progress")
    match = re.search(r"scores: (\S+scores\.csv)", sweep.stdout)
    assert match, sweep.stdout
    scores = work / match.group(1)
    assert "5 finished" in sweep.stdout and scores.exists()
    return {"work": work, "env": env, "scores": scores}


def test_sweep_of_the_new_method_ran_its_smoke_runs(walked) -> None:
    method_dir = walked["work"] / "runs" / "dmc_proprio@1" / "cartpole_balance" / "my_method"
    runs = sorted(p.parent for p in method_dir.rglob("run.json"))  # seed_<n>, or smoke/seed_<n> where kept apart
    assert [r.name for r in runs] == [f"seed_{i}" for i in range(5)]
    assert all((r / "scores.csv").stat().st_size > 0 for r in runs)


def test_validate_accepts_the_sweeps_own_score_table(walked) -> None:
    # validate accepts exactly what report accepts (results.validate serves both): the smoke sweep's table is valid.
    proc = wmbench(walked["work"], walked["env"], "validate", str(walked["scores"]), check=False)
    assert proc.returncode == 0, proc.stdout


def test_report_against_published_dreamerv3_labels_the_smoke_runs(walked) -> None:
    work, env = walked["work"], walked["env"]
    proc = wmbench(work, env, "report", str(walked["scores"]), "--published", "dreamerv3", "--include-smoke",
                   "--against", "dreamerv3", "--out", "report.html", "--reps", "200", "--poi-reps", "50")
    md = (work / "report.md").read_text().replace("\\", "")  # Markdown escapes (e.g. my\_method) removed
    assert "my_method (smoke, 1,000 agent steps)" in md and "dreamerv3 (published)" in md
    assert "P(my_method (smoke, 1,000 agent steps) > dreamerv3 (published))" in md
    assert "not results" in md  # the smoke warning
    assert (work / "report.html").stat().st_size > 10_000 and "wrote report.html" in proc.stdout


def test_leaderboard_lists_the_smoke_entry_unranked(walked) -> None:
    work, env = walked["work"], walked["env"]
    wmbench(work, env, "leaderboard", str(walked["scores"]), "--published", "dreamerv3", "--out", "board",
            "--reps", "100")
    page = (work / "board" / "dmc_proprio@1.html").read_text()
    assert re.search(r"<td>1</td><td class='l'><span[^>]*></span>dreamerv3 \(published\)</td>", page)
    unranked = page[page.index("<h2>Not ranked</h2>"):]
    assert "my_method (smoke, 1,000 agent steps)" in unranked and "href='../runs/dmc_proprio%401/" in unranked
    assert "dmc_proprio@1.html" in (work / "board" / "index.html").read_text()
