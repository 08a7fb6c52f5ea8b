#!/usr/bin/env python3
"""The Golden Path end to end (`make itest` runs this after `make setup`):
  1. lab up (only when no INVENTORY is given)
  2. deploy          playbooks/deploy-observability-stack.yml, with --diff
  3. verify          playbooks/tests/verify_observability.yml (checks A-F)
  Every playbook run must report on exactly the hosts the inventory had at the start.
  4. idempotence     the deploy again at -vvv: FAILS if any host reports changed>0
                     (Molecule's rule, read from the PLAY RECAP)
  5. secrets scan    the secrets of the inventory must appear in no log of this run
  6. lab down        always, also on failure, Ctrl-C and SIGTERM, unless LAB_KEEP=1; only a lab
                     this run started (a refused `lab up` leaves another run's lab alone), and
                     `lab down` acts on this clone's lab (its LAB_ID) only
On the lab, every host is python-free (LAB_NOPYTHON, default all; host names for some, empty for
none; the LAB STAND-INs keep a private runtime off every path Ansible's discovery looks at):
checked before the deploy and again after verify, so Python cannot come back unseen.
Environment: INVENTORY=path (real hosts: the lab is never touched), LAB_KEEP=1,
ANSIBLE_ARGS (extra ansible-playbook arguments). Logs: logs/itest-<timestamp>/.
The lab, the runs and the checks are homeops_dev/labdriver/'s.
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

from homeops_dev import labdriver
from homeops_dev.labdriver import DEPLOY, VERIFY

# Progress lines of a quiet run: task headers and per-host outcomes, without -vvv payloads.
PROGRESS = re.compile(r"^(PLAY|TASK|RUNNING HANDLER|ok:|changed:|fatal:|failed:|skipping:|unreachable:|\S+ +: ok=)")


def main() -> int:
    os.chdir(labdriver.ROOT)
    # The Golden Path runs with every host python-free (issues 15 and 23): the deploy and verify
    # need no Python on any host. LAB_NOPYTHON=<host>,... picks hosts; LAB_NOPYTHON= turns it off.
    os.environ.setdefault("LAB_NOPYTHON", "all")
    inventory = os.environ.get("INVENTORY", "")
    extra = os.environ.get("ANSIBLE_ARGS", "").split()
    log_dir = Path("logs") / f"itest-{time.strftime('%Y%m%d-%H%M%S')}"
    log_dir.mkdir(parents=True, exist_ok=True)
    lab = None if inventory else labdriver.Lab(echo=True, via_make=True)
    steps = labdriver.Steps("itest", "docs/runbook.md", log_dir, lab)

    def body():
        # ---- 1. inventory / lab
        if inventory:
            steps.step(f"inventory: {inventory} (real hosts; the lab is not touched)")
            if not Path(inventory).is_file():
                steps.fail(f"INVENTORY={inventory} does not exist", rc=2)
            inv = inventory
        else:
            inv = steps.lab_up()
            lab.status()
        nopython = lab.nopython_hosts() if lab else []
        if lab and os.environ.get("LAB_NOPYTHON") and not nopython:
            steps.fail(f"LAB_NOPYTHON={os.environ['LAB_NOPYTHON']} but the lab records no python-free host")
        # Ctrl-C reaches ansible-playbook from the terminal, and it can prompt there (-K).
        runner = labdriver.Runner(log_dir, inv, extra_args=extra, new_session=False)

        # The deploy targets all four groups; verify has no Windows checks yet.
        start_hosts = labdriver.list_hosts(inv, "loki:grafana:alloy_linux:alloy_windows")
        verify_hosts = labdriver.list_hosts(inv, "loki:grafana:alloy_linux")
        if not start_hosts:
            steps.fail(f"the inventory {inv} has no host in loki, grafana, alloy_linux or alloy_windows: "
                       "nothing to test")
        print(f"    hosts: {' '.join(start_hosts)}")
        # LAB_NOPYTHON=all: no host the playbooks reach may be left with Python (a lab that
        # skipped one would let a python-needing task pass unseen).
        if lab and os.environ.get("LAB_NOPYTHON") == "all":
            left = [h for h in verify_hosts if h not in nopython]
            if left:
                steps.fail(f"LAB_NOPYTHON=all but the lab left python3 on: {' '.join(left)}")
        if nopython:
            print(labdriver.check_python_free("itest", lab, nopython, "before the deploy"))

        def run(name, playbook, *args, echo=True):
            return runner.play(name, playbook, *args, echo=echo, announce=True, check=True)

        # ---- 2. deploy: --diff on the first run: every secret-bearing task changes here, so this
        # is where a secret would leak into a diff if a task lacked diff: false.
        steps.step(f"deploy: {DEPLOY} --diff")
        print(labdriver.check_same_hosts("itest", run("deploy", DEPLOY, "--diff"), start_hosts))

        # ---- 3. verify
        steps.step(f"verify: {VERIFY}")
        print(labdriver.check_same_hosts("itest", run("verify", VERIFY), verify_hosts))
        if nopython:
            print(labdriver.check_python_free("itest", lab, nopython, "after the deploy and verify"))

        # ---- 4. idempotence: -vvv, so the secrets must stay hidden at the highest verbosity too
        # (scanned in step 5).
        steps.step(f"idempotence: {DEPLOY} again at -vvv, every host must report changed=0")
        again = run("idempotence", DEPLOY, "-vvv", echo=PROGRESS)
        if not again.has_recap:
            steps.fail("no PLAY RECAP in the second deploy")
        print(labdriver.check_same_hosts("itest", again, start_hosts))
        print(labdriver.check_no_change("itest", again, "the second deploy"))

        # ---- 5. secrets scan: the values stay in this process, never on a terminal or in a file.
        steps.step("secrets scan: no secret of the inventory in any output or log of this run")
        secrets = labdriver.inventory_secrets(inv)
        if not secrets:
            print("    no plain secret values found in the inventory (vault without a password?): scan skipped")
            return
        files = labdriver.files_under([log_dir])
        leaks = labdriver.files_with(secrets, files + labdriver.files_under([Path("logs/ansible.log")]))
        if leaks:
            steps.fail("SECRET LEAK: a secret value appears in:\n" + "\n".join(f"    {p}" for p in leaks))
        print(f"    {len(secrets)} secret values, found in none of {len(files)} files of {log_dir}")

    return steps.run(body)


if __name__ == "__main__":
    sys.exit(main())
