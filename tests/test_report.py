"""Comparison reports and leaderboards (wmbench.report, wmbench.plots) on the shipped published data and toy runs."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from wmbench import plots, report, results
from wmbench.protocols import load_protocol

PROTOCOL = "atari100k@1"
TASKS = "pong,boxing,krull"
FAST = ["--reps", "200", "--poi-reps", "20"]


def test_curve_bands_by_hand() -> None:
    # Budget 100 in 4 bins (0,25], (25,50], (50,75], (75,100]; an episode ending at 25 belongs to the first bin.
    curves = pd.DataFrame({
        "seed": ["a", "a", "a", "a", "b", "b", "b"],
        "env_step": [10.0, 20.0, 25.0, 60.0, 15.0, 30.0, 90.0],
        "score": [1.0, 3.0, 10.0, 5.0, 4.0, 2.0, 8.0],
    })
    x, mean, low, high = report.curve_bands(curves, budget=100.0, bins=4)
    # seed a: bin0 = (1+3+10)/3 = 14/3, bin2 = 5; seed b: bin0 = 4, bin1 = 2, bin3 = 8.
    np.testing.assert_allclose(x, [12.5, 37.5, 62.5, 87.5])
    np.testing.assert_allclose(mean, [(14 / 3 + 4) / 2, 2, 5, 8])
    np.testing.assert_allclose(low, [4, 2, 5, 8])
    np.testing.assert_allclose(high, [14 / 3, 2, 5, 8])


def _hns_iqm(method: str, tasks: list[str]) -> float:
    """IQM (25% trimmed mean over all runs x tasks) of human-normalised published finals, computed independently."""
    pub = results.published(protocol=PROTOCOL, method=method, task=tasks)
    finals = pub[pub.point_type == "final"]
    norms = pd.read_csv(results.PUBLISHED_DIR / "atari_normalisers.csv").set_index("game")
    lo, hi = norms.loc[finals.task, "random"].to_numpy(), norms.loc[finals.task, "human"].to_numpy()
    return float(scipy_stats.trim_mean((finals.score.to_numpy() - lo) / (hi - lo), 0.25))


def test_report_of_published_methods_is_self_contained_and_correct(tmp_path) -> None:
    out = tmp_path / "r" / "report.html"
    rc = report.cli_report(["--published", "dreamerv3", "ppo", "--protocol", PROTOCOL, "--tasks", TASKS,
                            "--against", "dreamerv3", "--out", str(out), *FAST])
    assert rc == 0
    page = out.read_text()
    md = out.with_suffix(".md").read_text()
    # Self-contained: every image inline, no external stylesheet, script or image.
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 5  # intervals, sample efficiency, profiles, improvement, learning curves
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page) and "<script" not in page
    # Aggregate IQMs agree with an independent computation from the published per-run finals.
    for method in ("dreamerv3", "ppo"):
        expected = _hns_iqm(method, TASKS.split(","))
        row = next(line for line in md.splitlines() if line.startswith(f"| {method} (published) | 5 × 3 |"))
        assert float(row.split("|")[3].split()[0]) == pytest.approx(expected, abs=5e-4)
    poi = next(line for line in md.splitlines() if line.startswith("| P(ppo (published) > dreamerv3 (published))"))
    assert float(poi.split("|")[2].split()[0]) < 0.5
    assert "## Warnings" not in md  # 5 seeds on every task, one protocol: nothing to warn about


def _write_run(root, task: str, seed: int, curve: pd.DataFrame, **info_overrides) -> None:
    from wmbench.runner import run_dir_for

    protocol = load_protocol(PROTOCOL)
    info = {"method": "dreamerv3", "protocol": protocol.id, "protocol_hash": protocol.hash, "task": task,
            "seed": seed, "smoke": False, "status": "finished", "agent_steps": 100000, **info_overrides}
    run_dir = run_dir_for(root, info["protocol"], task, "dreamerv3", seed)
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(info))
    pd.DataFrame({"env_step": curve["env_step"].astype(int), "step_unit": "frames",
                  "episode": np.arange(len(curve)), "score": curve["score"], "length": 1000, "phase": "train"}
                 ).to_csv(run_dir / "scores.csv", index=False)


def test_report_warns_and_never_mixes(tmp_path) -> None:
    pub = results.published(protocol=PROTOCOL, method="dreamerv3", task="pong")
    curves = {int(s): g for s, g in pub[pub.point_type == "curve"].groupby("seed")}
    root = tmp_path / "runs"
    _write_run(root, "pong", 0, curves[0])
    _write_run(root, "pong", 1, curves[1])
    _write_run(root, "pong", 2, curves[2].head(10), status="running", agent_steps=30000)
    _write_run(root, "pong", 3, curves[3], protocol_hash="0123456789abcdef")
    _write_run(root, "pong", 4, curves[4], protocol="atari100k@2")
    _write_run(root, "pong", 5, curves[4].head(3), smoke=True)
    c = report.collect([root], published=["dreamerv3"], protocol=PROTOCOL, tasks=["pong", "boxing"])
    warnings = "\n".join(c.warnings)
    assert "1 run(s)/table(s) of atari100k@2" in warnings
    assert "seed_2: unfinished" in warnings
    assert "seed_3: protocol hash 0123456789abcdef differs" in warnings
    assert "Left out 1 smoke run(s): full runs are present, and the two are never mixed." in warnings
    assert "dreamerv3: no runs on 1 of 2 tasks (boxing)" in warnings
    assert "dreamerv3: fewer seeds than the protocol's minimum of 5 on 1 task(s) (pong: 2)" in warnings
    # Only the two good runs enter, and only the shared task: 2 x 1 for ours, 5 x 1 for the published runs.
    assert c.tasks == ["pong"]
    shapes = {e.label: e.matrix.shape for e in c.entries}
    assert shapes == {"dreamerv3": (2, 1), "dreamerv3 (published)": (5, 1)}
    # --against dreamerv3 names our entry exactly (the published one is labelled "dreamerv3 (published)").
    assert report._resolve_against(c, "dreamerv3") == "dreamerv3"
    # Our runs beside the same method's published runs: the report states the reproduction verdict.
    r = report.build_report(c, against=None, reps=50, poi_reps=5)
    assert [(v.method, v.source) for v in r.verdicts] == [("dreamerv3", "dreamerv3_2024:atari100k-dreamerv3")]
    assert r.verdicts[0].aggregate.n_ours == 2 and r.verdicts[0].tasks[0].task == "pong"
    assert "## Reproduction: dreamerv3 vs dreamerv3\\_2024:atari100k-dreamerv3" in r.markdown()


def test_report_errors_name_the_fix(tmp_path) -> None:
    with pytest.raises(report.ReportError, match="--protocol"):
        report.collect(published=["dreamerv3"])
    with pytest.raises(report.ReportError, match="Did you mean: ppo"):
        c = report.collect(published=["dreamerv3", "ppo"], protocol=PROTOCOL, tasks=["pong"])
        report.build_report(c, against="ppoo", reps=20, poi_reps=5)


def test_leaderboard_ranks_by_iqm_and_links_sources(tmp_path) -> None:
    rc = report.cli_leaderboard(["--protocol", PROTOCOL, "--published", "ppo", "dreamerv3", "--tasks", TASKS,
                                 "--reps", "200", "--out", str(tmp_path)])
    assert rc == 0
    index = (tmp_path / "index.html").read_text()
    assert "href='atari100k@1.html'" in index
    page = (tmp_path / "atari100k@1.html").read_text()
    rows = re.findall(r"<tr><td>(\d+)</td><td class='l'>(?:<span class='sw'[^>]*></span>)?([^<]+)</td>", page)
    assert rows == [("1", "dreamerv3 (published)"), ("2", "ppo (published)")]
    assert "https://github.com/danijar/dreamerv3/blob/e3f02248693a79dc8b0ebd62c93683888ddaccfe/" in page


def test_plot_helpers_render_png() -> None:
    fig = plots.scatter([0, 1, 2], [0, 1.5, 2], labels=["a", "b", "c"], xlabel="x", ylabel="y", diagonal=True)
    assert base64.b64decode(plots.to_png_base64(fig))[:4] == b"\x89PNG"
    fig = plots.bar({"a": 1.0, "b": 2.0}, errors={"a": (0.5, 1.5), "b": (1.0, 3.0)}, ylabel="v")
    assert base64.b64decode(plots.to_png_base64(fig))[:4] == b"\x89PNG"
    assert plots._short_number(400000) == "400k" and plots._short_number(2.5e6) == "2.5M"
    assert plots._short_number(0.25) == "0.25"


def test_curve_band_is_a_bootstrap_ci_of_the_mean_not_the_range() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(10.0, 3.0, 20)
    curves = pd.DataFrame({"seed": [str(i) for i in range(20)], "env_step": 50.0, "score": scores})
    x, mean, low, high = report.curve_bands(curves, budget=100.0, bins=1, reps=2000)
    assert mean[0] == pytest.approx(scores.mean())
    sem = scores.std(ddof=1) / np.sqrt(20)
    # Percentile bootstrap of the mean ~ mean +- 1.96 sem, far inside the min..max range of 20 seeds.
    assert low[0] == pytest.approx(scores.mean() - 1.96 * sem, abs=0.4 * sem)
    assert high[0] == pytest.approx(scores.mean() + 1.96 * sem, abs=0.4 * sem)
    assert scores.min() < low[0] < high[0] < scores.max()


def test_report_tables_download_as_csv_with_per_task_cis_per_run_finals_and_efficiency(tmp_path) -> None:
    out = tmp_path / "report.html"
    assert report.cli_report(["--published", "dreamerv3", "ppo", "--protocol", PROTOCOL, "--tasks", TASKS,
                              "--out", str(out), *FAST]) == 0
    page = out.read_text()
    links = dict(re.findall(r"<a download='([^']+)' href='data:text/csv;base64,([A-Za-z0-9+/=]+)'>", page))
    assert set(links) == {f"atari100k_1_{n}.csv" for n in ("entries", "aggregates", "sample_efficiency", "per_task",
                                                           "finals")}
    finals = pd.read_csv(io.StringIO(base64.b64decode(links["atari100k_1_finals.csv"]).decode()))
    assert len(finals) == 2 * 3 * 5 and set(finals["scoring rule"]) == {"window_mean(train, 10000 frames, fallback last)"}
    expected = results.final_scores(results.published(protocol=PROTOCOL, method="ppo", task="pong"), PROTOCOL)
    got = finals[(finals.entry == "ppo (published)") & (finals.task == "pong")].sort_values("seed")
    np.testing.assert_allclose(got["final"], expected.sort_values("seed")["final"], rtol=1e-5)
    per_task = pd.read_csv(io.StringIO(base64.b64decode(links["atari100k_1_per_task.csv"]).decode()))
    assert re.fullmatch(r"-?[\d,.]+ \[-?[\d,.]+, -?[\d,.]+\] \(-?[\d.]+, n=5\)", per_task.iloc[0, 1])
    efficiency = pd.read_csv(io.StringIO(base64.b64decode(links["atari100k_1_sample_efficiency.csv"]).decode()))
    assert list(efficiency.entry) == ["dreamerv3 (published)", "ppo (published)"]
    assert efficiency.columns[-1] == "400,000 frames"  # the last point is the budget: the aggregate table's IQM
    iqm_at_budget = float(efficiency.iloc[0, -1].split()[0])
    assert iqm_at_budget == pytest.approx(_hns_iqm("dreamerv3", TASKS.split(",")), abs=0.03)  # binned curves


def test_markdown_is_escaped_like_the_html(tmp_path) -> None:
    hostile = "<img src=x onerror=alert(1)>|[link](http://e)*_"
    pub = results.published(protocol=PROTOCOL, method="ppo", task="pong")
    table = pub[pub.point_type == "curve"].assign(method=hostile, source="t", protocol=PROTOCOL)
    c = report.collect(table=table[results.SCORE_COLUMNS], protocol=PROTOCOL, tasks=["pong"])
    r = report.build_report(c, against=None, reps=50, poi_reps=5)
    md, page = r.markdown(), r.html()
    assert hostile not in md and "<img" not in md
    assert re.search(r"(?<!\\)\]\(", md) is None  # no unescaped "](": a label cannot open a link
    assert "&lt;img src=x onerror=alert(1)>\\|\\[link\\](http://e)\\*\\_" in md
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_tiny_intervals_stay_visible() -> None:
    fig = plots.interval_plot({"big": {"iqm": (0.5, 0.1, 0.9)}, "tiny": {"iqm": (0.0, 0.0, 0.0001)}}, ["iqm"])
    bars = [p for p in fig.axes[0].patches]
    widths = sorted(b.get_width() for b in bars)
    assert widths[0] >= 0.015 * 0.9 - 1e-12  # at least 1.5% of the panel's span


def test_report_flags_entries_scored_by_different_rules() -> None:
    """TWM ships authors' end-of-training evaluations (no curve); DreamerV3's finals follow the protocol's window."""
    c = report.collect(published=["dreamerv3", "twm"], protocol=PROTOCOL, tasks=["pong", "boxing"])
    assert any("different scoring rules" in w and "twm (published): authors_eval" in w for w in c.warnings)
    r = report.build_report(c, against="dreamerv3", reps=50, poi_reps=5)
    assert list(r.efficiency) == ["dreamerv3 (published)"]  # finals-only entries have no sample-efficiency curve
    rows = dict((row[0], row[-1]) for row in report.methods_rows(c))
    assert rows == {"dreamerv3 (published)": "window_mean(train, 10000 frames, fallback last) (10)",
                    "twm (published)": "authors_eval (10)"}


def test_twm_finals_are_the_twm_protocols_own_rule_and_other_curves_are_flagged() -> None:
    """atari100k_twm@1 reads the atari100k data: TWM's 100 final evaluation games ARE its rule; DreamerV3's training
    curve, scored by that rule, is not, and the report says the two come from different rules."""
    twm = report.collect(published=["twm"], protocol="atari100k_twm@1")
    assert not any("different scoring rules" in w for w in twm.warnings)
    (entry,) = twm.entries
    assert set(entry.finals["scoring"]) == {"eval_mean(100 episodes)"} and len(entry.finals) == 130
    # The shipped finals give the paper's mean human-normalised score (Robine et al. 2023: 0.956).
    hns = entry.finals.groupby("task")["final"].mean()
    normalised = results.normalise(hns.to_numpy(), hns.index.to_numpy(), "atari_human")
    assert round(float(normalised.mean()), 3) == 0.956
    both = report.collect(published=["dreamerv3=dreamerv3_2024:atari100k-dreamerv3", "twm"],
                          protocol="atari100k_twm@1", tasks=["pong", "boxing"])
    rows = dict((row[0], row[-1]) for row in report.methods_rows(both))
    assert rows == {"dreamerv3 (published)": "eval_mean(100 episodes) over a curve of other rules (10)",
                    "twm (published)": "eval_mean(100 episodes) (10)"}
    assert any("different scoring rules" in w for w in both.warnings)


def test_intervals_at_the_edge_of_the_range_stay_off_the_axis() -> None:
    fig = plots.interval_plot({"a": {"iqm": (0.5, 0.4, 0.6)}, "b": {"iqm": (0.02, 0.016, 0.026)}}, ["iqm"])
    left, right = fig.axes[0].get_xlim()
    assert left < 0.016 - 0.02 and right > 0.6 + 0.02  # padding on both sides, bars never on the spine


def test_documented_poi_reps_default_is_the_codes(capsys) -> None:
    from pathlib import Path

    with pytest.raises(SystemExit):
        report.cli_report(["--help"])
    helptext = capsys.readouterr().out
    default = re.search(r"--poi-reps POI_REPS\s+replications for probability of improvement \(default\s+(\d+)", helptext)
    docs = (Path(__file__).resolve().parents[1] / "docs" / "reports.md").read_text()
    assert default and re.findall(r"--poi-reps (\d+)\]", docs) == [default.group(1)]
    assert f"(`--poi-reps`, default {default.group(1)})" in docs


def test_report_lists_each_of_our_runs_settings_and_code(tmp_path) -> None:
    pub = results.published(protocol=PROTOCOL, method="dreamerv3", task="pong")
    curves = dict(list(pub[pub.point_type == "curve"].groupby("seed")))
    for seed, curve in curves.items():
        config = {"preset": "xs", "train_ratio": 512.0 if seed != "4" else 64.0}
        _write_run(tmp_path, "pong", int(seed), curve, config=config, git_sha="abc123def4567890",
                   versions={"wmbench": "0.1.0", "torch": "2.13.0+cpu"}, device="cpu", threads=1, resumes=0)
    c = report.collect([tmp_path], protocol=PROTOCOL, tasks=["pong"])
    rows = report.run_metadata_rows(c)
    assert len(rows) == 5 and {r[5] for r in rows} == {"abc123def456"} and {r[7] for r in rows} == {"2.13.0+cpu"}
    assert len({r[4] for r in rows}) == 2  # the seed run with another train ratio has another config hash
    md = report.build_report(c, against=None, reps=20, poi_reps=5).markdown()
    assert "## Our runs: settings and code" in md and "abc123def456" in md


def test_smoke_entries_have_no_sample_efficiency_curve_or_verdict_and_warnings_are_not_repeated(tmp_path) -> None:
    steps = np.arange(1000, 8001, 1000)
    for seed in range(2):
        curve = pd.DataFrame({"env_step": steps, "score": -21.0 + seed + steps / 4000})
        _write_run(tmp_path, "pong", seed, curve, smoke=True, budget_agent_steps=2000)
    c = report.collect([tmp_path], published=["dreamerv3"], protocol=PROTOCOL, tasks=["pong"], include_smoke=True)
    labels = [e.label for e in c.entries]
    assert "dreamerv3 (smoke, 2,000 agent steps)" in labels
    r = report.build_report(c, against=None, reps=20, poi_reps=5)
    assert "dreamerv3 (smoke, 2,000 agent steps)" not in r.efficiency and r.verdicts == []
    assert not any("(lines " in w for w in c.warnings)  # validate's line-numbered warnings are not repeated
    assert sum("fewer seeds than the protocol's minimum" in w or "fewer than atari100k@1's minimum" in w
               for w in c.warnings if w.startswith("dreamerv3 (smoke")) == 1
