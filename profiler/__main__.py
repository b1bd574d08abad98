"""``python -m tlprof``, which ``torchrun -m tlprof`` runs on every rank."""

import sys

from tlprof.cli import main

if __name__ == "__main__":
    sys.exit(main())
