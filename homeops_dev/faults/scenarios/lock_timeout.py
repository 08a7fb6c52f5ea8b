"""Fault scenario 2, `lock_timeout`: dpkg lock held past lock_timeout (registered in
homeops_dev/faults/registry.py)."""
from __future__ import annotations

import os
import re

from homeops_dev import labdriver
from homeops_dev.faults.helpers import (
    audit, DEPLOY, deploy, INV, lab, LOG_DIR, say, Scenario, scenario, unit_state,
)


@scenario("2", "dpkg lock held past lock_timeout", 3)
def lock_timeout(s: Scenario):
    """srv-01's lock is taken after the lockdown (when the Loki play starts) and held 150 s; the
    deploy runs with observability_apt_lock_timeout=15: srv-01 fails naming holder and time
    waited, the others deploy, dpkg stays clean; after the lock goes a re-run converges."""
    faulted, pid = False, None

    def fault_at_loki(line: str) -> bool:
        nonlocal faulted, pid
        if not faulted and line.startswith("PLAY [Deploy Loki]"):
            pid = re.search(r"PID (\d+)", lab.fault("srv-01", "dpkg-lock:150")).group(1)
            faulted = True
        return False
    play = labdriver.Runner(LOG_DIR, INV).play("deploy", DEPLOY, "-e", "observability_apt_lock_timeout=15",
                                               "-e", "observability_apt_retries=0", on_line=fault_at_loki)
    rc, text = play.rc, play.text
    say(f"  deploy (lock_timeout 15, lock on srv-01 from the Loki play on) -> rc {rc} in {play.secs:.1f} s")
    s.check(faulted and pid, "the lock was taken on srv-01 after the lockdown")
    s.check(rc != 0, "the deploy fails (srv-01 could not get the lock)", f"rc={rc}")
    s.check(play.recap.get("srv-01", {}).get("failed", 0) >= 1 and play.clean(["obs-01", "ws-01-linux"]),
            "only srv-01 failed; obs-01 and ws-01-linux deployed", str(play.recap))
    flat = re.sub(r"\s*\n\s*", " ", text)
    m = re.search(r"gave up after waiting ([0-9.]+) s for (\S+): it is held by PID " + pid + r" \(([^)]*)\)", flat)
    s.check(bool(m), f"srv-01's failure names the holder PID {pid} and the time waited",
            m.group(0) if m else "no 'gave up after waiting' message")
    s.check(float(m.group(1)) >= 14, "it waited lock_timeout (15 s) before giving up", m.group(1))
    s.check("Deploy failed on srv-01" in text, "the final play names srv-01 and its failed step")
    s.check(audit("srv-01") == "rc=0", "dpkg --audit clean on srv-01 (nothing half installed)")
    st = unit_state("srv-01")
    s.check(not any("masked" in v for v in st.values()), "srv-01's lockdown was released by the rescue",
            str(st))
    prog = os.path.basename(m.group(3).split()[0])
    s.measure("failed after", f"{m.group(1)} s waiting for {m.group(2)}, held by PID {pid} ({prog})")
    lab.fault("srv-01", "heal")
    again = deploy("redeploy")
    s.check(again.rc == 0 and again.clean() and again.recap.get("srv-01", {}).get("changed", 0) > 0,
            "after heal, a re-run succeeds and deploys srv-01", str(again.recap.get("srv-01")))
    third = deploy("idempotence")
    s.check(third.rc == 0 and not third.changed(), "a third run changes nothing", str(third.changed()))
    s.measure("runs", f"failed {play.secs:.0f} s, converged {again.secs:.0f} s, no-op {third.secs:.0f} s")
