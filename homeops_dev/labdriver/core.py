"""The lab driver's base: its paths, errors, the lab's id (lab/lab id), the environment of every
Ansible run and commands run with a deadline (execute)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from homeops_dev import ROOT


VENV_BIN = ROOT / ".venv" / "bin"
LAB_CMD = ROOT / "lab" / "lab"


# LAB_INVENTORY (module attribute, see __getattr__ below): the inventory of this clone's lab
# (its LAB_ID), as lab/lab names it: .lab/inventory.yml, or .lab/inventory-<id>.yml for another
# LAB_ID of the clone. The lab's rule, never a copy of it.
DEPLOY = "playbooks/deploy-observability-stack.yml"
VERIFY = "playbooks/tests/verify_observability.yml"


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
