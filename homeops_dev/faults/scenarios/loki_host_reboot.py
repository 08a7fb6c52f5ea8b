"""Fault scenario 25, `loki_host_reboot`: the Loki host rebooted (a machine restart) mid-ingest: no
line lost (registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import shlex
import time

from homeops_dev.faults.helpers import lab, Scenario, scenario, sh
from homeops_dev.faults.noloss import (
    alloy_drops, check_exactly_once, loki_lines, loki_ready, noloss_deploy, noloss_run_id, reboot_host,
    wait_markers, WRITER,
)


# On the Loki host: PID 1's start time (a new one after a reboot), whether Loki and its proxy are
# enabled and active, and what the proxy answers a read without credentials ($1: its port).
AFTER_BOOT = r"""
cut -d' ' -f22 /proc/1/stat
for u in loki nginx; do echo "$u $(systemctl is-enabled $u 2>&1) $(systemctl is-active $u 2>&1)"; done
python3 - "$1" <<'EOP'
import ssl, sys, urllib.error, urllib.request
try:
    urllib.request.urlopen("https://127.0.0.1:%s/loki/api/v1/labels" % sys.argv[1], timeout=5,
                           context=ssl._create_unverified_context())
    print("proxy 200")
except urllib.error.HTTPError as e:
    print("proxy %d" % e.code)
except Exception as e:
    print("proxy error", type(e).__name__)
EOP
"""


# On the Loki host: how many entries Loki's ingester replayed from its WAL since it started.
WAL_RECOVERED = ("python3 -c \"import urllib.request as u; t = u.urlopen('http://127.0.0.1:3100/metrics', timeout=10)"
                 ".read().decode(); print(int(sum(float(x.split()[-1]) for x in t.splitlines() "
                 "if x.startswith('loki_ingester_wal_recovered_entries_total'))))\"")


@scenario("25", "the Loki host rebooted (a machine restart) mid-ingest: no line lost", 3)
def loki_host_reboot(s: Scenario):
    """srv-01 and ws-01-linux each write 60 marker lines over ~30 s; after 8 s obs-01 is rebooted
    as a machine (lab/lab reboot: its systemd stops every unit, Loki gets SIGTERM; the host stays
    off 30 s, about what a Raspberry Pi or a small PC takes from reset to sshd, where a lab host
    takes ~2 s, and boots again on the same disk and address). Lines Loki accepted before the reboot are in its ingester
    and its WAL (/var/lib/loki/wal, on the host's disk); lines written while it is down are
    retried by Alloy (max_backoff_retries 0). Loki and its nginx proxy must come back by
    themselves at boot (enabled units), and every line of both agents must be in Loki exactly
    once. The previous deploy (FAULTS_NOLOSS_VARS=alloy_loki_max_backoff_retries=10) drops the
    batches that wait longer than Alloy's retry window."""
    noloss_deploy(s)
    agents = ["srv-01", "ws-01-linux"]
    run_id = noloss_run_id()
    pid1 = sh("obs-01", "sh -c " + shlex.quote(AFTER_BOOT) + " after-boot 3443").split()[0]
    drops0 = sum(alloy_drops(h) for h in agents)
    for h in agents:
        sh(h, "sh -c " + shlex.quote(WRITER) + " w " + shlex.quote(run_id) + " 60 0.5")
    t0 = time.monotonic()
    time.sleep(8)
    before = len(loki_lines("srv-01", run_id) or [])
    t_reboot = time.monotonic()
    down = reboot_host("obs-01", off=30)
    port = str(lab.inventory()["all"].get("vars", {}).get("loki_proxy_port", 3443))
    after = sh("obs-01", "sh -c " + shlex.quote(AFTER_BOOT) + " after-boot " + shlex.quote(port)).splitlines()
    s.check(after[0] != pid1, "obs-01 booted again (a new PID 1)", f"start time {pid1} -> {after[0]}")
    s.check(after[1] == "loki enabled active", "Loki came back by itself at boot (unit enabled, active)", after[1])
    s.check(after[2] == "nginx enabled active", "its nginx proxy came back by itself at boot", after[2])
    s.check(after[3] == "proxy 401", f"the proxy answers on {port} again (401 without credentials)", after[3])
    ready = loki_ready()
    replayed = sh("obs-01", WAL_RECOVERED).strip()
    time.sleep(max(0.0, 35 - (time.monotonic() - t0)))
    counts = {}
    for h in agents:
        want = [f"noloss {run_id} {h} line-{i}-end" for i in range(1, 61)]
        counts[h], _ = wait_markers(h, run_id, want, 180)
    s.measure("srv-01's lines in Loki when the reboot began", f"{before} of 60")
    s.measure("obs-01 down (reboot to sshd and systemd running, 30 s of it off)", f"{down:.0f} s")
    s.measure("Loki ready after the host was up", f"{ready:.0f} s")
    s.measure("entries Loki replayed from its WAL at boot", replayed)
    s.measure("time to recover (reboot to every line readable)", f"{time.monotonic() - t_reboot - 5:.0f} s")
    s.measure("batches the agents' Alloy dropped", sum(alloy_drops(h) for h in agents) - drops0)
    for h in agents:
        check_exactly_once(s, f"{h}: lines written across the reboot", counts[h])
