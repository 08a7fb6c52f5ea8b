# The tooling's targets, one file, included by the top-level Makefile after its variables
# (`include homeops_dev/tooling.mk`): the lab (lab-*), the runners of the homeops_dev package
# (itest, itest-fleet, itest-upgrade, itest-faults, bench), each `python -m homeops_dev.<runner>`
# from the repository root (make's working directory).

## ---- the lab (lab/README.md) -------------------------------------------------------------

# LAB_HOSTS=N (default 3) sets the host count; see lab/README.md. Every target acts on the lab
# of LAB_ID (default: this clone's own): `make lab-down LAB_ID=x` or `LAB_ID=x make lab-down`
# ends the lab that `LAB_ID=x make itest` (or lab-up) left.
LAB ?= lab/lab
LAB_HOSTS ?= 3
export LAB_HOSTS

.PHONY: lab-up lab-status lab-down lab-keep lab-fault lab-reboot lab-inventory lab-test lab-test-nopython lab-unit lab-prune lab-status-all lab-down-all

lab-up:
	$(LAB) up

lab-status:
	$(LAB) status

lab-down:
	$(LAB) down

# Keep this lab until make lab-down: the janitor of every later `lab up` leaves it alone
# (LAB_KEEP=1 make itest does this itself). WHY='...' says who keeps it and why.
lab-keep:
	$(LAB) keep "$(or $(WHY),make lab-keep)"

# Every lab on this machine (find: which clone, which owner, kept, reapable or not).
lab-status-all:
	$(LAB) status --all

# The explicit janitor: tears down every lab on this machine, whoever started it.
lab-down-all:
	$(LAB) down --all

# The cache policy: removes cached base images of other recipes, only when no lab runs and the
# disk is fuller than LAB_PRUNE_DISK_PCT (80) or the cache larger than LAB_PRUNE_CACHE_MB (1024).
lab-prune:
	$(LAB) prune

# make lab-fault HOST=ws-01-linux FAULT=timeout|refuse|dpkg-lock[:SECONDS]|heal
lab-fault:
	@test -n "$(HOST)" -a -n "$(FAULT)" || { echo "usage: make lab-fault HOST=ws-01-linux FAULT=timeout|refuse|dpkg-lock[:SECONDS]|heal" >&2; exit 2; }
	$(LAB) fault $(HOST) $(FAULT)

# make lab-reboot HOST=obs-01: a machine restart of one host (lab/README.md "Reboot")
lab-reboot:
	@test -n "$(HOST)" || { echo "usage: make lab-reboot HOST=obs-01" >&2; exit 2; }
	$(LAB) reboot $(HOST)

lab-inventory:
	@$(LAB) inventory

# Integration test: boots the lab, exercises it, always tears it down (needs root).
lab-test:
	bash lab/tests/integration.sh

# Unit tests of the pure parts: no root, nothing booted.
lab-unit:
	bash lab/tests/unit.sh

# The python-free agent (LAB_NOPYTHON): ping fails there, our binary modules run (needs root
# and `make setup`). Boots its own small lab and always tears it down.
lab-test-nopython:
	bash lab/tests/nopython.sh

## ---- the runners (homeops_dev/) ---------------------------------------------------------

.PHONY: itest itest-fleet

itest: setup ## Golden Path: lab up, deploy, verify, idempotent re-deploy, lab down
	@INVENTORY="$(INVENTORY)" LAB_KEEP="$(LAB_KEEP)" ANSIBLE_ARGS="$(ANSIBLE_ARGS)" \
	  $(VENV)/bin/python -m homeops_dev.itest

itest-fleet: setup ## The Golden Path with the aarch64 agent pi-01 too (LAB_ARM=1; qemu-user, slower)
	@LAB_ARM=1 INVENTORY="$(INVENTORY)" LAB_KEEP="$(LAB_KEEP)" ANSIBLE_ARGS="$(ANSIBLE_ARGS)" \
	  $(VENV)/bin/python -m homeops_dev.itest

# make itest-upgrade (issue 14): the previous release set, markers, the upgrade to the current
# set, the markers still there, restarts exactly where something changed, idempotence, and the
# downgrade refused (homeops_dev/itest_upgrade.py).
# Logs: logs/itest-upgrade-<timestamp>/.
.PHONY: itest-upgrade

itest-upgrade: setup ## Upgrade previous -> current release set on the lab; logs must survive
	@LAB_KEEP="$(LAB_KEEP)" ANSIBLE_ARGS="$(ANSIBLE_ARGS)" $(VENV)/bin/python -m homeops_dev.itest_upgrade

# itest-faults: the deploy under faults (issue 6), python -m homeops_dev.faults.
# Each scenario boots fresh lab hosts, makes its fault, runs the deploy, asserts the end state
# on the hosts and measures; results go to docs/reliability.md. The lab is torn down at the
# end (LAB_KEEP=1 keeps the last one). FAULTS="1 4 storm" runs only those scenarios (the doc
# is then left alone). Logs: logs/faults-<timestamp>/.
FAULTS ?=

.PHONY: itest-faults

itest-faults: setup ## Reliability and security scenarios on fresh lab hosts (docs/reliability.md)
	@LAB_KEEP="$(LAB_KEEP)" $(VENV)/bin/python -m homeops_dev.faults $(FAULTS)

# `make bench`: our Rust modules (fast path on and off) against their ansible.builtin
# equivalents on the lab, the whole deploy against its builtin-only twin, on-host run times and
# binary sizes. Writes docs/benchmarks.md (a section per host count) and
# docs/benchmarks-<N>hosts.png; raw data and logs go to bench/results/ (git-ignored).
#
#   make bench                    3 lab hosts (about 15-20 min on 2 cores)
#   make bench LAB_HOSTS=16       the scale run
#   LAB_KEEP=1                    leave the lab up at the end
#   BENCH_RUNS=5 BENCH_TASKS=10 BENCH_DEPLOY_RUNS=3 BENCH_LOOPS=20
#   BENCH_ONLY=per-task,ssh-ops,on-host,deploy   a subset of the series
# The lab is one per machine: the bench waits (BENCH_WAIT s) while other Ansible or lab runs
# are going, and stops if somebody restarts the lab under it.

BENCH_VENV ?= .venv
BENCH_REQS_STAMP := $(BENCH_VENV)/.bench-installed

.PHONY: bench

$(BENCH_REQS_STAMP): bench/requirements.txt
	@echo "==> bench: chart dependencies from bench/requirements.txt into $(BENCH_VENV)"
	$(BENCH_VENV)/bin/python -m pip install --disable-pip-version-check -q -r bench/requirements.txt
	@touch $@

bench: setup $(BENCH_REQS_STAMP) ## Benchmark modules vs builtins on the lab -> docs/benchmarks.md (LAB_HOSTS=16, LAB_KEEP=1)
	@echo "==> bench: $(or $(LAB_HOSTS),3) lab hosts (progress below; results in bench/results/)"
	LAB_HOSTS=$(or $(LAB_HOSTS),3) LAB_KEEP=$(LAB_KEEP) ANSIBLE_CONFIG=$(CURDIR)/ansible.cfg \
	  $(BENCH_VENV)/bin/python -m homeops_dev.bench
	@# README's performance table is generated from the sections just written (issue 24).
	$(VENV)/bin/python -m homeops_dev.readme_bench
