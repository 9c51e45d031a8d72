"""Throughput benchmark; the same as `rotnet bench` (see `rotnet bench --help`)."""

import sys

from rotnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
