"""Episode videos of pixel protocols (`wmbench run ... --video-every N`): what the agent saw, for a researcher who
wants to look at behaviour. Derived output in `RUN_DIR/videos/`, written with imageio (optional extra `video`); a
video never changes what a run computes, and a failed write is a note, not a crash."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from wmbench.errors import WmbenchError


def check_request(every: int, protocol: Any) -> None:
    """Refuse a video request that cannot be met, before anything is written: a bad N, a protocol without image
    observations, or no imageio."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise WmbenchError(f"--video-every {every!r} must be a whole number >= 0 (0: no videos), e.g. --video-every 10")
    if not every:
        return
    if str(protocol.env.get("obs", "image")) != "image" and "size" not in protocol.env:
        raise WmbenchError(f"--video-every: {protocol.id} has no image observations to record; use a pixel protocol "
                           "(e.g. dmc_vision@1, atari100k@1) or drop --video-every")
    try:
        import imageio  # noqa: F401
    except ImportError:
        raise WmbenchError("--video-every needs imageio: pip install 'wmbench[video]' (or imageio)") from None


class Recorder:
    """Collects the `image` observations of every `every`-th training episode and writes it as a GIF when it ends."""

    def __init__(self, run_dir: Path, every: int):
        self.dir, self.every = Path(run_dir) / "videos", int(every)
        self.frames: list[np.ndarray] = []
        self.episode = 0
        self.on = False

    def start(self, episode: int) -> None:
        self.episode, self.frames = episode, []
        self.on = self.every > 0 and episode % self.every == 0

    def frame(self, obs: dict) -> None:
        if self.on and "image" in obs:
            self.frames.append(np.asarray(obs["image"], dtype=np.uint8))

    def finish(self) -> Path | None:
        if not self.on or not self.frames:
            return None
        import imageio.v2 as imageio

        from wmbench.io import atomic_open

        path = self.dir / f"train_{self.episode:06d}.gif"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            frames = [f if f.ndim == 3 and f.shape[-1] == 3 else np.repeat(f.reshape(*f.shape[:2], 1), 3, -1)
                      for f in self.frames]
            with atomic_open(path, "wb") as out:
                imageio.mimwrite(out, frames, format="GIF", duration=1 / 30)
        except (OSError, ValueError) as e:
            print(f"note: video {path} not written ({e}); the run goes on", file=sys.stderr)
            return None
        finally:
            self.frames = []
        return path
