"""The repository's own tooling, one package: the lab driver and the runners built on it
(itest, itest_upgrade, faults, bench), the module table and the collection build helpers.

Every runner is `python -m homeops_dev.<name>` from the repository root (the Makefile does
that), which puts the root on sys.path; pytest finds the package through `pythonpath = .` in
pytest.ini. Nothing here edits sys.path.
"""
from pathlib import Path

# The repository root: the directory that holds this package.
ROOT = Path(__file__).resolve().parent.parent
