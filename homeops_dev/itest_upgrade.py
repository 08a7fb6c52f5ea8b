#!/usr/bin/env python3
"""An upgrade with data that survives (`make itest-upgrade`, issue 14), on the lab:
  1. lab up (the repo serves the previous and the current release set; real Loki where
     ../shared/real-loki or HOMEOPS_REAL_LOKI_DIR has both binaries)
  2. deploy the PREVIOUS set (versions.yml *_version_previous, given with -e) as the previous
     release served it (plain HTTP, no proxy), verify A-F (F reports "not checked": no proxy yet)
  3. write marker lines on every agent, wait until Loki has each, record them
  4. deploy the CURRENT set (versions.yml as it is: Loki behind TLS and basic auth), verify A-F
  5. every marker written before is found through Loki AND through Grafana's datasource
     ("N of N markers found after the upgrade"); the Loki config on disk is the new version's
     (installed loki -verify-config, no key the new version rejects, enable_multi_variant_queries
     from 3.5 on); every service restarted exactly when its package or config changed
  6. a second deploy changes nothing (changed=0, no restart)
  7. a downgrade (the previous set again) is refused before anything changes
  8. lab down, always, also on failure, Ctrl-C and SIGTERM; LAB_KEEP=1 keeps it
Logs: logs/itest-upgrade-<timestamp>/. ANSIBLE_ARGS: extra ansible-playbook arguments.
The lab, the runs and the checks are homeops_dev/labdriver/'s.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from homeops_dev import labdriver
from homeops_dev.labdriver import DEPLOY, VERIFY

MARKERS = "playbooks/tests/upgrade_markers.yml"
STATE = "playbooks/tests/upgrade_state.yml"
VERSIONS = "roles/common/defaults/main/versions.yml"
CHECK = "homeops_dev.upgrade_check"  # python -m, from the repository root (cwd)
# Every playbook here runs quiet: recaps, failures and the msg lines of our own checks.
PROGRESS = re.compile(r'^(PLAY RECAP|fatal:|failed:|\S+ +: ok=)|^ *"?msg"?: ')
NAME = "itest-upgrade"


def older(a: str, b: str) -> bool:
    """a < b as dpkg orders versions (what apt will do with them)."""
    return subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0


def main() -> int:
    os.chdir(labdriver.ROOT)
    extra = os.environ.get("ANSIBLE_ARGS", "").split()
    log_dir = Path("logs") / f"{NAME}-{time.strftime('%Y%m%d-%H%M%S')}"
    log_dir.mkdir(parents=True, exist_ok=True)
    abs_log = labdriver.ROOT / log_dir
    lab = labdriver.Lab(echo=True, via_make=True)
    steps = labdriver.Steps(NAME, "docs/runbook.md, Upgrading", log_dir, lab)

    def body():
        # ---- the two release sets
        pins = yaml.safe_load(Path(VERSIONS).read_text())
        prev_args = []
        for c in ("loki", "grafana", "alloy"):
            cur, prev = str(pins[f"{c}_version"]), str(pins[f"{c}_version_previous"])
            if prev == cur:
                steps.fail(f"{c}_version_previous equals {c}_version ({cur}) in {VERSIONS}: nothing to upgrade", rc=2)
            if not older(prev, cur):
                steps.fail(f"{c}_version_previous {prev} is not older than {c}_version {cur} in {VERSIONS}", rc=2)
            prev_args += ["-e", f"{c}_version={prev}"]
            print(f"    {c}: {prev} -> {cur}")
        # The previous release served Loki as plain HTTP on every address, no credentials: the
        # upgrade moves such an install behind the TLS and basic-auth proxy (docs/design.md).
        prev_args += ["-e", "loki_proxy_enabled=false", "-e", "loki_http_listen_address=0.0.0.0",
                      "-e", "loki_grpc_listen_address=0.0.0.0"]
        print("    access: plain HTTP on every address -> TLS and basic auth (Loki on loopback)")
        loki_cur = str(pins["loki_version"])

        # ---- 1. lab up
        inv = steps.lab_up()
        runner = labdriver.Runner(log_dir, inv, extra_args=extra, new_session=False)

        def run(name, playbook, *args, check=True):
            return runner.play(name, playbook, *args, echo=PROGRESS, announce=True, check=check)

        def snapshot(name):
            """The package/config/unit state of every host (playbooks/tests/upgrade_state.yml)."""
            play = runner.play(f"state-{name}", STATE, "-e", f"upgrade_state_file={abs_log}/state-{name}.json")
            if play.rc != 0:
                sys.stderr.write("".join(play.text.splitlines(keepends=True)[-30:]))
                steps.fail(f"the state snapshot '{name}' failed")

        def upgrade_check(*args):
            r = subprocess.run([sys.executable, "-m", CHECK, *args], cwd=labdriver.ROOT)
            if r.returncode != 0:
                raise labdriver.DriverError("", r.returncode)

        markers_file = f"upgrade_markers_file={abs_log}/markers.json"

        # ---- 2. the previous set
        steps.step(f"deploy the previous set: {' '.join(prev_args)}")
        run("deploy-previous", DEPLOY, *prev_args)
        steps.step("verify the previous set (A-F, F not checked: no proxy yet)")
        run("verify-previous", VERIFY, *prev_args)

        # ---- 3. markers
        steps.step("write marker lines on every agent and wait until Loki has each")
        run("markers-write", MARKERS, "-e", "upgrade_markers_mode=write", "-e", markers_file)
        m = json.loads((log_dir / "markers.json").read_text())["markers"]
        print("    %d markers in Loki before the upgrade, on %d agent(s)" % (len(m), len({x["host"] for x in m})))
        snapshot("before")

        # ---- 4. upgrade
        steps.step("upgrade: deploy the current set (versions.yml)")
        run("deploy-upgrade", DEPLOY)
        snapshot("after")
        steps.step("verify the current set (A-F)")
        run("verify-current", VERIFY)

        # ---- 5. what survived, what changed
        steps.step("the markers written before the upgrade, through Loki and through Grafana")
        found = run("markers-check", MARKERS, "-e", "upgrade_markers_mode=check", "-e", markers_file, check=False)
        if found.rc != 0:
            for line in found.text.splitlines():
                if "markers found after the upgrade" in line:
                    print(re.sub(r'^ *"*msg"*: *', "", line), file=sys.stderr)
            raise labdriver.DriverError("", 1)
        count = re.search(r'[0-9]+ of [0-9]+ markers found after the upgrade[^"]*', found.text)
        if count:
            print(f"    {count.group(0)}")

        steps.step(f"the Loki config on disk is Loki {loki_cur}'s")
        upgrade_check("loki-config", str(log_dir / "state-after.json"), loki_cur)

        steps.step("every service restarted exactly when its package or config changed")
        upgrade_check("restarts", str(log_dir / "state-before.json"), str(log_dir / "state-after.json"),
                      "--pins", VERSIONS)

        # ---- 6. idempotence
        steps.step("a second deploy changes nothing")
        again = run("deploy-again", DEPLOY)
        labdriver.check_no_change(NAME, again, "the deploy after the upgrade")
        snapshot("again")
        upgrade_check("unchanged", str(log_dir / "state-after.json"), str(log_dir / "state-again.json"))

        # ---- 7. downgrade
        steps.step("a downgrade to the previous set is refused before anything changes")
        down = run("deploy-downgrade", DEPLOY, *prev_args, check=False)
        if down.rc == 0:
            steps.fail("the downgrade deploy succeeded; it must be refused (playbooks/upgrade-guard.yml)")
        if "Refusing to downgrade" not in down.text:
            steps.fail(f"the downgrade failed, but not with the guard's refusal: see {log_dir}/deploy-downgrade.out")
        # One line per host: the message is wrapped in the YAML output.
        flat = " ".join(down.text.replace("'", " ").split())
        for host, why in sorted(set(re.findall(r"Refusing to downgrade on (\S+): (.*?)\. Nothing was changed", flat))):
            print(f"    refused on {host}: {why}")
        # The guard's play is the second of the deploy: no later play (the apt lockdown first) ran.
        if re.search(r"^PLAY \[Lock down background apt activity", down.text, re.M):
            steps.fail("the deploy went on past the refusal")
        snapshot("downgrade")
        upgrade_check("unchanged", str(log_dir / "state-again.json"), str(log_dir / "state-downgrade.json"))

    return steps.run(body)


if __name__ == "__main__":
    sys.exit(main())
