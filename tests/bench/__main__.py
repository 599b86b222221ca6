"""``python -m tests.bench`` from a checkout: the benchmarks live beside the tests,
outside the installed package (they start nginx and wrk, and may install them)."""

import sys

from . import main

sys.exit(main(sys.argv[1:]))
