"""python -m homeops_dev.faults [SCENARIO ...]: make itest-faults (homeops_dev/faults/run.py)."""
import sys

from homeops_dev.faults.run import main

sys.exit(main(sys.argv))
