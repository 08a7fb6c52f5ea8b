"""Fault scenario 24, `disk_full`: Loki's data filesystem nearly full while agents ship, then freed
(registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import time

from homeops_dev.faults.helpers import Scenario, scenario, sh
from homeops_dev.faults.noloss import (
    check_exactly_once, loki_lines, loki_ready, noloss_deploy, noloss_run_id, wait_markers, write_markers,
)


# On the Loki host: Loki's data moved onto a tmpfs just large enough for it plus 32 MiB, then
# filled to leave ~512 KiB free (the lab's hosts share this machine's disk: filling that would
# fill everyone's). Prints `df -k` of /var/lib/loki.
FILL_LOKI_DISK = r"""
set -e
systemctl stop loki
used=$(du -sm /var/lib/loki | cut -f1)
rm -rf /root/homeops-loki-copy && cp -a /var/lib/loki /root/homeops-loki-copy
mount -t tmpfs -o size=$((used + 32))m,mode=0750 homeops-loki-small /var/lib/loki
cp -a /root/homeops-loki-copy/. /var/lib/loki/
chown loki:loki /var/lib/loki
avail=$(df -k --output=avail /var/lib/loki | tail -1)
fallocate -l $(( (avail - 512) * 1024 )) /var/lib/loki/homeops-faults-filler
systemctl start loki
df -k /var/lib/loki | tail -1
"""


@scenario("24", "Loki's data filesystem nearly full while agents ship, then freed", 3)
def disk_full(s: Scenario):
    """Loki's /var/lib/loki is moved onto a small tmpfs with ~512 KiB left (how: FILL_LOKI_DISK;
    the lab's hosts share this machine's disk, which is not ours to fill) and Loki restarted;
    srv-01 writes 10 marker lines. Whatever Loki does with a full disk (refuse pushes with a 5xx,
    keep them in memory without its WAL, or fail to start), the agents retry without end, so
    once the filler is removed every line must be in Loki exactly once."""
    noloss_deploy(s)
    df = sh("obs-01", FILL_LOKI_DISK, timeout=240).strip().splitlines()[-1].split()
    s.measure("Loki's data filesystem while full", f"{int(df[3]) // 1024} MiB free of {int(df[1]) // 1024} MiB")
    t_full = time.monotonic()
    run_id = noloss_run_id()
    want = write_markers("srv-01", run_id, 1, 10, 0.2)
    time.sleep(30)
    seen_full = sum(1 for m in want if m in (loki_lines("srv-01", run_id) or []))
    state = sh("obs-01", "systemctl is-active loki || true; journalctl -u loki --no-pager -o cat "
                         "| grep -c -i 'no space left' || true").split()
    s.measure("while full", f"Loki {state[0]}, {seen_full} of 10 lines readable, "
                            f"{state[1] if len(state) > 1 else '?'} 'no space left' errors in its log")
    sh("obs-01", "rm -f /var/lib/loki/homeops-faults-filler; systemctl is-active -q loki || systemctl restart loki")
    t_free = time.monotonic()
    loki_ready()
    counts, _ = wait_markers("srv-01", run_id, want, 120)
    s.measure("time to recover (space freed to every line readable)", f"{time.monotonic() - t_free - 5:.0f} s")
    s.measure("full for", f"{t_free - t_full:.0f} s")
    check_exactly_once(s, "lines written while Loki's disk was full", counts)
