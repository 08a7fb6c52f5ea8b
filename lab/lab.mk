# Lab targets, included by the top-level Makefile (`include lab/lab.mk`).
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
