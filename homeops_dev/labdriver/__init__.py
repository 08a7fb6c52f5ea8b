"""The one driver for the lab and for running playbooks.

`make itest` (homeops_dev/itest.py), `make itest-upgrade` (homeops_dev/itest_upgrade.py), the fault suite
(homeops_dev/faults/) and the bench (homeops_dev/bench/) all run Ansible against the lab the same
way, so they share this package instead of keeping a copy each (`from homeops_dev import labdriver`;
its modules: core, plays, secrets, lab, runs):

  ansible_env()   the environment of every Ansible run (this clone's venv and ansible.cfg, plain
                  output that people read in CI logs and that we parse)
  Runner / Play   ansible-playbook with its output in a log directory, timed, its PLAY RECAP read
                  into per-host counters; the host-set and changed=0 checks
  Lab             lab/lab (up, down, status, inventory, state, fault), the lab's hosts, secrets
                  and SSH as the inventory's user (through sudo when that user is not root)
  others_using()  "someone else is using the lab": Ansible or lab runs of others
  Steps           numbered steps with elapsed seconds and the exit path of itest/itest-upgrade:
                  the lab torn down on failure, Ctrl-C and SIGTERM too, PASSED/FAILED at the end
  secrets_of(), files_with()   the secrets scan

Standard library and PyYAML only (the venv has it; the callers run with the venv's python).
"""
from __future__ import annotations

from homeops_dev.labdriver.core import (
    VENV_BIN, LAB_CMD, DEPLOY, VERIFY, DriverError, LabError, LabChanged, _LAB_IDS, lab_id,
    ansible_env, Result, execute,
)
from homeops_dev.labdriver.plays import (
    COUNTERS, RECAP_LINE, parse_recap, Play, CheckFailed, check_same_hosts, check_no_change,
    PYTHON_FREE_SCRIPT, check_python_free, Runner, list_hosts,
)
from homeops_dev.labdriver.secrets import (
    SECRET_NAMES, SECRET_MIN_LEN, secrets_of, inventory_secrets, files_under, secret_needles,
    SECRET_SHAPES, files_with,
)
from homeops_dev.labdriver.lab import (
    SSH_OPTS, ssh_command, read_state, Lab,
)
from homeops_dev.labdriver.runs import (
    RUN_PATTERN, others_using, Steps,
)

__all__ = [
    "VENV_BIN", "LAB_CMD", "DEPLOY", "VERIFY", "DriverError", "LabError", "LabChanged", "_LAB_IDS",
    "lab_id", "ansible_env", "Result", "execute", "COUNTERS", "RECAP_LINE", "parse_recap", "Play",
    "CheckFailed", "check_same_hosts", "check_no_change", "PYTHON_FREE_SCRIPT", "check_python_free",
    "Runner", "list_hosts", "SECRET_NAMES", "SECRET_MIN_LEN", "secrets_of", "inventory_secrets",
    "files_under", "secret_needles", "SECRET_SHAPES", "files_with", "SSH_OPTS", "ssh_command",
    "read_state", "Lab", "RUN_PATTERN", "others_using", "Steps",
]


def __getattr__(name: str):
    # LAB_INVENTORY is computed on first use (PEP 562, core.__getattr__): importing runs no command.
    from homeops_dev.labdriver import core

    return getattr(core, name)
