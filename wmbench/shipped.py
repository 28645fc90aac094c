"""Where the data shipped with wmbench lives: protocol files and published scores.

In a source checkout (and an editable install) they are the repository's `protocols/` and `results/published/`;
in an installed wheel they are package data under `wmbench/data/` (setup.py maps those folders there, so the
repository keeps one copy). The environment variables WMBENCH_PROTOCOLS and WMBENCH_PUBLISHED override both.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DATA = Path(__file__).resolve().parent / "data"
REPO_ROOT = Path(__file__).resolve().parents[1]


def shipped_dir(package_name: str, repo_path: str) -> Path:
    """The installed package's `data/<package_name>` when present, else the checkout's `<repo_path>`."""
    installed = PACKAGE_DATA / package_name
    return installed if installed.is_dir() else REPO_ROOT / repo_path


def protocols_dir() -> Path:
    return shipped_dir("protocols", "protocols")


def published_dir() -> Path:
    return shipped_dir("published", "results/published")
