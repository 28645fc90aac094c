"""`wmbench run --video-every N`: every N-th training episode of a pixel protocol as a GIF; nothing the run computes
changes; bad requests are refused before anything is written."""

from __future__ import annotations

import numpy as np
import pytest

from wmbench.errors import WmbenchError
from wmbench.runner import run


def test_every_nth_training_episode_is_saved_and_the_run_is_unchanged(tmp_path) -> None:
    imageio = pytest.importorskip("imageio.v2")
    with_video = run("random", "fake@1", "image_discrete", 0, root=tmp_path / "a", steps=260, progress=False,
                     video_every=2)
    without = run("random", "fake@1", "image_discrete", 0, root=tmp_path / "b", steps=260, progress=False)
    assert (with_video.run_dir / "scores.csv").read_bytes() == (without.run_dir / "scores.csv").read_bytes()
    videos = sorted(p.name for p in (with_video.run_dir / "videos").iterdir())
    episodes = sum(1 for line in (with_video.run_dir / "scores.csv").read_text().splitlines()[1:]
                   if line.endswith(",train"))
    assert videos == [f"train_{n:06d}.gif" for n in range(2, episodes + 1, 2)]
    frames = imageio.mimread(with_video.run_dir / "videos" / videos[0])
    assert len(frames) > 1 and np.asarray(frames[0]).shape[:2] == (16, 16)
    assert not (without.run_dir / "videos").exists()


@pytest.mark.parametrize("every,protocol,message", [
    (-1, "fake@1", "must be a whole number >= 0"),
    (5, "dmc_proprio@1", "has no image observations"),
])
def test_bad_video_requests_are_refused_before_anything_is_written(tmp_path, every, protocol, message) -> None:
    task = "vector_discrete" if protocol == "fake@1" else "cartpole_balance"
    with pytest.raises(WmbenchError, match=message):
        run("random", protocol, task, 0, root=tmp_path, steps=10, progress=False, video_every=every)
    assert not any(tmp_path.iterdir())
