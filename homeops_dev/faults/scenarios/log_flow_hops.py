"""Fault scenario 14, `log_flow_hops`: check E names the hop that lost the line: a wrong Grafana
password, an agent pushing nowhere (registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import re

from homeops_dev.faults.helpers import deploy, playbook, Scenario, scenario, sh, VERIFY


BREAK_ALLOY_URL = r"""
set -e
sed -i 's#:3443/loki/api/v1/push#:3199/loki/api/v1/push#' /etc/alloy/config.alloy
grep -c ':3199/loki/api/v1/push' /etc/alloy/config.alloy
systemctl restart alloy
"""


@scenario("14", "check E names the hop that lost the line: a wrong Grafana password, an agent pushing nowhere", 3)
def log_flow_hops(s: Scenario):
    """Check E must fail, and say where, when the log line is lost. (a) verify with a wrong
    Grafana admin password: E1 passes, E2 fails on every agent, 'lost at: Grafana'. (b) srv-01's
    Alloy pushes to a closed port: E1 and E2 fail on srv-01 only, 'lost at: agent or Loki', while
    ws-01-linux passes. A re-deploy restores the config and verify passes again."""
    play = deploy("deploy")
    s.check(play.rc == 0 and play.clean(), "the deploy passes", f"rc={play.rc}")
    ok = playbook("verify", VERIFY)
    s.check(ok.rc == 0 and "srv-01: passed D1 D2 D4 E1 E2 E3" in ok.text, "verify passes with E1-E3", f"rc={ok.rc}")
    # Not the inventory's secret: a made-up wrong password, so nothing real is on a command line.
    bad = playbook("verify-wrong-admin", VERIFY, "-e", "grafana_admin_password=not-the-admin-password")
    flat = re.sub(r"\s*\n\s*", " ", bad.text)
    s.check(bad.rc != 0, "verify fails with a wrong Grafana admin password", f"rc={bad.rc}")
    s.check(all(re.search(h + r": passed D1 D2 D4 E1 E3 F1 F2 F3 F4; failed E2; .*lost at: Grafana", flat)
                for h in ("srv-01", "ws-01-linux")),
            "E1 and E3 pass, E2 fails on both agents, 'lost at: Grafana'")
    out = sh("srv-01", BREAK_ALLOY_URL)
    # The URL is in loki.write and in the header comment: both moved.
    s.check(out.strip().isdigit() and int(out) >= 1, "srv-01's Alloy now pushes to port 3199 (nothing listens)",
            out.strip())
    lost = playbook("verify-agent-lost", VERIFY, "-e", "verify_log_flow_timeout=10")
    flat = re.sub(r"\s*\n\s*", " ", lost.text)
    s.check(lost.rc != 0, "verify fails when an agent's lines never reach Loki", f"rc={lost.rc}")
    s.check(re.search(r"srv-01: passed D1 D2 D4( E3)? F1 F2 F3 F4; failed E1 E2( E3)?; .*lost at: agent or Loki", flat)
            is not None,
            "srv-01 fails E1 and E2 (E3 may still see its earlier lines) and names 'agent or Loki'")
    s.check(re.search(r"ws-01-linux: passed D1 D2 D4 E1 E2 E3 F1 F2 F3 F4; failed none", flat) is not None,
            "ws-01-linux still passes")
    fixed = deploy("redeploy")
    s.check(fixed.rc == 0 and fixed.changed().get("srv-01", 0) >= 1 and "ws-01-linux" not in fixed.changed(),
            "a re-deploy rewrites srv-01's Alloy config (and only that)", str(fixed.changed()))
    again = playbook("verify-again", VERIFY)
    s.check(again.rc == 0, "verify passes again after the re-deploy", f"rc={again.rc}")
    s.measure("verify with E on 2 agents", f"{ok.secs:.0f} s")
