"""The per-task and ssh-ops series of make bench: per module, a play of N identical no-op tasks
(ours with the fast path on and off, the builtin equivalent, the floors), and the SSH commands
one task of each kind makes."""
from __future__ import annotations

import re
from pathlib import Path

from homeops_dev import ROOT
from homeops_dev.bench.common import loadavg, log, median, play_of, Runner, write_yaml


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
