"""Fault scenario 11, `secrets`: secrets: -vvv, diff, a forced verify failure, check mode; every
output, log, host dir (registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from homeops_dev import ROOT, labdriver
from homeops_dev.faults.helpers import deploy, lab, playbook, Scenario, scenario, sh, VERIFY


HOST_SCAN = r"""
import os, subprocess, sys
secrets = [l for l in sys.stdin.read().splitlines() if l]
dirs = ["/root/.ansible/tmp", "/root/.cache/homeops-modules", "/var/lib/homeops", "/tmp", "/var/tmp", "/var/log"]
hits, files = [], 0
for d in dirs:
    for top, _, names in os.walk(d):
        for n in names:
            p = os.path.join(top, n)
            try:
                data = open(p, "rb").read()
            except OSError:
                continue
            files += 1
            if any(s.encode() in data for s in secrets):
                hits.append(p)
j = subprocess.run(["journalctl", "--no-pager", "-o", "cat"], stdout=subprocess.PIPE).stdout
jhits = sum(j.count(s.encode()) for s in secrets)
print(files, len(j.splitlines()), jhits, " ".join(hits))
"""


@scenario("11", "secrets: -vvv, diff, a forced verify failure, check mode; every output, log, host dir", 3)
def secrets(s: Scenario):
    """With the lab's per-`lab up` secrets: deploy --diff -vvv, verify -vvv, verify -vvv with a
    forced failure (grafana-server stopped), deploy --check --diff -vvv; then every output and
    log of this run, all of logs/, the controller's .ansible/, and on each host ~/.ansible/tmp,
    ~/.cache/homeops-modules, /var/lib/homeops, /tmp, /var/tmp, /var/log and the journal are
    searched for the values: zero hits."""
    secrets_ = lab.secrets()
    s.check(len(secrets_) >= 2 and all(len(x) >= 20 and x.startswith("hoplab-") for x in secrets_),
            f"{len(secrets_)} distinctive secrets in the inventory (Grafana, Loki, and sudo where it asks)")
    runs = []
    runs.append(deploy("deploy-vvv-diff", "--diff", "-vvv"))
    s.check(runs[-1].rc == 0 and runs[-1].clean(), "deploy --diff -vvv succeeds", f"rc={runs[-1].rc}")
    runs.append(playbook("verify-vvv", VERIFY, "-vvv"))
    s.check(runs[-1].rc == 0, "verify -vvv passes", f"rc={runs[-1].rc}")
    sh("obs-01", "systemctl stop grafana-server")
    runs.append(playbook("verify-forced-failure-vvv", VERIFY, "-vvv"))
    # The summary names the hosts whose checks failed: obs-01 (C3), and the agents too (E2
    # reads through Grafana).
    s.check(runs[-1].rc != 0 and re.search(r"Verification failed\.\s+Checks failed on:\s+obs-01",
                                           re.sub(r"\s*\n\s*", " ", runs[-1].text)) is not None,
            "verify with grafana-server stopped fails on obs-01", f"rc={runs[-1].rc}")
    runs.append(deploy("deploy-check-diff-vvv", "--check", "--diff", "-vvv"))
    s.check(runs[-1].rc == 0, "deploy --check --diff -vvv succeeds", f"rc={runs[-1].rc}")
    runs.append(deploy("deploy-diff", "--diff"))
    s.check(runs[-1].rc == 0, "deploy --diff (restarts grafana) succeeds", f"rc={runs[-1].rc}")
    # Controller side: every file we write.
    # Also JSON-, repr- and YAML-escaped (the lab's secrets hold quotes and backslashes).
    needles = [n for x in secrets_ for n in labdriver.secret_needles(x)]
    scanned, hits = 0, []
    roots = [ROOT / "logs", ROOT / ".ansible"]
    for r in roots:
        for top, _, names in os.walk(r):
            if "/cp" in top:
                continue
            for n in names:
                p = Path(top) / n
                if p.name == "storm-inventory.yml" or p.is_socket():
                    continue
                try:
                    data = p.read_bytes()
                except OSError:
                    continue
                scanned += 1
                if any(x in data for x in needles):
                    hits.append(str(p.relative_to(ROOT)))
    total_lines = sum(len(r.text.splitlines()) for r in runs)
    # All places are searched before anything is asserted, so a leak report is complete.
    host_report, host_hits = [], []
    for h in ("obs-01", "ws-01-linux", "srv-01"):
        out = sh(h, "python3 -c " + shlex.quote(HOST_SCAN), input=b"\n".join(needles)).split(" ", 3)
        files, jlines, jhits = int(out[0]), int(out[1]), int(out[2])
        fhits = out[3].strip() if len(out) > 3 else ""
        host_report.append(f"{h}: {files} files, {jlines} journal lines")
        if jhits or fhits:
            host_hits.append(f"{h}: journal {jhits}, files {fhits or 'none'}")
    tasks = set()
    for path in hits:
        if path.endswith(".out"):
            task = ""
            for line in (ROOT / path).read_text(errors="replace").splitlines():
                if line.startswith("TASK ["):
                    task = line.split("]")[0][6:]
                if any(x.decode() in line for x in needles):
                    tasks.add(task)
    s.measure("hits", f"{len(hits)} of {scanned} controller files (logs/, .ansible/), "
                      f"{len(host_hits)} host places; {total_lines} lines of output in {len(runs)} runs; "
                      + "; ".join(host_report))
    s.check(not hits, f"no secret in {scanned} files under logs/ and .ansible/",
            ", ".join(hits[:4]) + (f"; leaking task(s): {', '.join(sorted(tasks))}" if tasks else ""))
    s.check(not host_hits, "no secret in the hosts' ~/.ansible/tmp, ~/.cache/homeops-modules, /var/lib/homeops, "
                           "/tmp, /var/tmp, /var/log or journal", "; ".join(host_hits))
