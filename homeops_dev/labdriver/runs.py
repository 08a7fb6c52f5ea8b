"""Somebody else using the lab (others_using) and the steps and exit path of a run (Steps: the
lab torn down on failure, Ctrl-C and SIGTERM too, PASSED/FAILED at the end)."""
from __future__ import annotations

import datetime as dt
import os
import re
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

from homeops_dev import ROOT
from homeops_dev.labdriver.core import DriverError, LabError
from homeops_dev.labdriver.lab import Lab
from homeops_dev.labdriver.plays import _rel


# The commands of a run that uses a lab (and the CPUs): Ansible, lab/lab, and our runners
# (python -m homeops_dev.<runner>; also by their former paths, which older clones still run).
RUN_PATTERN = re.compile(r"ansible-playbook|homeops_dev\.(itest(_upgrade)?|bench|faults)\b|"
                         r"scripts/itest(_upgrade)?\.py|lab/tests/integration\.sh|"
                         r"lab/lab (up|down|fault|reboot)|bench/bench\.py|tests/faults/faults\.py")


def _proc_table() -> dict[int, tuple[int, str, str]]:
    """{pid: (ppid, command line, cwd)} of every process we can read."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        try:
            cwd = os.readlink(d / "cwd")
        except OSError:
            cwd = ""
        out[int(d.name)] = (ppid, cmd, cwd)
    return out


def others_using(*, clone_only: bool, include_ssh: bool = False, lab: Lab | None = None) -> list[str]:
    """Runs of others that use a lab: Ansible, lab/lab, itest, faults or bench processes that are
    neither this process, nor its ancestors (make, the shell), nor its descendants (our own
    ansible-playbook). clone_only: those working in this clone (its lab would be pulled from
    under them); else the whole machine (they share the CPUs). include_ssh adds ssh clients and
    control masters to a lab (somebody used one < 60 s ago) and, with lab, this clone's lab
    started < 2 min ago by somebody else (probably about to be used). One line each."""
    table = _proc_table()
    me = os.getpid()
    ancestors, p = set(), me
    while p in table and p not in ancestors and p > 1:
        ancestors.add(p)
        p = table[p][0]

    def descends_from_me(pid):
        seen = set()
        while pid in table and pid not in seen and pid > 1:
            if pid == me:
                return True
            seen.add(pid)
            pid = table[pid][0]
        return False

    root = str(ROOT)
    found = []
    for pid, (_, cmd, cwd) in sorted(table.items()):
        if pid in ancestors or descends_from_me(pid):
            continue
        if clone_only and not (cwd == root or cwd.startswith(root + "/")):
            continue
        if RUN_PATTERN.search(cmd):
            found.append(f"{pid}: {cmd[:120]}")
        elif include_ssh and cmd.startswith("ssh ") and re.search(r"\.lab/|\.ansible/cp|hoplab", cmd):
            found.append(f"{pid}: {cmd[:120]}")
    st = lab.state() if (include_ssh and lab) else None
    if st and st.get("STARTED") and st.get("STARTED") not in lab.mine:
        try:
            age = time.time() - dt.datetime.strptime(st["STARTED"], "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=dt.timezone.utc).timestamp()
        except ValueError:
            age = 1e9
        if age < 120:
            found.append(f"a lab started {age:.0f} s ago by somebody else (probably in use)")
    return found


class _Signalled(BaseException):
    def __init__(self, rc: int):
        super().__init__(rc)
        self.rc = rc


class Steps:
    """Numbered steps with the seconds since the start, and the exit path: whatever ends the
    run (success, a failed step, a bug, Ctrl-C, SIGTERM), the lab it brought up is torn down
    (unless LAB_KEEP=1) and the last line says PASSED, or FAILED with the step and where to look."""

    def __init__(self, name: str, hint: str, log_dir: Path, lab: Lab | None = None):
        self.name, self.hint, self.log_dir, self.lab = name, hint, log_dir, lab
        self.t0 = time.monotonic()
        self.current = "start"
        # LAB_KEEP=1 keeps the lab at the end; LAB_KEEP_ON_FAILURE=1 only when the run failed.
        self.keep = os.environ.get("LAB_KEEP", "0") == "1"
        self.keep_on_failure = os.environ.get("LAB_KEEP_ON_FAILURE", "0") == "1"

    def elapsed(self) -> int:
        return int(time.monotonic() - self.t0)

    def step(self, what: str) -> None:
        self.current = what
        print(f"\n==> {self.name} [{self.elapsed():4d}s] {what}", flush=True)

    def fail(self, message: str, rc: int = 1):
        """Ends the run here: NAME: message on stderr, exit rc."""
        raise DriverError(f"{self.name}: {message}", rc)

    def lab_up(self) -> Path:
        """The lab up step; the lab is this run's to take down only once `up` succeeded (a
        refused or failed `up` cleans up after itself and must not be followed by a down)."""
        self.step("lab up: make lab-up")
        self.lab.up()
        inv = self.lab.inventory_path()
        if not inv.is_file():
            self.fail(f"lab up did not write {_rel(inv)}")
        return inv

    def run(self, body: Callable[[], None]) -> int:
        def on_term(signum, _frame):
            raise _Signalled(128 + signum)
        signal.signal(signal.SIGTERM, on_term)
        rc = 0
        try:
            body()
            self.current = "done"
        except DriverError as e:
            if e.message:
                print(e.message, file=sys.stderr, flush=True)
            rc = e.rc
        except KeyboardInterrupt:
            rc = 130
        except _Signalled as e:
            rc = e.rc
        except Exception:  # a bug in the runner is a failure too, and still tears the lab down
            traceback.print_exc()
            rc = 1
        return self.finish(rc)

    def finish(self, rc: int) -> int:
        failed_step = self.current
        # A second Ctrl-C or SIGTERM during the teardown ends the process, as in a shell's trap.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if self.lab and self.lab.started:
            why = ("LAB_KEEP=1" if self.keep else "LAB_KEEP_ON_FAILURE=1" if (self.keep_on_failure and rc) else "")
            if why:
                # A hand-kept lab from here on: this process is its owner, and the janitor of the
                # next `lab up` anywhere would reap it as soon as this process is gone.
                pre = f"LAB_ID={os.environ['LAB_ID']} " if os.environ.get("LAB_ID") else ""
                try:
                    self.lab.keep(f"{why} make {self.name}")
                    print(f"\n==> {self.name}: {why}: the lab stays up, kept until you end it "
                          f"({pre}make lab-status; {pre}make lab-down when done)")
                except LabError as e:
                    print(f"{self.name}: ERROR: {why}, but the lab could not be marked kept (another `lab up` "
                          f"may reap it): {e.message}", file=sys.stderr)
                    rc = rc or 1
            else:
                self.step("lab down: make lab-down")
                try:
                    self.lab.down()
                except LabError:
                    print(f"{self.name}: ERROR: make lab-down failed; see above and run it again", file=sys.stderr)
                    rc = rc or 1
        print()
        logs = _rel(self.log_dir)
        if rc == 0:
            print(f"==> {self.name} PASSED in {self.elapsed()} s (logs: {logs}/)", flush=True)
        else:
            print(f"==> {self.name} FAILED at step '{failed_step}' (exit {rc}) after {self.elapsed()} s "
                  f"(logs: {logs}/)", file=sys.stderr)
            print(f"    where to look: {self.hint}", file=sys.stderr, flush=True)
        return rc
