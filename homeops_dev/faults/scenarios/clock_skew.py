"""Fault scenario 23, `clock_skew`: an agent's clock 2 hours behind, then 2 hours ahead: no line
refused (registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import re
import shlex

from homeops_dev.faults.helpers import playbook, say, Scenario, scenario, sh, VERIFY
from homeops_dev.faults.noloss import (
    check_exactly_once, noloss_deploy, noloss_run_id, wait_markers, write_markers,
)


SKEW_DROPIN = "/etc/systemd/system/alloy.service.d/homeops-faults-skew.conf"


# $1: the offset in seconds (an integer), or "none" to remove the skew; restarts Alloy.
SKEW = ('d=/etc/systemd/system/alloy.service.d; mkdir -p "$d"; '
        'if [ "$1" = none ]; then rm -f "$d/homeops-faults-skew.conf"; '
        'else printf "[Service]\\nEnvironment=ALLOY_LAB_CLOCK_OFFSET=%s\\n" "$1" > "$d/homeops-faults-skew.conf"; fi; '
        'systemctl daemon-reload; systemctl restart alloy')


@scenario("23", "an agent's clock 2 hours behind, then 2 hours ahead: no line refused", 3)
def clock_skew(s: Scenario):
    """srv-01's clock is made 2 h slow, then 2 h fast, and it writes 5 marker lines each time.
    How: the lab's nspawn hosts share this machine's clock, so the skew is given to what the
    agent stamps and reads: the Alloy stand-in's ALLOY_LAB_CLOCK_OFFSET (a systemd drop-in,
    SKEW_DROPIN) adds the offset to every journal entry's timestamp and to the clock it measures
    max_age with, as journald and Alloy on a host with a wrong clock would. A line 2 h old is
    within reject_old_samples_max_age (1w); a line 2 h ahead passes Loki's default
    creation_grace_period (10m) and is refused with a 400, which Alloy drops without retry: the
    deploy's loki_creation_grace_period 3h keeps it. The lines 2 h behind go into streams that
    already hold current lines, which Loki takes only up to max_chunk_age/2 back (its default
    2h: 1 h, 'entry too far behind', a 400): the deploy's loki_ingester_max_chunk_age 6h takes
    3 h (FAULTS_NOLOSS_VARS="loki_creation_grace_period=10m loki_ingester_max_chunk_age=2h
    loki_querier_query_ingesters_within=3h" shows the loss). Verify then reports B5 (Loki's
    refused lines) and D4 (srv-01's clock)."""
    noloss_deploy(s)
    try:
        for offset, label in ((-7200, "2 h behind"), (7200, "2 h ahead")):
            sh("srv-01", "sh -c " + shlex.quote(SKEW) + f" skew {offset}")
            say(f"  srv-01: clock skew {offset:+d} s made by {SKEW_DROPIN} (ALLOY_LAB_CLOCK_OFFSET={offset}: "
                "journal timestamps and Alloy's clock shifted; the host clock is the machine's)")
            run_id = noloss_run_id()
            want = write_markers("srv-01", run_id, 1, 5, 0.1)
            counts, secs = wait_markers("srv-01", run_id, want, 60)
            s.measure(f"time to read back ({label})", f"{secs:.0f} s")
            check_exactly_once(s, f"clock {label}", counts)
    finally:
        sh("srv-01", "sh -c " + shlex.quote(SKEW) + " skew none")
    # Verify names what Loki refused (B5) and each agent's clock (D4; the lab's hosts share one
    # clock, so D4 sees no skew here: the skew above was the shipper's).
    ver = playbook("verify", VERIFY)
    flat = re.sub(r"\s*\n\s*", " ", ver.text)
    b5 = re.search(r"obs-01: passed ([^;]*); failed ([^;]*);.*?(Loki refused [0-9]+ lines since it started[^;]*); "
                   r"(Loki data: [0-9]+ MiB free of [0-9]+ MiB)", flat)
    d4 = re.search(r"srv-01: passed ([^;]*);.*?(clock [-+][0-9.]+ s from obs-01)", flat)
    s.check(b5 is not None and d4 is not None, "verify's summary gives Loki's refused lines, its free disk and "
            "srv-01's clock", f"rc={ver.rc}")
    s.measure("verify B5", f"{b5.group(3)}; {b5.group(4)}")
    s.measure("verify D4 (srv-01)", d4.group(2))
    s.check("B5" in b5.group(1).split() and ver.rc == 0, "verify passes B5: Loki refused no line",
            f"{b5.group(3)}, rc={ver.rc}")
