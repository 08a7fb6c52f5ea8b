"""Fault scenario 20, `loki_outage`: Loki stopped for longer than Alloy's default retry window: no
line lost (registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import time

from homeops_dev.faults.helpers import Scenario, scenario, sh
from homeops_dev.faults.noloss import (
    alloy_drops, check_exactly_once, loki_ready, noloss_deploy, noloss_run_id, wait_markers, write_markers,
)


@scenario("20", "Loki stopped for longer than Alloy's default retry window: no line lost", 3)
def loki_outage(s: Scenario):
    """Loki is stopped on obs-01 (the proxy answers 502) for 45 s, past the 7.95-11.1 s in which
    Alloy's default 10 retries drop a batch with the scenario's shrunk periods (with the real
    periods: 255.5-511 s after the first failure). Lines written at the start and near the end of
    the outage must all be in Loki afterwards, exactly once. The previous deploy (Alloy's default
    max_backoff_retries 10: FAULTS_NOLOSS_VARS=alloy_loki_max_backoff_retries=10) loses the first
    batch; the deploy's max_backoff_retries 0 keeps retrying while the queue holds the rest."""
    noloss_deploy(s)
    run_id = noloss_run_id()
    drops0 = alloy_drops("srv-01")
    sh("obs-01", "systemctl stop loki")
    t_stop = time.monotonic()
    want = write_markers("srv-01", run_id, 1, 5, 0.2)
    time.sleep(30)
    want += write_markers("srv-01", run_id, 6, 10)
    time.sleep(max(0.0, 45 - (time.monotonic() - t_stop)))
    outage = time.monotonic() - t_stop
    sh("obs-01", "systemctl start loki")
    t_start = time.monotonic()
    ready = loki_ready()
    counts, secs = wait_markers("srv-01", run_id, want, 120)
    s.measure("outage", f"{outage:.0f} s (Loki stopped; its proxy answered 502)")
    s.measure("Loki ready after start", f"{ready:.0f} s")
    s.measure("time to recover (Loki started to every line readable)", f"{time.monotonic() - t_start - 5:.0f} s")
    s.measure("batches srv-01's Alloy dropped", alloy_drops("srv-01") - drops0)
    check_exactly_once(s, "lines written during the outage", counts)
