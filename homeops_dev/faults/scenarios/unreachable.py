"""Fault scenario 4, `unreachable`: ws-01-linux unreachable (SSH timeout) (registered in
homeops_dev/faults/registry.py)."""
from __future__ import annotations

import re

from homeops_dev.faults.helpers import deploy, lab, playbook, Scenario, scenario, VERIFY


@scenario("4", "ws-01-linux unreachable (SSH timeout)", 3)
def unreachable(s: Scenario):
    """ws-01-linux drops SSH (blackhole route): the deploy exits 0 and reports it unreachable
    and skipped; verify check D names it; after healing, a re-run converges and verify passes."""
    lab.fault("ws-01-linux", "timeout")
    play = deploy("deploy")
    r = play.recap.get("ws-01-linux", {})
    s.check(play.rc == 0, "deploy exits 0", f"rc={play.rc}")
    # ignore_unreachable: Ansible counts the unreachable task under 'ignored' in the recap.
    s.check(r.get("ignored", 0) >= 1 and r.get("failed", 1) == 0 and r.get("unreachable", 1) == 0,
            "recap: ws-01-linux ignored=1, failed=0 (the unreachable ping is ignored)", str(r))
    s.check(re.search(r"fatal: \[ws-01-linux\]: UNREACHABLE!.*\n(.*\n){0,12}?\.\.\.ignoring", play.text) is not None,
            "the task output shows ws-01-linux UNREACHABLE! ...ignoring")
    s.check("UNREACHABLE: ws-01-linux did not answer over SSH; skipped, not failed." in play.text,
            "the deploy names it: 'UNREACHABLE: ws-01-linux ... skipped, not failed'")
    s.check(play.clean(["obs-01", "srv-01"]), "obs-01 and srv-01 deployed")
    ver = playbook("verify", VERIFY)
    s.check("UNREACHABLE: ws-01-linux did not answer over SSH; reported, not failed." in ver.text
            and "Unreachable agents (reported, not failed): ws-01-linux" in ver.text,
            "verify check D3 names ws-01-linux as unreachable", f"verify rc={ver.rc}")
    s.check(ver.rc == 0, "verify passes on the reachable hosts", f"rc={ver.rc}")
    lab.fault("ws-01-linux", "heal")
    again = deploy("redeploy")
    s.check(again.rc == 0 and again.clean() and again.recap.get("ws-01-linux", {}).get("changed", 0) > 0,
            "after heal, a re-run deploys ws-01-linux", str(again.recap.get("ws-01-linux")))
    ver2 = playbook("verify-healed", VERIFY)
    s.check(ver2.rc == 0 and "ws-01-linux: passed D1 D2" in ver2.text, "verify passes on all three hosts")
    s.measure("unreachable deploy", f"{play.secs:.0f} s (recap {r})")
    s.measure("healed re-run", f"{again.secs:.0f} s")
