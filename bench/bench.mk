# `make bench`: our Rust modules (fast path on and off) against their ansible.builtin
# equivalents on the lab, the whole deploy against its builtin-only twin, on-host run times and
# binary sizes. Writes docs/benchmarks.md (a section per host count) and
# docs/benchmarks-<N>hosts.png; raw data and logs go to bench/results/ (git-ignored).
# Included by the top-level Makefile (`-include bench/bench.mk`, after its variables).
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
