"""`wmbench` command line: a thin dispatcher. Each command lives in the module that owns its behaviour.

A command module defines `cli_<command>(argv: list[str]) -> int` (dashes become underscores) and builds its own
argparse parser, so commands import only what they need. Errors derived from `WmbenchError` print as one line
(`error: ...`, exit 2); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys

from wmbench.errors import WmbenchError

COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("wmbench.info", "list methods, protocols or suites"),
    "doctor": ("wmbench.info", "which suites are installed, and how to install the rest"),
    "run": ("wmbench.runner", "train and evaluate one method on one task of a protocol"),
    "sweep": ("wmbench.sweep", "seeded sweep over tasks x seeds (local, ray, submitit)"),
    "report": ("wmbench.report", "comparison report (Markdown + HTML) from runs and published tables"),
    "reproduce": ("wmbench.reproduce", "reproduction verdicts against published scores"),
    "validate": ("wmbench.results", "check a submitted score table against its protocol"),
    "analyze": ("wmbench.analysis.cli", "analyses (objective mismatch)"),
    "new-method": ("wmbench.scaffold", "scaffold an installable method package"),
    "leaderboard": ("wmbench.report", "static HTML leaderboard per protocol"),
    "plot": ("wmbench.runplot", "PNG of one run's episode returns and training metrics"),
    "archive": ("wmbench.archive", "copy runs' small evidence files (run.json, scores) where they outlive the machine"),
}


def usage() -> str:
    lines = ["usage: wmbench COMMAND [options]   (wmbench COMMAND --help for a command's options)", "", "commands:"]
    lines += [f"  {name:<12} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from wmbench import __version__

        print(f"wmbench {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(command, list(COMMANDS), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        print(f"error: unknown command {command!r}.{hint}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    handler = getattr(module, "cli_" + command.replace("-", "_"))
    try:
        return int(handler(rest) or 0)
    except WmbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `wmbench list | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        # `run` and `sweep` have said what was saved and where they resume; nothing more is known here
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
