"""`python -m wmbench ...`: the same command line as the `wmbench` script (useful where the script is not on PATH)."""

import sys

from wmbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
