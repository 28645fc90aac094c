"""scripts/convert_published.py: splits the collected curves per protocol without changing a value, and leaves
the previous output untouched when the input is bad (nothing written half-way)."""

import gzip
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "convert_published.py"
spec = importlib.util.spec_from_file_location("convert_published", SCRIPT)
convert = importlib.util.module_from_spec(spec)
spec.loader.exec_module(convert)

HEADER = "source,method,protocol,task,seed,env_step,score,step_unit,point_type,method_raw"
ROWS = [
    "x:a,dreamerv3,atari100k,pong,0,4112.0,-20.50000,frames,curve,dreamerv3",
    "x:a,dreamerv3,atari100k,pong,0,400000.0,1.23457e+06,frames,final,dreamerv3",
    "x:b,ppo,dmc_proprio,walker_walk,mean,500000,700,env_steps,final_mean,ppo_fixhp",
]


def make_src(root: Path, rows: list[str]) -> Path:
    src = root / "src"
    src.mkdir()
    with gzip.open(src / "curves.csv.gz", "wt") as f:
        f.write("\n".join([HEADER, *rows]) + "\n")
    (src / "SOURCES.csv").write_text("source,repo\nx:a,r\nx:b,r\n")
    for name in ("atari_baselines.csv", "other_baselines.csv", "headline.csv"):
        (src / name).write_text(f"{name}\n")
    return src


def test_split_keeps_published_strings(tmp_path):
    src, out = make_src(tmp_path, ROWS), tmp_path / "out"
    assert convert.main(["--src", str(src), "--out", str(out)]) == 0
    atari = gzip.open(out / "curves" / "atari100k.csv.gz", "rt").read().splitlines()
    assert atari == [HEADER, ROWS[0], ROWS[1]]  # "-20.50000" and "1.23457e+06" kept verbatim
    dmc = gzip.open(out / "curves" / "dmc_proprio.csv.gz", "rt").read().splitlines()
    assert dmc == [HEADER, ROWS[2]]
    assert (out / "atari_normalisers.csv").read_text() == "atari_baselines.csv\n"
    assert (out / "other_normalisers.csv").exists() and (out / "SOURCES.csv").exists()


@pytest.mark.parametrize(
    "bad,message",
    [
        ("x:a,dreamerv3,atari100k,pong,1,5000,nan,frames,curve,dreamerv3", "NaN or inf"),
        ("x:zz,dreamerv3,atari100k,pong,1,5000,1,frames,curve,dreamerv3", "'x:zz' is not in SOURCES.csv"),
        ("x:a,dreamerv3,atari100k,pong,1,5000,1,steps,curve,dreamerv3", "step_unit 'steps'"),
        ("x:a,dreamerv3,atari100k,pong,1,5000,1,frames,curve", "9 fields, expected 10"),
    ],
)
def test_bad_input_leaves_previous_output_untouched(tmp_path, capsys, bad, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "marker").write_text("previous build")
    src = make_src(tmp_path, [*ROWS, bad])
    with pytest.raises(SystemExit) as e:
        convert.main(["--src", str(src), "--out", str(out)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"line {len(ROWS) + 2}:" in err and message in err
    assert sorted(p.name for p in out.iterdir()) == ["marker"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no temporary folder left behind
