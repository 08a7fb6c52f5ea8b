"""Fault scenario 1, `lock_wait`: dpkg frontend lock held ~30 s when the deploy starts (registered in
homeops_dev/faults/registry.py)."""
from __future__ import annotations

import re

from homeops_dev.faults.helpers import audit, deploy, lab, Scenario, scenario, waits


@scenario("1", "dpkg frontend lock held ~30 s when the deploy starts", 3)
def lock_wait(s: Scenario):
    """A process in srv-01 holds /var/lib/dpkg/lock-frontend for 30 s as the deploy starts: the
    deploy waits (the lockdown waits for running apt work) and succeeds, naming holder and wait."""
    info = lab.fault("srv-01", "dpkg-lock:30")
    pid = re.search(r"PID (\d+)", info).group(1)
    play = deploy("deploy")
    s.check(play.rc == 0 and play.clean(), "deploy exits 0, no host failed or unreachable", f"rc={play.rc}")
    w = [x for x in waits(play.text) if x[2].startswith(f"PID {pid} ")]
    s.check(bool(w), f"output names the holder (PID {pid}, python3) and the wait",
            "; ".join(f"{a:.1f} s {h}" for a, _, h in waits(play.text)) or "no wait warning")
    s.check(w[0][0] >= 10, "the wait was real (>= 10 s)", f"{w[0][0]:.1f} s")
    s.check(audit("srv-01") == "rc=0", "dpkg --audit clean on srv-01")
    s.measure("waited", f"{w[0][0]:.1f} s for {w[0][2]}")
    s.measure("deploy", f"{play.secs:.0f} s")
