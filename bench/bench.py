#!/usr/bin/env python3
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
             by bench/builtin_twin.py): first run on fresh hosts (lab down + up before each) and
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
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LAB = ROOT / "lab" / "lab"
# The lab, the playbook runs and SSH to the hosts are the shared driver's (scripts/labdriver.py).
sys.path.insert(0, str(ROOT / "scripts"))
import labdriver  # noqa: E402
import modules as workspace_modules  # noqa: E402  (scripts/modules.py: the one module list)

INVENTORY = labdriver.LAB_INVENTORY
VENV_BIN = ROOT / ".venv" / "bin"
ANSIBLE_PLAYBOOK = VENV_BIN / "ansible-playbook"
# BENCH_LIBRARY: another directory of module binaries (a harness test with stand-ins); the
# report names it, and Ansible gets it as ANSIBLE_LIBRARY.
LIBRARY = Path(os.environ.get("BENCH_LIBRARY") or ROOT / "library")
DEPLOY_OURS = ROOT / "playbooks" / "deploy-observability-stack.yml"
TWIN = BENCH / "twin"                      # generated, git-ignored (bench/builtin_twin.py)
DEPLOY_BUILTIN = TWIN / "deploy-builtin.yml"
DOC = ROOT / "docs" / "benchmarks.md"
# Every module of the Cargo workspace: the deploy runs most of them, the per-task series all but
# apt_lockdown (a bracket, not a no-op task; its cost is in the deploy and on-host series).
MODULES = workspace_modules.modules(str(ROOT))
MIB = 1024 * 1024

# What the per-task series run. Each entry: our task (one), its builtin equivalent (one or more
# tasks that do the same job as a user would write them), and the setup that makes them no-ops.
# `{kernel}` is the running kernel release (lab hosts share the controller's kernel).
BENCH_ACCOUNT = {
    "name": "homeopsbench", "group": "homeopsbench", "system": True,
    "home": "/var/lib/homeopsbench", "create_home": False,
    "shell": "/usr/sbin/nologin", "comment": "HomeOps bench account",
}
GREP_FILE = "/etc/homeops-bench/grep-target.conf"
GREP_PATTERN = r"^\s*type:\s*loki\s*$"
# The files series converges this file (already as wanted: a no-op).
FILES_ENTRY = {"path": "/etc/homeops-bench/files-target.conf", "owner": "root", "group": "root", "mode": "0644",
               "content": "# HomeOps bench: the files series converges this file.\nkey = value\n"}
# The same file as ansible.builtin.copy arguments (the builtin series, and the setup that makes
# both series no-ops).
FILES_COPY = {"dest": FILES_ENTRY["path"], **{k: v for k, v in FILES_ENTRY.items() if k != "path"}}
# The units and http_ready series: a LAB-ONLY unit serving /etc/homeops-bench on the host's
# loopback (python3's http.server; the bench's lab hosts keep python3).
BENCH_UNIT = "homeops-bench-http.service"
BENCH_PORT = 18123
BENCH_URL = f"http://127.0.0.1:{BENCH_PORT}/"


def per_task_specs(alloy_version: str, kernel: str) -> list[dict]:
    apt_args = {"name": f"alloy={alloy_version}", "state": "present",
                "update_cache": True, "cache_valid_time": 3600}
    acc = BENCH_ACCOUNT
    return [
        {
            "module": "system_account",
            "ours": [{"system_account": dict(acc)}],
            "builtin": [
                {"ansible.builtin.group": {"name": acc["group"], "system": True}},
                {"ansible.builtin.user": {k: acc[k] for k in
                                          ("name", "group", "system", "home", "create_home", "shell", "comment")}},
            ],
            "builtin_label": "builtin.group + builtin.user",
            "onhost_args": dict(acc),
        },
        {
            "module": "apt_packages",
            "ours": [{"apt_packages": dict(apt_args)}],
            "builtin": [{"ansible.builtin.apt": dict(apt_args)}],
            "builtin_label": "builtin.apt",
            "onhost_args": dict(apt_args),
        },
        {
            "module": "kernel_headers",
            "ours": [{"kernel_headers": {}}],
            "builtin": [{"ansible.builtin.apt": {"name": f"linux-headers-{kernel}", "state": "present"}}],
            "builtin_label": f"builtin.apt linux-headers-{kernel}",
            "onhost_args": {},
        },
        {
            "module": "safe_grep",
            "ours": [{"safe_grep": {"path": GREP_FILE, "pattern": GREP_PATTERN,
                                    "state": "present", "min_count": 1}}],
            "builtin": [{"ansible.builtin.command": {"argv": ["grep", "-c", "-E", GREP_PATTERN, GREP_FILE]},
                         "changed_when": False}],
            "builtin_label": "builtin.command: grep -c",
            "onhost_args": {"path": GREP_FILE, "pattern": GREP_PATTERN, "state": "present", "min_count": 1},
        },
        {
            "module": "files",
            "ours": [{"files": {"files": [dict(FILES_ENTRY)]}}],
            "builtin": [{"ansible.builtin.copy": FILES_COPY}],
            "builtin_label": "builtin.copy with content",
            "onhost_args": {"files": [dict(FILES_ENTRY)]},
        },
        {
            "module": "units",
            "ours": [{"units": {"units": [{"name": BENCH_UNIT, "enabled": True, "state": "started"}]}}],
            "builtin": [{"ansible.builtin.systemd_service": {"name": BENCH_UNIT, "enabled": True,
                                                             "state": "started"}}],
            "builtin_label": "builtin.systemd_service enabled, started",
            "onhost_args": {"units": [{"name": BENCH_UNIT, "enabled": True, "state": "started"}]},
        },
        {
            "module": "http_ready",
            "ours": [{"http_ready": {"url": BENCH_URL, "status_code": [200], "timeout": 10}}],
            "builtin": [{"ansible.builtin.uri": {"url": BENCH_URL, "status_code": [200]}}],
            "builtin_label": "builtin.uri status 200",
            "onhost_args": {"url": BENCH_URL, "status_code": [200], "timeout": 10},
        },
        {
            "module": "host_facts",
            "ours": [{"host_facts": {"paths": [GREP_FILE]}}],
            "builtin": [{"ansible.builtin.stat": {"path": GREP_FILE, "get_checksum": False}}],
            "builtin_label": "builtin.stat without checksum",
            "onhost_args": {"paths": [GREP_FILE]},
        },
    ]


def setup_tasks(alloy_version: str, kernel: str) -> list[dict]:
    """One play that makes every per-task series a no-op. Grafana's repository first (it runs no
    dpkg), then the kernel headers: on ws-01-linux every dpkg run fails (the DKMS-style hook) until
    they are installed."""
    acc = BENCH_ACCOUNT
    return [
        # Lab hosts boot without Grafana's repository, like a fresh host (the apt series' alloy
        # package comes from it): the deploy's own tasks add it.
        {"name": "Add Grafana's apt repository the way the deploy does",
         "ansible.builtin.include_role": {"name": "homeops.observability.common",
                                          "tasks_from": "grafana_apt_repository"}},
        {"name": "Install the headers of the running kernel",
         "ansible.builtin.apt": {"name": f"linux-headers-{kernel}", "state": "present",
                                 "update_cache": True}},
        {"name": "Install the package the apt series checks",
         "ansible.builtin.apt": {"name": f"alloy={alloy_version}", "state": "present"}},
        {"name": "Create the group of the bench account",
         "ansible.builtin.group": {"name": acc["group"], "system": True}},
        {"name": "Create the bench account",
         "ansible.builtin.user": {k: acc[k] for k in
                                  ("name", "group", "system", "home", "create_home", "shell", "comment")}},
        {"name": "Create the directory of the grep target",
         "ansible.builtin.file": {"path": str(Path(GREP_FILE).parent), "state": "directory", "mode": "0755"}},
        {"name": "Write the grep target",
         "ansible.builtin.copy": {"dest": GREP_FILE, "mode": "0640",
                                  "content": "apiVersion: 1\ndatasources:\n  - name: Loki\n    type: loki\n"}},
        {"name": "Write the file the files series converges",
         "ansible.builtin.copy": FILES_COPY},
        {"name": "Write the LAB-ONLY unit the units and http_ready series use",
         "ansible.builtin.copy": {"dest": f"/etc/systemd/system/{BENCH_UNIT}", "mode": "0644",
                                  "content": "# LAB ONLY (make bench): serves /etc/homeops-bench on loopback.\n"
                                             "[Unit]\nDescription=HomeOps bench HTTP server (LAB ONLY)\n"
                                             "[Service]\nExecStart=/usr/bin/python3 -m http.server "
                                             f"{BENCH_PORT} --bind 127.0.0.1 --directory /etc/homeops-bench\n"
                                             "[Install]\nWantedBy=multi-user.target\n"}},
        {"name": "Enable and start the LAB-ONLY unit",
         "ansible.builtin.systemd_service": {"name": BENCH_UNIT, "enabled": True, "state": "started",
                                             "daemon_reload": True}},
        {"name": "Wait until the LAB-ONLY unit answers",
         "ansible.builtin.uri": {"url": BENCH_URL, "status_code": [200]},
         "register": "bench_http", "until": "bench_http.status == 200", "retries": 20, "delay": 1},
    ]


# A failed lab command stops the bench as a failed series does; LabChanged is the driver's word
# for somebody restarting the lab under us.
BenchError = labdriver.DriverError
Interference = labdriver.LabChanged


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return sum(f) - idle, sum(f)


# ---- the lab ------------------------------------------------------------------------------

Lab = labdriver.Lab


def new_lab(hosts: int, results: Path) -> Lab:
    """This clone's lab (labdriver.Lab: it notices when somebody else restarted it), every lab
    command's output appended to results/lab.log."""
    return Lab(hosts=hosts, log_file=results / "lab.log")


def inventory_hosts() -> dict:
    return Lab().hostvars()


# ---- ansible ------------------------------------------------------------------------------

class Runner:
    """A measured playbook run: the driver's runner (outputs numbered in results/out/, one
    ansible.log for the whole bench), timed here with the controller's and the machine's CPU,
    and refused when the lab under it changed."""

    def __init__(self, results: Path, lab: Lab):
        self.results = results
        self.lab = lab
        # The run's snapshot of the module binaries (see main), never a later build.
        self.ansible = labdriver.Runner(results / "out", INVENTORY, env={"ANSIBLE_LIBRARY": str(LIBRARY)},
                                        ansible_log=results / "ansible.log", numbered=True)
        # Each series sets the fast path itself.
        self.ansible.env.pop("HOMEOPS_FASTPATH", None)

    def play(self, playbook: Path, name: str, env: dict | None = None, args: list[str] | None = None,
             expect_changed: bool | None = False) -> dict:
        """Runs ansible-playbook once and returns wall time, controller CPU, machine CPU, recap."""
        self.lab.check()
        logf = self.ansible.ansible_log
        log0 = logf.stat().st_size if logf.exists() else 0
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy0, tot0 = cpu_jiffies()
        t0 = time.perf_counter()
        p = self.ansible.play(name, playbook, *(args or []), env=env)
        wall = time.perf_counter() - t0
        busy1, tot1 = cpu_jiffies()
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.lab.check()
        if p.rc != 0:
            # A lab brought down under us fails the play before lab.env is gone: look again.
            time.sleep(3)
            self.lab.check()
            raise BenchError(f"{name}: ansible-playbook exited {p.rc} (output: {p.out}):\n"
                             + "\n".join(p.text.splitlines()[-30:]))
        changed = sum(p.changed().values())
        if expect_changed is False and changed:
            raise BenchError(f"{name}: expected a no-op, but {changed} task(s) reported changed "
                             f"(output: {p.out}): the setup does not match the tasks")
        hz = os.sysconf("SC_CLK_TCK")
        return {
            "wall": wall,
            "ctrl_cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
            "machine_busy_cores": ((busy1 - busy0) / hz) / wall if wall > 0 else 0.0,
            "machine_busy_frac": (busy1 - busy0) / (tot1 - tot0) if tot1 > tot0 else 0.0,
            "changed": changed, "hosts": len(p.recap), "out": str(p.out.relative_to(ROOT)),
            "log_slice": [log0, logf.stat().st_size if logf.exists() else 0],
        }


def write_yaml(path: Path, data) -> Path:
    import yaml
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n" + yaml.safe_dump(data, sort_keys=False, width=120))
    return path


def play_of(tasks: list[dict], name: str, repeat: int = 1) -> list[dict]:
    body = []
    for i in range(repeat):
        for t in tasks:
            t = dict(t)
            t.setdefault("name", f"{name} {i + 1}")
            body.append(t)
    return [{"name": name, "hosts": "all", "gather_facts": False, "tasks": body}]


# ---- series -------------------------------------------------------------------------------

def median(xs):
    return statistics.median(xs) if xs else float("nan")


def bench_sizes() -> dict:
    out = {}
    for m in MODULES:
        p = LIBRARY / m
        if p.is_file():
            size = p.stat().st_size
            out[m] = {"bytes": size, "ok": size <= MIB}
    return out


def bench_per_task(runner: Runner, specs: list[dict], pdir: Path, n: int, rounds: int, prepare) -> dict:
    log(f"per-task: {rounds} rounds + 1 warm-up, N={n}")
    prepare()

    series = []   # (key, playbook, env)
    series.append(("empty", write_yaml(pdir / "empty.yml", play_of([], "empty play")), {}))
    series.append(("raw", write_yaml(pdir / "raw.yml", play_of(
        [{"ansible.builtin.raw": "/bin/true", "changed_when": False}], "raw /bin/true", n)), {}))
    for s in specs:
        m = s["module"]
        ours = write_yaml(pdir / f"{m}-ours.yml", play_of(s["ours"], f"{m} (ours)", n))
        series.append((f"{m}.fast", ours, {}))
        series.append((f"{m}.standard", ours, {"HOMEOPS_FASTPATH": "0"}))
        series.append((f"{m}.builtin", write_yaml(pdir / f"{m}-builtin.yml",
                                                  play_of(s["builtin"], f"{m} (builtin)", n)), {}))

    runs: dict[str, list[dict]] = {k: [] for k, _, _ in series}
    for r in range(rounds + 1):
        label = "warm-up" if r == 0 else f"round {r}/{rounds}"
        la = loadavg()
        for i, (key, pb, env) in enumerate(series):
            res = runner.play(pb, key.replace(".", "-"), env=env)
            res["load1"] = la[0]
            log(f"per-task {label} [{i + 1}/{len(series)}] {key:<28} {res['wall']:6.2f} s")
            if r:
                runs[key].append(res)

    def per_task(key, k):
        return (runs[key][k]["wall"] - runs["empty"][k]["wall"]) / n

    out = {"n": n, "rounds": rounds, "runs": runs, "modules": {}}
    out["empty_s"] = median([x["wall"] for x in runs["empty"]])
    raw = [per_task("raw", k) for k in range(rounds)]
    out["raw_ms"] = median(raw) * 1000
    for s in specs:
        m = s["module"]
        fast = [per_task(f"{m}.fast", k) for k in range(rounds)]
        std = [per_task(f"{m}.standard", k) for k in range(rounds)]
        blt = [per_task(f"{m}.builtin", k) for k in range(rounds)]
        out["modules"][m] = {
            "builtin_label": s["builtin_label"],
            "builtin_tasks": len(s["builtin"]),
            "fast_ms": median(fast) * 1000, "standard_ms": median(std) * 1000,
            "builtin_ms": median(blt) * 1000,
            "fast_over_raw": median([f / r for f, r in zip(fast, raw)]),
            "builtin_over_fast": median([b / f for b, f in zip(blt, fast)]),
            "standard_over_fast": median([s_ / f for s_, f in zip(std, fast)]),
            "builtin_over_standard": median([b / s_ for b, s_ in zip(blt, std)]),
            "fast_ms_all": [x * 1000 for x in fast], "raw_ms_all": [x * 1000 for x in raw],
            "ctrl_cpu_fast_ms": median([(runs[f"{m}.fast"][k]["ctrl_cpu"] - runs["empty"][k]["ctrl_cpu"]) / n
                                        for k in range(rounds)]) * 1000,
            "ctrl_cpu_builtin_ms": median([(runs[f"{m}.builtin"][k]["ctrl_cpu"] - runs["empty"][k]["ctrl_cpu"]) / n
                                           for k in range(rounds)]) * 1000,
        }
    out["ctrl_cpu_raw_ms"] = median([(runs["raw"][k]["ctrl_cpu"] - runs["empty"][k]["ctrl_cpu"]) / n
                                     for k in range(rounds)]) * 1000
    out["machine_busy_cores"] = median([x["machine_busy_cores"] for v in runs.values() for x in v])
    return out


SSH_EXEC = re.compile(r"SSH: EXEC (\S+)")


def bench_ssh_ops(runner: Runner, specs: list[dict], pdir: Path, host: str) -> dict:
    """SSH commands per task, counted from -vvv (`SSH: EXEC` lines, ssh and sftp) on one host: a
    play with the task once and one with it twice; the difference is the steady cost per task,
    the rest is once per play (e.g. Python interpreter discovery for the builtins)."""
    log(f"ssh-ops: each kind of task once and twice at -vvv on {host}")
    out = {}
    kinds = [("raw", [{"ansible.builtin.raw": "/bin/true", "changed_when": False}], {})]
    for s_ in specs:
        m = s_["module"]
        kinds.append((f"{m}.fast", s_["ours"], {}))
        kinds.append((f"{m}.standard", s_["ours"], {"HOMEOPS_FASTPATH": "0"}))
        kinds.append((f"{m}.builtin", s_["builtin"], {}))
    for key, tasks, env in kinds:
        counts = []
        for rep in (1, 2):
            name = f"sshops-{key.replace('.', '-')}-x{rep}"
            pb = write_yaml(pdir / f"{name}.yml", play_of(tasks, key, rep))
            res = runner.play(pb, name, env=env, args=["-vvv", "--limit", host])
            counts.append(SSH_EXEC.findall((ROOT / res["out"]).read_text(errors="replace")))
        per = len(counts[1]) - len(counts[0])
        progs = sorted(set(counts[1]))
        out[key] = {"per_task": per, "once_per_play": len(counts[0]) - per,
                    "per_task_by_program": {p: counts[1].count(p) - counts[0].count(p) for p in progs}}
        log(f"ssh-ops {key:<28} {per} SSH command(s) per task {out[key]['per_task_by_program']}, "
            f"+{out[key]['once_per_play']} once per play")
    return out


def bench_on_host(specs: list[dict], hosts: dict, host: str, loops: int, results: Path, lab: Lab) -> dict:
    """Each binary run directly on one host, `loops` times, timed inside the host."""
    sys.path.insert(0, str(ROOT / "action_plugins"))
    import homeops_fastpath as fp  # the plugin's own remote script, so we time exactly that

    log(f"on-host: each module {loops}x in a loop on {host}, timed inside the host")
    hv = hosts[host]

    def on_host(script: str, data: bytes, **kw) -> subprocess.CompletedProcess:
        """script as root on the host, logged in as the inventory's user (through sudo)."""
        cmd, stdin = labdriver.ssh_command(hv, script, data)
        return subprocess.run(cmd, input=stdin, **kw)
    remote = "/tmp/homeops-bench"
    stage = results / "onhost"
    stage.mkdir(exist_ok=True)
    common = {"_ansible_check_mode": False, "_ansible_diff": False, "_ansible_no_log": False,
              "_ansible_verbosity": 0, "_ansible_version": "2.19.14"}
    names = []
    for s in specs:
        m = s["module"]
        (stage / f"{m}.args").write_text(json.dumps(dict(s["onhost_args"], _ansible_module_name=m, **common)))
        names.append(m)
    if "apt_lockdown" not in names:
        (stage / "apt_lockdown.args").write_text(json.dumps(dict(state="released", _ansible_module_name="apt_lockdown", **common)))
        names.append("apt_lockdown")
    shas = {m: hashlib.sha256((LIBRARY / m).read_bytes()).hexdigest() for m in names}
    # The fast path's hot script (cached binary, args on stdin): what each fast task runs remotely.
    script = fp.render(fp._RUN, shas["system_account"])
    (stage / "fastpath.sh").write_text(script)
    # One tar over one ssh: binaries, args, script.
    tar = subprocess.run(["tar", "-C", str(LIBRARY), "-cf", "-", *names], stdout=subprocess.PIPE, check=True).stdout
    tar2 = subprocess.run(["tar", "-C", str(stage), "-cf", "-", *[f"{m}.args" for m in names], "fastpath.sh"],
                          stdout=subprocess.PIPE, check=True).stdout
    on_host(f"rm -rf {remote} && mkdir -p {remote} && tar -C {remote} -xf -", tar, check=True)
    on_host(f"tar -C {remote} -xf -", tar2, check=True)

    body = f"""
set -u
cd {remote}
L={loops}
t() {{ s=$(date +%s%N); i=0; while [ $i -lt $L ]; do "$@" >/dev/null 2>&1 </dev/null; i=$((i+1)); done; e=$(date +%s%N); echo "$((e-s))"; }}
echo "floor_true $(t /bin/true)"
echo "floor_python3 $(t python3 -c pass)"
"""
    for m in names:
        body += f'./{m} {m}.args > {m}.json 2>&1 </dev/null; echo "rc_{m} $?"\n'
        body += f'echo "run_{m} $(t ./{m} {m}.args)"\n'
    # The fast path's remote script for system_account, args on stdin, as the plugin sends it.
    body += f"""
s=$(date +%s%N); i=0; while [ $i -lt $L ]; do /bin/sh -c "$(cat fastpath.sh)" < system_account.args >/dev/null 2>&1; i=$((i+1)); done; e=$(date +%s%N)
echo "fastpath_script_system_account $((e-s))"
/bin/sh -c "$(cat fastpath.sh)" < system_account.args > fastpath.json 2>&1; echo "rc_fastpath $?"
"""
    # printf, not echo: dash's echo would turn the JSON's backslash escapes into other text.
    for m in names:
        body += f'printf "json_{m} %s\\n" "$(tr -d "\\n" < {m}.json)"\n'
    body += 'printf "json_fastpath %s\\n" "$(tr -d "\\n" < fastpath.json)"\n'
    body += f"cd / && rm -rf {remote}\n"
    lab.check()
    p = on_host("/bin/sh -s", body.encode(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    lab.check()
    text = p.stdout.decode(errors="replace")
    (results / "onhost.out").write_text(text)
    vals, js, rcs = {}, {}, {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k.startswith("json_"):
            js[k[5:]] = v
        elif k.startswith("rc_"):
            rcs[k[3:]] = v.strip()
        elif v.strip().isdigit():
            vals[k] = int(v) / loops / 1e6   # ms per run
    out = {"host": host, "loops": loops, "floor_true_ms": vals.get("floor_true"),
           "floor_python3_ms": vals.get("floor_python3"),
           "fastpath_script_ms": vals.get("fastpath_script_system_account"), "modules": {}}
    for m in names + ["fastpath"]:
        try:
            j = json.loads(js.get(m, ""))
        except ValueError:
            j = {"failed": True, "msg": "not JSON: " + js.get(m, "")[:200]}
        entry = {"rc": rcs.get(m), "changed": j.get("changed"), "failed": bool(j.get("failed")),
                 "msg": (j.get("msg") or "")[:160]}
        if m != "fastpath":
            entry["ms"] = vals.get(f"run_{m}")
            out["modules"][m] = entry
        else:
            out["fastpath_result"] = entry
        log(f"on-host {m:<16} {entry.get('ms', out['fastpath_script_ms']) or float('nan'):7.2f} ms  "
            f"changed={entry['changed']} failed={entry['failed']} {entry['msg'][:60]}")
    return out


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+) p=\d+ .*?\| (.*)$")
TASK_HEAD = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(.*)\] \**$")


def task_times(logfile: Path, start: int, end: int) -> list[tuple[str, float]]:
    """(task name, seconds from its header to the next) from the slice of ansible.log one
    run wrote: what each task cost on the wall clock, all hosts together."""
    with open(logfile, "rb") as f:
        f.seek(start)
        text = f.read(end - start).decode(errors="replace")
    marks = []
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if not m:
            continue
        t = dt.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S").timestamp() + int(m[2]) / 1000
        h = TASK_HEAD.match(m[3].strip())
        marks.append((t, h[1] if h else None, m[3].startswith(("PLAY RECAP", "PLAY ["))))
    out = []
    for i, (t, name, _) in enumerate(marks):
        if name is None:
            continue
        nxt = next((t2 for t2, n2, play in marks[i + 1:] if n2 is not None or play), marks[-1][0])
        out.append((name, nxt - t))
    return out


def our_task_names() -> tuple[set[str], set[str]]:
    """Names of the deploy's tasks (playbook and roles) that use our modules, and of their
    builtin replacements in the twin (from bench/builtin_twin.py, the same code that writes the
    twin)."""
    sys.path.insert(0, str(BENCH))
    import builtin_twin
    return builtin_twin.task_names()


def name_matcher(names: set[str]):
    """A test for task headers of ansible.log against task names: a role's task is logged as
    `<role> : <name>`, and a templated name (`Set the apt lockdown to {{ apt_lockdown_state }}`)
    with its value, so `{{ ... }}` matches anything."""
    pats = [re.compile(".*".join(re.escape(part) for part in re.split(r"\{\{.*?\}\}", n)) + r"\Z")
            for n in names if n]

    def match(header: str) -> bool:
        name = header.split(" : ", 1)[1] if " : " in header else header
        return any(p.match(name) for p in pats)
    return match


def attribute(runner: Runner, res: dict, names: set[str]) -> dict:
    times = task_times(runner.results / "ansible.log", *res["log_slice"])
    ours = name_matcher(names)
    mod = sum(d for n, d in times if ours(n))
    return {"module_tasks_s": mod, "other_tasks_s": sum(d for _, d in times) - mod,
            "slowest": sorted(((round(d, 2), n) for n, d in times), reverse=True)[:6]}


def bench_deploy(runner: Runner, lab: Lab, runs: int, guarded, twin: Path = DEPLOY_BUILTIN) -> dict:
    log(f"deploy: {runs} run(s) per variant; each: lab down + up (fresh hosts), first run, idempotent re-run")
    variants = [("ours", DEPLOY_OURS), ("builtin", twin)]
    names = dict(zip(("ours", "builtin"), our_task_names()))
    data = {v: {"first": [], "again": []} for v, _ in variants}
    for k in range(runs):
        order = variants if k % 2 == 0 else variants[::-1]   # neither variant always goes first
        for v, pb in order:
            def one(v=v, pb=pb):
                t0 = time.perf_counter()
                lab.cycle()
                log(f"deploy run {k + 1}/{runs} {v}: fresh lab in {time.perf_counter() - t0:.1f} s")
                first = runner.play(pb, f"deploy-{v}-first", expect_changed=None)
                first["load1"] = loadavg()[0]
                log(f"deploy run {k + 1}/{runs} {v}: first run {first['wall']:6.2f} s (changed {first['changed']})")
                again = runner.play(pb, f"deploy-{v}-again", expect_changed=False)
                again["load1"] = loadavg()[0]
                log(f"deploy run {k + 1}/{runs} {v}: idempotent re-run {again['wall']:6.2f} s (changed 0)")
                for res in (first, again):
                    res.update(attribute(runner, res, names[v]))
                return first, again
            first, again = guarded(f"deploy run {k + 1} {v}", one)
            data[v]["first"].append(first)
            data[v]["again"].append(again)
    out = {"runs": runs, "raw": data}
    for v, _ in variants:
        out[f"{v}_first_s"] = median([x["wall"] for x in data[v]["first"]])
        out[f"{v}_again_s"] = median([x["wall"] for x in data[v]["again"]])
        out[f"{v}_again_ctrl_cpu_s"] = median([x["ctrl_cpu"] for x in data[v]["again"]])
        for phase in ("first", "again"):
            out[f"{v}_{phase}_module_tasks_s"] = median([x["module_tasks_s"] for x in data[v][phase]])
            out[f"{v}_{phase}_other_tasks_s"] = median([x["other_tasks_s"] for x in data[v][phase]])
    out["first_ratio"] = median([b["wall"] / o["wall"] for b, o in zip(data["builtin"]["first"], data["ours"]["first"])])
    out["again_ratio"] = median([b["wall"] / o["wall"] for b, o in zip(data["builtin"]["again"], data["ours"]["again"])])
    return out


# ---- environment --------------------------------------------------------------------------

def cmd_out(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_info() -> dict:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    osrel = "?"
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            osrel = line.split("=", 1)[1].strip('"')
    return {
        "cpu": cpu, "cores": os.cpu_count(), "mem_mib": mem, "os": osrel, "kernel": platform.release(),
        "ansible_core": cmd_out([str(VENV_BIN / "ansible"), "--version"]).splitlines()[0],
        "python": platform.python_version(),
        "rustc": cmd_out(["rustc", "--version"]),
        "openssh": cmd_out(["ssh", "-V"]),
        "commit": cmd_out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "dirty": bool(cmd_out(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])),
    }


def wait_for_quiet(max_wait: int, lab: labdriver.Lab, include_ssh: bool = False) -> None:
    """Waits until no Ansible or lab run of others goes on anywhere on this machine (they share
    the CPUs; our lab is our own); include_ssh: nobody used a lab over SSH in the last minute
    and this clone's lab was not just started by somebody else either."""
    t0 = time.time()
    while True:
        others = labdriver.others_using(clone_only=False, include_ssh=include_ssh, lab=lab)
        if not others:
            return
        if time.time() - t0 > max_wait:
            if os.environ.get("BENCH_UNDER_LOAD") == "1":   # a shared machine: go on, the load is recorded
                log(f"BENCH_UNDER_LOAD=1: going on after {max_wait} s beside {len(others)} other run(s)")
                return
            raise BenchError("other Ansible/lab runs are still going after "
                             f"{max_wait} s; not starting (they would skew the numbers):\n  " + "\n  ".join(others))
        log(f"waiting for other Ansible/lab runs to finish ({len(others)}): {others[0]}")
        time.sleep(15)


# ---- report -------------------------------------------------------------------------------

def fmt(x, d=1):
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    return f"{x:.{d}f}"


def mark(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def render_section(r: dict, prev: dict | None) -> str:
    m, pt, dep, oh, sz, ops = r["machine"], r.get("per_task"), r.get("deploy"), r.get("on_host"), r["sizes"], r.get("ssh_ops")
    h = r["hosts"]
    L = []
    L.append(f"## {h} hosts: run of {r['date']}")
    L.append("")
    L.append("| | |")
    L.append("|---|---|")
    L.append(f"| machine | {m['cpu']}, {m['cores']} cores, {m['mem_mib'] // 1024} GiB; {m['os']}, kernel {m['kernel']} |")
    L.append(f"| versions | {m['ansible_core']}, Python {m['python']}, {m['rustc']}, {m['openssh']} |")
    L.append(f"| commit | `{m['commit']}`{' (with uncommitted changes)' if m['dirty'] else ''} |")
    if r.get("sha256"):
        L.append("| module binaries | " + ", ".join(f"`{k}` {v}" for k, v in r["sha256"].items())
                 + " (sha256 prefixes; the run used one snapshot of `library/`) |")
    if r.get("library") != str(ROOT / "library"):
        L.append(f"| module binaries | **{r['library']}** (BENCH_LIBRARY: not the built modules) |")
    L.append(f"| lab | {h} hosts (systemd-nspawn on this machine, sharing its {m['cores']} cores), forks 10, pipelining on, ControlPersist 60 s |")
    L.append(f"| load (1/5/15 min) | start {' '.join(fmt(x, 2) for x in r['load_start'])}, end {' '.join(fmt(x, 2) for x in r['load_end'])}; "
             f"other sessions share this machine |")
    L.append(f"| took | {fmt(r['duration_s'] / 60, 1)} min, {r['lab_cycles']} lab up(s) |")
    if r.get("merged"):
        L.append(f"| merged | {'; '.join(r['merged'])} |")
    if r.get("interference"):
        L.append(f"| interruptions | {len(r['interference'])}: somebody else restarted the lab; the series was run again on a fresh lab |")
    L.append("")
    if pt:
        L.append(f"### Per task: {pt['n']} identical no-op tasks per play, median of {pt['rounds']} rounds")
        L.append("")
        L.append(f"Per-task time = (play wall time - empty play) / {pt['n']}, one task on all {h} hosts at once. "
                 f"Empty play: {fmt(pt['empty_s'], 2)} s. Floor `raw: /bin/true`: **{fmt(pt['raw_ms'])} ms**/task. "
                 "Ratios are per round (same round), then the median.")
        L.append("")
        L.append("| module | ours, fast path (ms) | ours, standard transfer (ms) | builtin (ms) | builtin equivalent | fast / raw floor | builtin / fast | standard / fast |")
        L.append("|---|---:|---:|---:|---|---:|---:|---:|")
        for name, x in pt["modules"].items():
            L.append(f"| `{name}` | {fmt(x['fast_ms'])} | {fmt(x['standard_ms'])} | {fmt(x['builtin_ms'])} | "
                     f"{x['builtin_label']}{' (' + str(x['builtin_tasks']) + ' tasks)' if x['builtin_tasks'] > 1 else ''} | "
                     f"{fmt(x['fast_over_raw'], 2)}x | {fmt(x['builtin_over_fast'], 2)}x | {fmt(x['standard_over_fast'], 2)}x |")
        L.append("")
    if dep:
        L.append(f"### Whole deploy: median of {dep['runs']} run(s), fresh lab (down + up) before each first run")
        L.append("")
        L.append("| playbook | first run, fresh hosts (s) | idempotent re-run (s) | re-run controller CPU (s) |")
        L.append("|---|---:|---:|---:|")
        L.append(f"| `playbooks/deploy-observability-stack.yml` (ours) | {fmt(dep['ours_first_s'], 2)} | {fmt(dep['ours_again_s'], 2)} | {fmt(dep['ours_again_ctrl_cpu_s'], 2)} |")
        L.append(f"| `bench/twin/deploy-builtin.yml` (builtin-only twin, generated) | {fmt(dep['builtin_first_s'], 2)} | {fmt(dep['builtin_again_s'], 2)} | {fmt(dep['builtin_again_ctrl_cpu_s'], 2)} |")
        L.append(f"| **builtin / ours** (same run) | **{fmt(dep['first_ratio'], 2)}x** | **{fmt(dep['again_ratio'], 2)}x** | |")
        L.append("")
        if "ours_again_module_tasks_s" in dep:
            L.append("Where the time goes (task wall time from `ansible.log`, all hosts together, medians): the tasks of our "
                     "modules in the real deploy, their builtin replacements in the twin, and every other task (the same in both).")
            L.append("")
            L.append("| run | our module tasks (s) | their builtin replacements (s) | other tasks, ours / twin (s) | best ratio if ours took 0 s |")
            L.append("|---|---:|---:|---:|---:|")
            for ph, lbl in (("first", "first run"), ("again", "idempotent re-run")):
                om, bm = dep[f"ours_{ph}_module_tasks_s"], dep[f"builtin_{ph}_module_tasks_s"]
                oo, bo = dep[f"ours_{ph}_other_tasks_s"], dep[f"builtin_{ph}_other_tasks_s"]
                L.append(f"| {lbl} | {fmt(om, 2)} | {fmt(bm, 2)} | {fmt(oo, 2)} / {fmt(bo, 2)} | "
                         f"{fmt((bm + bo) / oo if oo else None, 2)}x |")
            L.append("")
    if oh:
        L.append(f"### On the host: each binary run directly on `{oh['host']}`, {oh['loops']}x in a loop, timed inside the host")
        L.append("")
        L.append(f"Floors: `/bin/true` {fmt(oh['floor_true_ms'], 2)} ms, `python3 -c pass` {fmt(oh['floor_python3_ms'], 2)} ms (the interpreter start every builtin task pays before its module code). "
                 f"The fast path's whole remote script (find the cache, check sha256, exec `system_account` with args on stdin): **{fmt(oh['fastpath_script_ms'], 2)} ms**.")
        L.append("")
        L.append("| module | run time (ms) | result |")
        L.append("|---|---:|---|")
        for name, x in oh["modules"].items():
            res = "failed: " + x["msg"] if x["failed"] else ("changed" if x["changed"] else "no change")
            if x["msg"].startswith("harness"):
                res += " (" + x["msg"] + ")"
            L.append(f"| `{name}` | {fmt(x['ms'], 2)} | {res} |")
        L.append("")
    if ops:
        L.append("### SSH commands per task (one host, `SSH: EXEC` lines at -vvv: a play with the task twice minus once)")
        L.append("")
        L.append("| task | per task | once per play |")
        L.append("|---|---:|---:|")
        for k, v in ops.items():
            progs = ", ".join(f"{p} {c}" for p, c in v["per_task_by_program"].items() if c)
            L.append(f"| {k} | {v['per_task']}{' (' + progs + ')' if progs else ''} | {v['once_per_play']} |")
        L.append("")
    L.append("### Binary sizes")
    L.append("")
    L.append("| module | bytes | MiB | <= 1 MiB |")
    L.append("|---|---:|---:|---|")
    for name, x in sz.items():
        L.append(f"| `{name}` | {x['bytes']} | {fmt(x['bytes'] / MIB, 2)} | {'yes' if x['ok'] else '**no**'} |")
    L.append("")
    L.append(f"![{h} hosts](benchmarks-{h}hosts.png)")
    L.append("")
    L.extend(render_targets(r, prev))
    L.append("")
    L.append("<!-- bench-data " + json.dumps(summary_for_doc(r), separators=(",", ":")) + " -->")
    return "\n".join(L)


def summary_for_doc(r: dict) -> dict:
    """The numbers a later run (other host count) compares against, kept in the doc itself."""
    pt = r.get("per_task") or {}
    return {
        "hosts": r["hosts"], "date": r["date"],
        "raw_ms": pt.get("raw_ms"), "ctrl_cpu_raw_ms": pt.get("ctrl_cpu_raw_ms"),
        "modules": {k: {kk: v[kk] for kk in ("fast_ms", "standard_ms", "builtin_ms", "ctrl_cpu_fast_ms",
                                             "ctrl_cpu_builtin_ms")} for k, v in pt.get("modules", {}).items()},
        "deploy": {k: v for k, v in (r.get("deploy") or {}).items() if k.endswith("_s") or k.endswith("_ratio")},
    }


def render_targets(r: dict, prev: dict | None) -> list[str]:
    pt, dep, oh, ops = r.get("per_task"), r.get("deploy"), r.get("on_host"), r.get("ssh_ops")
    L = ["### Against the targets (measured in this run)", ""]
    L.append("| target | measured | |")
    L.append("|---|---|---|")
    if pt:
        for name, x in pt["modules"].items():
            L.append(f"| `{name}` task <= 1.3x the raw floor | {fmt(x['fast_over_raw'], 2)}x ({fmt(x['fast_ms'])} vs {fmt(pt['raw_ms'])} ms) | {mark(x['fast_over_raw'] <= 1.3)} |")
        for name, x in pt["modules"].items():
            L.append(f"| `{name}` >= 4x faster than {x['builtin_label']} | {fmt(x['builtin_over_fast'], 2)}x | {mark(x['builtin_over_fast'] >= 4)} |")
    if dep:
        L.append(f"| first deploy (fresh hosts) >= 2x faster than builtin-only | {fmt(dep['first_ratio'], 2)}x ({fmt(dep['ours_first_s'], 2)} vs {fmt(dep['builtin_first_s'], 2)} s) | {mark(dep['first_ratio'] >= 2)} |")
        L.append(f"| idempotent re-deploy >= 3x faster than builtin-only | {fmt(dep['again_ratio'], 2)}x ({fmt(dep['ours_again_s'], 2)} vs {fmt(dep['builtin_again_s'], 2)} s) | {mark(dep['again_ratio'] >= 3)} |")
    sz = r["sizes"]
    L.append(f"| every binary <= 1 MiB | largest {max(x['bytes'] for x in sz.values())} bytes | {mark(all(x['ok'] for x in sz.values()))} |")
    L.append("")
    # What bounds a missed target, from this run's own measurements.
    if pt:
        L.append("What bounds the per-task numbers (this run):")
        L.append("")
        cpu = pt.get("ctrl_cpu_raw_ms")
        L.append(f"- Controller CPU per task (ansible-playbook and its ssh children, all {r['hosts']} hosts): "
                 f"raw {fmt(cpu)} ms; " + "; ".join(
                     f"`{k}` fast {fmt(v['ctrl_cpu_fast_ms'])} ms, builtin {fmt(v['ctrl_cpu_builtin_ms'])} ms"
                     for k, v in pt["modules"].items()) + f". The machine has {r['machine']['cores']} cores, shared with the lab hosts; "
                 f"median machine CPU busy during the per-task plays: {fmt(pt['machine_busy_cores'], 2)} cores.")
        if oh:
            L.append(f"- Remote side of a fast task: the whole fast-path script takes {fmt(oh['fastpath_script_ms'], 2)} ms on the host, the module binaries "
                     + ", ".join(f"`{k}` {fmt(v['ms'], 2)} ms" for k, v in oh["modules"].items())
                     + f"; a builtin task first starts Python on the host ({fmt(oh['floor_python3_ms'], 1)} ms for an empty `python3 -c pass`) and then runs its module.")
        if ops:
            def n(key):
                return ops.get(key, {}).get("per_task")
            L.append(f"- SSH commands per task: raw {n('raw')}; " + "; ".join(
                f"`{k[:-5]}` fast {n(k)}, standard {n(k[:-5] + '.standard')}, builtin {n(k[:-5] + '.builtin')}"
                for k in ops if k.endswith(".fast")) + ".")
        L.append("")
    if prev and pt and prev.get("raw_ms") and prev.get("hosts") != r["hosts"]:
        a, b = prev, r
        L.append(f"Scale, {a['hosts']} -> {b['hosts']} hosts (from the {a['date']} {a['hosts']}-host run above):")
        L.append("")
        L.append("| per task | wall @" + str(a["hosts"]) + " (ms) | wall @" + str(b["hosts"]) + " (ms) | wall growth | controller CPU @"
                 + str(a["hosts"]) + " (ms) | controller CPU @" + str(b["hosts"]) + " (ms) | CPU / 2 cores @" + str(b["hosts"]) + " (ms) |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        cores = r["machine"]["cores"]
        rows = [("raw", a["raw_ms"], pt["raw_ms"], a.get("ctrl_cpu_raw_ms"), pt.get("ctrl_cpu_raw_ms"))]
        for k, v in pt["modules"].items():
            pa = a["modules"].get(k)
            if pa:
                rows.append((f"`{k}` fast", pa["fast_ms"], v["fast_ms"], pa["ctrl_cpu_fast_ms"], v["ctrl_cpu_fast_ms"]))
                rows.append((f"`{k}` builtin", pa["builtin_ms"], v["builtin_ms"], pa["ctrl_cpu_builtin_ms"], v["ctrl_cpu_builtin_ms"]))
        for name, wa, wb, ca, cb in rows:
            L.append(f"| {name} | {fmt(wa)} | {fmt(wb)} | {fmt(wb / wa if wa else None, 2)}x | {fmt(ca)} | {fmt(cb)} | {fmt(cb / cores if cb else None)} |")
        L.append("")
        L.append(f"Host count grew {b['hosts'] / a['hosts']:.2f}x. Where wall time per task is close to controller CPU / {cores} cores, "
                 f"the {cores} cores (controller and {b['hosts']} lab hosts on the same CPUs) are what bounds it, not the hosts or the network.")
        L.append("")
    return L


# The subsection of a host-count section that each series writes.
SERIES_HEADINGS = {"per_task": "### Per task:", "deploy": "### Whole deploy:", "on_host": "### On the host:",
                   "ssh_ops": "### SSH commands per task"}


def carry_over(old: str, r: dict, section: str) -> str:
    """A run of some series only (BENCH_ONLY) keeps the other series' tables of the section it
    replaces, marked with the run they come from, and their numbers in the bench-data summary
    (a later run of another host count compares against them)."""
    missing = [k for k in SERIES_HEADINGS if not r.get(k)]
    m = re.search(r"^## \d+ hosts: run of (.+)$", old, re.M)
    if not missing or not m:
        return section
    when = m.group(1).strip()
    chunks = re.split(r"(?m)^(?=### |!\[|<!-- bench-data )", old)
    kept = []
    for key in missing:
        chunk = next((c for c in chunks if c.startswith(SERIES_HEADINGS[key])), None)
        if chunk:
            head, _, body = chunk.partition("\n")
            note = "_Kept from the run of " + when + " (this run did not measure this series)._\n"
            kept.append(head + "\n" + (body if body.lstrip().startswith("_Kept from") else "\n" + note + body))
    if kept:
        at = section.index("### Binary sizes")
        section = section[:at] + "".join(c.rstrip("\n") + "\n\n" for c in kept) + section[at:]
    old_data = re.search(r"<!-- bench-data (\{.*?\}) -->", old)
    new_data = re.search(r"<!-- bench-data (\{.*?\}) -->", section)
    if old_data and new_data:
        o, n = json.loads(old_data.group(1)), json.loads(new_data.group(1))
        for k, v in o.items():
            if n.get(k) in (None, {}, []):
                n[k] = v
        section = (section[:new_data.start()] + "<!-- bench-data " + json.dumps(n, separators=(",", ":")) + " -->"
                   + section[new_data.end():])
    return section


def update_doc(r: dict) -> None:
    h = r["hosts"]
    begin, end = f"<!-- bench:{h}hosts:begin -->", f"<!-- bench:{h}hosts:end -->"
    text = DOC.read_text() if DOC.exists() else (BENCH / "benchmarks-header.md").read_text()
    prev = None
    for mm in re.finditer(r"<!-- bench-data (\{.*?\}) -->", text):
        d = json.loads(mm.group(1))
        if d.get("hosts") != h and (prev is None or d["hosts"] < prev["hosts"]):
            prev = d
    section = render_section(r, prev)
    if begin in text and end in text:
        section = carry_over(text[text.index(begin) + len(begin):text.index(end)], r, section)
    section = begin + "\n" + section + "\n" + end
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        anchor = "<!-- bench:analysis -->"
        # Sections in host-count order, before the hand-written analysis.
        others = [(int(x), mm.start()) for mm in re.finditer(r"<!-- bench:(\d+)hosts:begin -->", text)
                  for x in [mm.group(1)]]
        later = [pos for n, pos in others if n > h]
        if later:
            pos = min(later)
        elif anchor in text:
            pos = text.index(anchor)
        else:
            pos = len(text)
        text = text[:pos] + section + "\n\n" + text[pos:]
    DOC.write_text(text.rstrip() + "\n")


def draw_chart(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pt, dep, oh = r.get("per_task"), r.get("deploy"), r.get("on_host")
    panels = [p for p in (pt, dep, oh) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8), squeeze=False)
    axes = list(axes[0])
    colors = {"fast": "#2b8a3e", "standard": "#f08c00", "builtin": "#c92a2a"}
    if pt:
        ax = axes.pop(0)
        names = list(pt["modules"])
        w = 0.26
        for i, (k, lbl) in enumerate([("fast", "ours, fast path"), ("standard", "ours, standard transfer"),
                                      ("builtin", "builtin equivalent")]):
            vals = [pt["modules"][n][f"{k}_ms"] for n in names]
            ax.bar([j + (i - 1) * w for j in range(len(names))], vals, w, label=lbl, color=colors[k])
        ax.axhline(pt["raw_ms"], color="black", ls="--", lw=1, label=f"raw /bin/true floor ({pt['raw_ms']:.0f} ms)")
        ax.axhline(pt["raw_ms"] * 1.3, color="grey", ls=":", lw=1, label="1.3x floor target")
        ax.set_xticks(range(len(names)), names, rotation=15)
        ax.set_ylabel(f"ms per task ({r['hosts']} hosts at once)")
        ax.set_title(f"Per no-op task, median of {pt['rounds']} rounds")
        ax.legend(fontsize=8)
    if dep:
        ax = axes.pop(0)
        xs = ["first run\n(fresh hosts)", "idempotent\nre-run"]
        ours = [dep["ours_first_s"], dep["ours_again_s"]]
        blt = [dep["builtin_first_s"], dep["builtin_again_s"]]
        ax.bar([0 - 0.2, 1 - 0.2], ours, 0.4, label="ours (deploy-observability-stack.yml)", color=colors["fast"])
        ax.bar([0 + 0.2, 1 + 0.2], blt, 0.4, label="builtin-only twin (bench/twin)", color=colors["builtin"])
        # The same ratios as the table: per run (same run), then the median.
        for x, o, b, ratio in zip((0, 1), ours, blt, (dep["first_ratio"], dep["again_ratio"])):
            ax.text(x, max(o, b) * 1.02, f"builtin / ours {ratio:.2f}x", ha="center")
        ax.set_xticks([0, 1], xs)
        ax.set_ylabel("seconds (wall)")
        ax.set_title(f"Whole deploy, {r['hosts']} hosts, median of {dep['runs']}")
        ax.legend(fontsize=8)
    if oh:
        ax = axes.pop(0)
        names = list(oh["modules"]) + ["fast-path script", "python3 -c pass", "/bin/true"]
        vals = [oh["modules"][n]["ms"] or 0 for n in oh["modules"]] + [
            oh["fastpath_script_ms"] or 0, oh["floor_python3_ms"] or 0, oh["floor_true_ms"] or 0]
        ax.barh(range(len(names)), vals, color=["#1971c2"] * len(oh["modules"]) + ["#2b8a3e", "#868e96", "#868e96"])
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        ax.set_xlabel("ms per run, timed on the host")
        ax.set_title(f"No-op run on {oh['host']} ({oh['loops']}x)")
    fig.suptitle(f"HomeOps modules vs ansible.builtin, {r['hosts']} lab hosts, {r['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- main ---------------------------------------------------------------------------------

def main() -> int:
    global LIBRARY
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
    missing = [m for m in MODULES if not (LIBRARY / m).is_file()]
    if missing:
        raise SystemExit(f"bench: module binaries missing in {LIBRARY}: {' '.join(missing)} (run 'make build')")
    if "deploy" in only:
        if not DEPLOY_OURS.exists():
            raise SystemExit(f"bench: {DEPLOY_OURS} does not exist yet")
        # The twin is generated from the roles and playbooks (git-ignored): regenerate it when
        # they have moved on, so it never lags behind the deploy it is compared with.
        sys.path.insert(0, str(BENCH))
        import builtin_twin
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
        if (LIBRARY / m).is_file():
            shutil.copy2(LIBRARY / m, snap / m)
    source_library, LIBRARY = LIBRARY, snap
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
         "sha256": {m: hashlib.sha256((LIBRARY / m).read_bytes()).hexdigest()[:12] for m in MODULES
                    if (LIBRARY / m).is_file()}}
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


if __name__ == "__main__":
    sys.exit(main())
