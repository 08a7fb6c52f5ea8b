"""The no-line-lost scenarios' shared parts (loki_outage, loki_crash, agent_reboot,
loki_host_reboot, clock_skew, disk_full): marker lines written on the agents, counted in Loki,
each exactly once."""
from __future__ import annotations

import json
import os
import re
import shlex
import time

from homeops_dev.faults.helpers import deploy, Failed, lab, say, Scenario, sh


#
# Real Loki (lab/lib/packages.sh ships ../shared/real-loki's binary as the `loki` package where it
# exists) and the Alloy stand-in, whose loki.write follows Alloy 1.18.1's sendBatch and dskit's
# backoff (lab/packages/alloy/usr/bin/alloy). Markers are journal lines written with logger on
# srv-01; they reach Loki through the deploy's TLS proxy, and are counted on obs-01 against
# Loki's own 127.0.0.1:3100 (as playbooks/tests/upgrade_markers.yml does).

# Shrunk backoff periods (the retry count and queueing stay the deploy's): dskit sleeps
# [50-100 ms, 100-200, 200-400, 400-800, 800-1600, then 1.6-2 s] between sends, so Alloy's default
# 10 retries would drop a batch 7.95-11.1 s after its first failure instead of 255.5-511 s.
NOLOSS_BACKOFF = {"alloy_loki_min_backoff_period": "50ms", "alloy_loki_max_backoff_period": "2s"}
STANDIN_NOTE = ("the agent runs the lab's Alloy stand-in (no real Alloy here); its retry, drop and position "
                "rules follow Alloy 1.18.1's loki.write (client/shards.go sendBatch, dskit backoff/backoff.go)")


def noloss_vars() -> list[str]:
    """-e arguments of the no-line-lost scenarios: the shrunk periods, plus FAULTS_NOLOSS_VARS
    (k=v ...; e.g. alloy_loki_max_backoff_retries=10 to run them against the previous default)."""
    kv = dict(NOLOSS_BACKOFF)
    for item in os.environ.get("FAULTS_NOLOSS_VARS", "").split():
        k, _, v = item.partition("=")
        kv[k] = v
    say("  deploy settings of this scenario: " + " ".join(f"{k}={v}" for k, v in kv.items()))
    return [a for k, v in kv.items() for a in ("-e", f"{k}={v}")]


def noloss_run_id() -> str:
    return time.strftime("%H%M%S") + "-" + os.urandom(3).hex()


# Writes the lines "noloss RUN HOST line-I-end", I from $2 to $3, to the journal, $4 s apart.
MARK = ('run="$1"; gap="$4"; for i in $(seq "$2" "$3"); do '
        'logger -t homeops-noloss -- "noloss $run $(hostname) line-$i-end"; sleep "$gap"; done')


def write_markers(host: str, run_id: str, first: int, last: int, gap: float = 0.0) -> list[str]:
    sh(host, "sh -c " + shlex.quote(MARK) + " mark " + shlex.quote(run_id) + f" {int(first)} {int(last)} {gap}",
       timeout=60 + (last - first + 1) * gap)
    return [f"noloss {run_id} {host} line-{i}-end" for i in range(first, last + 1)]


# On the Loki host: every line of the host's streams containing "noloss RUN", as a JSON list,
# from Loki itself (127.0.0.1:3100), over a window wide enough for skewed clocks.
COUNT = r"""
import json, sys, time, urllib.parse, urllib.request
host, run = sys.argv[1], sys.argv[2]
now = time.time_ns()
q = urllib.parse.urlencode({"query": '{host="%s"} |= "noloss %s "' % (host, run), "limit": "5000",
                            "direction": "forward", "start": str(now - 6 * 3600 * 10**9),
                            "end": str(now + 6 * 3600 * 10**9)})
try:
    with urllib.request.urlopen("http://127.0.0.1:3100/loki/api/v1/query_range?" + q, timeout=20) as r:
        res = json.load(r)["data"]["result"]
    print(json.dumps([v[1] for s in res for v in s["values"]]))
except Exception as e:
    print(json.dumps({"error": str(e)[:200]}))
"""


def loki_lines(host: str, run_id: str) -> list[str] | None:
    out = sh("obs-01", "python3 -c " + shlex.quote(COUNT) + " " + shlex.quote(host) + " " + shlex.quote(run_id))
    got = json.loads(out.strip().splitlines()[-1])
    return got if isinstance(got, list) else None


def wait_markers(host: str, run_id: str, want: list[str], timeout: float) -> tuple[dict, float]:
    """Polls Loki until every marker of want is there (or timeout); then once more after 5 s so
    a late duplicate shows. Returns ({marker: times read}, seconds until all were there)."""
    t = time.monotonic()
    while True:
        lines = loki_lines(host, run_id) or []
        if all(m in lines for m in want) or time.monotonic() - t > timeout:
            break
        time.sleep(2)
    secs = time.monotonic() - t
    time.sleep(5)
    lines = loki_lines(host, run_id) or []
    return {m: lines.count(m) for m in want}, secs


def check_exactly_once(s: Scenario, label: str, counts: dict) -> None:
    lost = [m.split()[-1] for m, c in counts.items() if c == 0]
    dup = [m.split()[-1] for m, c in counts.items() if c > 1]
    read = sum(1 for c in counts.values() if c > 0)
    s.measure(f"{label}: written / read / duplicates", f"{len(counts)} / {read} / {len(dup)}")
    s.check(not lost, f"{label}: every one of the {len(counts)} marker lines is in Loki", f"lost {lost}")
    s.check(not dup, f"{label}: none of them twice", f"duplicates {dup}")


def loki_ready(timeout: float = 180) -> float:
    """Seconds until Loki on obs-01 answers /ready (it starts in ~15-30 s on 2 busy cores)."""
    t = time.monotonic()
    out = sh("obs-01", "for i in $(seq 1 %d); do python3 -c \"import urllib.request as u; "
                       "u.urlopen('http://127.0.0.1:3100/ready', timeout=3)\" 2>/dev/null && echo ready && exit 0; "
                       "sleep 1; done; echo not-ready" % int(timeout), timeout=timeout * 2 + 30)
    if "ready" not in out.split():
        raise Failed(f"Loki on obs-01 did not answer /ready within {timeout:.0f} s")
    return time.monotonic() - t


def alloy_drops(host: str) -> int:
    """How many batches the agent's Alloy dropped since it started (its 'dropping data' errors)."""
    out = sh(host, "journalctl -u alloy --no-pager -o cat | grep -c 'dropping data' || true")
    return int(out.strip() or 0)


def noloss_deploy(s: Scenario) -> None:
    print(f"      note: {STANDIN_NOTE}", flush=True)
    play = deploy("deploy", *noloss_vars())
    s.check(play.rc == 0 and play.clean(), "the deploy passes", f"rc={play.rc}")
    run_id = noloss_run_id()
    want = write_markers("srv-01", run_id, 1, 3)
    counts, secs = wait_markers("srv-01", run_id, want, 90)
    s.check(all(c == 1 for c in counts.values()), "before the fault: 3 marker lines from srv-01 reach Loki once",
            str(counts))


# Writes lines 1..$2 on the host, $3 s apart, in a transient unit (it outlives the SSH session);
# after each line logger wrote, its number goes to /var/tmp/homeops-noloss-$1 (on the host's disk):
# what was written when a reboot stopped the writer.
WRITER = ('systemd-run --unit=homeops-noloss-writer --collect sh -c '
          '\'for i in $(seq 1 "$2"); do logger -t homeops-noloss -- "noloss $1 $(hostname) line-$i-end" '
          '&& echo "$i" >> "/var/tmp/homeops-noloss-$1"; sleep "$3"; done\' writer "$1" "$2" "$3"')


def reboot_host(host: str, off: int = 0) -> float:
    """A machine restart of a lab host (`lab/lab reboot HOST --off=OFF`: its systemd reboots, it
    stays off OFF s, the lab boots it again on the same disk and address); returns the seconds it
    was down, as the verb measured them (reboot requested to sshd and systemd running again)."""
    r = lab.run("reboot", host, f"--off={int(off)}", name=f"lab-reboot-{host}", timeout=600)
    m = re.search(r"reboot: \S+ was down ([0-9.]+)s", r.text)
    if r.returncode != 0 or not m:
        raise Failed(f"lab/lab reboot {host} failed (exit {r.returncode}): {r.text[-800:]}")
    say(f"  {host} rebooted: {r.text.strip().splitlines()[-1]}")
    return float(m.group(1))
