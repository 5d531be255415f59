"""``python -m tasks.sequence_classification`` = ``seqzoo train classify``."""

import sys

from tasks.sequence_classification import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m tasks.sequence_classification"))
