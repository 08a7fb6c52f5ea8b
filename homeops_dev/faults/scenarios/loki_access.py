"""Fault scenario 19, `loki_access`: access to Loki from an agent: plain, unauthenticated, wrong and
agent credentials (registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import yaml

from homeops_dev.faults.helpers import deploy, INV, Scenario, scenario, sh


# Run on an agent (srv-01 keeps python3): what anyone on the LAN gets from the Loki host. Prints
# one JSON object: the answer (status, or the error) of each request. The password of the
# agents' credential comes on stdin, never on a command line.
ACCESS_PROBE = r"""
import base64, json, socket, ssl, sys, urllib.error, urllib.request
addr, ca, user = sys.argv[1], sys.argv[2], sys.argv[3]
pw = sys.stdin.read()
def req(url, auth=None, data=None, cafile=ca):
    h = {"Content-Type": "application/json"}
    if auth:
        h["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode()
    try:
        ctx = ssl.create_default_context(cafile=cafile) if url.startswith("https") else None
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=h), timeout=10, context=ctx) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:
        return type(getattr(e, "reason", e)).__name__
push = json.dumps({"streams": [{"stream": {"host": "srv-01", "job": "faults-access"},
                                "values": [[str(__import__("time").time_ns()), "faults access probe"]]}]}).encode()
q = "/loki/api/v1/query_range?query=%7Bhost%3D%22srv-01%22%7D&limit=1"
out = {
  "plain labels :3100": req("http://%s:3100/loki/api/v1/labels" % addr),
  "plain push :3100": req("http://%s:3100/loki/api/v1/push" % addr, data=push),
  "no credential query": req("https://%s:3443%s" % (addr, q)),
  "no credential push": req("https://%s:3443/loki/api/v1/push" % addr, data=push),
  "agent query": req("https://%s:3443%s" % (addr, q), auth=(user, pw)),
  "agent labels": req("https://%s:3443/loki/api/v1/labels" % addr, auth=(user, pw)),
  "agent delete": req("https://%s:3443/loki/api/v1/delete?query=%%7Bhost%%3D%%22srv-01%%22%%7D&start=0" % addr,
                      auth=(user, pw), data=b""),
  "wrong password push": req("https://%s:3443/loki/api/v1/push" % addr, auth=(user, pw + "x"), data=push),
  "agent push": req("https://%s:3443/loki/api/v1/push" % addr, auth=(user, pw), data=push),
  "agent push, system CAs only": req("https://%s:3443/loki/api/v1/push" % addr, auth=(user, pw), data=push,
                                     cafile=None),
}
print(json.dumps(out))
"""


@scenario("19", "access to Loki from an agent: plain, unauthenticated, wrong and agent credentials", 3)
def loki_access(s: Scenario):
    """From srv-01, as anyone on the LAN: Loki's own port 3100 must not answer; through the
    proxy (3443) a push or query without credentials, or with a wrong password, is refused
    (401); the agents' credential pushes (204) and cannot read a line, list labels or delete
    (403); a client that does not trust the deploy's CA gets no TLS session. On the code before
    the proxy, 3100 answered 200 to anyone (labels, and every host's lines)."""
    play = deploy("deploy")
    s.check(play.rc == 0 and play.clean(), "the deploy passes", f"rc={play.rc}")
    inv = yaml.safe_load(Path(INV).read_text())
    obs = inv["all"]["hosts"]["obs-01"]["ansible_host"]
    pw = inv["all"]["vars"]["loki_push_password"]
    got = json.loads(sh("srv-01", "python3 -c " + shlex.quote(ACCESS_PROBE) + f" {obs} "
                        "/etc/alloy/loki-ca.crt alloy", input=pw.encode()).strip().splitlines()[-1])
    want = {"plain labels :3100": "ConnectionRefusedError", "plain push :3100": "ConnectionRefusedError",
            "no credential query": 401, "no credential push": 401, "agent query": 403, "agent labels": 403,
            "agent delete": 403, "wrong password push": 401, "agent push": 204,
            "agent push, system CAs only": "SSLCertVerificationError"}
    for k, v in want.items():
        s.check(got.get(k) == v, f"{k}: {v}", f"got {got.get(k)}")
    s.measure("answers from srv-01", ", ".join(f"{k} {v}" for k, v in got.items()))
