"""`wmbench validate SCORES.csv`: a valid table passes (exit 0); each kind of problem is printed with its CSV line
numbers and the exit code is 1; nothing is written. Validate accepts exactly what `report` and `reproduce` accept
(one function, `results.validate`): errors make a table unusable for all three, warnings are accepted and stated."""

import pandas as pd
import pytest

from wmbench import cli, results

HEADER = ",".join(results.SCORE_COLUMNS)


def valid_rows(seeds=(0, 1, 2), tasks=("vector_discrete",), last=4000):
    # fake@1: budget 2000 agent steps x action repeat 2 = 4000 env steps; at least 3 seeds.
    return [f"wmbench:r{s},random,fake@1,{t},{s},{step},{s + step / 1000},env_steps,curve"
            for t in tasks for s in seeds for step in (2000, last)]


def run_validate(tmp_path, capsys, lines, *extra):
    path = tmp_path / "scores.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    code = cli.main(["validate", str(path), *extra])
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # validate writes nothing
    return code, capsys.readouterr().out


def test_valid_table(tmp_path, capsys):
    code, out = run_validate(tmp_path, capsys, valid_rows(tasks=("vector_discrete", "image_discrete")))
    assert code == 0, out
    assert "valid (12 rows, 6 runs, protocol fake@1)" in out
    assert results.cli_validate([str(tmp_path / "scores.csv"), "--protocol", "fake@1"]) == 0


def test_every_problem_is_listed_with_line_numbers(tmp_path, capsys):
    lines = valid_rows()  # lines 2..7: seeds 0,1,2 x steps 2000, 4000
    lines.append("wmbench:r0,random,fake@1,vector_discrete,0,4000,1.0,env_steps,curve")  # line 8 duplicates 3
    lines.append("wmbench:r9,random,fake@1,vector_discrete,9,4000,nan,env_steps,curve")  # line 9 NaN score
    lines.append("wmbench:r9,random,fake@1,vector_discrete,9,5000,inf,env_steps,curve")  # line 10 inf
    lines.append("wmbench:r9,random,fake@1,vector_discrte,9,4000,1.0,env_steps,curve")  # line 11 unknown task
    lines.append("wmbench:r5,random,fake@1,image_discrete,5,1000,1.0,agent_steps,curve")  # line 12 unit
    lines.append("wmbench:r6,random,fake@1,image_discrete,6,4000,1.0,env_steps,curve")  # line 13 seeds (warning)
    code, out = run_validate(tmp_path, capsys, lines)
    assert code == 1
    assert "score: NaN, inf or not a number in lines 9, 10" in out
    assert "duplicate rows of (method, task, seed, env_step, point_type, source) in lines 3, 8" in out
    assert "task 'vector_discrte' is not a task of fake@1. Did you mean: vector_discrete, " in out
    assert "vector_continuous? (lines 11)" in out
    assert "step_unit: ['agent_steps'] where fake@1 records 'env_steps' (lines 12)" in out
    assert ("warning: random image_discrete: 1 seed(s), fewer than fake@1's minimum of 3: a verdict on it is "
            "inconclusive (lines 13)") in out
    assert "4 problem(s): not valid" in out


def test_runs_that_stop_early_are_accepted_with_a_warning_and_left_out(tmp_path, capsys):
    # fake@1: budget 4000 env steps, 1000-step time limit: a run is complete from 4000 - max(400, 0) = 3600 on.
    code, out = run_validate(tmp_path, capsys, valid_rows(last=3000))
    assert code == 0, out
    assert ("warning: random vector_discrete seed 0: stops early (reaches 3000 env_steps, budget 4000; complete "
            "means reaching 3600): left out of reports and verdicts (lines 2, 3)") in out
    code, out = run_validate(tmp_path, capsys, valid_rows(last=3700))
    assert code == 0 and "warning" not in out


def test_protocol_mismatch(tmp_path, capsys):
    code, out = run_validate(tmp_path, capsys, valid_rows(), "--protocol", "atari100k@1")
    assert code == 1
    assert "rows of ['fake@1'] while validating against atari100k@1 (lines 2, 3, 4, 5, 6, 7)" in out


@pytest.mark.parametrize(
    "content,message",
    [
        ("a,b,c\n1,2,3\n", "missing columns ['source', 'method', 'protocol'"),
        (HEADER + "\n", "the table has no rows"),
        (HEADER + '\ns,m,fake@1,vector_discrete,0,"4000,1,env_steps,curve\n', "not a readable CSV"),
        ("", "not a readable CSV"),
    ],
)
def test_malformed_tables(tmp_path, capsys, content, message):
    path = tmp_path / "scores.csv"
    path.write_text(content)
    assert results.cli_validate([str(path)]) == 1
    assert message in capsys.readouterr().out


def test_unknown_and_unversioned_protocols(tmp_path, capsys):
    rows = [r.replace("fake@1", "fake") for r in valid_rows()]
    code, out = run_validate(tmp_path, capsys, rows)
    assert code == 1 and "'fake' has no version; use name@version" in out
    code, out = run_validate(tmp_path, capsys, valid_rows(), "--protocol", "fakee@1")
    assert code == 1 and "unknown protocol 'fakee@1'" in out


def test_published_table_round_trip_is_flagged_for_bare_protocol(tmp_path, capsys):
    # Published data carries bare protocol names: validating it names the fix instead of passing silently.
    t = results.published(method="iris", protocol="atari100k", task="pong")
    path = tmp_path / "iris.csv"
    t.to_csv(path, index=False)
    assert pd.read_csv(path).shape[0] == 5
    assert results.cli_validate([str(path)]) == 1
    assert "'atari100k' has no version" in capsys.readouterr().out


def test_negative_steps_finals_off_budget_and_several_finals_are_errors(tmp_path, capsys):
    lines = valid_rows()
    lines.append("wmbench:r0,random,fake@1,vector_discrete,0,-5,1.0,env_steps,curve")  # line 8
    lines.append("pub,random,fake@1,vector_discrete,7,40000,9.0,env_steps,final")  # line 9: 10x the budget
    lines.append("pub,random,fake@1,vector_discrete,8,4000,9.0,env_steps,final")  # lines 10, 11: two finals
    lines.append("pub,random,fake@1,vector_discrete,8,4000,8.0,env_steps,final")
    code, out = run_validate(tmp_path, capsys, lines)
    assert code == 1
    assert "env_step: negative in lines 8" in out
    assert "final rows must stand at the budget 4000 env_steps; found at 40000 (lines 9)" in out
    assert "several final rows for one run (method, task, seed) in lines 10, 11" in out


def test_protocol_column_never_resolves_to_a_path(tmp_path, capsys):
    # A forged protocol file with a 10x smaller budget, named in the table's protocol column, is never loaded.
    forged = tmp_path / "forged"
    forged.mkdir()
    text = (results.PUBLISHED_DIR.parents[1] / "protocols" / "fake@1.toml").read_text()
    (forged / "fake@1.toml").write_text(text.replace("agent_steps = 2000", "agent_steps = 200"))
    rows = [r.replace(",fake@1,", f",{forged / 'fake@1.toml'},") for r in valid_rows(last=400)]
    code, out = run_validate(tmp_path, capsys, rows)
    assert code == 1
    assert "is not a registered protocol id (name@version, e.g. atari100k@1)" in out and "never to a path" in out
    code, out = run_validate(tmp_path, capsys, valid_rows(), "--protocol", str(forged / "fake@1.toml"))
    assert code == 1 and "never to a path" in out


@pytest.mark.parametrize("source", ["dreamerv3_2024:atari100k-dreamerv3", "dreamerv3_2023:atari100k_dreamerv3",
                                    "twm:results/scores.json"])
def test_shipped_reference_data_is_valid_under_its_protocol(tmp_path, capsys, source):
    # The published curves end a little before 400k frames (binned; the last episode straddles the budget):
    # report and reproduce use them, so validate accepts them.
    t = results.published(protocol="atari100k", source=source)
    path = tmp_path / "pub.csv"
    t.to_csv(path, index=False)
    assert results.cli_validate([str(path), "--protocol", "atari100k@1"]) == 0, capsys.readouterr().out
    found = results.validate(t, "atari100k@1")
    assert found.errors == [] and found.protocol.id == "atari100k@1"
