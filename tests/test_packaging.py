"""The wheel: built from the repository, installed into a fresh virtual environment, it runs `wmbench list`, a smoke
run and a report of the published data it ships; `python -m wmbench` works; the build prints no deprecation warning.

Kept fast on purpose: the wheel is installed with `pip install --no-deps --no-index` into a venv whose
dependencies (torch, pandas, ...) come from the test's own environment through a .pth file listing its
site-packages, so nothing is downloaded or compiled. Only wmbench itself comes from the wheel, and the test checks
that it is imported from the new venv, not from the checkout. Building uses pip's build isolation (setuptools >= 77
from the package index). About 30-60 s on a loaded 2-core machine.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def sh(*args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    # No PYTHONPATH: it would put a checkout's wmbench ahead of the installed wheel's.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("wheel")
    build = sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", work / "dist", REPO, cwd=work)
    (wheel,) = (work / "dist").glob("wmbench-*.whl")
    venv = work / "venv"
    sh(sys.executable, "-m", "venv", "--without-pip", venv, cwd=work)
    python = venv / "bin" / "python"
    purelib = Path(sh(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=work).stdout.strip())
    # The test environment's packages (torch, pandas, pip, ...) without its wmbench: a path line in a .pth adds the
    # folder only; the editable install's own .pth/finder in that folder is not processed.
    parents = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]])
    (purelib / "_test_parent_env.pth").write_text("\n".join(parents) + "\n")
    install = sh(python, "-m", "pip", "install", "--no-deps", "--no-index", wheel, cwd=work)
    return {"work": work, "wheel": wheel, "python": python, "venv": venv, "log": build.stdout + build.stderr
            + install.stdout + install.stderr}


def test_wheel_ships_protocols_and_published_data_as_package_data(installed) -> None:
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    assert {"wmbench/data/protocols/control@1.toml", "wmbench/data/protocols/atari100k@1.toml",
            "wmbench/data/published/SOURCES.csv", "wmbench/data/published/curves/atari100k.csv.gz",
            "wmbench/__main__.py", "wmbench_baselines/pets.py"} <= names
    assert not any(n.startswith(("protocols/", "results/", "baselines/")) for n in names)  # nothing top-level


def test_build_and_install_print_no_deprecation_warning(installed) -> None:
    assert "deprecat" not in installed["log"].lower(), installed["log"]


def test_installed_wheel_lists_runs_and_is_imported_from_the_venv(installed) -> None:
    work, python, venv = installed["work"], installed["python"], installed["venv"]
    where = sh(python, "-c", "import wmbench, wmbench.shipped as s; print(wmbench.__file__); print(s.protocols_dir())",
               cwd=work).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where  # the wheel's code and data, not the checkout's
    listing = sh(venv / "bin" / "wmbench", "list", cwd=work).stdout
    assert "control@1" in listing and "pets" in listing and "dreamerv3" in listing
    assert sh(python, "-m", "wmbench", "list", "protocols", cwd=work).stdout.count("@") >= 9
    run = sh(python, "-m", "wmbench", "run", "random", "control@1", "--task", "cartpole_swingup", "--seed", "0",
             "--smoke", "--root", "runs", cwd=work).stdout
    assert "final score:" in run
    assert list((work / "runs" / "control@1" / "cartpole_swingup" / "random").rglob("scores.csv"))  # seed_0 or smoke/


def test_installed_wheel_reports_the_published_data_it_ships(installed) -> None:
    work, python = installed["work"], installed["python"]
    sh(python, "-m", "wmbench", "report", "--published", "dreamerv3", "ppo", "--protocol", "atari100k@1", "--tasks",
       "pong,boxing", "--out", "published.html", "--reps", "50", "--poi-reps", "5", cwd=work)
    assert "dreamerv3 (published)" in (work / "published.md").read_text()
