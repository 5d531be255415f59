"""``python -m tasks.text_generation`` = ``seqzoo train textgen``."""

import sys

from tasks.text_generation import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m tasks.text_generation"))
