"""Distractor DMC: DeepMind Control from pixels with natural-video backgrounds (the "natural background" setting of
TPC (Nguyen et al. 2021) and DreamerPro (Deng et al. 2022), behind the shipped `dmc_natural_bg` curves).

The setting, written here from DreamerPro's description and code facts (fdeng18/dreamer-pro `TPC/common/envs.py`
`NAT`, `natural_imgsource.py`, `download_videos.py`, `configs.yaml`):

- The task is rendered as in `wmbench.envs.dmc` (64x64 RGB, camera 0, action repeat, 1000-step time limit).
- Every rendered pixel whose blue channel exceeds both red and green (DMC's blue sky and floor) is replaced by the
  same pixel of the current background frame.
- Background videos: Kinetics-400 clips of the class "driving car" (DreamerPro downloads the train split for
  training, 360p mp4). At most `max_videos` (100) videos are used. Each episode plays one video drawn uniformly at
  random, starting at a random frame and advancing one frame per observation (reset and every agent step),
  looping; frames are resized to the observation size with a bilinear filter.

Video sets (`videos` in the protocol) are named, so runs on different sets are different protocols:
- `procedural` and `procedural_eval`: built in, generated in memory (`procedural_videos`, two seeds, so the sets
  share no video): moving coloured shapes on drifting gradients. For tests and demos; no published reference.
- any other name: a folder `$WMBENCH_VIDEO_DIR/<name>` (default `~/.wmbench/videos/<name>`) holding the videos as
  frame folders (a sub-folder of .png/.jpg/.jpeg frames, sorted by name) and/or .mp4 files (decoded with imageio;
  needs imageio's pyav or ffmpeg plugin: `pip install imageio[pyav]`). It is validated when the env is made: a missing, empty
  or unreadable folder, a video whose frames differ in size or are smaller than the observation, raise
  `VideoFolderError` naming the folder (and file) and what is wrong.

Held-out evaluation videos: `eval_videos` (optional) names the set the evaluation env plays (`make(..., mode="eval")`,
which the runner uses for its eval env), as distracting-control evaluates on the DAVIS validation videos and
DreamerPro on the Kinetics test split. It must be another set than `videos` and share no video with it: the same
name, the same folder, or a video (file or frame-folder name) in both raise `ProtocolError` / `VideoFolderError`
naming both sets and the shared videos, when either env is made. Without `eval_videos` (dmc_natural_bg@1 and
dmc_natural_bg_procedural@1) evaluation plays the training set, a documented deviation those versions keep.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from wmbench.envs import dmc
from wmbench.errors import WmbenchError

ENV_SCHEMA = {
    "size": tuple[int, ...],
    "camera": int,
    "quadruped_camera": int,
    "action_repeat": int,
    "time_limit": int,
    "videos": str,
    "eval_videos": str,
    "max_videos": int,
}
TASKS = dmc.TASKS
INSTALL_HINT = dmc.INSTALL_HINT + "; natural videos: a folder per video set under $WMBENCH_VIDEO_DIR (see the protocol)"
DEFAULTS: dict[str, Any] = {
    "size": (64, 64),
    "camera": 0,
    "quadruped_camera": 2,
    "action_repeat": 2,
    "time_limit": 1000,
    "videos": "procedural",
    "eval_videos": "",
    "max_videos": 100,
}
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4",)
FETCH_HINTS = {
    "kinetics_driving_car_test": (
        "DreamerPro evaluates on the Kinetics-400 'driving car' clips of the test split (the held-out set of "
        "dmc_natural_bg@2); put them (mp4 files or folders of frames) in that folder, none of them also in the "
        "training set kinetics_driving_car"
    ),
    "kinetics_driving_car": (
        "DreamerPro's videos are the Kinetics-400 'driving car' clips of its train split (fdeng18/dreamer-pro "
        "download_videos.py, 360p mp4); put them (mp4 files or folders of frames) in that folder"
    ),
}


class VideoFolderError(WmbenchError, ValueError):
    """A background video folder is missing, empty, unreadable, or holds frames of the wrong size."""


def check_installed() -> None:
    dmc.check_installed(render=True)


def video_dir(name: str) -> Path:
    root = Path(os.environ.get("WMBENCH_VIDEO_DIR", Path.home() / ".wmbench" / "videos")).expanduser()
    return root / name


# -- procedural videos ------------------------------------------------------------------------------------------
PROCEDURAL_SEEDS = {"procedural": 12345, "procedural_eval": 54321}  # built-in sets: the generator seed of each


def procedural_videos(
    count: int = 8, frames: int = 100, size: tuple[int, int] = (64, 64), seed: int = PROCEDURAL_SEEDS["procedural"]
) -> list[np.ndarray]:
    """Deterministic distractor videos (uint8 (T, H, W, 3)): drifting colour gradients with moving discs and bars.

    Deliberately not blue-dominant everywhere and changing every frame, so they distract as natural videos do.
    `seed` picks the set (`PROCEDURAL_SEEDS`: the training set `procedural`, the held-out `procedural_eval`)."""
    height, width = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    videos = []
    for _ in range(count):
        base = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        direction = rng.uniform(-1, 1, 2)
        discs = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-2, 2), rng.uniform(-2, 2),
                  rng.uniform(4, 12), rng.uniform(0, 255, 3)) for _ in range(4)]  # fmt: skip
        video = np.empty((frames, height, width, 3), np.uint8)
        for t in range(frames):
            phase = (xx * direction[0] + yy * direction[1]) / max(height, width) + t / 25.0
            mix = (0.5 + 0.5 * np.sin(2 * np.pi * phase))[..., None]
            frame = base[0] * mix + base[1] * (1 - mix)
            bar = ((xx + 3 * t) % 24) < 4
            frame[bar] = 255 - frame[bar]
            for x0, y0, vx, vy, radius, colour in discs:
                cx, cy = (x0 + vx * t) % width, (y0 + vy * t) % height
                frame[(xx - cx) ** 2 + (yy - cy) ** 2 < radius**2] = colour
            video[t] = frame.clip(0, 255).astype(np.uint8)
        videos.append(video)
    return videos


def write_frame_folders(videos: list[np.ndarray], folder: str | Path) -> Path:
    """Write videos as frame folders (`<folder>/video_000/frame_0000.png`, ...), the layout `load_videos` reads."""
    from PIL import Image

    folder = Path(folder)
    for i, video in enumerate(videos):
        sub = folder / f"video_{i:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(video):
            Image.fromarray(frame).save(sub / f"frame_{t:04d}.png")
    return folder


# -- video folders ----------------------------------------------------------------------------------------------
def list_videos(folder: Path, max_videos: int) -> list[Path]:
    """Validated entries of a video folder (frame folders and mp4 files), sorted by name, at most `max_videos`."""
    if not folder.exists():
        raise VideoFolderError(f"video folder {folder} does not exist")
    if not folder.is_dir():
        raise VideoFolderError(f"video folder {folder} is not a folder")
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        raise VideoFolderError(f"video folder {folder} cannot be read ({e.strerror or e})") from e
    videos = [
        e for e in entries
        if (e.is_dir() and any(f.suffix.lower() in FRAME_SUFFIXES for f in _safe_list(e)))
        or (e.is_file() and e.suffix.lower() in VIDEO_SUFFIXES)
    ]  # fmt: skip
    if not videos:
        raise VideoFolderError(
            f"video folder {folder} holds no videos: expected sub-folders of {'/'.join(FRAME_SUFFIXES)} frames or "
            f"{'/'.join(VIDEO_SUFFIXES)} files, found {len(entries)} other entries"
        )
    return videos[:max_videos]


def _safe_list(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as e:
        raise VideoFolderError(f"video folder {folder} cannot be read ({e.strerror or e})") from e


def _read_frames(video: Path) -> list[np.ndarray]:
    if video.is_dir():
        from PIL import Image, UnidentifiedImageError

        frames = []
        for f in (f for f in _safe_list(video) if f.suffix.lower() in FRAME_SUFFIXES):
            try:
                with Image.open(f) as image:
                    frames.append(np.asarray(image.convert("RGB")))
            except (OSError, UnidentifiedImageError) as e:
                raise VideoFolderError(f"video frame {f} cannot be read as an image ({e})") from e
        return frames
    try:
        import imageio.v3 as iio
    except ImportError as e:
        raise VideoFolderError(f"video {video}: mp4 needs imageio (pip install 'imageio[pyav]') ({e})") from e
    problems = []
    for plugin in ("pyav", "FFMPEG"):  # imageio's mp4 decoders (packages av, imageio-ffmpeg)
        try:
            return list(iio.imiter(video, plugin=plugin))
        except ImportError as e:
            problems.append(f"{plugin}: not installed ({e})")
        except Exception as e:  # each plugin raises its own errors for broken files
            problems.append(f"{plugin}: {type(e).__name__}: {e}")
    raise VideoFolderError(
        f"video {video} cannot be decoded ({'; '.join(problems)}); install a decoder (pip install 'imageio[pyav]') "
        "or convert it to a folder of PNG frames"
    )


def load_video(video: Path, size: tuple[int, int]) -> np.ndarray:
    """Frames of one video resized to `size`, uint8 (T, H, W, 3); errors name the file and the problem."""
    from PIL import Image

    frames = _read_frames(video)
    if not frames:
        raise VideoFolderError(f"video {video} has no frames")
    shapes = {f.shape[:2] for f in frames}
    if len(shapes) > 1:
        raise VideoFolderError(f"video {video}: frames differ in size ({sorted(shapes)}); all frames of a video must match")
    (h, w) = shapes.pop()
    if h < size[0] or w < size[1]:
        raise VideoFolderError(
            f"video {video}: frames are {h}x{w}, smaller than the {size[0]}x{size[1]} observation (wrong frame size)"
        )
    out = np.empty((len(frames), *size, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.Resampling.BILINEAR))
    return out


class VideoSource:
    """One video per episode (uniform), random start frame, one frame per observation, looping."""

    def __init__(self, name: str, size: tuple[int, int], max_videos: int):
        self.name, self.size = name, tuple(size)
        if name in PROCEDURAL_SEEDS:
            self.folder = None
            self.videos: list[Any] = procedural_videos(size=self.size, seed=PROCEDURAL_SEEDS[name])[:max_videos]
        else:
            self.folder = video_dir(name)
            try:
                self.videos = list_videos(self.folder, max_videos)
            except VideoFolderError as e:
                hint = FETCH_HINTS.get(name, "put the videos (frame folders or mp4 files) in that folder")
                raise VideoFolderError(
                    f"{e}. Video set {name!r} is read from $WMBENCH_VIDEO_DIR/{name} (default ~/.wmbench/videos/{name}); "
                    f"{hint}"
                ) from None
            load_video(self.videos[0], self.size)  # fail at make time, not mid-run, on a bad first video
        self._frames: np.ndarray | None = None
        self._t = 0

    def reset(self, rng: np.random.Generator) -> None:
        video = self.videos[int(rng.integers(len(self.videos)))]
        self._frames = video if isinstance(video, np.ndarray) else load_video(video, self.size)
        self._t = int(rng.integers(len(self._frames)))

    def next_frame(self) -> np.ndarray:
        assert self._frames is not None, "reset() first"
        frame = self._frames[self._t % len(self._frames)]
        self._t += 1
        return frame


def composite(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Replace the blue-dominant pixels (DMC's sky and floor) of a rendered frame by the background's."""
    mask = (image[..., 2] > image[..., 1]) & (image[..., 2] > image[..., 0])
    out = image.copy()
    out[mask] = background[mask]
    return out


def _settings(protocol: Any) -> dict[str, Any]:
    from wmbench.envs.wrappers import protocol_settings
    from wmbench.protocols import ProtocolError

    cfg, where = protocol_settings(protocol, DEFAULTS)
    if cfg["action_repeat"] < 1 or cfg["time_limit"] < 1 or cfg["max_videos"] < 1:
        raise ProtocolError(f"{where}: action_repeat, time_limit and max_videos must be >= 1")
    return cfg


def missing_data(protocol: Any) -> list[str]:
    """The protocol's video folders that do not exist (listing only, nothing decoded): `wmbench list protocols`
    shows them, since the suite can be installed while a user-supplied video set is not."""
    names = [protocol.env.get(k, "") for k in ("videos", "eval_videos")]
    return [str(video_dir(n)) for n in names if n and n not in PROCEDURAL_SEEDS and not video_dir(n).is_dir()]


def check_held_out(train: str, held_out: str, max_videos: int, where: str) -> None:
    """Refuse an evaluation video set that is not held out from the training set: the same name, the same folder, or
    videos (entry names) in both. Folder sets are listed, not decoded, so this is cheap."""
    from wmbench.protocols import ProtocolError

    if held_out == train:
        raise ProtocolError(
            f"{where}.eval_videos {held_out!r} is the training set env.videos: held-out evaluation needs another "
            f"video set that shares no video with it (e.g. {train + '_test'!r}, or 'procedural_eval' for "
            "'procedural'); remove eval_videos to evaluate on the training videos"
        )
    if held_out in PROCEDURAL_SEEDS or train in PROCEDURAL_SEEDS:
        return  # built-in sets are generated from their own seeds; a folder set never equals one
    folders = {name: video_dir(name) for name in (train, held_out)}
    if folders[train].resolve() == folders[held_out].resolve():
        raise VideoFolderError(
            f"{where}: env.videos {train!r} and eval_videos {held_out!r} are the same folder "
            f"{folders[train].resolve()}; held-out evaluation videos must be a separate folder"
        )
    entries = {}
    for name, folder in folders.items():
        try:
            entries[name] = {e.stem for e in list_videos(folder, max_videos)}
        except VideoFolderError as e:
            hint = FETCH_HINTS.get(name, "put the videos (frame folders or mp4 files) in that folder")
            role = "training" if name == train else "held-out evaluation"
            raise VideoFolderError(f"{e}. It holds the {role} video set {name!r}; {hint}") from None
    shared = sorted(entries[train] & entries[held_out])
    if shared:
        listed = ", ".join(shared[:8]) + (f", ... ({len(shared) - 8} more)" if len(shared) > 8 else "")
        raise VideoFolderError(
            f"{where}: the training videos {folders[train]} and the held-out evaluation videos {folders[held_out]} "
            f"share {len(shared)} video(s): {listed}. Evaluation videos must be held out: remove them from one set"
        )


class DistractingDMCEnv(gymnasium.Env):
    metadata = {"render_modes": []}

    def __init__(self, task: str, seed: int = 0, videos: str = "procedural", max_videos: int = 100, **settings: Any):
        settings = {**{k: v for k, v in DEFAULTS.items() if k in dmc.ENV_SCHEMA}, **settings, "obs": "image"}
        self.source = VideoSource(videos, tuple(settings["size"]), max_videos)
        self.inner = dmc.DMCEnv(task, seed=seed, **settings)
        self.observation_space = self.inner.observation_space
        self.action_space = self.inner.action_space
        self._video_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x51DE0]))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._video_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x51DE0]))
        obs, info = self.inner.reset(seed=seed)
        self.source.reset(self._video_rng)
        return {"image": composite(obs["image"], self.source.next_frame())}, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.inner.step(action)
        return {"image": composite(obs["image"], self.source.next_frame())}, reward, terminated, truncated, info

    def close(self) -> None:
        self.inner.close()


def make(protocol: Any, task: str, seed: int, mode: str = "train") -> gymnasium.Env:
    """The env of `mode` "train" (plays `videos`) or "eval" (plays `eval_videos` when the protocol names a held-out
    set, else `videos`)."""
    cfg = _settings(protocol)
    videos = cfg["videos"]
    if cfg["eval_videos"]:
        where = f"protocol {getattr(protocol, 'id', '?')}: env"
        check_held_out(cfg["videos"], cfg["eval_videos"], cfg["max_videos"], where)
        if mode == "eval":
            videos = cfg["eval_videos"]
    settings = {k: cfg[k] for k in ("size", "camera", "quadruped_camera", "action_repeat", "time_limit")}
    return DistractingDMCEnv(task, seed=seed, videos=videos, max_videos=cfg["max_videos"], **settings)
