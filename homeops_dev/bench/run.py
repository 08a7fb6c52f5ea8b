"""`make bench`: how fast are our Rust modules, with and without the fast path, against the
ansible.builtin modules a user would otherwise write, on the lab's real hosts.

Series (all against the lab inventory, ANSIBLE_CONFIG = this clone's ansible.cfg):
  per-task   per module, a play of N identical no-op tasks: ours (fast path on), ours (fast path
             off: ansible-core's standard binary transfer) and the builtin equivalent, plus an
             empty play and N x `raw: /bin/true` as the floor. One round runs every series once;
             per-task time is (total - empty) / N of the same round, ratios are taken per round,
             and the report gives medians over the rounds.
  deploy     playbooks/deploy-observability-stack.yml against bench/twin/deploy-builtin.yml
             (the same deploy and copies of its roles with ansible.builtin modules only, generated
             by homeops_dev/bench/twin.py): first run on fresh hosts (lab down + up before each) and
             the idempotent re-run right after it.
  on-host    each module binary run directly on one lab host, K times in a loop timed inside the
             host (date +%s%N), plus the fast path's remote script alone and exec floors.
  ssh-ops    one task of each kind at -vvv on one host, counting the SSH commands it makes.
  sizes      the binaries in library/ (bytes, and the 1 MiB budget).

Writes bench/results/<stamp>/ (generated playbooks, logs, results.json; git-ignored), a section
of docs/benchmarks.md for this host count and docs/benchmarks-<N>hosts.png.

The bench uses this clone's own lab (its lab id: LAB_ID, else derived from the clone's path;
labs of other clones live side by side and are never touched) and owns it (LAB_OWNER_PID), so
a killed bench's lab is reaped by the next `lab up` on the machine. Every measured run checks
that the lab is still the one this bench started (lab.env STARTED); if somebody else restarted
it, the bench stops and says so instead of reporting mixed numbers, and it never brings down a
lab it did not start. It still waits for other Ansible runs on the machine to end first: they
share the CPUs and would skew the numbers.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import signal
import time
from pathlib import Path

from homeops_dev import ROOT
from homeops_dev.bench import common as bench_common  # its LIBRARY: main() may replace it
from homeops_dev.bench.common import (
    ANSIBLE_PLAYBOOK, BENCH, BenchError, DEPLOY_BUILTIN, DEPLOY_OURS, Interference, inventory_hosts, LAB,
    loadavg, log, machine_info, MODULES, new_lab, play_of, Runner, TWIN, wait_for_quiet, write_yaml,
)
from homeops_dev.bench.deploy import bench_deploy
from homeops_dev.bench.on_host import bench_on_host, bench_sizes
from homeops_dev.bench.per_task import bench_per_task, bench_ssh_ops, per_task_specs, setup_tasks
from homeops_dev.bench.report import draw_chart, update_doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=int(os.environ.get("LAB_HOSTS", "3")))
    ap.add_argument("--tasks", type=int, default=int(os.environ.get("BENCH_TASKS", "10")),
                    help="identical tasks per per-task play (BENCH_TASKS)")
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "5")),
                    help="measured rounds of the per-task series (BENCH_RUNS, >= 5 for a report)")
    ap.add_argument("--deploy-runs", type=int, default=int(os.environ.get("BENCH_DEPLOY_RUNS", "0")),
                    help="fresh-lab deploy runs per variant (BENCH_DEPLOY_RUNS; default 5, 2 above 4 hosts)")
    ap.add_argument("--loops", type=int, default=int(os.environ.get("BENCH_LOOPS", "20")),
                    help="on-host runs of each binary (BENCH_LOOPS)")
    ap.add_argument("--only", default=os.environ.get("BENCH_ONLY", "per-task,ssh-ops,on-host,deploy"),
                    help="comma list of series (BENCH_ONLY): per-task, ssh-ops, on-host, deploy")
    ap.add_argument("--keep", action="store_true", default=os.environ.get("LAB_KEEP", "") == "1",
                    help="leave the lab up at the end (LAB_KEEP=1)")
    ap.add_argument("--no-doc", action="store_true", help="do not touch docs/ (results/ only)")
    ap.add_argument("--retries", type=int, default=int(os.environ.get("BENCH_RETRIES", "3")),
                    help="times a series is run again after somebody restarted the lab under it (BENCH_RETRIES)")
    ap.add_argument("--wait", type=int, default=int(os.environ.get("BENCH_WAIT", "900")),
                    help="seconds to wait for other Ansible/lab runs on this machine to end (BENCH_WAIT)")
    ap.add_argument("--merge", metavar="RESULTS_JSON",
                    help="take the series this run skips (BENCH_ONLY) from an earlier results.json of the same host count")
    ap.add_argument("--report", metavar="RESULTS_JSON",
                    help="only rewrite docs/ (section + chart) from a saved bench/results/*/results.json")
    a = ap.parse_args()
    only = {x.strip() for x in a.only.split(",") if x.strip()}
    a.deploy_runs = a.deploy_runs or (5 if a.hosts <= 4 else 2)
    if a.report:
        r = json.loads(Path(a.report).read_text())
        draw_chart(r, ROOT / "docs" / f"benchmarks-{r['hosts']}hosts.png")
        update_doc(r)
        log(f"rewrote docs/benchmarks.md (section '{r['hosts']} hosts') and docs/benchmarks-{r['hosts']}hosts.png from {a.report}")
        return 0

    for p, why in [(ANSIBLE_PLAYBOOK, "run 'make setup'"), (LAB, "the lab is not in this clone yet")]:
        if not p.exists():
            raise SystemExit(f"bench: {p} does not exist: {why}")
    # Every module must be built: the deploy and the series between them use nearly all.
    missing = [m for m in MODULES if not (bench_common.LIBRARY / m).is_file()]
    if missing:
        raise SystemExit(f"bench: module binaries missing in {bench_common.LIBRARY}: {' '.join(missing)} (run 'make build')")
    if "deploy" in only:
        if not DEPLOY_OURS.exists():
            raise SystemExit(f"bench: {DEPLOY_OURS} does not exist yet")
        # The twin is generated from the roles and playbooks (git-ignored): regenerate it when
        # they have moved on, so it never lags behind the deploy it is compared with.
        from homeops_dev.bench import twin as builtin_twin

        try:
            diffs = builtin_twin.differences()
            if diffs:
                builtin_twin.write()
                log(f"regenerated {TWIN.relative_to(ROOT)}/ ({len(diffs)} difference(s), e.g. {diffs[0]})")
        except builtin_twin.TwinError as e:
            raise SystemExit(f"bench: cannot generate the builtin-only twin of the deploy: {e}")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = BENCH / "results" / f"{stamp}-{a.hosts}hosts"
    results.mkdir(parents=True)
    # One build for the whole run: others may `make build` into library/ meanwhile, and a new
    # binary would be a fast-path cache miss (an upload) in the middle of a series.
    snap = results / "library"
    snap.mkdir()
    for m in MODULES:
        if (bench_common.LIBRARY / m).is_file():
            shutil.copy2(bench_common.LIBRARY / m, snap / m)
    source_library, bench_common.LIBRARY = bench_common.LIBRARY, snap
    twin_playbook = DEPLOY_BUILTIN
    if "deploy" in only:
        # The twin runs from the results (exactly what was timed, kept with the numbers).
        shutil.copytree(TWIN, results / "twin")
        twin_playbook = results / "twin" / DEPLOY_BUILTIN.name
    lab = new_lab(a.hosts, results)
    runner = Runner(results, lab)
    kernel = platform.release()
    import yaml
    alloy_version = yaml.safe_load((ROOT / "roles/common/defaults/main/versions.yml").read_text())["alloy_version"]
    specs = per_task_specs(alloy_version, kernel)

    # SIGTERM/SIGHUP become exceptions, so `finally` tears the lab down as on Ctrl-C.
    def _term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGHUP, _term)

    t_start = time.time()
    r = {"hosts": a.hosts, "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
         "machine": machine_info(), "load_start": loadavg(), "sizes": bench_sizes(),
         "args": vars(a), "results_dir": str(results.relative_to(ROOT)), "library": str(source_library),
         "sha256": {m: hashlib.sha256((bench_common.LIBRARY / m).read_bytes()).hexdigest()[:12] for m in MODULES
                    if (bench_common.LIBRARY / m).is_file()}}
    log(f"results in {results.relative_to(ROOT)}; {a.hosts} hosts; series: {', '.join(sorted(only))}; "
        f"load {r['load_start']}")
    for m, x in r["sizes"].items():
        log(f"size {m:<16} {x['bytes']:>9} bytes {'ok' if x['ok'] else 'OVER 1 MiB'}")
    ok = False
    try:
        # Always a lab of our own, fresh: a lab that is already up is in a state nobody
        # vouches for (another session's half-done test), and the deploy series replaces it
        # anyway. Waiting first for quiet keeps us from reaping a lab that is in use.
        wait_for_quiet(a.wait, lab, include_ssh=True)
        if lab.state():
            log(f"lab: replacing the lab that is up (idle; started {lab.state().get('STARTED')}) with a fresh one of {a.hosts} hosts")
        else:
            log(f"lab: bringing up {a.hosts} hosts")
        lab.up()
        pdir = results / "playbooks"
        prepared = {"lab": None}

        def prepare():
            """The setup play (every per-task series a no-op) and a warm fast-path cache, once
            per lab: a lab restarted under us comes back empty."""
            if prepared["lab"] == lab.current_started:
                return
            log("setup play: account, packages and grep target on every host, so the series are no-ops")
            setup = write_yaml(pdir / "setup.yml", [{"name": "Bench setup: make the per-task series no-ops",
                                                      "hosts": "all", "gather_facts": False,
                                                      "tasks": setup_tasks(alloy_version, kernel)}])
            runner.play(setup, "setup", expect_changed=None)
            warm = [t for s_ in specs for t in s_["ours"]]
            runner.play(write_yaml(pdir / "warm.yml", play_of(warm, "warm the fast-path cache")), "warm")
            prepared["lab"] = lab.current_started

        def guarded(name, fn):
            """Runs one series; if somebody restarts the lab under it, waits until the machine
            is quiet, brings our lab back and runs the series again (BENCH_RETRIES times)."""
            for attempt in range(a.retries + 1):
                try:
                    return fn()
                except Interference as e:
                    r.setdefault("interference", []).append(f"{time.strftime('%H:%M:%S')} {name}: {e}")
                    if attempt == a.retries:
                        raise
                    log(f"{name}: {e}; waiting for quiet, then again ({attempt + 2}/{a.retries + 1})")
                    wait_for_quiet(a.wait, lab)
                    lab.up()

        first_host = next(iter(inventory_hosts()))
        if "per-task" in only:
            r["per_task"] = guarded("per-task", lambda: bench_per_task(runner, specs, pdir, a.tasks, a.runs, prepare))
        if "ssh-ops" in only:
            r["ssh_ops"] = guarded("ssh-ops", lambda: (prepare(), bench_ssh_ops(runner, specs, pdir, first_host))[1])
        if "on-host" in only:
            r["on_host"] = guarded("on-host", lambda: (prepare(), bench_on_host(specs, inventory_hosts(), first_host,
                                                                                 a.loops, results, lab))[1])
        if "deploy" in only:
            r["deploy"] = bench_deploy(runner, lab, a.deploy_runs, guarded, twin_playbook)
        ok = True
    except KeyboardInterrupt as e:
        log(f"interrupted ({e or 'Ctrl-C'})")
    except Interference as e:
        log(f"STOPPED: {e}")
    except BenchError as e:
        log(f"FAILED: {e}")
    finally:
        r["load_end"] = loadavg()
        r["duration_s"] = time.time() - t_start
        r["lab_cycles"] = lab.cycles
        (results / "results.json").write_text(json.dumps(r, indent=1, default=str))
        if lab.is_ours_now():
            if a.keep and ok:
                # Kept by hand from here on: the janitor of a later `lab up` leaves it alone.
                pre = f"LAB_ID={os.environ['LAB_ID']} " if os.environ.get("LAB_ID") else ""
                try:
                    lab.keep("LAB_KEEP=1 make bench")
                    log(f"LAB_KEEP=1: the lab stays up, kept until you end it ({pre}make lab-down when done)")
                except BenchError as e:
                    log(f"ERROR: LAB_KEEP=1, but the lab could not be marked kept: {e}")
                    ok = False
            else:
                log("lab: bringing it down")
                try:
                    out = lab.down()
                    log(out.strip().splitlines()[-1])
                except BenchError as e:
                    log(f"ERROR: {e}")
                    ok = False
        elif lab.mine:
            log("lab: not ours any more (restarted or removed by somebody else): left alone")
    if not ok:
        log(f"bench FAILED; partial results in {results.relative_to(ROOT)}/results.json")
        return 1
    if a.merge:
        old_r = json.loads(Path(a.merge).read_text())
        if old_r.get("hosts") != r["hosts"]:
            raise SystemExit(f"bench: --merge {a.merge} is a {old_r.get('hosts')}-host run, not {r['hosts']}")
        for key in ("per_task", "ssh_ops", "on_host", "deploy"):
            if key not in r and key in old_r:
                r[key] = old_r[key]
                r.setdefault("merged", []).append(f"{key} from {old_r.get('date')} ({old_r.get('results_dir')})")
        (results / "results.json").write_text(json.dumps(r, indent=1, default=str))
    if not a.no_doc:
        try:
            draw_chart(r, ROOT / "docs" / f"benchmarks-{a.hosts}hosts.png")
        except ImportError as e:
            log(f"no chart ({e}): install bench/requirements.txt into .venv")
        update_doc(r)
        log(f"wrote docs/benchmarks.md (section '{a.hosts} hosts') and docs/benchmarks-{a.hosts}hosts.png")
    log(f"bench done in {r['duration_s'] / 60:.1f} min; results in {results.relative_to(ROOT)}")
    return 0


