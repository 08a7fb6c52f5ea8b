"""ansible-playbook runs (Runner) and what they said (Play: the PLAY RECAP as per-host counters),
with the host-set, changed=0 and python-free checks."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Callable
from typing import Iterable

from homeops_dev import ROOT
from homeops_dev.labdriver.core import _tool, ansible_env, DriverError, execute
from homeops_dev.labdriver.lab import Lab  # noqa: F401  (an annotation: check_python_free)


COUNTERS = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
RECAP_LINE = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
                        r"(?:\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+))?", re.M)


def parse_recap(text: str) -> dict[str, dict[str, int]] | None:
    """Per-host counters of the PLAY RECAP of ansible-playbook output ({host: {ok, changed,
    unreachable, failed, skipped, rescued, ignored}}), localhost included; None when the output
    has no PLAY RECAP (the run died first). Host-like lines before the recap are not counted."""
    if "PLAY RECAP" not in text:
        return None
    tail = text.rsplit("PLAY RECAP", 1)[1]
    return {m.group(1): {k: int(v or 0) for k, v in zip(COUNTERS, m.groups()[1:])}
            for m in RECAP_LINE.finditer(tail)}


class Play:
    """One ansible-playbook run: rc, output, seconds, and its recap. `recap` holds the managed
    hosts; localhost (the preflight and summary plays run there) is kept apart in `localhost`,
    so a host count is a count of the inventory's hosts."""

    def __init__(self, rc: int, text: str, secs: float, name: str, out: Path | None = None):
        self.rc, self.text, self.secs, self.name, self.out = rc, text, secs, name, out
        parsed = parse_recap(text)
        self.has_recap = parsed is not None
        self.recap = {h: c for h, c in (parsed or {}).items() if h != "localhost"}
        self.localhost = (parsed or {}).get("localhost")

    def hosts(self) -> list[str]:
        """The managed hosts the run reported on, sorted."""
        return sorted(self.recap)

    def changed(self) -> dict[str, int]:
        """{host: changed} for every host with changed > 0, localhost too (Molecule's
        idempotence rule: a second run changes nothing anywhere)."""
        both = dict(self.recap, **({"localhost": self.localhost} if self.localhost else {}))
        return {h: c["changed"] for h, c in both.items() if c["changed"]}

    def clean(self, hosts: Iterable[str] | None = None) -> bool:
        """No failed or unreachable task on these hosts (default: all it reported on); a host
        that is not in the recap is not clean."""
        hosts = list(hosts) if hosts else list(self.recap)
        return all(self.recap.get(h, {}).get("failed", 1) == 0 and self.recap.get(h, {}).get("unreachable", 1) == 0
                   for h in hosts)

    def changed_tasks(self) -> list[str]:
        """The 'changed: [host] ...' lines of the output, payloads cut."""
        return [re.sub(r" => .*", "", x) for x in self.text.splitlines() if x.startswith("changed: ")]


class CheckFailed(DriverError):
    """A check of a run's result did not hold; the message is what to print."""


def check_same_hosts(who: str, play: Play, expected: Iterable[str]) -> str:
    """The hosts in play's PLAY RECAP must be exactly expected, the ones the run started with.
    An inventory emptied or replaced mid-run (another run's `lab down`) would otherwise give
    'no hosts matched' plays and a green run that verified nothing. Returns the line to print."""
    want = sorted(set(expected))
    got = play.hosts()
    if got != want:
        raise CheckFailed(f"{who}: the {play.name} run reported on other hosts than the run started with:\n"
                          f"    started with: {' '.join(want)}\n"
                          f"    {play.name} reported: {' '.join(got) or 'nothing'}")
    return f"    {play.name} reported on the {len(want)} host(s) the run started with"


def check_no_change(who: str, play: Play, what: str) -> str:
    """Idempotence: play must report changed=0 on every host (it must have a recap). Fails
    naming the hosts and the changed tasks; returns the line to print."""
    if not play.has_recap:
        raise CheckFailed(f"{who}: no PLAY RECAP in {what}")
    changed = play.changed()
    if changed:
        lines = [f"{who}: NOT IDEMPOTENT: {what} changed something:"]
        lines += [f"    {h} changed={n}" for h, n in changed.items()]
        lines += ["    the changed tasks:"] + [f"    {t}" for t in play.changed_tasks()]
        raise CheckFailed("\n".join(lines))
    return "    idempotent: changed=0 on every host"


# Fails (exit 3, naming what it found) where an interpreter Ansible's discovery could use is on
# the host; `lab up` runs the same file right after the purge.
PYTHON_FREE_SCRIPT = (ROOT / "lab" / "lib" / "python-free.sh").read_text()


def check_python_free(who: str, lab: "Lab", hosts: Iterable[str], when: str) -> str:
    """The lab's python-free hosts (LAB_NOPYTHON) must have no interpreter Ansible could find,
    checked over SSH as the inventory logs in: proof that a green run did not pass on a host
    that still had Python (or got it back from a package dependency). Returns the lines to print:
    the python-free hosts, and which of them keep the LAB STAND-INs' private runtime."""
    hosts = list(hosts)
    runtimes = []
    for h in hosts:
        r = lab.sh(h, PYTHON_FREE_SCRIPT, timeout=60)
        lines = r.text.strip().splitlines()
        if r.returncode != 0 or not lines or lines[0] != "python-free":
            raise CheckFailed(f"{who}: {h} should be python-free {when}, but: "
                              f"{(r.text.strip() or r.stderr.strip() or f'exit {r.returncode}')[:300]}")
        runtimes += [f"{h}: {line.removeprefix('private runtime: ')}"
                     for line in lines[1:] if line.startswith("private runtime: ")]
    return (f"    python-free {when}: {' '.join(hosts)} (no python on PATH, no /usr/bin/python3)\n"
            f"    private runtimes of the stand-ins: {', '.join(runtimes) or 'none'}")


class Runner:
    """Runs playbooks against one inventory, each with its output in log_dir/NAME.out and
    Ansible's own log in log_dir/NAME.log (or all runs in one shared ansible_log)."""

    def __init__(self, log_dir: Path, inventory: Path | str, *, extra_args: Iterable[str] = (),
                 env: dict | None = None, ansible_log: Path | None = None, numbered: bool = False,
                 new_session: bool = True):
        self.log_dir = Path(log_dir)
        self.inventory = str(inventory)
        self.extra_args = list(extra_args)
        self.env = ansible_env(env)
        self.ansible_log = ansible_log
        # numbered: 0001-NAME.out, ... (a name may run many times, as in the bench).
        self.numbered = numbered
        self.count = 0
        self.new_session = new_session
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def command(self, playbook: str | Path, *args: str) -> list[str]:
        return [_tool("ansible-playbook"), "-i", self.inventory, str(playbook), *args, *self.extra_args]

    def play(self, name: str, playbook: str | Path, *args: str, env: dict | None = None,
             timeout: float | None = None, echo: bool | re.Pattern | None = None,
             on_line: Callable[[str], bool] | None = None, announce: bool = False, check: bool = False) -> Play:
        """Runs ansible-playbook once (see execute() for echo, on_line and timeout); announce
        prints the command line first. Returns the Play whatever its exit code, or with check
        raises DriverError with that exit code (its output has said why)."""
        self.count += 1
        stem = f"{self.count:04d}-{name}" if self.numbered else name
        out = self.log_dir / f"{stem}.out"
        log = self.ansible_log or self.log_dir / f"{stem}.log"
        e = dict(self.env, ANSIBLE_LOG_PATH=str(log), **{k: str(v) for k, v in (env or {}).items()})
        if announce:
            print(f"    ansible-playbook -i {self.inventory} {' '.join([str(playbook), *args])} "
                  f"{' '.join(self.extra_args)} (output: {_rel(out)})", flush=True)
        r = execute(self.command(playbook, *args), out=out, env=e, timeout=timeout, echo=echo,
                    on_line=on_line, new_session=self.new_session)
        if r.timed_out:
            raise DriverError(f"{name}: ansible-playbook did not finish in {timeout:.0f} s and was stopped "
                              f"(output: {_rel(out)})")
        if check and r.returncode != 0:
            raise DriverError("", r.returncode)
        return Play(r.returncode, r.text, r.secs, name, out)


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def list_hosts(inventory: Path | str, pattern: str) -> list[str]:
    """The hosts of inventory that pattern selects, sorted, as Ansible resolves them (any
    inventory format). Ansible's own log is kept out of it."""
    r = subprocess.run([_tool("ansible"), "-i", str(inventory), pattern, "--list-hosts"], cwd=ROOT,
                       env=ansible_env({"ANSIBLE_LOG_PATH": "/dev/null"}), stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    # The first line is the "hosts (N):" header.
    return sorted({line.split()[0] for line in r.stdout.splitlines()[1:] if line.strip()})
