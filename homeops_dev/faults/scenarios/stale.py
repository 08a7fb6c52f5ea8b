"""Fault scenario 8, `stale`: stale lock files and a stale cache/tmp from a killed run (registered in
homeops_dev/faults/registry.py)."""
from __future__ import annotations

from homeops_dev import ROOT
from homeops_dev.faults.helpers import account_lines, deploy, Scenario, scenario, sh, waits


@scenario("8", "stale lock files and a stale cache/tmp from a killed run", 3)
def stale(s: Scenario):
    """Lock files with no holder (shadow's /etc/passwd.lock and /etc/group.lock naming a dead PID,
    dpkg's and apt's lock files) and what a killed run leaves (a truncated binary under its
    sha256 in ~/.cache/homeops-modules, a half-uploaded .tmp, an old ~/.ansible/tmp dir): nobody
    waits and the deploy succeeds."""
    script = r"""
set -e
# As a killed useradd leaves them: the PID, no newline (shadow refuses anything else).
for f in /etc/passwd.lock /etc/group.lock /etc/gshadow.lock /etc/shadow.lock; do printf 999999 > $f; done
touch /var/lib/dpkg/lock /var/lib/dpkg/lock-frontend /var/lib/apt/lists/lock /var/cache/apt/archives/lock
mkdir -p -m 700 /root/.cache/homeops-modules /root/.ansible/tmp/ansible-tmp-1700000000.0-999-1
for sha in SHAS; do head -c 1000 /bin/ls > /root/.cache/homeops-modules/$sha; chmod 700 /root/.cache/homeops-modules/$sha; done
head -c 5000 /bin/ls > /root/.cache/homeops-modules/.deadbeef.4242.tmp
echo junk > /root/.ansible/tmp/ansible-tmp-1700000000.0-999-1/AnsiballZ_junk.py
ls /root/.cache/homeops-modules | wc -l
"""
    import hashlib
    shas = [hashlib.sha256((ROOT / "library" / m).read_bytes()).hexdigest()
            for m in ("system_account", "apt_packages", "apt_lockdown", "kernel_headers", "safe_grep")]
    for host in ("obs-01", "srv-01"):
        sh(host, script.replace("SHAS", " ".join(shas)))
    play = deploy("deploy")
    s.check(play.rc == 0 and play.clean(), "deploy exits 0, no host failed", f"rc={play.rc}")
    w = waits(play.text)
    s.check(not w and "waited" not in play.text, "nobody waited for a lock", str(w))
    s.check("fast path unavailable" not in play.text, "the fast path repaired its cache (no fallback)")
    # The deploy runs these modules on these hosts: their cache entries must be intact now.
    used = {"obs-01": ("system_account", "apt_packages", "apt_lockdown"),
            "srv-01": ("apt_lockdown", "kernel_headers", "apt_packages")}
    names = ("system_account", "apt_packages", "apt_lockdown", "kernel_headers", "safe_grep")
    repaired = 0
    for host, mods in used.items():
        want = " ".join(shas[names.index(m)] for m in mods)
        good = sh(host, "cd /root/.cache/homeops-modules && for f in SHAS; do [ -f $f ] && "
                        "[ \"$(sha256sum < $f | cut -c1-64)\" = $f ] && echo ok; done | wc -l".replace("SHAS", want)).strip()
        s.check(good == str(len(mods)), f"{host}: the truncated cached binaries of {', '.join(mods)} were replaced",
                f"{good}/{len(mods)} intact")
        repaired += int(good)
    users, groups, ident = account_lines("obs-01", "loki")
    s.check(users == 1 and "(loki)" in ident, "loki created despite the stale shadow lock files", ident)
    s.measure("deploy", f"{play.secs:.0f} s, 0 lock waits, {repaired}/6 truncated cache entries in use replaced")
