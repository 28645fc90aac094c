"""Base class of every error wmbench raises for bad input: the CLI prints these as one clear line (exit 2)."""


class WmbenchError(Exception):
    """An input, file or environment problem the user can fix; the message names the bad value and the fix."""
