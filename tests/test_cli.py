"""Every command of the dispatcher answers --help; unknown commands get close matches and exit 2."""

import pytest

from wmbench.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_answers_help(command, capsys):
    try:
        rc = main([command, "--help"])
    except SystemExit as e:  # argparse exits 0 after printing help
        rc = e.code
    assert rc == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_unknown_command_suggests(capsys):
    assert main(["sweeep"]) == 2
    assert "Did you mean: sweep" in capsys.readouterr().err
