"""Fault scenario 9, `killed`: the deploy killed with SIGKILL mid-apt (registered in
homeops_dev/faults/registry.py)."""
from __future__ import annotations

import re
import time

from homeops_dev import labdriver
from homeops_dev.faults.helpers import (
    audit, DEPLOY, deploy, Failed, INV, LOG_DIR, Scenario, scenario, sh, unit_state,
)


@scenario("9", "the deploy killed with SIGKILL mid-apt", 3)
def killed(s: Scenario):
    """The deploy is SIGKILLed (its whole process group) while apt runs on obs-01 for the Loki
    package: a re-run converges and the lockdown is released (units as before, no record)."""
    before = {h: unit_state(h) for h in ("obs-01", "srv-01", "ws-01-linux")}
    killed_at, apt_seen = None, ""
    t = time.monotonic()

    def kill_during_apt(line: str) -> bool:
        nonlocal killed_at, apt_seen
        if not (line.startswith("TASK [") and "Install the Loki package]" in line):
            return False
        for _ in range(100):
            try:
                # Live apt-get/dpkg processes only (a zombie has already finished).
                apt_seen = sh("obs-01", "ps -eo stat=,args= | awk '$1 !~ /Z/ && ($2 ~ /(^|\\/)(apt-get|dpkg)$/)' "
                                        "| cut -d' ' -f2- | head -3", timeout=10).strip()
            except Failed:
                apt_seen = ""
            if apt_seen:
                break
            time.sleep(0.1)
        killed_at = time.monotonic() - t
        return True   # the runner SIGKILLs the deploy's whole process group here
    labdriver.Runner(LOG_DIR, INV).play("deploy-killed", DEPLOY, on_line=kill_during_apt)
    s.check(killed_at is not None and bool(apt_seen), "the deploy was SIGKILLed while apt-get/dpkg ran on obs-01",
            apt_seen.replace("\n", ", "))
    what = re.search(r" (install|remove|update)( \S+)?", apt_seen)
    s.measure("killed", f"after {killed_at:.1f} s, during obs-01's "
                        + (f"apt-get{what.group(0)}" if what else apt_seen[:60]))
    time.sleep(2)
    masked = sh("obs-01", "systemctl list-unit-files --state=masked --no-legend | wc -l; "
                          "test -e /var/lib/homeops/apt-lockdown.json && echo record || echo none").split()
    s.measure("left behind", f"{masked[0]} masked units, lockdown record: {masked[1]}")
    again = deploy("redeploy")
    s.check(again.rc == 0 and again.clean(), "the re-run succeeds on every host", f"rc={again.rc}")
    s.check(audit("obs-01") == "rc=0", "dpkg --audit clean on obs-01")
    after = {h: unit_state(h) for h in before}
    diffs = [f"{h} {u}: {before[h][u]} -> {after[h].get(u)}" for h in before for u in before[h]
             if before[h][u] != after[h].get(u)]
    s.check(not diffs, "the lockdown is released: apt units as before the killed run", "; ".join(diffs))
    recs = [h for h in before if sh(h, "test -e /var/lib/homeops/apt-lockdown.json && echo y || echo n").strip() == "y"]
    s.check(not recs, "no lockdown record left on any host", str(recs))
    third = deploy("idempotence")
    s.check(third.rc == 0 and not third.changed(), "a further run changes nothing", str(third.changed()))
    s.measure("re-run", f"{again.secs:.0f} s")
