"""``python -m tasks.movement``: the same flags as ``seqzoo train movement``."""

import sys

from tasks.movement import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m tasks.movement"))
