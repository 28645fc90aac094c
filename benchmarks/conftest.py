"""pytest-benchmark set-up for `benchmarks/` (collected only when asked: `pytest benchmarks --benchmark-only`, or
`make bench`; `make test` runs `tests/` only).

Each benchmark test measures ratios inside one run (ours / a reference measured in the same process or the same
run), because absolute times on this type of machine drift twofold between machines and days. `ratio(...)` (a `Ratios`)
records a ratio in the result's `extra_info` beside the machine's CPU flags and threads, compares it with the same ratio in
the last saved run of this machine (`--benchmark-storage`, by default outside the repository), and fails the test,
naming the figure, when it is past its floor. A table of every ratio is printed at the end of the session.

Short settings by default; `--bench-full` runs the full ones (the scripts' own defaults).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from machine import cpu_flags

DEFAULT_STORAGE = Path(os.environ.get("WMBENCH_BENCH_STORAGE", Path.home() / ".cache" / "wmbench" / "benchmarks"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench-full", action="store_true", help="run the benchmarks at their full settings")
    parser.addoption("--peer-sheeprl", help="python of a venv with sheeprl (benchmarks/peers/README.md)")
    parser.addoption("--peer-official", help="python of a venv with the official DreamerV3 (JAX) code")


def _location(self) -> str:
    """pytest-benchmark 5.x names its storage relative to the working directory and fails (ValueError in
    `--benchmark-compare`) for a storage outside it, which is where ours lives: fall back to the absolute path."""
    try:
        return str(self.path.relative_to(Path.cwd()))
    except ValueError:
        return str(self.path)


def pytest_configure(config: pytest.Config) -> None:
    from pytest_benchmark.storage.file import FileStorage

    FileStorage.location = property(_location)
    # Saved runs go outside the repository unless a storage is named: they describe a machine, not the code.
    storage = config.getoption("benchmark_storage", default=None)
    if storage in (None, "file://./.benchmarks"):
        config.option.benchmark_storage = f"file://{DEFAULT_STORAGE}"


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    machine_info["wmbench"] = cpu_flags()


@dataclass
class Row:
    test: str
    name: str
    value: float
    previous: float | None
    floor: str
    ok: bool


_ROWS: list[Row] = []


def _previous_run(config: pytest.Config) -> dict[str, dict]:
    """extra_info per test of the newest saved run of this machine (empty when none was saved)."""
    storage = str(config.option.benchmark_storage).removeprefix("file://")
    files = sorted(Path(storage).expanduser().glob("*/*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        return {}
    try:
        data = json.loads(files[-1].read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {b["name"]: b.get("extra_info", {}) for b in data.get("benchmarks", [])}


@pytest.fixture(scope="session")
def previous(request: pytest.FixtureRequest) -> dict[str, dict]:
    return _previous_run(request.config)


@pytest.fixture
def full(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--bench-full"))


class Ratios:
    """`ratios(name, value, at_most=None, at_least=None)` stores a same-run ratio with the machine's flags in the
    result's extra_info and the session table (with the last saved run's value); `ratios.check()`, at the end of a
    test, fails it naming every figure past its floor."""

    def __init__(self, benchmark, before: dict, test: str) -> None:
        self.benchmark, self.before, self.test = benchmark, before, test
        self.failures: list[str] = []
        benchmark.extra_info.update(cpu_flags())

    def __call__(self, name: str, value: float, at_most: float | None = None, at_least: float | None = None) -> None:
        self.benchmark.extra_info[name] = value
        ok = (at_most is None or value <= at_most) and (at_least is None or value >= at_least)
        floor = f"<= {at_most:g}" if at_most is not None else f">= {at_least:g}" if at_least is not None else ""
        _ROWS.append(Row(self.test, name, value, self.before.get(name), floor, ok))
        if not ok:
            self.failures.append(f"{name} = {value:.3f}, floor {floor}")

    def check(self) -> None:
        if self.failures:
            pytest.fail("past the floor: " + "; ".join(self.failures), pytrace=False)


@pytest.fixture
def ratio(benchmark, previous, request: pytest.FixtureRequest) -> Ratios:
    return Ratios(benchmark, previous.get(request.node.name, {}), request.node.name)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not _ROWS:
        return
    tr = terminalreporter
    tr.section("wmbench ratios (measured in this run; previous = last saved run of this machine)")
    flags = cpu_flags()
    tr.write_line(f"CPU: {flags['cpu_model']} | AVX2 {flags['avx2']} AVX-512 {flags['avx512f']} "
                  f"AVX512_BF16 {flags['avx512_bf16']} | {flags['cores']} cores, load {flags['load_average_1min']}")
    tr.write_line(f"{'benchmark':<34} {'ratio':<34} {'now':>9} {'previous':>9} {'floor':>8}  status")
    for r in _ROWS:
        prev = f"{r.previous:.3f}" if isinstance(r.previous, (int, float)) else "—"
        tr.write_line(f"{r.test:<34} {r.name:<34} {r.value:>9.3f} {prev:>9} {r.floor:>8}  "
                      f"{'ok' if r.ok else 'PAST FLOOR'}")
