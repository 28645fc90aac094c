"""The demo driver: runs, prints the table with run directories and scores, reuses finished runs."""

from __future__ import annotations

from wmbench import demo


def test_demo_on_fake_protocol(tmp_path, capsys):
    argv = ["--cases", "fake@1:vector_discrete", "--methods", "random", "--root", str(tmp_path), "--no-progress"]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    run_dir = tmp_path / "fake@1" / "vector_discrete" / "random" / "smoke" / "seed_0"  # smoke runs apart from full
    assert (run_dir / "scores.csv").exists()
    assert str(run_dir / "scores.csv") in out and "total time" in out
    row = next(line for line in out.splitlines() if line.startswith("random"))
    score = row.split()[3]
    float(score)  # a number, not n/a
    # Second call reuses the finished run (not re-run): its files are untouched.
    before = (run_dir / "scores.csv").stat().st_mtime_ns
    assert demo.main(argv) == 0
    assert (run_dir / "scores.csv").stat().st_mtime_ns == before


def test_demo_reports_bad_case_and_fails(tmp_path, capsys):
    argv = ["--cases", "fake@1:no_such_task", "--methods", "random", "--root", str(tmp_path), "--no-progress"]
    assert demo.main(argv) == 1
    out = capsys.readouterr().out
    assert "error" in out and "unknown task 'no_such_task'" in out
