"""`wmbench leaderboard` (wmbench.report) and the method colours shared by every report and leaderboard page."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd

from wmbench import plots, report
from wmbench.protocols import load_protocol
from wmbench.runner import run_dir_for


def _write_run(root: Path, protocol: str, task: str, method: str, seed: int, returns, **info_overrides) -> Path:
    """A finished run directory with one train episode per return, evenly spread up to the run's budget."""
    p = load_protocol(protocol)
    info = {"method": method, "protocol": p.id, "protocol_hash": p.hash, "task": task, "seed": seed, "smoke": False,
            "status": "finished", "agent_steps": p.budget.agent_steps, "budget_agent_steps": p.budget.agent_steps,
            **info_overrides}
    budget = int(p.to_unit(info["budget_agent_steps"]))
    run_dir = run_dir_for(root, p.id, task, method, seed)
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(info))
    steps = np.linspace(budget / len(returns), budget, len(returns)).astype(int)
    pd.DataFrame({"env_step": steps, "step_unit": p.budget.step_unit, "episode": np.arange(1, len(returns) + 1),
                  "score": returns, "length": 200, "phase": "train"}).to_csv(run_dir / "scores.csv", index=False)
    return run_dir


def _control_runs(root: Path) -> None:
    for seed in range(3):
        _write_run(root, "control@1", "cartpole_swingup", "pets", seed, [0.0] * 12 + [170.0 + seed] * 3)
        _write_run(root, "control@1", "cartpole_swingup", "random", seed, [1.0 + seed] * 15)


def _ranked(page: str) -> list[tuple[str, str]]:
    return re.findall(r"<tr><td>(\d+)</td><td class='l'><span class='sw'[^>]*></span>([^<]+)</td>", page)


def test_control_protocol_without_iqm_is_ranked_by_its_first_aggregate(tmp_path) -> None:
    # control@1 aggregates mean and median only: the page ranks by mean (it used to fail with KeyError: 'iqm').
    _control_runs(tmp_path / "runs")
    out = tmp_path / "board"
    assert report.cli_leaderboard([str(tmp_path / "runs"), "--out", str(out), "--reps", "100"]) == 0
    page = (out / "control@1.html").read_text()
    assert _ranked(page) == [("1", "pets"), ("2", "random")]
    assert "Ranked by mean of raw final scores over the protocol's one task" in page
    assert "<th>mean [95% CI]</th><th>median [95% CI]</th>" in page
    row = re.search(r"pets</td><td class='l'>ours</td><td>([\d.]+) \[", page)
    assert float(row.group(1)) == np.mean([170.0, 171.0, 172.0])  # finals: mean of each seed's last 3 episodes
    assert "href='control@1.html'" in (out / "index.html").read_text()


def test_protocol_option_filters_and_index_is_written_when_a_page_fails(tmp_path) -> None:
    runs = tmp_path / "runs"
    _control_runs(runs)
    _write_run(runs, "atari100k@1", "pong", "random", 0, [-21.0, -20.0])
    out = tmp_path / "board"
    # --protocol keeps only the named protocol: no atari page, the index says what was left out.
    assert report.cli_leaderboard([str(runs), "--protocol", "control@1", "--out", str(out), "--reps", "50"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["control@1.html", "index.html"]
    index = (out / "index.html").read_text()
    assert "Left out by --protocol: 1 run(s)/table(s) of atari100k@1" in index
    # A protocol whose page cannot be built: the other pages and the index are still written; exit status 1.
    out2 = tmp_path / "board2"
    rc = report.cli_leaderboard([str(runs), "--protocol", "control@1", "no_such_protocol@1", "--out", str(out2),
                                 "--reps", "50"])
    assert rc == 1
    index = (out2 / "index.html").read_text()
    assert "href='control@1.html'" in index and "no_such_protocol@1</td><td colspan='4' class='l'>not built" in index


def test_partial_entries_are_listed_not_ranked_and_never_shrink_the_table(tmp_path) -> None:
    # Published DreamerV3 and PPO have all 3 selected games; our 'mine' runs have pong only. Ranking over the
    # intersection would compare everyone on pong alone; instead the page ranks the two on all 3 and lists 'mine'.
    runs = tmp_path / "runs"
    for seed in range(5):
        _write_run(runs, "atari100k@1", "pong", "mine", seed, [-21.0, 18.0 + seed])
    out = tmp_path / "board"
    rc = report.cli_leaderboard([str(runs), "--published", "dreamerv3", "ppo", "--tasks", "pong,boxing,krull",
                                 "--out", str(out), "--reps", "100"])
    assert rc == 0
    page = (out / "atari100k@1.html").read_text()
    assert _ranked(page) == [("1", "dreamerv3 (published)"), ("2", "ppo (published)")]
    assert "over the 3 selected tasks (--tasks; the protocol has 26)" in page
    unranked = page[page.index("<h2>Not ranked</h2>"):]
    assert "mine" in unranked and "final scores on 1 of 3 tasks (missing: boxing, krull)" in unranked
    assert " no runs on " not in page  # no statement about an intersection the ranking does not use
    # The same IQMs as a leaderboard of the two published methods alone: 'mine' changed nothing in the ranking.
    alone = tmp_path / "alone"
    report.cli_leaderboard(["--protocol", "atari100k@1", "--published", "dreamerv3", "ppo", "--tasks",
                            "pong,boxing,krull", "--out", str(alone), "--reps", "100"])
    cells = r"<td>(-?[\d.]+ \[[^<]+\])</td>"
    assert re.findall(cells, page) == re.findall(cells, (alone / "atari100k@1.html").read_text())


def test_our_runs_are_linked_relative_to_the_output_directory(tmp_path) -> None:
    runs = tmp_path / "runs"
    _control_runs(runs)
    out = tmp_path / "site" / "board"
    assert report.cli_leaderboard([str(runs), "--out", str(out), "--reps", "50"]) == 0
    page = (out / "control@1.html").read_text()
    hrefs = re.findall(r"<a href='([^']+)'>", page)
    ours = [h for h in hrefs if h != "index.html"]
    assert ours and all(not h.startswith(("/", "file:")) and str(tmp_path) not in h for h in ours)
    for href in ours:  # each link resolves from the page's folder to a folder of our runs
        target = (out / unquote(href)).resolve()
        assert target.is_dir() and os.path.commonpath([target, runs.resolve()]) == str(runs.resolve())
    assert str(tmp_path) not in page  # no absolute path shown either


def test_smoke_runs_are_listed_unranked_with_the_reason(tmp_path) -> None:
    runs = tmp_path / "runs"
    _control_runs(runs)
    _write_run(runs / "smoke", "control@1", "cartpole_swingup", "mine", 0, [5.0, 6.0], smoke=True,
               budget_agent_steps=400, agent_steps=400)
    out = tmp_path / "board"
    assert report.cli_leaderboard([str(runs), "--out", str(out), "--reps", "50"]) == 0
    page = (out / "control@1.html").read_text()
    assert _ranked(page) == [("1", "pets"), ("2", "random")]
    unranked = page[page.index("<h2>Not ranked</h2>"):]
    assert "mine (smoke, 400 agent steps)" in unranked and "smoke run(s) at 400 agent steps" in unranked


def test_method_colours_are_stable_across_pages() -> None:
    # A method's colour depends on its name only, never on the other entries of the page or their order.
    alone = plots.method_colours(["mine"])["mine"]
    assert plots.method_colours(["dreamerv3", "zzz", "mine"])["mine"] == alone
    assert plots.method_colours(["mine", "a", "b", "c", "d", "e", "f", "g", "h"])["mine"] == alone
    assert plots.method_colour("dreamerv3") == plots.METHOD_COLOURS["dreamerv3"]
    # Our runs and the same method's published or smoke runs: same hue family, different shades.
    shades = {plots.method_colour(x) for x in ("pets", "pets (published)", "pets (smoke, 600 agent steps)")}
    assert len(shades) == 3
    assert all(re.fullmatch(r"#[0-9A-F]{6}", c, re.I) for c in shades)


def test_report_and_leaderboard_use_the_same_colour_for_a_method(tmp_path, monkeypatch) -> None:
    runs = tmp_path / "runs"
    _control_runs(runs)
    out = tmp_path / "board"
    report.cli_leaderboard([str(runs), "--out", str(out), "--reps", "50"])
    page = (out / "control@1.html").read_text()
    swatches = dict((label, colour) for colour, label in
                    re.findall(r"<span class='sw' style='background:(#[0-9A-Fa-f]{6})'></span>([^<]+)<", page))
    assert swatches == {"pets": plots.method_colour("pets"), "random": plots.method_colour("random")}
    # The report's figures take their colours from the same function (the page order does not matter).
    seen = {}
    original = plots.interval_plot

    def spy(estimates, metrics, xlabel="", colour_of=None):
        seen.update(colour_of)
        return original(estimates, metrics, xlabel=xlabel, colour_of=colour_of)

    monkeypatch.setattr(plots, "interval_plot", spy)
    c = report.collect([runs], protocol="control@1")
    report.build_report(c, against="random", reps=20, poi_reps=5).html()
    assert seen == swatches


def test_smoke_shades_stay_visible_on_white() -> None:
    # Every fixed and hashed hue, as smoke: never so light that it fades into the page (luminance <= 0.85).
    for base in [*plots.METHOD_COLOURS, "a", "b", "c", "my_method", "zz_top", "storm", "iris"]:
        assert plots._luminance(plots.method_colour(f"{base} (smoke, 1,000 agent steps)")) <= 0.85, base
