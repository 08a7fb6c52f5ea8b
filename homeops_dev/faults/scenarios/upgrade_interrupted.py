"""Fault scenario 15, `upgrade_interrupted`: an upgrade killed after the Loki play is finished by the
next deploy (registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import json
import re
import time

import yaml

from homeops_dev import ROOT, labdriver
from homeops_dev.faults.helpers import (
    audit, DEPLOY, deploy, INV, LOG_DIR, playbook, Scenario, scenario, sh, unit_state,
)


def upgrade_pins(which: str) -> dict:
    """{loki, grafana, alloy} versions of versions.yml: which="" the current set, "_previous" the previous."""
    v = yaml.safe_load((ROOT / "roles/common/defaults/main/versions.yml").read_text())
    return {c: str(v[f"{c}_version{which}"]) for c in ("loki", "grafana", "alloy")}


def installed_versions(host: str) -> dict:
    out = sh(host, "for p in loki grafana alloy; do printf '%s ' $p; dpkg-query -W -f '${Version}' $p 2>/dev/null; echo; done")
    return {parts[0]: (parts[1] if len(parts) > 1 else "") for parts in (l.split() for l in out.splitlines()) if parts}


@scenario("15", "an upgrade killed after the Loki play is finished by the next deploy", 3)
def upgrade_interrupted(s: Scenario):
    """The previous release set is deployed and marker lines written on every agent reach Loki;
    the deploy of the current set is SIGKILLed (its whole process group) as the Grafana play
    starts, so obs-01 runs the new Loki beside the old Grafana and old Alloy agents. The next
    deploy finishes the upgrade: every package at its pin, dpkg clean, the apt lockdown released,
    every marker still found through Loki and Grafana, and a further deploy changes nothing."""
    prev, cur = upgrade_pins("_previous"), upgrade_pins("")
    prev_args = [a for c in ("loki", "grafana", "alloy") for a in ("-e", f"{c}_version={prev[c]}")]
    first = deploy("deploy-previous", *prev_args)
    s.check(first.rc == 0 and first.clean(), "the previous set deploys", f"rc={first.rc}")
    markers = LOG_DIR / "upgrade-markers.json"
    w = playbook("markers-write", "playbooks/tests/upgrade_markers.yml", "-e", "upgrade_markers_mode=write",
                 "-e", f"upgrade_markers_file={markers}")
    s.check(w.rc == 0 and markers.exists(), "marker lines written on every agent are in Loki", f"rc={w.rc}")
    written = len(json.loads(markers.read_text())["markers"])
    before = {h: unit_state(h) for h in ("obs-01", "srv-01", "ws-01-linux")}
    killed_at, t = None, time.monotonic()

    def kill_at_grafana(line: str) -> bool:
        nonlocal killed_at
        # The Loki play is over (its handlers flushed, /ready waited for) when the next play starts.
        if line.startswith("PLAY [Deploy Grafana]"):
            killed_at = time.monotonic() - t
            return True   # the runner SIGKILLs the deploy's whole process group here
        return False
    labdriver.Runner(LOG_DIR, INV).play("deploy-upgrade-killed", DEPLOY, on_line=kill_at_grafana)
    s.check(killed_at is not None, "the upgrade deploy was SIGKILLed as the Grafana play started")
    half = installed_versions("obs-01")
    s.measure("killed", f"after {killed_at:.1f} s; obs-01 then had " + ", ".join(f"{k} {v}" for k, v in half.items()))
    agent = installed_versions("srv-01")
    s.check(half.get("loki") == cur["loki"] and half.get("grafana") == prev["grafana"]
            and agent.get("alloy") == prev["alloy"],
            "half way: obs-01 has the new Loki and still the old Grafana, srv-01 the old Alloy",
            f"obs-01 {half}, srv-01 alloy {agent.get('alloy')}")
    again = deploy("deploy-finish")
    s.check(again.rc == 0 and again.clean(), "the next deploy finishes the upgrade on every host", f"rc={again.rc}")
    got = {h: installed_versions(h) for h in ("obs-01", "srv-01", "ws-01-linux")}
    wrong = [f"{h} {p} {v}" for h, vs in got.items() for p, v in vs.items() if v and v != cur[p]]
    s.check(not wrong, "every installed package is at its current pin", "; ".join(wrong))
    s.check(all(audit(h) == "rc=0" for h in got), "dpkg --audit clean on every host")
    after = {h: unit_state(h) for h in before}
    diffs = [f"{h} {u}: {before[h][u]} -> {after[h].get(u)}" for h in before for u in before[h]
             if before[h][u] != after[h].get(u)]
    s.check(not diffs, "the apt lockdown is released: apt units as before the killed run", "; ".join(diffs))
    c = playbook("markers-check", "playbooks/tests/upgrade_markers.yml", "-e", "upgrade_markers_mode=check",
                 "-e", f"upgrade_markers_file={markers}")
    found = re.search(r"(\d+) of (\d+) markers found after the upgrade", c.text)
    s.check(c.rc == 0 and found is not None and found.group(1) == found.group(2) == str(written),
            "every marker written before the upgrade is found through Loki and Grafana",
            found.group(0) if found else f"rc={c.rc}")
    s.measure("markers", found.group(0))
    third = deploy("idempotence")
    s.check(third.rc == 0 and not third.changed(), "a further run changes nothing", str(third.changed()))
    s.measure("finish", f"{again.secs:.0f} s")
