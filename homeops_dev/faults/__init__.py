"""make itest-faults: the deploy under faults (python -m homeops_dev.faults; __main__.py says
how it runs). helpers.py and noloss.py are what the scenarios share, scenarios/ holds one module
per scenario, registry.py their order, numbers and names."""
