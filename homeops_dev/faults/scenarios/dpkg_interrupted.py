"""Fault scenario 3, `dpkg_interrupted`: dpkg interrupted (a package left unpacked) (registered in
homeops_dev/faults/registry.py)."""
from __future__ import annotations

import re

from homeops_dev.faults.helpers import add_repo, audit, deploy, Scenario, scenario, sh


INTERRUPT = r"""
set -e
cd /tmp
apt-get update -qq
apt-get download -q loki >/dev/null 2>&1
dpkg --unpack /tmp/loki_*.deb >/dev/null
rm -f /tmp/loki_*.deb
: > /var/lib/dpkg/updates/0001
dpkg-query -W -f '${Status}\n' loki
apt-get check 2>&1 | tail -1 || true
"""


@scenario("3", "dpkg interrupted (a package left unpacked)", 3)
def dpkg_interrupted(s: Scenario):
    """On obs-01 the loki package is unpacked but not configured and dpkg's journal holds an
    entry: apt refuses with 'dpkg was interrupted'. apt_packages repairs and the deploy succeeds."""
    add_repo("obs-01")
    out = sh("obs-01", INTERRUPT)
    s.check("unpacked" in out and "interrupted" in out, "fault made: loki unpacked, apt says dpkg was interrupted",
            out.strip().replace("\n", " | "))
    play = deploy("deploy")
    s.check(play.rc == 0 and play.clean(), "deploy exits 0, no host failed", f"rc={play.rc}")
    s.check("dpkg had been interrupted" in re.sub(r"\s*\n\s*", " ", play.text),
            "the output says dpkg was repaired (dpkg --configure -a)")
    s.check(audit("obs-01") == "rc=0", "dpkg --audit clean on obs-01")
    st = sh("obs-01", "dpkg-query -W -f '${Status} ${Version}' loki; echo; systemctl is-active loki")
    s.check(st.startswith("install ok installed") and "active" in st, "loki installed and running", st.strip())
    s.measure("deploy", f"{play.secs:.0f} s, repaired on obs-01")
