"""Run every qkdnet benchmark (same as ``qkdnet bench``); extra arguments are passed through."""

import sys

from qkdnet.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
