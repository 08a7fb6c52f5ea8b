# HomeOps observability: build the Rust modules, deploy Loki + Grafana + Alloy with Ansible,
# verify the result. `make help` lists the targets; `make itest` is the Golden Path.
#
# Variables:
#   INVENTORY=path  target real hosts with this inventory (never touches the lab)
#                   default: the lab's inventory (.lab/inventory.yml; `lab/lab id` names it)
#   CHECK=1         deploy with --check --diff (a dry run)
#   LAB_ID=id       a second lab of this clone (.lab/inventory-<id>.yml), for every lab and itest
#                   target: give it to lab-status and lab-down too (make lab-down LAB_ID=id)
#   LAB_KEEP=1      itest leaves the lab running at the end, kept until make lab-down
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

# The one list of modules: every binary crate of the Cargo workspace (homeops_dev/modules.py).
MODULES := $(shell $(PYTHON) -m homeops_dev.modules)
ifeq ($(strip $(MODULES)),)
$(error homeops_dev/modules.py found no module in Cargo.toml: is python3 there, is the workspace intact (run make from the repository root)?)
endif
# Release binaries: static musl, std rebuilt for size (scripts/build-modules.sh says why), one
# set per CPU architecture (`uname -m` names). library/<name> is the x86_64 build, the one
# ansible-core's module loader finds; the others go to library/.arch/<arch>/<name>, which the
# loader never scans (it skips hidden directories) and the action plugin picks per host
# (docs/design.md, "Architectures").
ARCHS := x86_64 aarch64
# Crates come from vendor/crates (.cargo/config.toml): builds never touch the network.
CARGO_FLAGS ?= --offline --locked
# The size budget of one module binary (bytes copied to a cold host); see README "Binary size".
MODULE_SIZE_BUDGET := 1048576

# The lab's own rule (lab/lab id prints id, state dir, inventory): LAB_ID's inventory. Lazy: only
# the targets that use it run lab/lab.
LAB_INVENTORY = $(shell lab/lab id 2>/dev/null | cut -d' ' -f3)
# The check ids of the spec (its "## A." ... sections), for the help text: derived, never typed.
SPEC_CHECKS = $(shell sed -n 's/^\#\# \([A-Z]\)\. .*/\1/p' docs/verification-spec.md | sed -n '1p;$$p' | paste -sd-)
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

# Our collection homeops.observability (galaxy.yml): `make collection` builds the tarball from
# roles/, meta/, plugins/ and library/; `make setup` installs it into ./collections.
COLLECTION_VERSION := $(shell sed -n 's/^version: *//p' galaxy.yml)
COLLECTION_TARBALL := build/homeops-observability-$(COLLECTION_VERSION).tar.gz
COLLECTION_STAMP := collections/.homeops-observability.installed
# Everything the build script copies: a change to any of these rebuilds the tarball.
COLLECTION_SOURCES := galaxy.yml CHANGELOG.md LICENSE THIRD-PARTY.md meta/runtime.yml docs/collection.md action_plugins/homeops_fastpath.py \
  homeops_dev/build_collection.py homeops_dev/modules.py Cargo.toml \
  $(shell find roles plugins library -type f ! -name '*.pyc' ! -path '*/__pycache__/*' ! -name '.*.[0-9]*' 2>/dev/null)

# The tooling's targets: the lab's (lab-up, lab-status, lab-down, lab-fault, lab-inventory,
# lab-test, lab-unit; lab/README.md) and the runners' (itest, itest-fleet, itest-upgrade,
# itest-faults, bench), beside their code, the homeops_dev package.
include homeops_dev/tooling.mk

.PHONY: help prerequisites setup venv collections collection build lint lint-workflows sanity galaxy-import changelog-lint test-newest test test-templates \
        test-playbooks syntax-check deploy verify inventory clean

help: ## List the targets
	@echo "HomeOps observability. Main job: make itest (Deploy + Verify). Tests: make test."
	@echo
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | \
	  awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'
	@echo
	@echo "Lab (homeops_dev/tooling.mk): lab-up lab-status lab-down lab-keep lab-fault HOST=.. FAULT=.. lab-unit lab-test"
	@echo "Verify: checks $(SPEC_CHECKS) of docs/verification-spec.md"
	@echo "Variables: INVENTORY=path (real hosts; default $(LAB_INVENTORY)), CHECK=1 (dry run),"
	@echo "           LAB_ID=id (a second lab of this clone; then make lab-down LAB_ID=id too),"
	@echo "           LAB_KEEP=1 (itest keeps the lab until make lab-down), ANSIBLE_ARGS='-v ...'"

## ---- setup ------------------------------------------------------------------------------

setup: prerequisites venv build collections $(COLLECTION_STAMP) ## Debian packages, Python venv, module binaries, offline collections (ours too)
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

collection: $(COLLECTION_TARBALL) ## Build the collection tarball homeops.observability into build/
$(COLLECTION_TARBALL): $(COLLECTION_SOURCES) $(VENV_STAMP) | build
	@echo "==> collection: staging build/collection and running ansible-galaxy collection build"
	$(VENV)/bin/python -m homeops_dev.build_collection --output-dir build

# Next to the vendored collections, offline; the playbooks call our modules and roles from here.
$(COLLECTION_STAMP): $(COLLECTION_TARBALL) $(COLLECTIONS_STAMP)
	@echo "==> setup: installing $(COLLECTION_TARBALL) offline into ./collections"
	ansible-galaxy collection install --offline --force --no-deps $(COLLECTION_TARBALL) -p ./collections
	@touch $@

# Binaries are replaced by rename, never rewritten in place: two builds at once (or a run
# reading a module while a build installs it) never see a half-written file.
build: prerequisites ## Build the modules for every arch in ARCHS (static, release, <= 1 MiB each) into library/
	@for arch in $(ARCHS); do scripts/build-modules.sh $$arch $(MODULES); done
	@for arch in $(ARCHS); do \
	  case $$arch in \
	    x86_64) triple=x86_64-unknown-linux-musl; dest=library;; \
	    aarch64) triple=aarch64/aarch64-unknown-linux-musl; dest=library/.arch/aarch64;; \
	  esac; \
	  mkdir -p "$$dest"; \
	  for name in $(MODULES); do \
	    bin="target/$$triple/release/$$name"; \
	    if [ ! -x "$$bin" ]; then echo "error: $$bin was not built (is modules/$$name a workspace member?)" >&2; exit 1; fi; \
	    if ! cmp -s "$$bin" "$$dest/$$name"; then \
	      tmp="$$dest/.$$name.$$$$"; install -m 0755 "$$bin" "$$tmp" && mv -f "$$tmp" "$$dest/$$name"; \
	    fi; \
	    size=$$(stat -c %s "$$dest/$$name"); \
	    echo "    $$dest/$$name ($$arch, $$size bytes)"; \
	    if [ "$$size" -gt $(MODULE_SIZE_BUDGET) ]; then \
	      echo "error: $$dest/$$name ($$arch) is $$size bytes, over the $(MODULE_SIZE_BUDGET)-byte budget: trim features or dependencies (README, Binary size)" >&2; exit 1; \
	    fi; \
	  done; \
	done
	@# Bare-name runs (the bench, the fault suite: ansible.cfg's library and action_plugins) find
	@# the fast path by the module's name; the collection routes every module in meta/runtime.yml.
	@for name in $(MODULES); do ln -sfn homeops_fastpath.py action_plugins/$$name.py; done

## ---- quality ----------------------------------------------------------------------------

lint: setup ## cargo fmt/clippy, yamllint, ansible-lint, zizmor (workflows), playbook syntax, ansible-test sanity, galaxy-importer, changelog
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
	@$(MAKE) sanity
	@$(MAKE) galaxy-import
	@$(MAKE) changelog-lint

# Gate 2 runs as root on our own machine, so the workflows are linted like code: zizmor's
# security audits (unpinned actions and images, persisted credentials, permissions, template
# injection, dangerous triggers, concurrency, ...) at its strictest persona, auditor; the one
# deliberate finding (the self-hosted runner) is ignored inline where it is. --offline: its
# online audits ask GitHub's API, which these machines cannot reach.
lint-workflows: $(VENV_STAMP) ## zizmor security audit of .github/workflows
	@echo "==> lint: zizmor .github/workflows (offline, persona auditor)"
	zizmor --offline --persona=auditor --quiet .github/workflows

# The collection as a user installs it, under the ecosystem's own checker: every test of
# `ansible-test sanity` (validate-modules, pep8, pylint, import, ansible-doc, ...) for Python 3.11
# on the controller; tests/sanity/ignore-<core>.txt holds only what binary modules cannot satisfy
# (homeops_dev/sanity.py writes and checks it). The first run builds ansible-test's per-test venvs
# under ~/.cache/homeops-observability from PyPI (~5 min); later runs, other clones too, ~35 s.
sanity: $(COLLECTION_TARBALL) ## ansible-test sanity on the built collection, installed outside the repo
	$(VENV)/bin/python -m homeops_dev.sanity --tarball $(COLLECTION_TARBALL)

# What Galaxy runs on an upload (galaxy-importer: ansible-doc, ansible-lint production, flake8),
# locally with tests/galaxy-importer.cfg: every module found with its docs, no warning (~1 min).
galaxy-import: $(COLLECTION_TARBALL) ## galaxy-importer on the built tarball: nine modules with docs, no warnings
	$(VENV)/bin/python -m homeops_dev.galaxy_import $(COLLECTION_TARBALL)

# The changelog (antsibull-changelog): a change is a fragment in changelogs/fragments/, a release
# moves them into changelogs/changelog.yaml, and CHANGELOG.md is generated from that, never edited.
changelog-lint: $(VENV_STAMP) ## Changelog fragments valid and CHANGELOG.md what changelogs/ generates
	@echo "==> lint: antsibull-changelog lint, CHANGELOG.md current"
	antsibull-changelog lint
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; cp -r galaxy.yml changelogs "$$tmp"/; \
	  (cd "$$tmp" && antsibull-changelog generate >/dev/null); \
	  if ! cmp -s "$$tmp/CHANGELOG.md" CHANGELOG.md; then \
	    diff -u CHANGELOG.md "$$tmp/CHANGELOG.md" | head -20 >&2 || true; \
	    echo "error: CHANGELOG.md is not what changelogs/ generates: never edit it by hand; add a fragment to" >&2; \
	    echo "       changelogs/fragments/ (AGENTS.md), then run 'antsibull-changelog generate' and commit both" >&2; exit 1; \
	  fi

# The newest ansible-core (requirements-newest.txt, 2.20+ needs Python 3.12+): python3.13 or
# python3.12 that runs, on PATH or pyenv's. Lazy: only test-newest looks for it.
PYTHON_NEWEST ?= $(shell for v in 3.13 3.12; do \
  for p in python$$v $$(pyenv root 2>/dev/null)/versions/$$v*/bin/python$$v; do \
    $$p -c 'import ssl, venv' >/dev/null 2>&1 && { command -v $$p; exit 0; }; done; done)
VENV_NEWEST := .venv-newest
$(VENV_NEWEST)/.installed: requirements-newest.txt
	@test -n "$(PYTHON_NEWEST)" || { echo "error: make test-newest needs Python 3.12 or newer (the newest" >&2; \
	  echo "       ansible-core needs it): install python3.12, or pass PYTHON_NEWEST=/path/to/python3.12" >&2; exit 1; }
	@echo "==> test-newest: venv $(VENV_NEWEST) ($(PYTHON_NEWEST)) with requirements-newest.txt"
	@test -x $(VENV_NEWEST)/bin/python || $(PYTHON_NEWEST) -m venv $(VENV_NEWEST)
	$(VENV_NEWEST)/bin/python -m pip install --disable-pip-version-check -q -r requirements-newest.txt
	@touch $@

# The other end of requires_ansible: the collection's tests (install elsewhere, ansible-doc, a
# playbook through the fast path, the documented offline install) and ansible-test sanity on the
# newest ansible-core. ~2 min once the venvs exist (the first sanity run builds them: ~5 min).
test-newest: $(VENV_NEWEST)/.installed $(COLLECTION_TARBALL) ## The collection's tests and sanity on the newest ansible-core
	@echo "==> test-newest: tests/test_collection.py on ansible-core $$($(VENV_NEWEST)/bin/python -c 'import ansible.release as r; print(r.__version__)')"
	env -u ANSIBLE_CONFIG $(VENV_NEWEST)/bin/python -m pytest -p no:cacheprovider tests/test_collection.py
	$(VENV_NEWEST)/bin/python -m homeops_dev.sanity --venv $(VENV_NEWEST) --tarball $(COLLECTION_TARBALL)

syntax-check: setup
	@echo "==> ansible-playbook --syntax-check"
	ansible-playbook -i $(CHECK_INVENTORY) --syntax-check $(DEPLOY_PLAYBOOK) $(VERIFY_PLAYBOOK)

test: setup ## The quick suite, no lab: cargo test, templates, playbook checks, the newest ansible-core, lab-unit
	@# Whichever cargo is on PATH: rustup's if installed, else Debian's 1.96 (cargo-web).
	@echo "==> test: cargo test ($$(command -v cargo): $$(cargo --version))"
	cargo test --workspace $(CARGO_FLAGS)
	@$(MAKE) syntax-check
	@echo "==> test: pytest (template rendering, playbook checks)"
	python -m pytest tests
	@# A fresh Debian 12 has only Python 3.11, which the newest ansible-core does not run on:
	@# there the step is skipped, saying so (make test-newest alone still fails without one).
	@if [ -n "$(PYTHON_NEWEST)" ]; then $(MAKE) test-newest; else \
	  echo "==> test: SKIPPED test-newest: no Python 3.12+ here (python3.13/3.12 on PATH or pyenv's), so the"; \
	  echo "    collection is tested on ansible-core 2.19 only; PYTHON_NEWEST=/path/to/python3.12 runs it"; fi
	@echo "==> test: lab unit tests"
	@$(MAKE) lab-unit
	@echo "==> test: all passed"

## ---- running against hosts --------------------------------------------------------------

# The inventory: INVENTORY= as given (real hosts), else the lab's, regenerated if missing.
inventory:
	@if [ -n "$(INVENTORY)" ]; then \
	  test -f "$(INVENTORY)" || { echo "error: INVENTORY=$(INVENTORY) does not exist" >&2; exit 1; }; \
	else \
	  inv="$(LAB_INVENTORY)"; \
	  test -n "$$inv" || { lab/lab id >/dev/null; exit 1; }; \
	  if [ ! -f "$$inv" ] && [ -x lab/lab ]; then lab/lab inventory >/dev/null 2>&1 || true; fi; \
	  test -f "$$inv" || { echo "error: no $$inv: run 'make lab-up' (with the same LAB_ID) or pass INVENTORY=path" >&2; exit 1; }; \
	fi
	@echo "==> inventory: $(INV)"

deploy: setup inventory ## Deploy the stack (INVENTORY=..., CHECK=1 for --check --diff)
	@mkdir -p $(LOG_DIR)
	@echo "==> deploy: $(DEPLOY_PLAYBOOK) on $(INV) $(CHECK_FLAGS) (log: $(LOG_DIR)/$(STAMP)-deploy.log)"
	ANSIBLE_LOG_PATH=$(LOG_DIR)/$(STAMP)-deploy.log \
	  ansible-playbook -i $(INV) $(CHECK_FLAGS) $(ANSIBLE_ARGS) $(DEPLOY_PLAYBOOK)

verify: setup inventory ## Run the verification checks of docs/verification-spec.md (their ids: below)
	@mkdir -p $(LOG_DIR)
	@echo "==> verify: $(VERIFY_PLAYBOOK) on $(INV) (log: $(LOG_DIR)/$(STAMP)-verify.log)"
	ANSIBLE_LOG_PATH=$(LOG_DIR)/$(STAMP)-verify.log \
	  ansible-playbook -i $(INV) $(ANSIBLE_ARGS) $(VERIFY_PLAYBOOK)

clean: ## Remove build output, installed binaries, venv, collections and Ansible state
	rm -rf target build $(VENV) $(VENV_NEWEST) collections .ansible .pytest_cache
	rm -f $(addprefix library/,$(MODULES))
	rm -rf library/.arch
