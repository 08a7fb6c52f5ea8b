"""Fault scenario 16, `planted_symlink`: a planted symlink: the loki user links /var/lib/loki/chunks
to /etc (registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import re

from homeops_dev.faults.helpers import deploy, Scenario, scenario, sh


@scenario("16", "a planted symlink: the loki user links /var/lib/loki/chunks to /etc", 1)
def planted_symlink(s: Scenario):
    """After a first deploy, /var/lib/loki/chunks (Loki's own directory, in the loki-owned
    /var/lib/loki) is replaced by a symbolic link to /etc owned by loki, as the loki user could do
    itself. The next deploy (root) must not chown /etc to loki:loki nor chmod it 0750: the `files`
    task fails naming the link and its owner, the deploy fails on that step, /etc stays root:root
    0755. With the link removed, the next deploy makes chunks a directory again."""
    first = deploy("deploy")
    s.check(first.rc == 0 and first.clean(), "the first deploy succeeds", f"rc={first.rc}")
    etc_before = sh("obs-01", "stat -c '%U:%G %a' /etc /etc/loki /etc/passwd").split()
    s.check(etc_before[:2] == ["root:root", "755"], "/etc is root:root 0755", " ".join(etc_before))
    # The loki user owns /var/lib/loki: it may rename its chunks away and link /etc there.
    link = sh("obs-01", "mv /var/lib/loki/chunks /var/lib/loki/chunks.moved && ln -s /etc /var/lib/loki/chunks"
                        " && chown -h loki:loki /var/lib/loki/chunks && stat -c '%U:%G %N' /var/lib/loki/chunks")
    s.check(link.startswith("loki:loki") and "-> '/etc'" in link,
            "fault made: /var/lib/loki/chunks is loki's link to /etc", link.strip())
    again = deploy("deploy-planted")
    step = "Loki: Ensure Loki data directories exist"
    s.check(again.rc != 0 and step in again.text,
            f"the deploy fails on obs-01 at '{step}'", f"rc={again.rc}")
    named = re.search(r"files\[\d+\] \(/var/lib/loki/chunks\): is a symbolic link \(to /etc\) owned by loki[^\"]*",
                      again.text)
    s.check(named is not None, "its message names the path, the link's target and its owner",
            named.group(0)[:120] if named else "no such message in the output")
    etc_after = sh("obs-01", "stat -c '%U:%G %a' /etc /etc/loki /etc/passwd").split()
    s.check(etc_after == etc_before, "/etc, /etc/loki and /etc/passwd keep their owner and mode",
            f"{' '.join(etc_before)} -> {' '.join(etc_after)}")
    s.check(etc_after[:2] == ["root:root", "755"], "/etc is still root:root 0755", " ".join(etc_after[:2]))
    s.measure("refused", named.group(0)[:110])
    sh("obs-01", "rm /var/lib/loki/chunks && rm -rf /var/lib/loki/chunks.moved")
    healed = deploy("deploy-healed")
    s.check(healed.rc == 0 and healed.clean(), "with the link removed the next deploy succeeds", f"rc={healed.rc}")
    chunks = sh("obs-01", "stat -c '%U:%G %a %F' /var/lib/loki/chunks").strip()
    s.check(chunks == "loki:loki 750 directory", "chunks is a loki:loki 0750 directory again", chunks)
