"""Random replayed batches of 16x16 pixel steps with 2-dim continuous actions, the shape the pixel world-model tests
feed to `train_batch` / `loss` (tests/test_planet.py, tests/test_nn_world_model.py)."""

from __future__ import annotations

import numpy as np


def pixel_batch(b: int = 4, t: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """[b, t] steps: uint8 images, actions in [-1, 1], Normal rewards, each row starting an episode."""
    rng = np.random.default_rng(seed)
    is_first = np.zeros((b, t), bool)
    is_first[:, 0] = True
    return {
        "image": rng.integers(0, 256, (b, t, 16, 16, 3), dtype=np.uint8),
        "action": rng.uniform(-1, 1, (b, t, 2)).astype(np.float32),
        "reward": rng.normal(size=(b, t)).astype(np.float32),
        "is_first": is_first,
        "is_last": np.zeros((b, t), bool),
        "is_terminal": np.zeros((b, t), bool),
    }
