"""Fault scenario 22, `agent_reboot`: an agent's Alloy killed and restarted while it ships: positions
give no gap, no duplicate (registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import shlex
import time

from homeops_dev.faults.helpers import say, Scenario, scenario, sh
from homeops_dev.faults.noloss import check_exactly_once, noloss_deploy, noloss_run_id, wait_markers, WRITER


@scenario("22", "an agent's Alloy killed and restarted while it ships: positions give no gap, no duplicate", 3)
def agent_reboot(s: Scenario):
    """srv-01 writes 40 lines over ~20 s; meanwhile its Alloy is killed with SIGKILL (as a power
    cut), and later stopped and started (as a reboot's clean stop: it sends what it holds, and
    writes its journal cursor). The journal keeps every line (it is persistent on the lab's
    Debian 12), Alloy continues from its cursor: every line must be in Loki exactly once. What
    is rebooted is Alloy, not the nspawn host: the lab's hosts cannot reboot in place."""
    noloss_deploy(s)
    run_id = noloss_run_id()
    sh("srv-01", "sh -c " + shlex.quote(WRITER) + " w " + shlex.quote(run_id) + " 40 0.5")
    t0 = time.monotonic()
    time.sleep(5)
    sh("srv-01", "systemctl kill -s KILL alloy")
    say("  srv-01: alloy killed with SIGKILL (systemd restarts it: Restart=always)")
    time.sleep(7)
    sh("srv-01", "systemctl restart alloy")
    say("  srv-01: alloy stopped and started")
    time.sleep(max(0.0, 22 - (time.monotonic() - t0)))
    want = [f"noloss {run_id} srv-01 line-{i}-end" for i in range(1, 41)]
    counts, secs = wait_markers("srv-01", run_id, want, 120)
    s.measure("time to recover (last line written to every line readable)", f"{secs:.0f} s")
    check_exactly_once(s, "lines written across the kill and the restart", counts)
