"""Fault scenario 21, `loki_crash`: Loki SIGKILLed right after accepting pushes: its WAL replays them
(registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import time

from homeops_dev.faults.helpers import say, Scenario, scenario, sh
from homeops_dev.faults.noloss import (
    check_exactly_once, loki_lines, loki_ready, noloss_deploy, noloss_run_id, wait_markers, write_markers,
)


@scenario("21", "Loki SIGKILLed right after accepting pushes: its WAL replays them", 3)
def loki_crash(s: Scenario):
    """srv-01 writes 10 marker lines; as soon as Loki returns all of them (they are in its
    ingester, not yet in a chunk on disk) Loki is killed with SIGKILL, and 5 more lines are
    written while it is down. systemd starts it again (Restart=on-failure); the ingester's WAL
    (/var/lib/loki/wal) must replay the first 10, Alloy's retries deliver the other 5, and every
    line is in Loki exactly once."""
    noloss_deploy(s)
    run_id = noloss_run_id()
    want = write_markers("srv-01", run_id, 1, 10, 0.1)
    t = time.monotonic()
    while time.monotonic() - t < 60 and not all(m in (loki_lines("srv-01", run_id) or []) for m in want):
        time.sleep(0.5)
    s.check(all(m in (loki_lines("srv-01", run_id) or []) for m in want), "Loki accepted and returns the 10 lines")
    pid = sh("obs-01", "p=$(systemctl show -p MainPID --value loki); kill -KILL \"$p\"; echo \"$p\"").strip()
    t_kill = time.monotonic()
    say(f"  Loki (PID {pid}) killed with SIGKILL")
    want += write_markers("srv-01", run_id, 11, 15)
    ready = loki_ready()
    new = sh("obs-01", "systemctl show -p MainPID --value loki").strip()
    s.check(new not in ("", "0", pid), "systemd started Loki again", f"PID {pid} -> {new}")
    counts, _ = wait_markers("srv-01", run_id, want, 120)
    s.measure("Loki ready after the kill", f"{ready:.0f} s")
    s.measure("time to recover (kill to every line readable)", f"{time.monotonic() - t_kill - 5:.0f} s")
    check_exactly_once(s, "lines accepted before and written after the kill", counts)
