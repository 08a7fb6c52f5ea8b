"""Fault scenario 10, `check_mode`: check mode on fresh hosts changes nothing (registered in
homeops_dev/faults/registry.py)."""
from __future__ import annotations

import time

from homeops_dev.labdriver import Play
from homeops_dev.faults.helpers import run, say, Scenario, scenario, snapshot, snapshot_diff


@scenario("10", "check mode on fresh hosts changes nothing", 3)
def check_mode(s: Scenario):
    """`make deploy CHECK=1` (--check --diff) on fresh hosts: accounts, dpkg status, masked units
    and files under /etc, /var/lib/{homeops,loki,alloy,grafana}, /usr/local, /opt are the same
    before and after."""
    hosts = ("obs-01", "ws-01-linux", "srv-01")
    before = {h: snapshot(h) for h in hosts}
    t = time.monotonic()
    p = run(["make", "--no-print-directory", "deploy", "CHECK=1"], log="make-deploy-check")
    play = Play(p.returncode, p.text, time.monotonic() - t, "make-deploy-check")
    say(f"  make deploy CHECK=1 -> rc {p.returncode} in {play.secs:.1f} s")
    s.check(p.returncode == 0 and play.clean(), "make deploy CHECK=1 exits 0", f"rc={p.returncode}")
    s.check(all(play.recap.get(h, {}).get("changed", 0) > 0 for h in hosts), "it reports changes it would make",
            str(play.changed()))
    diffs = []
    for h in hosts:
        d = snapshot_diff(before[h], snapshot(h))
        diffs += [f"{h}: {x}" for x in d]
    s.check(not diffs, "nothing changed on any host", "; ".join(diffs[:5]))
    s.measure("compared", f"{sum(len(v) for v in before.values())} lines of state on 3 hosts, 0 differ; "
                          f"would change {play.changed()}")
