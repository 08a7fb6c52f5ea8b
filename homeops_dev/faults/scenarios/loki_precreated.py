"""Fault scenario 6, `loki_precreated`: loki user pre-created by the package's way (nogroup,
/bin/false) (registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import re

from homeops_dev.faults.helpers import account_lines, deploy, Scenario, scenario, sh


@scenario("6", "loki user pre-created by the package's way (nogroup, /bin/false)", 1)
def loki_precreated(s: Scenario):
    """obs-01 has 'loki' as `adduser --system` makes it (group nogroup, shell /bin/false): the deploy
    converges it to loki:loki, and the next run reports no change."""
    out = sh("obs-01", "useradd --system --gid nogroup --shell /bin/false --home-dir /var/lib/loki --no-create-home loki"
                       " && id loki && getent passwd loki")
    s.check("(nogroup)" in out and "/bin/false" in out, "fault made: loki in nogroup with /bin/false", out.strip())
    play = deploy("deploy")
    s.check(play.rc == 0 and play.clean(), "deploy exits 0", f"rc={play.rc}")
    users, groups, ident = account_lines("obs-01", "loki")
    s.check(users == 1 and groups == 1 and re.search(r"gid=\d+\(loki\)", ident),
            "loki:loki, one passwd and one group entry", ident)
    owner = sh("obs-01", "stat -c '%U:%G %a' /var/lib/loki /var/lib/loki/chunks; systemctl is-active loki")
    s.check(owner.count("loki:loki 750") == 2 and "active" in owner, "data dirs loki:loki 0750, loki running",
            owner.strip().replace("\n", " | "))
    again = deploy("redeploy")
    s.check(again.rc == 0 and not again.changed(), "the next run reports no change", str(again.changed()))
    s.measure("account", ident)
