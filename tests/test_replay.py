"""Replay: sequences, eviction under a byte budget, episodic views, workers, persistence and exact reload."""

from __future__ import annotations

import inspect
import io
import subprocess
import sys

import numpy as np
import pytest
import torch

from wmbench.replay import Replay, ReplayError, read_chunk


def make_step(t: int, episode_len: int = 10, image: bool = True, offset: int = 0) -> dict:
    """Step t of a stream of fixed-length episodes; the reward encodes t so order is checkable."""
    k = t % episode_len
    step = {
        "vector": np.array([t, -t], np.float32),
        "action": np.int64(t % 3),
        "reward": np.float32(t + offset),
        "is_first": k == 0,
        "is_last": k == episode_len - 1,
        "is_terminal": k == episode_len - 1 and (t // episode_len) % 2 == 0,
    }
    if image:
        step["image"] = np.full((8, 8, 3), t % 256, np.uint8)
    return step


def fill(replay: Replay, n: int, start: int = 0, **kw) -> None:
    for t in range(start, start + n):
        replay.add(make_step(t, **kw))


def test_sample_shapes_dtypes_and_contiguity():
    r = Replay(10**7, seed=1)
    fill(r, 95)
    b = r.sample(6, 12)
    assert b["image"].shape == (6, 12, 8, 8, 3) and b["image"].dtype == np.uint8
    assert b["vector"].shape == (6, 12, 2) and b["reward"].shape == (6, 12)
    assert b["is_first"].dtype == bool
    # Contiguous in time: rewards (= t) increase by one; flags follow t, crossing episode boundaries.
    assert np.all(np.diff(b["reward"], axis=1) == 1)
    t = b["reward"].astype(int)
    assert np.array_equal(b["is_first"], t % 10 == 0)
    assert np.array_equal(b["image"][..., 0, 0, 0], t % 256)
    assert len(r) == 95


def test_sample_is_uniform_over_valid_starts():
    r = Replay(10**7, seed=2)
    fill(r, 20, image=False)
    starts = np.concatenate([r.sample(500, 5)["reward"][:, 0] for _ in range(40)]).astype(int)
    counts = np.bincount(starts, minlength=20)
    assert counts[16:].sum() == 0  # a start later than 15 has no room for 5 steps
    expected = len(starts) / 16  # 16 valid starts, 20000 draws: 1250 each, sd ~34
    assert np.all(np.abs(counts[:16] - expected) < 6 * np.sqrt(expected))


def test_start_weights_set_the_start_distribution_over_valid_starts():
    r = Replay(64 * 40, seed=3)  # capacity below the steps added: weights follow the oldest stored step
    fill(r, 60, image=False)
    n = len(r)
    oldest = r.total - n
    weights = np.zeros(n)
    weights[[2, 5, n - 2]] = [1.0, 3.0, 100.0]  # the last one has no room for 4 steps: never a start
    starts = r.sample(4000, 4, start_weights=weights)["reward"][:, 0].astype(int) - oldest
    counts = np.bincount(starts, minlength=n)
    assert set(np.flatnonzero(counts)) == {2, 5}
    assert abs(counts[5] / 4000 - 0.75) < 0.04
    with pytest.raises(ReplayError, match="start_weights"):
        r.sample(2, 4, start_weights=np.ones(n + 1))


def test_too_few_steps_is_a_clear_error():
    r = Replay(10**6)
    fill(r, 3)
    with pytest.raises(ReplayError, match="too few"):
        r.sample(2, 5)


def test_memory_bounded_evicts_oldest():
    probe = Replay(10**6)
    probe.add(make_step(0))
    per_step = probe.nbytes
    # 8x8x3 image (192) + vector (8) + action (8) + reward (4) + 3 flags: at least 215 bytes a step.
    assert per_step >= 215
    r = Replay(55 * per_step, seed=3)
    fill(r, 130)
    assert len(r) == 55 and r.nbytes <= 55 * per_step
    b = r.sample(64, 4)
    assert b["reward"].min() >= 75  # steps 0..74 were evicted
    assert np.all(np.diff(b["reward"], axis=1) == 1)
    eps = r.episodes()
    assert [int(e["reward"][0]) for e in eps] == [80, 90, 100, 110, 120]  # 75..79 is a partial episode


def test_transitions_stay_within_episodes():
    r = Replay(10**7)
    fill(r, 35)  # episodes 0-9, 10-19, 20-29 complete; 30-34 running
    tr = r.transitions()
    t = tr["vector"][:, 0].astype(int)
    # pairs (t, t+1) for every t whose step is not last: 35 steps - 1 (no successor yet) - 3 last steps
    assert len(t) == 31
    assert not np.any(t % 10 == 9)
    assert np.array_equal(tr["next_vector"][:, 0], t + 1)
    assert np.array_equal(tr["reward"], t + 1)  # reward received on arriving at t+1
    assert np.array_equal(tr["action"], t % 3)
    assert np.array_equal(tr["next_image"][:, 0, 0, 0], (t + 1) % 256)
    assert np.array_equal(tr["terminal"], ((t + 1) % 10 == 9) & (((t + 1) // 10) % 2 == 0))


def test_episodes_complete_only():
    r = Replay(10**7)
    fill(r, 35)
    eps = r.episodes()
    assert len(eps) == 3
    for i, ep in enumerate(eps):
        assert np.array_equal(ep["reward"], np.arange(10 * i, 10 * i + 10))
        assert ep["is_first"][0] and ep["is_last"][-1] and ep["is_first"].sum() == 1
        assert ep["image"].shape == (10, 8, 8, 3)


def test_workers_sequences_follow_one_stream():
    r = Replay(10**7, seed=4)
    for t in range(60):  # two interleaved streams; worker 1's rewards are offset by 1000
        r.add(make_step(t), worker=0)
        r.add(make_step(t, offset=1000), worker=1)
    b = r.sample(200, 7)
    assert np.all(np.diff(b["reward"], axis=1) == 1)
    streams = b["reward"][:, 0] >= 1000
    assert 0 < streams.sum() < 200
    assert len(r.episodes()) == 12
    assert len(r.transitions()["reward"]) == 2 * (59 - 5)


def _same_batches(a: Replay, b: Replay, n: int = 5) -> None:
    for _ in range(n):
        x, y = a.sample(4, 6), b.sample(4, 6)
        for k in x:
            assert np.array_equal(x[k], y[k]), k


def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("capacity_steps", [10**5, 70])
def test_directory_state_reloads_exactly_and_drops_later_chunks(tmp_path, capacity_steps):
    probe = Replay(10**6)
    probe.add(make_step(0))
    cap = capacity_steps * probe.nbytes
    r = Replay(cap, tmp_path / "replay", chunk_size=16, seed=5)
    twin = Replay(cap, seed=5)  # no directory: the reference replay of the same steps
    fill(r, 150)
    fill(twin, 150)
    r.flush()  # chunk files are written by a background thread
    assert len(list((tmp_path / "replay").glob("chunk_*.tar.zst"))) == 9  # 150 // 16 complete chunks
    state = _roundtrip(r.state_dict())
    assert state["chunks"] == 9 and len(state["tail"]["reward"]) == 150 - 9 * 16  # only the partial chunk
    fill(r, 60, start=150)  # after the checkpoint: chunks 9..12 are written
    r.flush()
    assert len(list((tmp_path / "replay").glob("chunk_*.tar.zst"))) == 13

    (tmp_path / "replay" / ".chunk_000013.tar.zst.tmp-999-1").write_bytes(b"half a chunk")  # a write cut short
    back = Replay(cap, tmp_path / "replay", chunk_size=16, seed=123)
    back.load_state_dict(state)
    assert not list((tmp_path / "replay").glob(".chunk_*"))
    assert sorted(p.name for p in (tmp_path / "replay").glob("chunk_*.tar.zst"))[-1] == "chunk_000008.tar.zst"
    assert len(back) == len(twin) == min(150, capacity_steps)
    _same_batches(back, twin)
    # Continuing after the reload writes the same chunks as an uninterrupted replay.
    fill(back, 60, start=150)
    fill(twin, 60, start=150)
    _same_batches(back, twin)
    back.flush()
    assert np.array_equal(read_chunk(tmp_path / "replay" / "chunk_000012.tar.zst")["reward"], np.arange(192, 208))


def test_memory_state_roundtrip(tmp_path):
    r = Replay(10**6, seed=6)
    fill(r, 77)
    state = _roundtrip(r.state_dict())
    back = Replay(10**6, seed=0)
    back.load_state_dict(state)
    assert len(back) == 77
    _same_batches(back, r)
    assert len(back.episodes()) == len(r.episodes()) == 7


def test_damaged_chunk_is_named(tmp_path):
    r = Replay(10**6, tmp_path / "replay", chunk_size=8)
    fill(r, 20)
    state = r.state_dict()
    path = tmp_path / "replay" / "chunk_000001.tar.zst"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ReplayError, match="chunk_000001.tar.zst"):
        Replay(10**6, tmp_path / "replay", chunk_size=8).load_state_dict(state)


def test_reload_with_smaller_capacity_keeps_newest_steps(tmp_path):
    r = Replay(10**6, tmp_path / "replay", chunk_size=8)
    fill(r, 50)
    small = Replay(20 * r.step_bytes, tmp_path / "replay", chunk_size=1024)  # chunk size comes from the state
    small.load_state_dict(r.state_dict())
    assert len(small) == 20 and small.chunk_size == 8
    assert np.array_equal(small.transitions()["reward"], [31, 32, 33, 34, 35, 36, 37, 38, 39, 41, 42, 43, 44, 45,
                                                           46, 47, 48, 49])


def test_interleaved_workers_reload_exactly(tmp_path):
    r = Replay(10**6, tmp_path / "replay", chunk_size=10, seed=7)
    twin = Replay(10**6, seed=7)
    for t in range(47):  # worker 1 adds in bursts of three, so chunks hold runs of both workers
        for rep in (r, twin):
            rep.add(make_step(t), worker=0)
            if t % 2 == 0:
                for _ in range(3):
                    rep.add(make_step(t, offset=1000), worker=1)
    back = Replay(10**6, tmp_path / "replay", chunk_size=10, seed=0)
    back.load_state_dict(_roundtrip(r.state_dict()))
    _same_batches(back, twin)
    assert [len(e["reward"]) for e in back.episodes()] == [len(e["reward"]) for e in twin.episodes()]
    b = back.sample(100, 5)
    assert np.all(np.diff(b["reward"], axis=1) >= 0)  # worker 1 repeats t three times; never mixes streams
    assert np.all((b["reward"] >= 1000).all(axis=1) | (b["reward"] < 1000).all(axis=1))


def test_close_waits_for_chunk_writes_so_nothing_lands_afterwards(tmp_path):
    """A run that raises must not leave a writer thread that adds a chunk file after run() has returned."""
    import threading

    import numpy as np

    from wmbench.replay import Replay

    replay = Replay(capacity_bytes=1 << 20, directory=tmp_path, chunk_size=4, seed=0)
    gate = threading.Event()
    original = replay._write_chunk_file

    def slow(index, arrays):
        gate.wait(5)
        original(index, arrays)

    replay._write_chunk_file = slow
    for t in range(4):
        replay.add({"vector": np.zeros(2, np.float32), "action": np.zeros(1, np.float32), "reward": np.float32(0),
                    "is_first": t == 0, "is_last": False, "is_terminal": False})
    assert not list(tmp_path.glob("chunk_*.tar.zst"))  # the write is pending
    threading.Timer(0.2, gate.set).start()
    replay.close()
    assert [p.name for p in tmp_path.glob("chunk_*.tar.zst")] == ["chunk_000000.tar.zst"]


# ------------------------------------------------------------ online queue (DreamerV3 2024 replay.online)
def test_online_queue_hands_out_each_new_window_once_in_order_then_samples_uniformly():
    r = Replay(10**6, seed=1)
    fill(r, 25, image=False)
    batch = r.sample(4, 5, online=True)  # windows [0,5), [5,10), [10,15), [15,20) first
    assert batch["reward"][:, 0].tolist() == [0, 5, 10, 15]
    batch = r.sample(3, 5, online=True)  # one window left ([20,25)), then two uniform starts
    assert batch["reward"][0, 0] == 20
    assert np.all(np.diff(batch["reward"], axis=1) == 1)
    fill(r, 4, start=25, image=False)  # [25,30) not complete yet: nothing queued
    plain = Replay(10**6, seed=1)
    fill(plain, 29, image=False)
    assert r.sample(2, 5, online=True)["reward"][:, 0].tolist() != [25, 25]
    r.add(make_step(29, image=False))  # completes window [25,30)
    assert r.sample(1, 5, online=True)["reward"][0, 0] == 25
    # without online the queue is neither used nor consumed
    fill(r, 5, start=30, image=False)
    assert r.sample(1, 5)["reward"][0, 0] != 30 or r.sample(1, 5, online=True)["reward"][0, 0] == 30


def test_online_queue_skips_evicted_windows_and_survives_a_checkpoint(tmp_path):
    probe = Replay(10**6)
    probe.add(make_step(0, image=False))
    r = Replay(12 * probe.nbytes, seed=2)  # 12 steps fit
    fill(r, 30, image=False)  # steps 18..29 stored: windows [20,25) and [25,30) are whole
    assert r.sample(2, 5, online=True)["reward"][:, 0].tolist() == [20, 25]
    fill(r, 5, start=30, image=False)
    back = Replay(12 * probe.nbytes, seed=0)
    back.load_state_dict(_roundtrip(r.state_dict()))
    assert back.sample(1, 5, online=True)["reward"][0, 0] == 30  # the cursor came back: 20 and 25 not again
    assert r.sample(1, 5, online=True)["reward"][0, 0] == 30


def test_online_queue_follows_each_worker_stream():
    r = Replay(10**6, seed=3)
    for t in range(12):  # two interleaved workers, rewards 0.. and 100..
        r.add(make_step(t, image=False), worker=0)
        r.add(make_step(t, image=False, offset=100), worker=1)
    batch = r.sample(4, 6, online=True)
    assert sorted(batch["reward"][:, 0].tolist()) == [0, 6, 100, 106]
    assert np.all(np.diff(batch["reward"], axis=1) == 1)


# ------------------------------------------------------------ annotations (DreamerV3 2024 replay context)
def test_annotations_are_written_by_index_read_beside_the_steps_and_cleared_on_eviction():
    probe = Replay(10**6)
    probe.add(make_step(0, image=False))
    r = Replay(20 * probe.nbytes, seed=4)
    fill(r, 10, image=False)
    batch = r.sample(3, 2, index=True)
    assert np.array_equal(batch["index"], batch["reward"].astype(np.int64))  # reward encodes the global index
    latent = np.stack([batch["reward"], -batch["reward"]], -1).astype(np.float32)
    assert r.annotate(batch["index"], {"latent": latent}) == batch["index"].size
    again = r.sample(40, 1, annotations=True, index=True)
    written = ~np.isnan(again["latent"][..., 0])
    assert np.array_equal(written, np.isin(again["index"], batch["index"]))  # steps never annotated read NaN
    assert np.array_equal(again["latent"][written][:, 0], again["reward"][written])
    # An index that is no longer stored is skipped; a slot reused by a new step forgets the old annotation.
    r.annotate(np.arange(10), {"latent": np.ones((10, 2), np.float32)})
    fill(r, 15, start=10, image=False)  # steps 0..4 evicted; their slots now hold steps 20..24
    assert r.annotate(np.array([0, 7]), {"latent": np.zeros((2, 2), np.float32)}) == 1
    full = r.sample(40, 1, annotations=True, index=True)
    got = {int(i): v for i, v in zip(full["index"][:, 0], full["latent"][:, 0, 0], strict=True)}
    assert got.get(7) == 0 and all(np.isnan(got[i]) for i in got if i >= 20) and got.get(8, 1) == 1


@pytest.mark.parametrize("directory", [False, True])
def test_annotations_travel_with_the_state_dict(tmp_path, directory):
    kw = {"directory": tmp_path / "replay", "chunk_size": 8} if directory else {}
    r = Replay(10**6, seed=5, **kw)
    fill(r, 30, image=False)
    r.annotate(np.arange(3, 29), {"h": np.arange(3, 29, dtype=np.float16)[:, None] * np.ones((1, 4), np.float16)})
    back = Replay(10**6, seed=0, **kw)
    back.load_state_dict(_roundtrip(r.state_dict()))
    a, b = r.sample(16, 4, annotations=True), back.sample(16, 4, annotations=True)
    assert b["h"].dtype == np.float16
    np.testing.assert_array_equal(a["h"], b["h"])
    np.testing.assert_array_equal(a["reward"], b["reward"])


def test_annotation_errors_name_the_problem():
    r = Replay(10**6)
    with pytest.raises(ReplayError, match="holds steps"):
        r.annotate(np.arange(2), {"h": np.zeros((2, 3))})
    fill(r, 5, image=False)
    with pytest.raises(ReplayError, match="'reward' is taken"):
        r.annotate(np.arange(2), {"reward": np.zeros(2)})
    with pytest.raises(ReplayError, match=r"expected \(2,\)"):
        r.annotate(np.arange(2), {"h": np.zeros((3, 4))})


def test_chunk_file_is_a_zstd_tar_of_npy_files(tmp_path):
    import tarfile

    import zstandard

    r = Replay(10**6, tmp_path, chunk_size=8)
    fill(r, 8)
    r.flush()
    path = tmp_path / "chunk_000000.tar.zst"
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(raw)) as archive:  # what `zstd -d | tar x` unpacks
        by_tar = {m.name: np.load(io.BytesIO(archive.extractfile(m).read())) for m in archive}
    assert sorted(by_tar) == sorted(f"{k}.npy" for k in (*r.keys, "worker"))
    assert np.array_equal(by_tar["reward.npy"], np.arange(8)) and by_tar["image.npy"].shape == (8, 8, 8, 3)
    for k, v in read_chunk(path).items():
        assert np.array_equal(v, by_tar[f"{k}.npy"]) and v.dtype == by_tar[f"{k}.npy"].dtype


def test_chunks_of_the_older_npz_format_still_reload(tmp_path):
    """Runs checkpointed before the .tar.zst format resume: their deflated .npz chunks are read (hashes checked)."""
    import hashlib

    r = Replay(10**6, tmp_path / "replay", chunk_size=8, seed=3)
    twin = Replay(10**6, seed=3)
    fill(r, 30)
    fill(twin, 30)
    state = _roundtrip(r.state_dict())
    r.close()
    hashes = []
    for i in range(3):
        new = tmp_path / "replay" / f"chunk_{i:06d}.tar.zst"
        old = new.with_name(f"chunk_{i:06d}.npz")
        np.savez_compressed(old, **read_chunk(new))
        new.unlink()
        hashes.append(hashlib.sha256(old.read_bytes()).hexdigest())
    state["chunk_sha256"] = hashes
    back = Replay(10**6, tmp_path / "replay", chunk_size=8, seed=0)
    back.load_state_dict(state)
    _same_batches(back, twin)
    fill(back, 10, start=30)  # chunks 3 and 4 are written in the new format beside the old ones
    back.flush()
    assert [p.name for p in back.chunk_files()] == [
        "chunk_000000.npz", "chunk_000001.npz", "chunk_000002.npz", "chunk_000003.tar.zst", "chunk_000004.tar.zst"]  # fmt: skip
    assert np.array_equal(read_chunk(tmp_path / "replay" / "chunk_000003.tar.zst")["reward"], np.arange(24, 32))


def test_chunks_are_written_from_the_ring_and_a_row_is_not_overwritten_while_its_write_is_in_flight(tmp_path):
    """Chunk files are compressed from the ring's rows in a background thread; with a ring of exactly two chunks,
    adding the steps that overwrite a chunk's rows waits for that chunk's write, so every file holds its own steps."""
    import threading

    probe = Replay(10**6)
    probe.add(make_step(0))
    r = Replay(16 * probe.step_bytes, tmp_path, chunk_size=8)  # the ring holds exactly two chunks
    release = threading.Event()
    original = r._write_chunk_file

    def slow(index, arrays):
        release.wait(10)
        original(index, arrays)

    r._write_chunk_file = slow
    fill(r, 16)  # chunks 0 and 1 handed to the writer, which is held
    done = threading.Event()
    threading.Thread(target=lambda: (fill(r, 1, start=16), done.set()), daemon=True).start()
    assert not done.wait(0.3)  # step 16 would overwrite step 0's row, which chunk 0's write still reads
    release.set()
    assert done.wait(10)
    fill(r, 47, start=17)
    r.flush()
    for i in range(8):
        assert np.array_equal(read_chunk(tmp_path / f"chunk_{i:06d}.tar.zst")["reward"], np.arange(8 * i, 8 * i + 8))
    assert len(r) == 16 and r.state_dict()["tail"] == {}  # 64 steps: eight complete chunks, no partial one


def test_a_ring_smaller_than_one_chunk_is_refused_with_the_fix(tmp_path):
    probe = Replay(10**6)
    probe.add(make_step(0))
    r = Replay(5 * probe.step_bytes, tmp_path, chunk_size=8)
    with pytest.raises(ReplayError, match=r"holds 5 steps .* fewer than one chunk file \(8 steps\).*replay_bytes"):
        r.add(make_step(0))
    Replay(5 * probe.step_bytes, chunk_size=8).add(make_step(0))  # without a directory there are no chunks


def test_committing_pages_ahead_changes_nothing_but_speed(tmp_path, monkeypatch):
    import wmbench.replay as replay_module

    a, b = Replay(10**6, tmp_path / "a", chunk_size=8, seed=2), Replay(10**6, seed=2)
    fill(a, 40)
    monkeypatch.setattr(replay_module, "_libc", None)  # as where MADV_POPULATE_WRITE is unsupported
    fill(b, 40)
    _same_batches(a, b)
    if sys.platform == "linux":
        assert a._committed > 40  # the rows after the stored ones are committed ahead, once per range


def test_with_a_run_directory_the_writer_thread_commits_the_next_range_ahead_of_the_cursor(tmp_path, monkeypatch):
    import threading

    import wmbench.replay as replay_module

    calls: list[tuple[str, int, int]] = []
    original = replay_module._populate_rows

    def spy(arrays, begin, end):
        calls.append((threading.current_thread().name, begin, end))
        original(arrays, begin, end)

    monkeypatch.setattr(replay_module, "_populate_rows", spy)
    monkeypatch.setattr(replay_module, "_COMMIT_BYTES", 4 * 64 * 64 * 3)  # ranges of 4 rows of 64x64x3 images
    r = Replay(10**6, tmp_path, chunk_size=8)
    step = make_step(0)
    step["image"] = np.zeros((64, 64, 3), np.uint8)
    rows = 4
    for t in range(3 * rows):
        r.add({**step, "is_first": t == 0})
    r.flush()
    r.close()
    # the first range is committed where the first step is added, every later one by the writer thread, one range
    # before the cursor reaches it; the ranges tile the ring without gaps or overlaps
    assert calls[0] == (threading.main_thread().name, 0, rows)
    assert all(name.startswith("replay-writer") for name, _, _ in calls[1:])
    assert [(b, e) for _, b, e in calls] == [(k * rows, (k + 1) * rows) for k in range(len(calls))]
    # 12 steps: [0, 4) and [4, 8) at the first step, then [8, 12) and [12, 16) as the cursor entered [4, 8) and [8, 12)
    assert len(calls) == 4


def _vm_flags(address: int) -> list[str]:
    """The VmFlags of the mapping holding `address`, from /proc/self/smaps."""
    inside = False
    for line in open("/proc/self/smaps"):
        head = line.split()[0]
        if "-" in head and ":" not in head:
            begin, end = (int(x, 16) for x in head.split("-"))
            inside = begin <= address < end
        elif inside and head == "VmFlags:":
            return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(sys.platform != "linux", reason="transparent huge pages and /proc/self/smaps are Linux's")
def test_the_rings_large_arrays_use_small_pages_and_small_ones_are_left_alone():
    import wmbench.replay as replay_module

    if replay_module._libc is None:
        pytest.skip("madvise is unavailable here")
    r = Replay(64 << 20)
    r.add({**make_step(0), "image": np.zeros((64, 64, 3), np.uint8)})
    image = r._data["image"]
    assert image.nbytes >= 4 << 20
    first, last = _vm_flags(image.ctypes.data), _vm_flags(image.ctypes.data + image.nbytes - 1)
    assert "nh" in first and "nh" in last, (first, last)  # MADV_NOHUGEPAGE (numpy had asked for huge pages: "hg")
    # What numpy does by itself, for comparison, in a fresh process: here an earlier test's freed ring may have left
    # its flag on heap memory that glibc hands out again (its mmap threshold rises after large frees).
    code = (f"import numpy as np\n{inspect.getsource(_vm_flags)}\na = np.zeros({image.shape}, np.uint8)\n"
            "print(' '.join(_vm_flags(a.ctypes.data)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert "nh" not in out.stdout.split(), out.stdout


def test_stored_chunks_read_back_evicted_history(tmp_path):
    probe = Replay(10**6)
    probe.add(make_step(0))
    r = Replay(20 * probe.nbytes, tmp_path / "replay", chunk_size=8)  # holds 20 steps; 50 are added
    fill(r, 50)
    assert len(r) == 20 and r.chunks == 6
    for i in range(r.chunks):  # steps 0..47 again, the evicted ones included, in stream order
        chunk = r.stored_chunk(i)
        assert np.array_equal(chunk["reward"], np.arange(8 * i, 8 * i + 8))
        assert np.array_equal(chunk["worker"], np.zeros(8)) and chunk["image"].dtype == np.uint8
    with pytest.raises(ReplayError, match="chunk 6 does not exist: the replay has written 6 complete chunks"):
        r.stored_chunk(6)
    path = tmp_path / "replay" / "chunk_000002.tar.zst"
    swapped = path.read_bytes()
    path.write_bytes((tmp_path / "replay" / "chunk_000003.tar.zst").read_bytes())
    with pytest.raises(ReplayError, match="not the chunk the checkpoint covers"):
        r.stored_chunk(2)
    path.write_bytes(swapped)
    with pytest.raises(ReplayError, match="no directory"):
        probe.stored_chunk(0)
