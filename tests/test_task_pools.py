"""Task pools of wmbench/sweep_backends.py (`make_pool`): work inside one run spread over an inline loop, local
worker processes or Ray, results in task order, failures named per task. The functions below are the pools'
`setup` and `run` targets (workers import this module by name: pytest puts tests/ on sys.path, and spawned
workers inherit it)."""

from __future__ import annotations

import importlib.util
import os
import signal
import time

import numpy as np
import pytest

from wmbench.sweep_backends import BackendError, make_pool

SETUP, RUN = "test_task_pools:setup", "test_task_pools:run"


def setup(context):
    return {"scale": context["scale"], "pid": os.getpid()}


def run(state, task):
    """Task (index, kind): a seeded draw scaled by the context; 'raise' raises, 'die' kills its worker."""
    index, kind = task
    if kind == "raise":
        raise ValueError(f"task {index} was told to raise")
    if kind == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "slow":
        time.sleep(0.3)
    return float(np.random.default_rng(index).standard_normal() * state["scale"]), state["pid"]


def _values(results):
    assert all(r.error is None for r in results), [r.error for r in results]
    return [r.value[0] for r in results]


def test_local_pool_returns_what_the_inline_loop_does_in_task_order():
    # the first task is slow, so the second worker finishes later tasks first: gathering must keep task order
    tasks = [(0, "slow")] + [(i, "ok") for i in range(1, 7)]
    inline = make_pool("inline", SETUP, RUN, {"scale": 3.0})
    local = make_pool("local", SETUP, RUN, {"scale": 3.0}, workers=2)
    try:
        want = _values(inline.map(tasks))
        got = local.map(tasks)
        assert _values(got) == want  # bit for bit
        assert len({r.value[1] for r in got}) == 2 and os.getpid() not in {r.value[1] for r in got}
        assert _values(local.map(tasks[::-1])) == want[::-1]  # the workers live on between calls
    finally:
        local.close()


@pytest.mark.parametrize("backend", ["inline", "local"])
def test_a_task_that_raises_is_reported_with_its_error(backend):
    pool = make_pool(backend, SETUP, RUN, {"scale": 1.0}, workers=2)
    try:
        results = pool.map([(0, "ok"), (1, "raise"), (2, "ok")])
    finally:
        pool.close()
    assert results[0].error is None and "task 1 was told to raise" in results[1].error
    assert "ValueError" in results[1].error


def test_a_worker_that_dies_fails_its_own_task_by_name_and_loses_none():
    pool = make_pool("local", SETUP, RUN, {"scale": 1.0}, workers=2)
    try:
        results = pool.map([(0, "ok"), (1, "die"), (2, "ok"), (3, "ok"), (4, "ok")])
    finally:
        pool.close()
    assert "killed by signal SIGKILL" in results[1].error
    # every other task has a value or says why it has none: nothing is dropped
    for r in results[:1] + results[2:]:
        assert r.error is None or "not run" in r.error


def test_unknown_backend_is_refused():
    with pytest.raises(BackendError, match="inline"):
        make_pool("threads", SETUP, RUN, {})


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="ray not installed: pip install 'wmbench[sweep]'"
)
def test_ray_pool_returns_what_the_inline_loop_does():
    import ray

    from wmbench.sweep_backends import ray_temp_dir

    tasks = [(i, "ok") for i in range(5)]
    want = _values(make_pool("inline", SETUP, RUN, {"scale": 2.0}).map(tasks))
    started = time.monotonic()
    # started here rather than by the pool, so that Ray's workers can import this test module
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=ray_temp_dir(),
        runtime_env={"env_vars": {"PYTHONPATH": os.path.dirname(__file__)}},
    )
    try:
        if time.monotonic() - started > 60:
            pytest.skip(
                f"a local Ray instance took {time.monotonic() - started:.0f} s to start on this machine"
            )
        pool = make_pool("ray", SETUP, RUN, {"scale": 2.0}, workers=2)
        results = pool.map(tasks + [(5, "raise")])
        pool.close()  # leaves Ray running: the pool did not start it
        assert ray.is_initialized()
    finally:
        ray.shutdown()
    assert _values(results[:5]) == want
    assert "task 5 was told to raise" in results[5].error


def test_env_factory_pickles_makes_the_runs_envs_and_refuses_another_protocol_version():
    import pickle

    from wmbench.envs import EnvFactory, make_env
    from wmbench.errors import WmbenchError
    from wmbench.protocols import load_protocol

    proto = load_protocol("fake@1")
    factory = pickle.loads(pickle.dumps(EnvFactory(proto, "vector_continuous")))
    ours, direct = factory(7), make_env(proto, "vector_continuous", 7)
    a, b = ours.reset(), direct.reset()
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    step = np.zeros(direct.act_space.shape, np.float32)
    assert np.array_equal(ours.step(step)["vector"], direct.step(step)["vector"])
    stale = pickle.loads(pickle.dumps(EnvFactory(proto, "vector_continuous")))
    stale.protocol_hash = "0" * 16  # as on a worker whose protocol file differs from the run's
    with pytest.raises(WmbenchError, match="install the same wmbench on every worker"):
        stale(0)
