"""make bench (python -m homeops_dev.bench): run.py runs the series, one module each (per_task.py:
per-task and ssh-ops; on_host.py: on-host and sizes; deploy.py: the whole deploy against its
builtin-only twin, which twin.py generates), common.py is what they share, report.py writes
docs/benchmarks.md and the chart."""
