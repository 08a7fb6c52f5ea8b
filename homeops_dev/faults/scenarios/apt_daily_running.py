"""Fault scenario 5, `apt_daily_running`: apt-daily / unattended-upgrades running when the deploy
starts (registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import re

from homeops_dev.faults.helpers import deploy, Scenario, scenario, sh, unit_state, waits


SLOW_APT = r"""
set -e
mkdir -p /run/systemd/system/UNIT.d
printf '[Service]\nExecStartPre=/bin/sleep 25\n' > /run/systemd/system/UNIT.d/zz-homeops-faults-slow.conf
systemctl daemon-reload
systemctl start --no-block UNIT
sleep 1
systemctl show -p ActiveState -p SubState --value UNIT | tr '\n' ' '
"""


@scenario("5", "apt-daily / unattended-upgrades running when the deploy starts", 3)
def apt_daily_running(s: Scenario):
    """srv-01 runs apt-daily.service and ws-01-linux apt-daily-upgrade.service (unattended-upgrades),
    each held 25 s in its start, as the deploy starts: the lockdown waits for them, the deploy
    succeeds, and the apt units are back as they were before."""
    before = {h: unit_state(h) for h in ("srv-01", "ws-01-linux", "obs-01")}
    a = sh("srv-01", SLOW_APT.replace("UNIT", "apt-daily.service"))
    b = sh("ws-01-linux", SLOW_APT.replace("UNIT", "apt-daily-upgrade.service"))
    s.check("activating" in a and "activating" in b, "apt-daily (srv-01) and apt-daily-upgrade (ws-01-linux) running",
            f"{a.strip()} / {b.strip()}")
    play = deploy("deploy")
    s.check(play.rc == 0 and play.clean(), "deploy exits 0, no host failed", f"rc={play.rc}")
    w = waits(play.text)
    flat = re.sub(r"\s*\n\s*", " ", play.text)
    waited = re.findall(r"waited ([0-9.]+) s for apt work already running to finish: ([^\]\n]*?apt-daily[^\]\n]*?\))", flat)
    s.check(len(waited) >= 2, "the lockdown waited for both runs and said so", "; ".join(f"{x} s {y}" for x, y in waited))
    for h in ("srv-01", "ws-01-linux"):
        sh(h, "rm -rf /run/systemd/system/apt-daily.service.d/zz-homeops-faults-slow.conf "
              "/run/systemd/system/apt-daily-upgrade.service.d/zz-homeops-faults-slow.conf; systemctl daemon-reload")
    after = {h: unit_state(h) for h in before}
    diffs = [f"{h} {u}: {before[h][u]} -> {after[h].get(u)}" for h in before for u in before[h]
             if before[h][u] != after[h].get(u)]
    s.check(not diffs, "every apt unit on every host is back as it was (load, active, enablement)", "; ".join(diffs))
    rec = sh("srv-01", "test -e /var/lib/homeops/apt-lockdown.json && echo present || echo gone").strip()
    s.check(rec == "gone", "no lockdown record left", rec)
    s.measure("waited", "; ".join(f"{x} s for {y}" for x, y in waited))
    del w
