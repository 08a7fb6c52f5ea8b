"""Fault scenario 7, `storm`: the storm: 16 concurrent module runs on one host, a 16-host deploy with
16 forks (registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import json
import re

import yaml

from homeops_dev.faults.helpers import (
    account_lines, add_repo, audit, deploy, lab, LOG_DIR, playbook, Scenario, scenario, sh,
)


STORM_BOOK = "tests/faults/storm.yml"


@scenario("7", "the storm: 16 concurrent module runs on one host, a 16-host deploy with 16 forks", 16)
def storm(s: Scenario):
    """16 concurrent system_account and apt_packages runs for the same account and package on
    obs-01 (16 inventory aliases of one host, forks 16), then the deploy across 16 hosts with 16
    forks: all succeed, each account is created once, no lock error reaches the user."""
    # No secrets in this inventory: the storm needs none.
    inv = {"all": {"vars": {k: v for k, v in lab.inventory()["all"]["vars"].items() if "password" not in k},
                   "hosts": {}}}
    h = lab.inventory()["all"]["hosts"]["obs-01"]
    for i in range(16):
        inv["all"]["hosts"][f"storm-{i:02d}"] = dict(h)
    storm_inv = LOG_DIR / "storm-inventory.yml"
    storm_inv.write_text(yaml.safe_dump(inv))
    storm_inv.chmod(0o600)
    add_repo("storm-00", inventory=storm_inv)
    play = playbook("storm", STORM_BOOK, "-f", "16", inventory=storm_inv,
                    env={"FAULTS_RESULT": str(LOG_DIR / "storm-results.json"),
                         # One connection per alias (one shared master would hit sshd's
                         # MaxSessions 10); a connection sshd's MaxStartups drops is retried.
                         "ANSIBLE_SSH_ARGS": "-C -o ControlMaster=no", "ANSIBLE_SSH_RETRIES": "5"})
    s.check(play.rc == 0 and len(play.recap) == 16 and play.clean(), "16 runs x 2 modules, all ok",
            f"rc={play.rc} hosts={len(play.recap)}")
    res = json.loads((LOG_DIR / "storm-results.json").read_text())
    acct_changed = sum(1 for r in res if r["account_changed"])
    pkg_changed = sum(1 for r in res if r["package_changed"])
    pkg_waits = [r["lock_wait"] for r in res if r["lock_wait"]]
    s.check(acct_changed == 1, "system_account: exactly one run created the account", f"{acct_changed} changed")
    installed = sh("obs-01", "dpkg-query -W -f '${Status}' loki").strip()
    s.check(installed == "install ok installed", "apt_packages: the package is installed", installed)
    # Known issue (docs/reliability.md): apt_packages takes its 'before' snapshot before it
    # waits for the lock, so runs that found the work done by another still say changed.
    s.measure("apt_packages runs reporting changed", f"{pkg_changed}/16 (1 did the install)")
    users, groups, ident = account_lines("obs-01", "stormacct")
    s.check(users == 1 and groups == 1 and "(stormacct)" in ident, "one passwd and one group entry", ident)
    s.check(audit("obs-01") == "rc=0", "dpkg --audit clean")
    lock_err = re.findall(r"(?i)(could not get lock|unable to acquire the dpkg|unable to lock|cannot lock /etc)", play.text)
    s.check(not lock_err and "fatal:" not in play.text, "no lock error or fatal in the output", str(lock_err[:2]))
    s.measure("module storm", f"{play.secs:.0f} s; account created by 1/16 runs, "
                              f"{len(pkg_waits)} runs waited for the dpkg lock (max {max(pkg_waits or [0]):.1f} s)")
    big = deploy("deploy-16", "-f", "16")
    s.check(big.rc == 0 and len(big.recap) == 16 and big.clean(), "deploy on 16 hosts with 16 forks succeeds",
            f"rc={big.rc} hosts={len(big.recap)}")
    lock_err = re.findall(r"(?i)(could not get lock|unable to acquire the dpkg|unable to lock|cannot lock /etc)", big.text)
    s.check(not lock_err and "fatal:" not in big.text, "no lock error or fatal in the deploy output")
    counts = sh("obs-01", "grep -c '^loki:' /etc/passwd; grep -c '^loki:' /etc/group").split()
    s.check(counts == ["1", "1"], "loki created once on obs-01", str(counts))
    hosts = [x for x in lab.inventory()["all"]["hosts"] if x != "obs-01"]
    bad = [x for x in hosts if sh(x, "grep -c '^alloy:' /etc/passwd; grep -c '^alloy:' /etc/group").split() != ["1", "1"]]
    s.check(not bad, f"alloy created once on each of the {len(hosts)} agents", str(bad))
    s.measure("deploy 16 hosts", f"{big.secs:.0f} s")
