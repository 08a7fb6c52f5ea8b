"""The one driver for the lab and for running playbooks.

`make itest` (homeops_dev/itest.py), `make itest-upgrade` (homeops_dev/itest_upgrade.py), the fault suite
(homeops_dev/faults/) and the bench (homeops_dev/bench/) all run Ansible against the lab the same
way, so they share this module instead of keeping a copy each:

  ansible_env()   the environment of every Ansible run (this clone's venv and ansible.cfg, plain
                  output that people read in CI logs and that we parse)
  Runner / Play   ansible-playbook with its output in a log directory, timed, its PLAY RECAP read
                  into per-host counters; the host-set and changed=0 checks
  Lab             lab/lab (up, down, status, inventory, state, fault), the lab's hosts, secrets
                  and SSH as the inventory's user (through sudo when that user is not root)
  others_using()  "someone else is using the lab": Ansible or lab runs of others
  Steps           numbered steps with elapsed seconds and the exit path of itest/itest-upgrade:
                  the lab torn down on failure, Ctrl-C and SIGTERM too, PASSED/FAILED at the end
  secrets_of(), files_with()   the secrets scan

Standard library and PyYAML only (the venv has it; the callers run with the venv's python).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Iterable

from homeops_dev import ROOT  # noqa: E402  (after the stdlib imports)
VENV_BIN = ROOT / ".venv" / "bin"
LAB_CMD = ROOT / "lab" / "lab"
# LAB_INVENTORY (module attribute, see __getattr__ below): the inventory of this clone's lab
# (its LAB_ID), as lab/lab names it: .lab/inventory.yml, or .lab/inventory-<id>.yml for another
# LAB_ID of the clone. The lab's rule, never a copy of it.
DEPLOY = "playbooks/deploy-observability-stack.yml"
VERIFY = "playbooks/tests/verify_observability.yml"
# The inventory variables that hold secrets: the scans look for their values everywhere.
SECRET_NAMES = ("grafana_admin_password", "loki_datasource_password", "loki_push_password",
                "ansible_become_password")
# Shorter values would match by chance (and no real secret is that short).
SECRET_MIN_LEN = 6


class DriverError(Exception):
    """A lab command or a run failed; the message says which and where to look (it may be empty
    when the output already said it), rc the exit code a runner ends with."""

    def __init__(self, message: str = "", rc: int = 1):
        super().__init__(message)
        self.message, self.rc = message, rc


class LabError(DriverError):
    pass


class LabChanged(LabError):
    """The lab is not the one this run started any more (somebody restarted or removed it)."""


# ---- the lab's id and paths ---------------------------------------------------------------

_LAB_IDS: dict[str, tuple[str, Path, Path]] = {}


def lab_id(env: dict | None = None) -> tuple[str, Path, Path]:
    """(id, state dir, inventory path) of this clone's lab under env's LAB_ID (default: this
    process's environment), from `lab/lab id` (pure: no root, nothing booted). Raises LabError
    naming the variable when lab/lab refuses it (a wrong LAB_ID)."""
    env = dict(os.environ if env is None else env)
    key = env.get("LAB_ID", "")
    if key not in _LAB_IDS:
        r = subprocess.run([str(LAB_CMD), "id"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        parts = r.stdout.split()
        if r.returncode != 0 or len(parts) != 3:
            raise LabError(f"lab/lab id failed (exit {r.returncode}) for LAB_ID={key!r}: "
                           f"{(r.stderr or r.stdout).strip()[:300]}", 2)
        _LAB_IDS[key] = (parts[0], Path(parts[1]), Path(parts[2]))
    return _LAB_IDS[key]


def __getattr__(name: str):
    # LAB_INVENTORY is computed on first use (PEP 562): importing the driver runs no command.
    if name == "LAB_INVENTORY":
        return lab_id()[2]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---- environment --------------------------------------------------------------------------

def ansible_env(extra: dict | None = None) -> dict[str, str]:
    """The environment of every Ansible run: this clone's venv first on PATH and its ansible.cfg
    (so its modules, collections and state), plain uncoloured output, and no inherited
    ANSIBLE_LOG_PATH (each run names its own log)."""
    env = dict(os.environ)
    env.update(
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        # Ansible's warnings about the terminal's locale would be noise in every log.
        LC_ALL="C.UTF-8",
    )
    env.pop("ANSIBLE_LOG_PATH", None)
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


def _tool(name: str) -> str:
    """A venv tool by absolute path when it is there (the callers may run with another PATH)."""
    path = VENV_BIN / name
    return str(path) if path.exists() else name


# ---- processes ----------------------------------------------------------------------------

class Result:
    """What a command did: return code, its output (stdout and stderr together), seconds."""

    def __init__(self, rc: int, text: str, secs: float, timed_out: bool = False):
        self.returncode, self.text, self.secs, self.timed_out = rc, text, secs, timed_out


def _stop(proc: subprocess.Popen, group: bool) -> None:
    """Ends a child we started that is still running: SIGTERM (Ansible cleans up on it), then
    SIGKILL after 20 s. With group, its whole process group (ssh masters, workers)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def execute(cmd: list[str], *, out: Path | None = None, env: dict | None = None, input: bytes | None = None,
            timeout: float | None = None, echo: bool | re.Pattern | None = None,
            on_line: Callable[[str], bool] | None = None, new_session: bool = True,
            append: bool = False) -> Result:
    """Runs cmd (never through a shell) from the clone's root, stdout and stderr together.

    out: the full output goes there too (append: added to it). echo: True prints every line as
    it comes, a regex only the lines it finds (progress: ' => ...' payloads and the '****' rulers
    cut). on_line(line) sees each line; when it returns True the command's process group is
    killed (SIGKILL) there, as a crash would. new_session: the command gets its own process
    group, so a kill or a timeout reaches everything it started; without it, it stays in ours
    and a Ctrl-C on the terminal reaches it directly (and it can prompt on the terminal).
    Interrupted (Ctrl-C, SIGTERM, timeout), the command is stopped before this returns/raises.
    """
    env = env if env is not None else ansible_env()
    t0 = time.monotonic()
    stream = bool(echo) or on_line is not None
    sink = open(out, "ab" if append else "wb") if out else None
    chunks: list[bytes] = []
    timed_out = threading.Event()
    try:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE if input is not None else None,
            stdout=subprocess.PIPE if (stream or sink is None) else sink, stderr=subprocess.STDOUT,
            start_new_session=new_session)
    except BaseException:
        if sink:
            sink.close()
        raise

    def on_timeout():
        timed_out.set()
        _stop(proc, new_session)

    timer = threading.Timer(timeout, on_timeout) if timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        if input is not None:
            # Small inputs (scripts, secrets): written whole before the output is read.
            proc.stdin.write(input)
            proc.stdin.close()
        if proc.stdout is not None:
            for raw in proc.stdout:
                chunks.append(raw)
                if sink:
                    sink.write(raw)
                    sink.flush()
                line = raw.decode("utf-8", "replace")
                if echo is True:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                elif echo and echo.search(line):
                    shown = re.sub(r" \*+$", "", re.sub(r" => .*", "", line.rstrip("\n")))
                    print(shown, flush=True)
                if on_line is not None and on_line(line):
                    os.killpg(proc.pid, signal.SIGKILL) if new_session else proc.kill()
                    break
        rc = proc.wait()
    except BaseException:
        _stop(proc, new_session)
        raise
    finally:
        if timer:
            timer.cancel()
        if proc.stdout is not None:
            proc.stdout.close()
        if sink:
            sink.close()
    if proc.stdout is None and out:
        text = out.read_text(errors="replace")
    else:
        text = b"".join(chunks).decode("utf-8", "replace")
    return Result(rc, text, time.monotonic() - t0, timed_out.is_set())


# ---- PLAY RECAP ---------------------------------------------------------------------------

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


# ---- secrets ------------------------------------------------------------------------------

def secrets_of(data) -> list[str]:
    """The values of SECRET_NAMES anywhere in an inventory's data (ansible-inventory --list
    output or the YAML itself), sorted."""
    found = set()

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in SECRET_NAMES and isinstance(v, str) and len(v) >= SECRET_MIN_LEN:
                    found.add(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(data)
    return sorted(found)


def inventory_secrets(inventory: Path | str) -> list[str]:
    """The plain secret values of an inventory, as Ansible reads it (vaulted values it cannot
    open are not plain). Never printed; ansible-inventory's output stays out of Ansible's log,
    which would otherwise hold the whole inventory."""
    r = subprocess.run([_tool("ansible-inventory"), "-i", str(inventory), "--list"], cwd=ROOT,
                       env=ansible_env({"ANSIBLE_LOG_PATH": "/dev/null"}), stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    try:
        return secrets_of(json.loads(r.stdout))
    except ValueError:
        return []


def files_under(paths: Iterable[Path]) -> list[Path]:
    """Every regular file of these paths (a file, or a directory walked), sorted."""
    out = []
    for p in map(Path, paths):
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += [Path(top) / n for top, _, names in os.walk(p) for n in names if (Path(top) / n).is_file()]
    return sorted(out)


def secret_needles(secret: str) -> list[bytes]:
    """What a leak of `secret` looks like in a log: the value itself, and as JSON, Python repr and
    YAML single quotes escape it (the lab's secrets hold quotes and backslashes: a -vvv result
    shows `a\\"b` for `a"b`); and its longest run of letters, digits, '-' and '_' when that is
    distinctive on its own (16+ characters), which survives any escaping."""
    forms = {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1], secret.replace("'", "''"),
             json.dumps(secret, ensure_ascii=False)[1:-1]}
    runs = sorted(re.findall(r"[A-Za-z0-9_-]+", secret), key=len)
    if runs and len(runs[-1]) >= 16:
        forms.add(runs[-1])
    return sorted(f.encode() for f in forms if f)


# What is secret whatever its value: a password hash as the Loki proxy's file holds them (SHA-512
# crypt, from the inventory's passwords) and a PEM private key (the proxy's server key, the CA's).
SECRET_SHAPES = (re.compile(rb"\$6\$[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}"),
                 re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----"))


def files_with(secrets: Iterable[str], files: Iterable[Path]) -> list[Path]:
    """The files that hold any of the secrets (byte for byte, or escaped: secret_needles) or
    anything of SECRET_SHAPES."""
    needles = [n for s in secrets if s for n in secret_needles(s)]
    hits = []
    for f in files:
        try:
            data = Path(f).read_bytes()
        except OSError:
            continue
        if any(n in data for n in needles) or any(p.search(data) for p in SECRET_SHAPES):
            hits.append(Path(f))
    return hits


# ---- SSH ----------------------------------------------------------------------------------

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


# ---- the lab ------------------------------------------------------------------------------

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


# ---- someone else is using the lab --------------------------------------------------------

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


# ---- steps and the exit path of a run (itest, itest-upgrade) ------------------------------

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
