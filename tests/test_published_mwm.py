"""MWM's published Meta-World curves (younggyoseo/MWM scores/score.json) as shipped, and their converter."""

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

from wmbench import results
from wmbench.protocols import load_protocol

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "convert_mwm_scores.py"
spec = importlib.util.spec_from_file_location("convert_mwm_scores", SCRIPT)
convert = importlib.util.module_from_spec(spec)
spec.loader.exec_module(convert)
PROTOCOL = load_protocol("metaworld@1")


def test_shipped_curves_are_every_published_run_with_its_source_and_licence():
    table = results.published(protocol="metaworld@1")
    runs = table.groupby(["method", "task", "seed"]).size()
    assert len(runs) == 2 * 50 * 5 and len(table) == 26_000  # mwm and dreamerv2, 50 tasks, 5 seeds
    assert set(table["task"]) == set(PROTOCOL.tasks) and set(table["step_unit"]) == {"env_steps"}
    # rates over MWM's 10 evaluation episodes; 47 first points (10k) are k/11: 11 episodes, likely the prefill's one
    # random-policy evaluation episode (train.py: eval_driver(random_agent, episodes=1)) logged with the first ten
    later = table[table["env_step"] > 10_000]
    assert set((later["score"] * 10).round(6)) <= set(range(11))
    first = table[table["env_step"] == 10_000]["score"]
    elevenths = ((first * 10) - (first * 10).round()).abs() > 1e-6
    assert elevenths.sum() == 47 and set((first[elevenths] * 11).round(6)) <= set(range(12))
    first = table.groupby(["method", "task", "seed"])["env_step"].min()
    assert set(first) == {10_000}
    rows = Path(results.PUBLISHED_DIR / "SOURCES.csv").read_text().splitlines()
    row = [r for r in rows if r.startswith("mwm:scores/score.json,")]
    assert (
        len(row) == 1
        and "younggyoseo/MWM,8394788bf4dcdc94c8b8ad1afb6ee36741716620" in row[0]
        and "MIT" in row[0]
    )


def test_finals_at_the_protocol_budget_are_the_490k_points():
    table = results.published(protocol="metaworld@1", method="mwm", task="reach")
    finals = results.final_scores(table, PROTOCOL)
    at_490k = table[table["env_step"] == 490_000].set_index("seed")["score"]
    assert finals.set_index("seed")["final"].to_dict() == at_490k.to_dict()


def test_converter_keeps_the_published_strings_and_refuses_other_shapes(tmp_path):
    runs = [{"task": "metaworld_reach", "seed": 3, "method": "mwm", "steps": [10000, 30000],
             "success_rates": [0.1, 1.0]}]  # fmt: skip
    rows = convert.rows_from(json.dumps(runs))
    assert rows == [
        [
            "mwm:scores/score.json",
            "mwm",
            "metaworld",
            "reach",
            "3",
            "10000",
            "0.1",
            "env_steps",
            "curve",
            "mwm",
        ],
        [
            "mwm:scores/score.json",
            "mwm",
            "metaworld",
            "reach",
            "3",
            "30000",
            "1.0",
            "env_steps",
            "curve",
            "mwm",
        ],
    ]
    for bad in ({**runs[0], "method": "ppo"}, {**runs[0], "success_rates": [0.1]}, {**runs[0], "extra": 1},
                {**runs[0], "success_rates": [0.1, 1.5]}):  # fmt: skip
        with pytest.raises(ValueError):
            convert.rows_from(json.dumps([bad]))
    # a run of the script writes the curve file and one source row, replacing an earlier row of the same source
    out = tmp_path / "out"
    (out / "curves").mkdir(parents=True)
    (out / "SOURCES.csv").write_text(",".join(convert.SOURCE_ROW) + "\nother,r,c,p,l,x,n\n")
    (tmp_path / "score.json").write_text(json.dumps(runs))
    for _ in range(2):
        assert convert.main([str(tmp_path / "score.json"), "--out", str(out)]) == 0
    text = gzip.open(out / "curves" / "metaworld.csv.gz", "rt").read().splitlines()
    assert text[0] == ",".join(convert.COLUMNS) and len(text) == 3
    sources = (out / "SOURCES.csv").read_text().splitlines()
    assert (
        len(sources) == 3
        and sources[1].startswith("other,")
        and sources[2].startswith("mwm:scores/score.json,")
    )
