"""What every fault scenario shares: the run's paths and log directory, the lab of this clone,
commands on the hosts and playbook runs (on homeops_dev/labdriver.py), the assertions a
scenario records, and the `scenario` mark the registry (homeops_dev/faults/registry.py) reads.

Host-side commands are fixed strings run over ssh as the inventory's user, through sudo; no
value (and never a secret) is interpolated into a shell: secrets go to the hosts on standard
input only."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

from homeops_dev import ROOT, labdriver
from homeops_dev.labdriver import Play


INV = labdriver.LAB_INVENTORY


# FAULTS_DEPLOY_PLAYBOOK: try a patched copy (it must live in playbooks/ for group_vars/templates).
DEPLOY = os.environ.get("FAULTS_DEPLOY_PLAYBOOK", "playbooks/deploy-observability-stack.yml")
ADD_REPO_BOOK = "tests/faults/add-repo.yml"
VERIFY = "playbooks/tests/verify_observability.yml"
HERE = ROOT / "tests" / "faults"
STAMP = time.strftime("%Y%m%d-%H%M%S")
LOG_DIR = ROOT / "logs" / f"faults-{STAMP}"
DOC = ROOT / "docs" / "reliability.md"

ENV = labdriver.ansible_env()

T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


class Failed(Exception):
    """An assertion of a scenario did not hold."""


class Scenario:
    """What one scenario asserted and measured."""

    def __init__(self, name: str):
        self.name = name
        self.asserts: list[tuple[bool, str]] = []
        self.measured: dict[str, object] = {}

    def check(self, ok: bool, what: str, detail: str = "") -> None:
        self.asserts.append((bool(ok), what))
        print(f"      {'ok  ' if ok else 'FAIL'} {what}" + (f"  [{detail}]" if detail else ""), flush=True)
        if not ok:
            raise Failed(what + (f" ({detail})" if detail else ""))

    def measure(self, key: str, value: object) -> None:
        self.measured[key] = value
        print(f"      measured {key} = {value}", flush=True)


def run(cmd: list[str], *, log: str | None = None, env: dict | None = None, input: bytes | None = None,
        timeout: float = 900, check: bool = False) -> labdriver.Result:
    """Runs a command without a shell. With log=NAME, output goes to LOG_DIR/NAME.out too."""
    e = dict(ENV, **(env or {}))
    if log:
        e["ANSIBLE_LOG_PATH"] = str(LOG_DIR / f"{log}.log")
    p = labdriver.execute(cmd, out=LOG_DIR / f"{log}.out" if log else None, env=e, input=input, timeout=timeout)
    if p.timed_out:
        raise Failed(f"{' '.join(cmd[:3])} ... did not finish in {timeout:.0f} s")
    if check and p.returncode != 0:
        raise Failed(f"{' '.join(cmd[:3])} ... exited {p.returncode}: {p.text[-800:]}")
    return p


# This clone's lab (lab/lab acts on its own lab id); each command's output in LOG_DIR/<name>.out.
lab = labdriver.Lab(log_dir=LOG_DIR)


def lab_up(n: int) -> None:
    """Fresh hosts: this clone's lab down, then n hosts up, owned by this run (a killed run's
    lab is reaped by the next `lab up` on the machine)."""
    t = time.monotonic()
    lab.down(name="lab-down-before")
    lab.up(n, name=f"lab-up-{n}")
    say(f"  lab up: {n} hosts in {time.monotonic() - t:.1f} s")


def sh(host: str, script: str, *, input: bytes | None = None, timeout: float = 120) -> str:
    """Runs a fixed script on a lab host as root (never built from data); returns stdout."""
    p = lab.sh(host, script, input=input, timeout=timeout)
    if p.returncode != 0:
        raise Failed(f"on {host}: script exited {p.returncode}: {p.stderr[-500:]}")
    return p.text


def playbook(name: str, path: str, *args: str, inventory: Path | str = INV, env: dict | None = None,
             timeout: float = 900) -> Play:
    play = labdriver.Runner(LOG_DIR, inventory).play(name, path, *args, env=env, timeout=timeout)
    say(f"  {name}: ansible-playbook {' '.join(args)} {Path(path).name} -> rc {play.rc} in {play.secs:.1f} s "
        f"(logs/{LOG_DIR.name}/{name}.out)")
    return play


def deploy(name: str, *args: str, **kw) -> Play:
    return playbook(name, DEPLOY, *args, **kw)


def add_repo(limit: str, **kw) -> None:
    """Point the hosts of limit at the lab's apt repo as the deploy would (a lab host boots
    without it); the scenario fails here, named, when that does not work."""
    play = playbook("add-repo", ADD_REPO_BOOK, "-l", limit, **kw)
    # clean([limit]): a run that reached no host is not a success.
    if play.rc != 0 or not play.clean([limit]):
        raise Failed(f"adding the apt repository on {limit} failed (rc={play.rc}); see logs/{LOG_DIR.name}/add-repo.out")


WAIT_RE = re.compile(r"waited ([0-9.]+) s for ([^:]+?)(?: already running to finish)?[:,] (.*?held by PID (\d+) \(([^)]*)\))")


def waits(text: str) -> list[tuple[float, str, str]]:
    """(seconds, what, holder) for every 'waited N s ... held by PID P (cmd)' warning."""
    out = []
    flat = re.sub(r"\s*\n\s*", " ", text)
    for m in WAIT_RE.finditer(flat):
        # The holder's command line can be long (python3 -c ...): its program name says enough.
        prog = os.path.basename(m.group(5).split()[0]) if m.group(5).split() else "?"
        out.append((float(m.group(1)), m.group(2).strip(), f"PID {m.group(4)} ({prog})"))
    return out


UNITS = ["apt-daily.timer", "apt-daily.service", "apt-daily-upgrade.timer", "apt-daily-upgrade.service",
         "unattended-upgrades.service"]

UNIT_STATE = ("for u in apt-daily.timer apt-daily.service apt-daily-upgrade.timer apt-daily-upgrade.service "
              "unattended-upgrades.service; do printf '%s ' \"$u\"; systemctl show -p LoadState -p ActiveState "
              "-p UnitFileState --value \"$u\" | tr '\\n' ' '; echo; done")


def unit_state(host: str) -> dict:
    out = {}
    for line in sh(host, UNIT_STATE).splitlines():
        parts = line.split()
        if parts:
            out[parts[0]] = " ".join(parts[1:])
    return out


SNAPSHOT = r"""
set -e
echo '== accounts'; getent passwd | sort; getent group | sort
echo '== dpkg'; dpkg-query -W -f '${Package} ${Status} ${Version}\n' | sort
echo '== audit'; dpkg --audit || true
echo '== masked'; systemctl list-unit-files --state=masked --no-legend --no-pager | sort || true
echo '== units'; for u in apt-daily.timer apt-daily-upgrade.timer unattended-upgrades.service; do echo "$u $(systemctl is-active $u) $(systemctl is-enabled $u 2>&1)"; done
echo '== files'
find /etc /var/lib/homeops /var/lib/loki /var/lib/alloy /var/lib/grafana /usr/local /opt /var/lib/dpkg/status \
  -xdev \( -type f -o -type l -o -type d \) 2>/dev/null \
  | grep -v -e '^/etc/ld.so.cache$' | sort | while read -r f; do
    if [ -f "$f" ] && [ ! -L "$f" ]; then echo "$f $(stat -c '%U:%G %a' "$f") $(md5sum < "$f" | cut -c1-32)";
    else echo "$f $(stat -c '%F %U:%G %a' "$f")"; fi
  done
"""


def snapshot(host: str) -> list[str]:
    return sh(host, SNAPSHOT, timeout=180).splitlines()


def snapshot_diff(a: list[str], b: list[str]) -> list[str]:
    sa, sb = set(a), set(b)
    return [f"- {x}" for x in a if x not in sb][:15] + [f"+ {x}" for x in b if x not in sa][:15]


def audit(host: str) -> str:
    return sh(host, "dpkg --audit; echo rc=$?").strip()


def account_lines(host: str, name: str) -> tuple[int, int, str]:
    out = sh(host, f"grep -c '^{name}:' /etc/passwd || true; grep -c '^{name}:' /etc/group || true; "
                   f"id {name} 2>&1 || true; getent passwd {name} | cut -d: -f7")
    lines = out.splitlines()
    return int(lines[0]), int(lines[1]), " ".join(lines[2:])


def scenario(num: str, title: str, hosts: int):
    """Marks fn as fault scenario NUM (TITLE, on HOSTS fresh lab hosts): fn.scenario is its entry
    (num, name, title, hosts, fn) in homeops_dev/faults/registry.py's SCENARIOS."""
    def wrap(fn):
        fn.scenario = (num, fn.__name__, title, hosts, fn)
        return fn
    return wrap


def lab_ids_running() -> dict:
    """{lab id: 'up/total'} from `lab/lab status --all`."""
    p = run(["lab/lab", "status", "--all"], timeout=120)
    return {m.group(1): m.group(2) for m in re.finditer(r"^([a-z0-9]{1,6})\s+(\d+/\d+)\s", p.text, re.M)}
