"""python -m homeops_dev.bench: make bench (homeops_dev/bench/run.py says what it measures)."""
import sys

from homeops_dev.bench.run import main

sys.exit(main())
