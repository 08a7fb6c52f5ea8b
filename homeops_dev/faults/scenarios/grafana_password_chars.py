"""Fault scenario 18, `grafana_password_chars`: a Grafana admin password with # ; $ and quotes
(registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import json
import shlex

from homeops_dev.faults.helpers import deploy, LOG_DIR, Scenario, scenario, sh


# Scenario 18 (issue 19): a password with what go-ini, Grafana's expanders, YAML and shells each
# treat specially; " #" and " ;" also end a value for Python's configparser (the old stand-in).
# Not a lab secret: it goes to Ansible in an extra-vars file, to the host on stdin.
HARD_PASSWORD = "Tr0ub4dor#3;x$y1 #q'\"`b\\ ;end"
REFUSED_PASSWORD = "Fault18-${HOME}-x"
GRAFANA_LOGIN = r"""
import base64, json, os, sys, urllib.error, urllib.request
pw = sys.stdin.read()[:-1]
def code(p):
    auth = base64.b64encode(("admin:" + p).encode()).decode()
    req = urllib.request.Request("http://127.0.0.1:3000/api/datasources", headers={"Authorization": "Basic " + auth})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
lines = [l.rstrip("\n") for l in open("/etc/grafana/grafana.ini") if l.split("=")[0].strip() == "admin_password"]
print(json.dumps({"exact": code(pw), "prefix": code(pw.split("#")[0]), "lines": len(lines),
                  "backquoted": lines == ["admin_password = `" + pw + "`"],
                  "real": os.access("/usr/lib/grafana-lab/real/grafana-ini-check", os.X_OK)}))
"""


def extra_vars(name: str, values: dict) -> str:
    """An extra-vars file (JSON, mode 0600) in this run's log dir: `-e @file` carries any character."""
    path = LOG_DIR / f"{name}.json"
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return f"@{path}"


def grafana_login(password: str) -> dict:
    return json.loads(sh("obs-01", "python3 -c " + shlex.quote(GRAFANA_LOGIN), input=(password + "\n").encode()))


@scenario("18", "a Grafana admin password with # ; $ and quotes", 1)
def grafana_password_chars(s: Scenario):
    """Deploy with grafana_admin_password `Tr0ub4dor#3;x$y1 #q'"`b\\ ;end` (an extra-vars file):
    Grafana's API (the lab's stand-in reads grafana.ini with the real go-ini where
    ../shared/real-parsers exists) accepts exactly that password and refuses its prefix up to `#`
    (what a plain `admin_password = ...` line gives). A password with `${HOME}` is refused before
    anything is written, by name and without the value; the admin password stays as it was."""
    play = deploy("deploy-hard-password", "-e", extra_vars("hard-password", {"grafana_admin_password": HARD_PASSWORD}))
    s.check(play.rc == 0 and play.clean(), "the deploy with the password passes", f"rc={play.rc}")
    got = grafana_login(HARD_PASSWORD)
    s.measure("grafana.ini read by", "the real go-ini (grafana-ini-check)" if got["real"] else
              "the stand-in's own parser (no ../shared/real-parsers)")
    s.check(got["exact"] == 200, "Grafana's API accepts exactly the password", f"HTTP {got['exact']}")
    s.check(got["prefix"] == 401, "and refuses its prefix up to '#'", f"HTTP {got['prefix']}")
    s.check(got["lines"] == 1 and got["backquoted"], "grafana.ini has one admin_password line, in go-ini's backquote form",
            f"{got['lines']} line(s)")
    again = deploy("redeploy-hard-password", "-e", extra_vars("hard-password", {"grafana_admin_password": HARD_PASSWORD}))
    s.check(again.rc == 0 and not again.changed(), "a second deploy changes nothing", str(again.changed()))
    bad = deploy("deploy-refused-password", "-e", extra_vars("refused-password", {"grafana_admin_password": REFUSED_PASSWORD}))
    s.check(bad.rc != 0 and "grafana_admin_password has a ${...} or $__<name>{...} sequence" in bad.text,
            "a password with ${HOME} is refused, naming the sequence", f"rc={bad.rc}")
    s.check(REFUSED_PASSWORD not in bad.text and "Fault18-/root" not in bad.text and HARD_PASSWORD not in bad.text,
            "the refusal shows no value")
    still = grafana_login(HARD_PASSWORD)
    s.check(still["exact"] == 200, "Grafana keeps the previous password (nothing was written)", f"HTTP {still['exact']}")
