"""Acceptance (slow): a 2-task x 3-seed sweep of a real learning method (DreamerV3, `tiny` preset) completes on
each backend, and the three backends produce the same runs (byte-identical score logs): the run seed depends on
(protocol, task, seed index) only, never on where or in which order a run executes.

    .venv/bin/python -m pytest tests/test_sweep_acceptance.py -m slow
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from wmbench.sweep import ExecOptions, make_spec, run_sweep

pytestmark = pytest.mark.slow

TASKS = "vector_discrete,vector_continuous"
BACKENDS = {
    "local": {"backend": "local"},
    "ray": {"backend": "ray"},
    "submitit": {"backend": "submitit", "submitit_local": True},
}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    pytest.importorskip("ray")
    pytest.importorskip("submitit")
    spec = make_spec("dreamerv3", "fake@1", "0-2", TASKS, overrides=["preset=tiny"], steps=100)
    out = {}
    for name, kw in BACKENDS.items():
        root = tmp_path_factory.mktemp(name)
        out[name] = (root, run_sweep(spec, root, ExecOptions(workers=2, retries=1, progress=False, **kw)))
    return spec, out


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_sweep_of_a_learning_method_completes(sweeps, backend):
    spec, results = sweeps
    root, result = results[backend]
    assert result.complete and sorted(result.finished) == sorted(spec.runs())
    table = pd.read_csv(result.scores_csv)
    assert sorted({(t, int(s)) for t, s in zip(table.task, table.seed, strict=True)}) == sorted(spec.runs())
    for task, seed in spec.runs():
        info = json.loads((root / "fake@1" / task / "dreamerv3" / f"seed_{seed}" / "run.json").read_text())
        assert info["status"] == "finished" and info["agent_steps"] == 100
        assert info["config"]["deter"] == 64  # the tiny preset reached the run


def test_backends_give_identical_runs(sweeps):
    spec, results = sweeps
    for task, seed in spec.runs():
        logs = {
            name: (root / "fake@1" / task / "dreamerv3" / f"seed_{seed}" / "scores.csv").read_bytes()
            for name, (root, _) in results.items()
        }
        assert logs["local"] == logs["ray"] == logs["submitit"], (task, seed)
