# itest-faults: the deploy under faults (issue 6). Included by the top-level Makefile:
#   include tests/faults/faults.mk
# Each scenario boots fresh lab hosts, makes its fault, runs the deploy, asserts the end state
# on the hosts and measures; results go to docs/reliability.md. The lab is torn down at the
# end (LAB_KEEP=1 keeps the last one). FAULTS="1 4 storm" runs only those scenarios (the doc
# is then left alone). Logs: logs/faults-<timestamp>/.
FAULTS ?=

.PHONY: itest-faults

itest-faults: setup ## Reliability and security scenarios on fresh lab hosts (docs/reliability.md)
	@LAB_KEEP="$(LAB_KEEP)" $(VENV)/bin/python -m homeops_dev.faults $(FAULTS)
