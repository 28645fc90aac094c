"""`wmbench archive`: a run's evidence files copied where verdicts and reports read them as they read the run."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from wmbench import archive, reproduce, results
from wmbench.cli import main
from wmbench.protocols import load_protocol

TASK = "vector_continuous"


def _run(root, seed: int = 0, extra: tuple[str, ...] = ()) -> None:
    rc = main(["run", "random", "fake@1", "--task", TASK, "--seed", str(seed), "--smoke", "--root", str(root),
               "--no-progress", *extra])
    assert rc == 0


def _run_dir(root, seed: int = 0):
    from wmbench.runner import run_dir_for

    return run_dir_for(root, "fake@1", TASK, "random", seed, smoke=True)


def _scores(path) -> pd.DataFrame:
    return results.load_scores(path).drop(columns="source")


def test_archive_holds_what_verdicts_read_and_is_idempotent(tmp_path, capsys) -> None:
    runs, dest = tmp_path / "runs", tmp_path / "archive"
    for seed in (0, 1):
        _run(runs, seed)
    assert main(["archive", str(runs), "--to", str(dest)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("archived ") == 2
    for seed in (0, 1):
        copy = _run_dir(dest, seed)
        assert sorted(p.name for p in copy.iterdir()) == ["ARCHIVE.json", "run.json", "scores.csv", "timing.csv"]
        pd.testing.assert_frame_equal(_scores(copy), _scores(_run_dir(runs, seed)))
        manifest = json.loads((copy / "ARCHIVE.json").read_text())
        assert manifest["source"] == str(_run_dir(runs, seed).resolve()) and manifest["status"] == "finished"
    # The archive sits in the runner's layout: smoke runs under <method>/smoke/, which verdicts never read ...
    assert reproduce.find_runs(dest, load_protocol("fake@1"), "random", [TASK])[TASK] == []
    assert (dest / "fake@1" / TASK / "random" / "smoke" / "seed_1" / "run.json").is_file()
    # ... and a full run where reproduce's discovery finds it.
    assert main(["run", "random", "fake@1", "--task", TASK, "--seed", "2", "--steps", "300", "--root", str(runs),
                 "--no-progress"]) == 0
    assert main(["archive", str(runs), "--to", str(dest)]) == 0
    found = reproduce.find_runs(dest, load_protocol("fake@1"), "random", [TASK])[TASK]
    assert [p.name for p in found] == ["seed_2"] and json.loads((found[0] / "run.json").read_text())["seed"] == 2
    # Archiving again changes nothing; --check finds every hash intact.
    capsys.readouterr()
    assert main(["archive", str(runs), "--to", str(dest)]) == 0
    assert capsys.readouterr().out.count("unchanged ") == 3
    assert main(["archive", "--to", str(dest), "--check"]) == 0


def test_archive_follows_a_run_that_goes_on_and_copies_complete_lines_only(tmp_path, capsys) -> None:
    runs, dest = tmp_path / "runs", tmp_path / "archive"
    _run(runs)
    src = _run_dir(runs)
    archive.archive_run(src, dest)
    lines = (src / "scores.csv").read_text().splitlines(keepends=True)
    # The run goes on: one more complete episode and one being written (no newline yet).
    (src / "scores.csv").write_text("".join(lines) + lines[-1] + "4000,env_steps,99,1.")
    copy, what = archive.archive_run(src, dest)
    assert what == "updated"
    assert (copy / "scores.csv").read_text() == "".join(lines) + lines[-1]
    assert json.loads((copy / "ARCHIVE.json").read_text())["episodes"] == len(lines)


def test_archive_never_replaces_another_run(tmp_path) -> None:
    runs, dest = tmp_path / "runs", tmp_path / "archive"
    _run(runs)
    archive.archive_run(_run_dir(runs), dest)
    # The same seed run over from scratch (--restart) later: another start time, so another run.
    _run(runs, extra=("--restart",))
    info = json.loads((_run_dir(runs) / "run.json").read_text())
    (_run_dir(runs) / "run.json").write_text(json.dumps({**info, "started": "2099-01-01T00:00:00+00:00"}))
    with pytest.raises(archive.ArchiveError, match="holds another run .* another --to folder"):
        archive.archive_run(_run_dir(runs), dest)
    # The same run with its scores edited: they no longer continue the archived ones.
    info = json.loads((_run_dir(dest) / "run.json").read_text())
    (_run_dir(runs) / "run.json").write_text(json.dumps(info))
    (_run_dir(runs) / "scores.csv").write_text("env_step,step_unit,episode,score,length,phase\n")
    with pytest.raises(archive.ArchiveError, match="does not continue the archived"):
        archive.archive_run(_run_dir(runs), dest)


def test_check_names_an_edited_or_missing_file(tmp_path, capsys) -> None:
    runs, dest = tmp_path / "runs", tmp_path / "archive"
    _run(runs)
    copy, _ = archive.archive_run(_run_dir(runs), dest, metrics=True)
    assert (copy / "metrics.jsonl").is_file()
    with open(copy / "scores.csv", "a") as f:
        f.write("4000,env_steps,99,1000.0,1000,train\n")
    (copy / "timing.csv").unlink()
    assert main(["archive", "--to", str(dest), "--check"]) == 1
    printed = capsys.readouterr().out
    assert "scores.csv: sha256 differs" in printed and "timing.csv: missing" in printed
    assert "2 problem(s)" in printed


def test_bad_input_names_the_path(tmp_path, capsys) -> None:
    with pytest.raises(archive.ArchiveError, match="does not exist"):
        archive.find_run_dirs([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(archive.ArchiveError, match="no run.json"):
        archive.find_run_dirs([tmp_path / "empty"])
    with pytest.raises(archive.ArchiveError, match="no ARCHIVE.json"):
        archive.check_archive(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.json").write_text(json.dumps({"method": "random"}))
    assert main(["archive", str(bad), "--to", str(tmp_path / "a")]) == 2
    assert "missing keys ['protocol', 'task', 'seed']" in capsys.readouterr().err
