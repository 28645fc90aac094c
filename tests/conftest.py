"""Shared test setup: one torch thread per worker (the suite runs under pytest-xdist on 2 cores), headless GL."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
