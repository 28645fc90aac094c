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
NATURAL2 = load_protocol("dmc_natural_bg@2")
PROCEDURAL2 = load_protocol("dmc_natural_bg_procedural@2")


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


def test_version_2_holds_out_its_evaluation_videos():
    # Everything else as version 1: same tasks, budget, rule and env apart from the held-out set.
    for old, new in ((NATURAL, NATURAL2), (PROCEDURAL, PROCEDURAL2)):
        assert (old.tasks, old.budget, old.score, old.eval) == (new.tasks, new.budget, new.score, new.eval)
        assert {k: v for k, v in new.env.items() if k != "eval_videos"} == dict(old.env)
    assert NATURAL2.env["eval_videos"] == "kinetics_driving_car_test"
    assert NATURAL2.reproduce.published_sources == NATURAL.reproduce.published_sources
    assert PROCEDURAL2.env["eval_videos"] == "procedural_eval"
    train, held_out = procedural_videos(), procedural_videos(seed=distracting.PROCEDURAL_SEEDS["procedural_eval"])
    assert len(train) == len(held_out) == 8
    assert not any(np.array_equal(a[0], b[0]) for a in train for b in held_out)


def with_videos(protocol, **env):
    import dataclasses

    return dataclasses.replace(protocol, env={**protocol.env, **env})


def test_held_out_videos_must_be_another_set_sharing_no_video(tmp_path, monkeypatch):
    from wmbench.protocols import ProtocolError

    monkeypatch.setenv("WMBENCH_VIDEO_DIR", str(tmp_path))
    with pytest.raises(ProtocolError, match="eval_videos 'procedural' is the training set env.videos.*procedural_eval"):
        distracting.make(with_videos(PROCEDURAL2, eval_videos="procedural"), "cartpole_swingup", 0)
    write(tmp_path / "train", count=3)
    (tmp_path / "heldout").symlink_to(tmp_path / "train")
    same = with_videos(NATURAL2, videos="train", eval_videos="heldout")
    with pytest.raises(VideoFolderError, match=f"are the same folder {tmp_path / 'train'}"):
        distracting.make(same, "cartpole_swingup", 0)
    (tmp_path / "heldout").unlink()
    write(tmp_path / "heldout", count=2)  # video_000, video_001: also in the training folder
    with pytest.raises(VideoFolderError, match=r"share 2 video\(s\): video_000, video_001.*must be held out"):
        distracting.make(same, "cartpole_swingup", 0)
    missing = with_videos(NATURAL2, videos="train", eval_videos="absent")
    with pytest.raises(VideoFolderError, match=f"{tmp_path / 'absent'} does not exist.*held-out evaluation video set"):
        distracting.make(missing, "cartpole_swingup", 0)
    with pytest.raises(VideoFolderError, match="kinetics_driving_car_test does not exist.*test split"):
        distracting.make(with_videos(NATURAL2, videos="train"), "cartpole_swingup", 0)


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


@needs_pixels
def test_eval_env_plays_the_held_out_videos(tmp_path, monkeypatch):
    monkeypatch.setenv("WMBENCH_VIDEO_DIR", str(tmp_path))
    write(tmp_path / "train", size=(64, 64), frames=2, count=2)
    held_out = [np.full((2, 64, 64, 3), 255, np.uint8)]  # one all-white video, so its pixels are recognisable
    distracting.write_frame_folders(held_out, tmp_path / "heldout_root")
    (tmp_path / "heldout_root" / "video_000").rename(tmp_path / "heldout_root" / "white")
    protocol = with_videos(NATURAL2, videos="train", eval_videos="heldout_root")
    train_env, eval_env = make_env(protocol, "cartpole_swingup", 0), make_env(protocol, "cartpole_swingup", 0, "eval")
    for env, white in ((eval_env, True), (train_env, False)):
        image = env.reset()["image"]
        rendered = env.env.inner._dm.physics.render(64, 64, camera_id=0)
        blue = (rendered[..., 2] > rendered[..., 1]) & (rendered[..., 2] > rendered[..., 0])
        assert blue.mean() > 0.2 and (image[blue] == 255).all() == white
    with pytest.raises(ValueError, match="mode 'test' is not one of"):
        make_env(protocol, "cartpole_swingup", 0, "test")


def short_variant(tmp_path, name="dmc_natural_bg_short"):
    """dmc_natural_bg_procedural@2 (held-out eval videos) with 100-step episodes and one eval episode (a throwaway
    protocol file)."""
    import tomllib
    from pathlib import Path

    text = Path(PROCEDURAL2.path).read_text()
    data = tomllib.loads(text)
    text = text.replace('name = "dmc_natural_bg_procedural"', f'name = "{name}"').replace("version = 2", "version = 1")
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
