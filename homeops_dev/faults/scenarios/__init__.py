"""One module per fault scenario, named as the scenario (homeops_dev/faults/registry.py orders
them)."""
