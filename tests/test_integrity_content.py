"""Content integrity (issue 29.2, 29.6): what a checkpoint covers (log prefixes, replay chunks) and what a finished
run scored are hashed, and a resume or a finished-run lookup checks them; a run whose final score cannot be computed
is not `finished`; leftovers of a kill -9 are removed; a full disk while run.json is written is recorded."""

from __future__ import annotations

import shutil

import pytest
from integrity_support import cli, go, one_error_line, reset, run_argv, run_json, snapshot, stopped_run

import wmbench.runner as runner
from wmbench.io import DiskFullError
from wmbench.runner import CheckpointError, RunDirError, load_checkpoint


@pytest.fixture(autouse=True)
def _reset():
    reset()
    yield
    reset()


def _zero(path, offset: int = 0) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:offset] + b"\0" * (len(data) - offset))


def _edit_first_score(path) -> None:
    """Change one digit of the first train score, same length."""
    header, first, *rest = path.read_text().splitlines(keepends=True)
    cells = first.split(",")
    cells[3] = cells[3][:-1] + ("1" if cells[3][-1] != "1" else "2")
    path.write_text("".join([header, ",".join(cells), *rest]))


@pytest.mark.parametrize("damage", ["zeroed", "edited"])
def test_changed_log_prefix_is_refused_on_resume(tmp_path, capsys, damage):
    d = stopped_run(tmp_path)
    assert set(load_checkpoint(d / "checkpoint")["logs_sha256"]) == {"scores.csv", "metrics.jsonl", "timing.csv"}
    size = (d / "scores.csv").stat().st_size
    _zero(d / "scores.csv") if damage == "zeroed" else _edit_first_score(d / "scores.csv")
    assert (d / "scores.csv").stat().st_size == size
    before = snapshot(d)
    code, _, err = cli(run_argv(tmp_path, "--steps", "400", "--checkpoint-every", "100"), capsys)
    line = one_error_line(err)
    assert code == 2
    assert f"{d / 'scores.csv'} does not match {d / 'checkpoint'}: its first " in line
    assert "so it was changed afterwards. Restore the file, or start over with --restart" in line
    assert snapshot(d) == before
    ref = go(tmp_path / "ref")
    assert go(tmp_path, restart=True).status == "finished"  # the fix the message names
    assert (d / "scores.csv").read_bytes() == (ref.run_dir / "scores.csv").read_bytes()


def test_swapped_replay_chunks_are_refused_on_resume(tmp_path):
    d = stopped_run(tmp_path)
    a, b = d / "replay" / "chunk_000000.tar.zst", d / "replay" / "chunk_000001.tar.zst"
    assert len(load_checkpoint(d / "checkpoint")["replay"]["chunk_sha256"]) >= 2
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    with pytest.raises(CheckpointError, match=r"replay chunk .*chunk_000000.tar.zst is not the chunk the checkpoint "
                                              r"covers \(sha256 \w+\.\.\. when written, \w+\.\.\. now\)"):
        go(tmp_path)
    a.write_bytes(data_a)
    b.write_bytes(data_b)
    assert go(tmp_path).resumed


@pytest.mark.parametrize("damage", ["zeroed", "edited"])
def test_changed_scores_of_a_finished_run_are_refused(tmp_path, capsys, damage):
    res = go(tmp_path)
    d = res.run_dir
    assert run_json(d)["logs_sha256"]["scores.csv"]
    _zero(d / "scores.csv") if damage == "zeroed" else _edit_first_score(d / "scores.csv")
    code, _, err = cli(run_argv(tmp_path, "--steps", "400", "--checkpoint-every", "100"), capsys)
    line = one_error_line(err)
    assert code == 2
    assert f"run directory {d} says finished, but scores.csv was changed after the run finished" in line
    assert "Restore the file, or delete the directory to run it again" in line


def test_run_without_a_final_score_is_not_finished(tmp_path, capsys):
    """8 agent steps of fake@1 end no episode: the protocol's rule has nothing to score."""
    code, _, err = cli(run_argv(tmp_path, "--steps", "8"), capsys)
    line = one_error_line(err)
    assert code == 2
    assert "completed its 8 agent steps, but its final score cannot be computed (ResultsError: " in line
    assert "so the run is not finished" in line
    d = runner.run_dir_for(tmp_path, "fake@1", "vector_discrete", "stopper", 0)
    info = run_json(d)
    assert info["status"] == "failed" and "final score cannot be computed" in info["error"]
    assert info.get("final_score") is None


def test_kill9_temp_files_are_removed_at_the_next_start(tmp_path):
    d = stopped_run(tmp_path)
    leftovers = [d / ".run.json.tmp-999999-1", d / ".scores.csv.tmp-999999-2"]
    for p in leftovers:
        p.write_text("{")
    go(tmp_path)
    assert not any(p.exists() for p in leftovers)


def test_disk_full_while_run_json_is_written_is_recorded(tmp_path, monkeypatch):
    """After the first checkpoint the disk is full: no new file can be created (run.json, error.txt)."""
    real_json, real_text = runner.atomic_write_json, runner.atomic_write_text
    full = []

    def json_write(path, obj):
        if full:
            raise DiskFullError(f"no space left on the device while writing {path} (No space left on device)")
        real_json(path, obj)
        if obj.get("checkpoint_step"):
            full.append(True)

    def text_write(path, text):
        if full:
            raise DiskFullError(f"no space left on the device while writing {path}")
        real_text(path, text)

    monkeypatch.setattr(runner, "atomic_write_json", json_write)
    monkeypatch.setattr(runner, "atomic_write_text", text_write)
    with pytest.raises(DiskFullError):
        go(tmp_path)
    d = runner.run_dir_for(tmp_path, "fake@1", "vector_discrete", "stopper", 0)
    info = run_json(d)
    assert info["status"] == "failed" and "no space left on the device" in info["error"]
    monkeypatch.undo()
    assert go(tmp_path).resumed  # the disk has space again: the same command resumes


def test_finished_check_and_sweep_skip_agree(tmp_path):
    """The sweep's 'already finished' shortcut uses the same content check as the runner."""
    from wmbench.sweep import _expected_identities, _finished_same_run, make_spec

    spec = make_spec("stopper", "fake@1", "0", "vector_discrete", steps=400)
    res = go(tmp_path)
    expected = _expected_identities(spec)[("vector_discrete", 0)]
    assert _finished_same_run(res.run_dir, expected)
    _edit_first_score(res.run_dir / "scores.csv")
    assert not _finished_same_run(res.run_dir, expected)
    with pytest.raises(RunDirError, match="scores.csv was changed"):
        go(tmp_path)
    shutil.rmtree(res.run_dir)
