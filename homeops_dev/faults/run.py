#!/usr/bin/env python3
"""make itest-faults: the deploy under faults, each scenario on fresh lab hosts.

Every scenario brings up a fresh lab (lab/lab up, ~3 s warm), makes its fault, runs the
deploy (or the module tasks) through Ansible, and asserts the end state on the hosts, not only
the exit code. It prints what it asserts and what it measured, and the results go into
docs/reliability.md (a generated table) at the end. The lab is always torn down (unless
LAB_KEEP=1). The last line is `N passed, N failed`.

Usage: python -m homeops_dev.faults [SCENARIO ...]   (default: all, in order; names or numbers;
the scenarios: homeops_dev/faults/registry.py)
Environment: LAB_KEEP=1 (leave the last lab up), FAULTS_NO_DOC=1 (do not rewrite the doc),
FAULTS_FORCE=1 (run even though another ansible-playbook/lab run is seen on this machine).
Logs: logs/faults-<timestamp>/<scenario>-<step>.out (+ .log, Ansible's own log).

Host-side commands are fixed strings run over ssh as the inventory's user, through sudo; no
value (and never a secret) is interpolated into a shell: secrets go to the hosts on standard
input only. The lab, the playbook runs and their recaps are homeops_dev/labdriver/'s.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import traceback

from homeops_dev import ROOT, labdriver
from homeops_dev.faults.helpers import DOC, Failed, HERE, lab, lab_up, LOG_DIR, say, Scenario, T0
from homeops_dev.faults.registry import SCENARIOS


def write_doc(results: list) -> None:
    """docs/reliability.md from the intro and one row and section per result, in scenario number
    order (the functions are defined in another order: 14 before 12)."""
    results = sorted(results, key=lambda r: (int(r[0]) if str(r[0]).isdigit() else 10**6, str(r[0])))
    intro = (HERE / "reliability-intro.md").read_text()
    rows = ["| # | scenario | result | measured | time |", "|---|---|---|---|---|"]
    for num, name, title, ok, measured, secs, asserts, doc in results:
        m = "; ".join(f"{k}: {v}" for k, v in measured.items()).replace("|", "\\|")
        rows.append(f"| {num} | {title} (`{name}`) | {'PASS' if ok else 'FAIL'} | {m} | {secs:.0f} s |")
    details = []
    for num, name, title, ok, measured, secs, asserts, doc in results:
        details.append(f"### {num}. {title} (`{name}`): {'PASS' if ok else 'FAIL'}\n")
        details.append(" ".join(doc.split()) + "\n")
        details.append("Asserted:\n")
        details += [f"- {'✔' if a else '✘'} {w}" for a, w in asserts]
        details.append("")
    passed = sum(1 for r in results if r[3])
    head = (f"Last run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit "
            f"{subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], stdout=subprocess.PIPE).stdout.decode().strip()}, "
            f"{passed} passed, {len(results) - passed} failed, {time.monotonic() - T0:.0f} s on "
            f"{os.cpu_count()} cores (logs/{LOG_DIR.name}/).\n")
    DOC.write_text(intro.replace("<!-- RESULTS -->", head + "\n" + "\n".join(rows) + "\n\n## The scenarios\n\n"
                                 + "\n".join(details)))
    print(f"==> itest-faults: results written to {DOC.relative_to(ROOT)}")


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    wanted = argv[1:]
    chosen = [x for x in SCENARIOS if not wanted or x[0] in wanted or x[1] in wanted]
    if not chosen:
        print(f"no such scenario: {wanted}; have: {[x[1] for x in SCENARIOS]}", file=sys.stderr)
        return 2
    # Ansible/lab runs of this clone (others' labs live side by side and are not ours to mind).
    busy = labdriver.others_using(clone_only=True)
    if busy and os.environ.get("FAULTS_FORCE") != "1":
        print("itest-faults: the lab looks in use on this machine (FAULTS_FORCE=1 to run anyway):", file=sys.stderr)
        print("\n".join("    " + b for b in busy), file=sys.stderr)
        return 2
    say(f"==> itest-faults: {len(chosen)} scenarios, logs in logs/{LOG_DIR.name}/")
    results = []
    lab_started = False

    def teardown(*_):
        if lab_started and os.environ.get("LAB_KEEP") == "1":
            # Kept by hand from here on: the janitor of a later `lab up` leaves it alone.
            try:
                lab.keep("LAB_KEEP=1 make itest-faults")
                say("==> itest-faults: LAB_KEEP=1: the last lab stays up, kept until make lab-down")
            except labdriver.LabError as e:
                print(f"itest-faults: ERROR: {e}", flush=True)
        elif lab_started:
            say("==> itest-faults: lab down")
            try:
                print(lab.down(name="lab-down").strip().splitlines()[-1], flush=True)
            except labdriver.LabError as e:
                print(f"itest-faults: ERROR: {e}", flush=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for num, name, title, hosts, fn in chosen:
            say(f"==> scenario {num} {name}: {title}")
            sc = Scenario(name)
            t = time.monotonic()
            ok = True
            try:
                lab_started = True
                lab_up(hosts)
                fn(sc)
            except (Failed, labdriver.DriverError) as e:
                ok = False
                print(f"      FAILED: {e}", flush=True)
            except Exception as e:  # a bug in the scenario itself is a failure too
                ok = False
                traceback.print_exc()
                sc.asserts.append((False, f"scenario error: {e!r}"))
            secs = time.monotonic() - t
            say(f"    {'PASS' if ok else 'FAIL'} {name} ({secs:.0f} s)")
            results.append((num, name, title, ok, sc.measured, secs, sc.asserts, fn.__doc__ or ""))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        teardown()
    passed = sum(1 for r in results if r[3])
    failed = len(results) - passed + (len(chosen) - len(results))
    if not wanted and os.environ.get("FAULTS_NO_DOC") != "1":
        # Only a run of every scenario rewrites the doc: an interrupted one would drop the rest.
        if len(results) == len(SCENARIOS):
            write_doc(results)
        else:
            print(f"==> itest-faults: {DOC.relative_to(ROOT)} left as it was: only {len(results)} of "
                  f"{len(SCENARIOS)} scenarios ran")
    print()
    for num, name, title, ok, measured, secs, *_ in results:
        print(f"  {'PASS' if ok else 'FAIL'}  {num:>2} {name:<18} {secs:4.0f} s  {title}")
    print(f"==> itest-faults: {time.monotonic() - T0:.0f} s, logs in logs/{LOG_DIR.name}/")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1

