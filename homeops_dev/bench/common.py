"""What every series of make bench shares: paths, the lab, the Ansible runner (timed, with the
controller's CPU), generated plays, the machine's description and the wait for a quiet machine."""
from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import time
from pathlib import Path

from homeops_dev import ROOT, labdriver
from homeops_dev import modules as workspace_modules  # the one module list


BENCH = ROOT / "bench"
LAB = ROOT / "lab" / "lab"
# The lab, the playbook runs and SSH to the hosts are the shared driver's (homeops_dev/labdriver/).
INVENTORY = labdriver.LAB_INVENTORY
VENV_BIN = ROOT / ".venv" / "bin"
ANSIBLE_PLAYBOOK = VENV_BIN / "ansible-playbook"


# BENCH_LIBRARY: another directory of module binaries (a harness test with stand-ins); the
# report names it, and Ansible gets it as ANSIBLE_LIBRARY.
LIBRARY = Path(os.environ.get("BENCH_LIBRARY") or ROOT / "library")
DEPLOY_OURS = ROOT / "playbooks" / "deploy-observability-stack.yml"
TWIN = BENCH / "twin"                      # generated, git-ignored (homeops_dev/bench/twin.py)
DEPLOY_BUILTIN = TWIN / "deploy-builtin.yml"
DOC = ROOT / "docs" / "benchmarks.md"


# Every module of the Cargo workspace: the deploy runs most of them, the per-task series all but
# apt_lockdown (a bracket, not a no-op task; its cost is in the deploy and on-host series).
MODULES = workspace_modules.modules(str(ROOT))
MIB = 1024 * 1024


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


Lab = labdriver.Lab


def new_lab(hosts: int, results: Path) -> Lab:
    """This clone's lab (labdriver.Lab: it notices when somebody else restarted it), every lab
    command's output appended to results/lab.log."""
    return Lab(hosts=hosts, log_file=results / "lab.log")


def inventory_hosts() -> dict:
    return Lab().hostvars()


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


def median(xs):
    return statistics.median(xs) if xs else float("nan")


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
