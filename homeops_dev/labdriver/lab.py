"""The lab (lab/lab up, down, status, inventory, state, fault) and SSH to its hosts as the
inventory's user (through sudo when that user is not root)."""
from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

from homeops_dev import ROOT
from homeops_dev.labdriver.core import execute, LAB_CMD, lab_id, LabChanged, LabError, Result
from homeops_dev.labdriver.secrets import secrets_of


SSH_OPTS = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]


def ssh_command(hostvars: dict, script: str, input: bytes | None = None) -> tuple[list[str], bytes]:
    """The ssh command line that runs a fixed shell script as root on a host, logging in as the
    inventory does (ansible_user, its key and ssh arguments), and the bytes for its stdin.

    A user other than root goes through sudo: `sudo -n` where sudo needs no password; where the
    inventory has ansible_become_password, `sudo -k -S` reads it as the first line of stdin (-k:
    always asked, so a cached sudo ticket never lets the password line reach the script), and
    input follows it. The password is never on a command line."""
    user = hostvars.get("ansible_user", "root")
    remote = "/bin/sh -c " + shlex.quote(script)
    data = input or b""
    if user != "root":
        password = hostvars.get("ansible_become_password")
        if password:
            remote = "sudo -k -S -p '' -- " + remote
            data = password.encode() + b"\n" + data
        else:
            remote = "sudo -n -- " + remote
    cmd = ["ssh", *SSH_OPTS]
    if hostvars.get("ansible_ssh_private_key_file"):
        cmd += ["-i", str(hostvars["ansible_ssh_private_key_file"])]
    cmd += shlex.split(hostvars.get("ansible_ssh_common_args", ""))
    cmd += [f"{user}@{hostvars['ansible_host']}", remote]
    return cmd, data


def read_state(path: Path) -> dict | None:
    """lab.env (KEY=%q-quoted value lines) as a dict; None when there is none."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            try:
                parts = shlex.split(v)
            except ValueError:
                parts = [v]
            out[k] = " ".join(parts)
    return out


class Lab:
    """This clone's lab, through lab/lab (its own id: labs of other clones are never touched).

    Output of lab commands: echo prints it as it comes; log_dir keeps each command's in
    log_dir/NAME.out; log_file appends all of them to one file. via_make runs up, down and
    status as `make lab-up` etc. (what a user types; the output names the command).
    The lab brought up here is owned by this process (LAB_OWNER_PID): if it dies, the next
    `lab up` on the machine reaps the lab."""

    def __init__(self, *, hosts: int | None = None, log_dir: Path | None = None, log_file: Path | None = None,
                 echo: bool = False, via_make: bool = False):
        self.hosts_wanted = hosts
        self.log_dir, self.log_file, self.echo, self.via_make = log_dir, log_file, echo, via_make
        self.started = False          # a lab was brought up by this object
        self.mine: set[str] = set()   # STARTED stamps of the labs it brought up
        self.current_started = ""     # the stamp of the one in use: what the hosts' state belongs to
        self.cycles = 0
        self._inv: dict | None = None
        self._state_path: Path | None = None

    # -- commands

    def run(self, *args: str, name: str | None = None, env: dict | None = None, timeout: float = 900,
            make_target: str | None = None) -> Result:
        """lab/lab ARGS (or `make MAKE_TARGET` with via_make), output where the object says."""
        cmd = (["make", "--no-print-directory", make_target] if (self.via_make and make_target)
               else [str(LAB_CMD), *args])
        name = name or "lab-" + "-".join(a.replace(":", "-") for a in args)
        out, append = None, False
        if self.log_dir:
            out = Path(self.log_dir) / f"{name}.out"
        r = execute(cmd, out=out, env=dict(os.environ, **(env or {})), timeout=timeout,
                    echo=self.echo or None, new_session=False, append=append)
        if self.log_file:
            with open(self.log_file, "a") as f:
                f.write(f"==> lab {' '.join(args)} ({r.secs:.1f} s, rc {r.returncode})\n{r.text}\n")
        if r.timed_out:
            raise LabError(f"lab/lab {' '.join(args)} did not finish in {timeout:.0f} s")
        return r

    def up(self, hosts: int | None = None, name: str | None = None) -> str:
        """Brings this clone's lab up (it replaces the clone's previous one); raises LabError
        when `lab up` fails or refuses. Only after this returned is the lab ours to take down."""
        hosts = hosts or self.hosts_wanted
        env = {"LAB_OWNER_PID": str(os.getpid())}
        if hosts:
            env["LAB_HOSTS"] = str(hosts)
        r = self.run("up", name=name, env=env, timeout=1200, make_target="lab-up")
        if r.returncode != 0:
            raise LabError(f"lab up{f' ({hosts} hosts)' if hosts else ''} failed (exit {r.returncode})"
                           + ("" if self.echo else f": {r.text[-1500:]}"), r.returncode)
        self.started = True
        self._inv = None
        st = self.state()
        if not st or os.path.realpath(st.get("OWNER") or "/") != str(ROOT):
            raise LabError(f"lab up succeeded but {self.state_path()} names no lab of this clone")
        self.current_started = st.get("STARTED", "")
        self.mine.add(self.current_started)
        self.cycles += 1
        return r.text

    def down(self, name: str | None = None) -> str:
        """Tears this clone's lab down and verifies nothing of it is left; raises LabError
        otherwise."""
        r = self.run("down", name=name, timeout=600, make_target="lab-down")
        self._inv = None
        if r.returncode != 0 or "verified clean" not in r.text:
            raise LabError(f"lab down failed (exit {r.returncode}) or did not report 'verified clean'"
                           + ("" if self.echo else f":\n{r.text[-2000:]}"))
        return r.text

    def cycle(self, hosts: int | None = None, name: str | None = None) -> None:
        """Fresh hosts: down, then up."""
        self.down(name=f"{name}-down" if name else None)
        self.up(hosts, name=name)

    def status(self) -> Result:
        return self.run("status", timeout=120, make_target="lab-status")

    def fault(self, host: str, fault: str) -> str:
        r = self.run("fault", host, fault, name=f"fault-{host}-{fault.replace(':', '-')}", timeout=120)
        if r.returncode != 0:
            raise LabError(f"lab fault {host} {fault} failed: {r.text[-800:]}")
        return r.text.strip()

    def keep(self, why: str) -> str:
        """Marks this clone's lab as kept by hand (`lab/lab keep WHY`): the janitor of every later
        `lab up` on the machine leaves it, whatever becomes of this process, until `make lab-down`
        (with this LAB_ID). Raises LabError when the lab cannot be marked."""
        r = self.run("keep", why, name="lab-keep", timeout=180)
        if r.returncode != 0:
            raise LabError(f"lab keep failed (exit {r.returncode}): {r.text[-800:]}")
        return r.text

    def inventory_path(self) -> Path:
        """The inventory of this clone's lab (`lab/lab id` names it: LAB_ID's own file)."""
        return lab_id()[2]

    # -- what the lab is

    def state_path(self) -> Path:
        """lab.env of this clone's lab (`lab/lab id` prints its id and state dir)."""
        if self._state_path is None:
            try:
                self._state_path = lab_id()[1] / "lab.env"
            except (OSError, LabError, subprocess.SubprocessError):
                return Path("/run/homeops-labs/none/lab.env")
        return self._state_path

    def state(self) -> dict | None:
        return read_state(self.state_path())

    def check(self) -> None:
        """Raises LabChanged when the lab is not the one this object brought up any more."""
        st = self.state()
        if not st:
            raise LabChanged("the lab is no longer up: somebody brought it down during the run")
        if st.get("STARTED", "") != self.current_started:
            raise LabChanged(f"the lab was restarted by somebody else (started {st.get('STARTED')}, owner "
                             f"{st.get('OWNER')}): the numbers would mix two labs")

    def is_ours_now(self) -> bool:
        st = self.state()
        return bool(st) and st.get("STARTED", "") in self.mine

    def inventory(self) -> dict:
        """The lab's inventory (YAML), read once per lab."""
        if self._inv is None:
            import yaml
            self._inv = yaml.safe_load(self.inventory_path().read_text())
        return self._inv

    def hostvars(self) -> dict[str, dict]:
        """{host: its variables} of the lab inventory, in the inventory's order."""
        return self.inventory()["all"]["hosts"]

    def nopython_hosts(self) -> list[str]:
        """The hosts this lab made python-free (LAB_NOPYTHON), from its state."""
        return ((self.state() or {}).get("NOPYTHON") or "").split()

    def address(self, host: str) -> str:
        return self.hostvars()[host]["ansible_host"]

    def secrets(self) -> list[str]:
        return secrets_of(self.inventory())

    def sh(self, host: str, script: str, *, input: bytes | None = None, timeout: float = 120) -> Result:
        """Runs a fixed script (never built from data) as root on a lab host, over SSH as the
        inventory's user; Result.text is its stdout, Result.stderr its stderr."""
        cmd, data = ssh_command(self.hostvars()[host], script, input)
        t0 = time.monotonic()
        p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        r = Result(p.returncode, p.stdout.decode("utf-8", "replace"), time.monotonic() - t0)
        r.stderr = p.stderr.decode("utf-8", "replace")
        return r
