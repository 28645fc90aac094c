"""Distractor DMC (dmc_natural_bg@1, dmc_natural_bg_procedural@1): compositing, video folders, seeding and runs.

Expected values come from the setting's definition (blue-dominant pixels replaced; one video per episode, one frame
per observation) and from plain dm_control renders; rendering tests skip with the reason when DMC pixels cannot run.
"""

import numpy as np
import pytest

from wmbench import cli
from wmbench.envs import SuiteNotInstalled, distracting, make_env
from wmbench.envs.distracting import VideoFolderError, composite, list_videos, load_video, procedural_videos
from wmbench.protocols import load_protocol

NATURAL = load_protocol("dmc_natural_bg@1")
PROCEDURAL = load_protocol("dmc_natural_bg_procedural@1")


def test_protocols_match_the_published_setting():
    from wmbench.results import published

    curves = published(protocol="dmc_natural_bg@1")
    assert set(curves["task"]) == set(NATURAL.tasks) and set(curves["step_unit"]) == {"env_steps"}
    assert NATURAL.to_unit(NATURAL.budget.agent_steps) == 1_000_000 and NATURAL.action_repeat == 2
    assert NATURAL.env["videos"] == "kinetics_driving_car" and PROCEDURAL.env["videos"] == "procedural"
    assert {k: v for k, v in NATURAL.env.items() if k != "videos"} == {
        k: v for k, v in PROCEDURAL.env.items() if k != "videos"
    }


def test_composite_replaces_only_blue_dominant_pixels():
    image = np.array([[[10, 20, 200], [200, 20, 10]], [[50, 50, 50], [0, 100, 101]]], np.uint8)
    background = np.full((2, 2, 3), 7, np.uint8)
    out = composite(image, background)
    np.testing.assert_array_equal(out[0, 0], [7, 7, 7])  # blue sky
    np.testing.assert_array_equal(out[1, 1], [7, 7, 7])  # blue by one
    np.testing.assert_array_equal(out[0, 1], image[0, 1])  # red body
    np.testing.assert_array_equal(out[1, 0], image[1, 0])  # grey: blue not strictly largest


def test_procedural_videos_are_deterministic_moving_images():
    a, b = procedural_videos(count=2, frames=5), procedural_videos(count=2, frames=5)
    assert len(a) == 2 and a[0].shape == (5, 64, 64, 3) and a[0].dtype == np.uint8
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0][0], a[0][1]) and not np.array_equal(a[0][0], a[1][0])


def write(folder, size=(80, 80), frames=3, count=2):
    return distracting.write_frame_folders(procedural_videos(count=count, frames=frames, size=size), folder)


def test_folder_validation_names_the_folder_and_the_problem(tmp_path):
    with pytest.raises(VideoFolderError, match=f"{tmp_path / 'absent'} does not exist"):
        list_videos(tmp_path / "absent", 100)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoFolderError, match=f"{tmp_path / 'empty'} holds no videos"):
        list_videos(tmp_path / "empty", 100)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no frames here")
    with pytest.raises(VideoFolderError, match="holds no videos"):
        list_videos(tmp_path / "notes", 100)
    videos = list_videos(write(tmp_path / "ok", count=3), 2)
    assert [v.name for v in videos] == ["video_000", "video_001"]  # sorted, at most max_videos
    assert load_video(videos[0], (64, 64)).shape == (3, 64, 64, 3)


def test_bad_frames_are_reported_with_the_file(tmp_path):
    small = list_videos(write(tmp_path / "small", size=(32, 48)), 100)[0]
    with pytest.raises(VideoFolderError, match=r"frames are 32x48, smaller than the 64x64 observation"):
        load_video(small, (64, 64))
    mixed = write(tmp_path / "mixed", size=(80, 80), count=1) / "video_000"
    from PIL import Image

    Image.fromarray(np.zeros((90, 90, 3), np.uint8)).save(mixed / "frame_9999.png")
    with pytest.raises(VideoFolderError, match="frames differ in size"):
        load_video(mixed, (64, 64))
    broken = write(tmp_path / "broken", count=1) / "video_000"
    (broken / "frame_0001.png").write_bytes(b"not a png")
    with pytest.raises(VideoFolderError, match=f"{broken / 'frame_0001.png'} cannot be read as an image"):
        load_video(broken, (64, 64))
    (tmp_path / "mp4").mkdir()
    (tmp_path / "mp4" / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage")
    with pytest.raises(VideoFolderError, match=f"{tmp_path / 'mp4' / 'clip.mp4'}"):
        load_video(list_videos(tmp_path / "mp4", 100)[0], (64, 64))


try:
    distracting.check_installed()
    MISSING = None
except SuiteNotInstalled as e:
    MISSING = str(e)
needs_pixels = pytest.mark.skipif(MISSING is not None, reason=f"DMC pixels unavailable: {MISSING}")


@needs_pixels
def test_missing_video_set_names_its_folder_and_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("WMBENCH_VIDEO_DIR", str(tmp_path))
    with pytest.raises(VideoFolderError, match=f"{tmp_path / 'kinetics_driving_car'} does not exist.*driving car"):
        make_env(NATURAL, "cartpole_swingup", seed=0)


@needs_pixels
def test_user_video_folder_backgrounds_differ_from_plain_dmc(tmp_path, monkeypatch):
    monkeypatch.setenv("WMBENCH_VIDEO_DIR", str(tmp_path))
    write(tmp_path / "kinetics_driving_car", size=(96, 128), frames=4)
    env = make_env(NATURAL, "cartpole_swingup", seed=0)
    image = env.reset()["image"]
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    rendered = env.env.inner._dm.physics.render(64, 64, camera_id=0)
    blue = (rendered[..., 2] > rendered[..., 1]) & (rendered[..., 2] > rendered[..., 0])
    assert blue.mean() > 0.2  # the cartpole scene is mostly blue sky and floor
    np.testing.assert_array_equal(image[~blue], rendered[~blue])
    assert not np.array_equal(image[blue], rendered[blue])


@needs_pixels
def test_episodes_are_reproducible_and_frames_advance():
    runs = []
    for _ in range(2):
        env = make_env(PROCEDURAL, "cartpole_swingup", seed=3)
        steps = [env.reset()] + [env.step(np.zeros(1, np.float32)) for _ in range(3)]
        runs.append(np.stack([s["image"] for s in steps]))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0][1], runs[0][2])  # the background moves even when the scene barely does


def short_variant(tmp_path, name="dmc_natural_bg_short"):
    """dmc_natural_bg_procedural@1 with 100-step episodes and one eval episode (a throwaway protocol file)."""
    import tomllib
    from pathlib import Path

    text = Path(PROCEDURAL.path).read_text()
    data = tomllib.loads(text)
    text = text.replace('name = "dmc_natural_bg_procedural"', f'name = "{name}"')
    text = text.replace("time_limit = 1000", "time_limit = 100").replace("episodes = 2", "episodes = 1")
    text = text.replace("[smoke]\nagent_steps = 500", "[smoke]\nagent_steps = 100")
    assert data["env"]["time_limit"] == 1000
    path = tmp_path / f"{name}@1.toml"
    path.write_text(text)
    return str(path)


@needs_pixels
def test_random_smoke_run_with_procedural_videos(tmp_path):
    protocol = short_variant(tmp_path)
    code = cli.main(["run", "random", protocol, "--task", "cartpole_swingup", "--seed", "0", "--smoke",
                     "--root", str(tmp_path / "runs"), "--no-progress"])  # fmt: skip
    assert code == 0
    rows = next((tmp_path / "runs").rglob("scores.csv")).read_text().splitlines()
    assert sum(",eval" in r for r in rows) == 1 and sum(",train" in r for r in rows) == 2


@needs_pixels
def test_dreamerv3_tiny_runs_with_procedural_videos(tmp_path):
    protocol = short_variant(tmp_path)
    code = cli.main(["run", "dreamerv3", protocol, "--task", "cartpole_swingup", "--seed", "0", "--smoke",
                     "--set", "preset=tiny", "--set", "batch_length=8", "--root", str(tmp_path / "runs"),
                     "--no-progress", "--threads", "1"])  # fmt: skip
    assert code == 0
