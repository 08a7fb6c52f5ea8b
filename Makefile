# HomeOps observability: build the Rust modules, deploy Loki + Grafana + Alloy with Ansible,
# verify the result. `make help` lists the targets; `make itest` is the Golden Path.
#
# Variables:
#   INVENTORY=path  target real hosts with this inventory (never touches the lab)
#                   default: the lab's .lab/inventory.yml
#   CHECK=1         deploy with --check --diff (a dry run)
#   LAB_KEEP=1      itest leaves the lab running at the end
#   ANSIBLE_ARGS=.. extra arguments for every ansible-playbook run (e.g. -v, --limit obs-01)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV := .venv
# Every tool below comes from the project venv, and every Ansible run uses this clone's config.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Ansible's own warnings about our terminal locale would be noise in logs.
export LC_ALL := C.UTF-8

MODULES := system_account apt_packages apt_lockdown kernel_headers safe_grep
# Release binaries: static musl, std rebuilt for size (scripts/build-modules.sh says why).
RUST_TARGET := x86_64-unknown-linux-musl
# Crates come from vendor/crates (.cargo/config.toml): builds never touch the network.
CARGO_FLAGS ?= --offline --locked
# The size budget of one module binary (bytes copied to a cold host); see README "Binary size".
MODULE_SIZE_BUDGET := 1048576
CARGO_BUILD_DIR := target/$(RUST_TARGET)/release

LAB_INVENTORY := .lab/inventory.yml
INVENTORY ?=
INV = $(or $(INVENTORY),$(LAB_INVENTORY))
DEPLOY_PLAYBOOK := playbooks/deploy-observability-stack.yml
VERIFY_PLAYBOOK := playbooks/tests/verify_observability.yml
# A static inventory with the playbooks' groups, for syntax checks without any host.
CHECK_INVENTORY := tests/inventory/syntax-check.yml
ANSIBLE_ARGS ?=
CHECK ?=
CHECK_FLAGS := $(if $(filter 1 yes true,$(CHECK)),--check --diff,)

LOG_DIR := logs
STAMP := $(shell date +%Y%m%d-%H%M%S)
# ansible.cfg logs to logs/ansible.log; Ansible does not create the directory itself.
$(shell mkdir -p $(LOG_DIR))

VENV_STAMP := $(VENV)/.installed
COLLECTIONS_STAMP := collections/.installed
VENDORED_COLLECTIONS := $(wildcard vendor/*.tar.gz)

# The lab's targets (lab-up, lab-status, lab-down, lab-fault, lab-inventory, lab-test, lab-unit)
# live with the lab: see lab/README.md.
include lab/lab.mk
# make bench (issue 5) and make itest-faults (issue 6) live beside their code.
include bench/bench.mk
include tests/faults/faults.mk
# make itest-upgrade (issue 14) lives beside its script.
include scripts/itest-upgrade.mk

.PHONY: help prerequisites setup venv collections build lint lint-workflows test test-templates \
        test-playbooks syntax-check deploy verify itest inventory clean

help: ## List the targets
	@echo "HomeOps observability. Main job: make itest (Deploy + Verify). Tests: make test."
	@echo
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | \
	  awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'
	@echo
	@echo "Lab (lab/lab.mk): lab-up lab-status lab-down lab-fault HOST=.. FAULT=.. lab-unit lab-test"
	@echo "Variables: INVENTORY=path (real hosts; default $(LAB_INVENTORY)), CHECK=1 (dry run),"
	@echo "           LAB_KEEP=1 (itest keeps the lab), ANSIBLE_ARGS='-v ...'"

## ---- setup ------------------------------------------------------------------------------

setup: prerequisites venv build collections ## Debian packages, Python venv, module binaries, offline collections
	@echo "==> setup: done (venv $(VENV), modules in library/, collections in collections/)"

# The Debian packages of scripts/base-packages.txt, scripts/build-packages.txt and
# lab/host-packages.txt: installed when missing if we are root, else the one command to run.
# A no-op check (one dpkg-query, ~50 ms) when everything is there.
prerequisites: ## Install the missing Debian packages (root), or name the command that does
	@scripts/prerequisites.sh

venv: $(VENV_STAMP)
# Order-only: python3-venv must be there first, but a new package never rebuilds the venv.
$(VENV_STAMP): requirements.txt | prerequisites
	@echo "==> setup: Python venv $(VENV) with the pinned tools from requirements.txt"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "error: '$(PYTHON) -m venv' failed: on Debian install python3-venv" >&2; exit 1; }
	$(VENV)/bin/python -m pip install --disable-pip-version-check --progress-bar on \
	  -r requirements.txt
	@touch $@

collections: $(COLLECTIONS_STAMP)
$(COLLECTIONS_STAMP): requirements.yml $(VENDORED_COLLECTIONS) $(VENV_STAMP)
	@echo "==> setup: installing collections offline from ./vendor: $(notdir $(VENDORED_COLLECTIONS))"
	ansible-galaxy collection install --offline --force -r requirements.yml -p ./collections
	@touch $@

# Binaries are replaced by rename, never rewritten in place: two builds at once (or a run
# reading a module while a build installs it) never see a half-written file.
build: prerequisites ## Build the modules (static, release, <= 1 MiB each) and install them into library/
	scripts/build-modules.sh $(MODULES)
	@for name in $(MODULES); do \
	  bin="$(CARGO_BUILD_DIR)/$$name"; \
	  if [ ! -x "$$bin" ]; then echo "error: $$bin was not built (is modules/$$name a workspace member?)" >&2; exit 1; fi; \
	  if ! cmp -s "$$bin" "library/$$name"; then \
	    tmp="library/.$$name.$$$$"; install -m 0755 "$$bin" "$$tmp" && mv -f "$$tmp" "library/$$name"; \
	  fi; \
	  size=$$(stat -c %s "library/$$name"); \
	  echo "    library/$$name ($$size bytes)"; \
	  if [ "$$size" -gt $(MODULE_SIZE_BUDGET) ]; then \
	    echo "error: library/$$name is $$size bytes, over the $(MODULE_SIZE_BUDGET)-byte budget: trim features or dependencies (README, Binary size)" >&2; exit 1; \
	  fi; \
	done

## ---- quality ----------------------------------------------------------------------------

lint: setup ## cargo fmt/clippy, yamllint, ansible-lint, zizmor (workflows), playbook syntax
	@cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1 || { \
	  echo "error: make lint needs rustfmt and clippy, which $$(command -v cargo) lacks: install" >&2; \
	  echo "       rustup with them (README, Contributing), then run make lint again" >&2; exit 1; }
	@echo "==> lint: cargo fmt --check ($$(command -v cargo))"
	cargo fmt --all --check
	@echo "==> lint: cargo clippy -D warnings"
	cargo clippy --workspace --all-targets $(CARGO_FLAGS) -- -D warnings
	@echo "==> lint: yamllint"
	yamllint --strict .
	@echo "==> lint: ansible-lint (profile production, see .ansible-lint)"
	@# ansible-lint checks syntax with no inventory at all; ansible.cfg makes that an error for
	@# real runs (never green on nothing), so it is relaxed for the linter alone.
	ANSIBLE_INVENTORY_UNPARSED_FAILED=False ansible-lint
	@$(MAKE) lint-workflows
	@$(MAKE) syntax-check

# Gate 2 runs as root on our own machine, so the workflows are linted like code: zizmor's
# security audits (unpinned actions and images, persisted credentials, permissions, template
# injection, dangerous triggers, concurrency, ...) at its strictest persona, auditor; the one
# deliberate finding (the self-hosted runner) is ignored inline where it is. --offline: its
# online audits ask GitHub's API, which these machines cannot reach.
lint-workflows: $(VENV_STAMP) ## zizmor security audit of .github/workflows
	@echo "==> lint: zizmor .github/workflows (offline, persona auditor)"
	zizmor --offline --persona=auditor --quiet .github/workflows

syntax-check: setup
	@echo "==> ansible-playbook --syntax-check"
	ansible-playbook -i $(CHECK_INVENTORY) --syntax-check $(DEPLOY_PLAYBOOK) $(VERIFY_PLAYBOOK)

test: setup ## The quick suite, no lab: cargo test, templates, playbook checks, lab-unit
	@# Whichever cargo is on PATH: rustup's if installed, else Debian's 1.96 (cargo-web).
	@echo "==> test: cargo test ($$(command -v cargo): $$(cargo --version))"
	cargo test --workspace $(CARGO_FLAGS)
	@$(MAKE) syntax-check
	@echo "==> test: pytest (template rendering, playbook checks)"
	python -m pytest tests
	@echo "==> test: lab unit tests"
	@$(MAKE) lab-unit
	@echo "==> test: all passed"

## ---- running against hosts --------------------------------------------------------------

# The inventory: INVENTORY= as given (real hosts), else the lab's, regenerated if missing.
inventory:
	@if [ -n "$(INVENTORY)" ]; then \
	  test -f "$(INVENTORY)" || { echo "error: INVENTORY=$(INVENTORY) does not exist" >&2; exit 1; }; \
	else \
	  if [ ! -f $(LAB_INVENTORY) ] && [ -x lab/lab ]; then lab/lab inventory >/dev/null 2>&1 || true; fi; \
	  test -f $(LAB_INVENTORY) || { echo "error: no $(LAB_INVENTORY): run 'make lab-up' or pass INVENTORY=path" >&2; exit 1; }; \
	fi
	@echo "==> inventory: $(INV)"

deploy: setup inventory ## Deploy the stack (INVENTORY=..., CHECK=1 for --check --diff)
	@mkdir -p $(LOG_DIR)
	@echo "==> deploy: $(DEPLOY_PLAYBOOK) on $(INV) $(CHECK_FLAGS) (log: $(LOG_DIR)/$(STAMP)-deploy.log)"
	ANSIBLE_LOG_PATH=$(LOG_DIR)/$(STAMP)-deploy.log \
	  ansible-playbook -i $(INV) $(CHECK_FLAGS) $(ANSIBLE_ARGS) $(DEPLOY_PLAYBOOK)

verify: setup inventory ## Run the verification checks A-D (docs/verification-spec.md)
	@mkdir -p $(LOG_DIR)
	@echo "==> verify: $(VERIFY_PLAYBOOK) on $(INV) (log: $(LOG_DIR)/$(STAMP)-verify.log)"
	ANSIBLE_LOG_PATH=$(LOG_DIR)/$(STAMP)-verify.log \
	  ansible-playbook -i $(INV) $(ANSIBLE_ARGS) $(VERIFY_PLAYBOOK)

itest: setup ## Golden Path: lab up, deploy, verify, idempotent re-deploy, lab down
	@INVENTORY="$(INVENTORY)" LAB_KEEP="$(LAB_KEEP)" ANSIBLE_ARGS="$(ANSIBLE_ARGS)" \
	  scripts/itest.sh

clean: ## Remove build output, installed binaries, venv, collections and Ansible state
	rm -rf target $(VENV) collections .ansible .pytest_cache
	rm -f $(addprefix library/,$(MODULES))
