"""`wmbench validate SCORES.csv`: a valid table passes (exit 0); each kind of problem is printed with its CSV line
numbers and the exit code is 1; nothing is written."""

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
    lines.append("wmbench:r5,random,fake@1,image_discrete,5,1000,1.0,agent_steps,curve")  # line 12 unit, seeds, budget
    code, out = run_validate(tmp_path, capsys, lines)
    assert code == 1
    assert "score: NaN, inf or not a number in lines 9, 10" in out
    assert "duplicate rows of (method, task, seed, env_step, point_type, source) in lines 3, 8" in out
    assert "task 'vector_discrte' is not a task of fake@1. Did you mean: vector_discrete, " in out
    assert "vector_continuous? (lines 11)" in out
    assert "step_unit: ['agent_steps'] where fake@1 records 'env_steps' (lines 12)" in out
    assert "random image_discrete: 1 seed(s), fake@1 needs at least 3 (lines 12)" in out
    assert "problem(s): not valid" in out


def test_budget_not_reached_and_protocol_mismatch(tmp_path, capsys):
    code, out = run_validate(tmp_path, capsys, valid_rows(last=3000))
    assert code == 1
    assert "random vector_discrete seed 0: reaches 3000 env_steps, budget is 4000 (lines 2, 3)" in out
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
