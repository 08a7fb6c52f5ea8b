# make itest-upgrade (issue 14): the previous release set, markers, the upgrade to the current
# set, the markers still there, restarts exactly where something changed, idempotence, and the
# downgrade refused (homeops_dev/itest_upgrade.py). Included by the top-level Makefile.
# Logs: logs/itest-upgrade-<timestamp>/.
.PHONY: itest-upgrade

itest-upgrade: setup ## Upgrade previous -> current release set on the lab; logs must survive
	@LAB_KEEP="$(LAB_KEEP)" ANSIBLE_ARGS="$(ANSIBLE_ARGS)" $(VENV)/bin/python -m homeops_dev.itest_upgrade
