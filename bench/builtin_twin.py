#!/usr/bin/env python3
"""Writes bench/twin/: the BUILTIN-ONLY TWIN of the deploy, for `make bench` to time against the
real one. It is playbooks/deploy-observability-stack.yml (as bench/twin/deploy-builtin.yml, with
the playbooks it imports) and copies of the roles it runs (bench/twin/roles/<role>), with every
task and handler that calls one of our Rust modules replaced by what a user would write with
ansible.builtin instead. Everything else (plays, builtin and collection tasks, variables, role
defaults, templates, handlers, failure handling) stays as it is, so the benchmark compares our
modules and nothing else:

    system_account  ansible.builtin.group + ansible.builtin.user (only the user task for a call
                    that just sets supplementary groups, `groups` without `group`)
    apt_packages    ansible.builtin.apt (same name/state/cache arguments and lock_timeout;
                    retries/retry_delay are our engine's and have no builtin counterpart)
    kernel_headers  ansible.builtin.command `uname -r` + ansible.builtin.apt linux-headers-<release>
    apt_lockdown    ansible.builtin.systemd_service stopped (locked) / started (released) over
                    the apt units a Debian host has
    safe_grep       ansible.builtin.command: grep -c
    files           per entry ansible.builtin.file (directory, absent) or ansible.builtin.copy with
                    the content rendered on the controller (validate kept; secret -> diff: false);
                    an `ini` entry -> community.general.ini_file per option (owner/group/mode and
                    create on each); an expression of entries -> loops (ini entries not supported
                    there: the copy loop fails on them, loudly); a register -> one per task + a
                    set_fact with changed / skipped / changed_paths
    units           ansible.builtin.systemd_service per unit (restart -> state: restarted unless
                    the unit should be stopped; daemon_reload on the first)
    http_ready      ansible.builtin.uri until status (and json fields, body regex), retries =
                    ceil(timeout / interval), delay = interval
    host_facts      packages (the upgrade guard): dpkg-query and dpkg --compare-versions per
                    package, then a set_fact giving the register ansible_facts.homeops_packages
                    (name, installed, status, version, architecture, pin, newer_than_pin);
                    architecture/kernel: ansible.builtin.setup with gather_subset [!all, !min,
                    platform]; both (the guard's first contact): setup, then the packages read;
                    the other reads (verify's) have no
                    entry here and stop the generator

The mapping is the table TWINS, keyed by module name: a new module (scripts/modules.py, from the
Cargo workspace) needs exactly one entry there, and the generator stops, naming the module and
the task, when a role or playbook calls a module that has none. Role references
(`homeops.observability.<role>` in import_role/include_role and meta dependencies) become the
twin's own roles, found by their bare name in bench/twin/roles/ beside the playbook.

bench/twin/ is git-ignored and generated on demand: every file carries a GENERATED header
(`{# #}` in templates, which renders to nothing), `--check` says whether it matches what the
current roles and playbooks generate, and bench/bench.py regenerates it when it does not.
Run by hand: `.venv/bin/python bench/builtin_twin.py [--check] [--out DIR]`.
"""
from __future__ import annotations

import argparse
import copy
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "twin"
SOURCE_PLAYBOOK = Path("playbooks") / "deploy-observability-stack.yml"
TWIN_PLAYBOOK_NAME = "deploy-builtin.yml"
NS = "homeops.observability."
ME = "bench/builtin_twin.py"

# A Debian 12 host with unattended-upgrades has all of these; packagekit/snapd are not there.
LOCK_UNITS = ["apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service",
              "apt-daily-upgrade.service", "unattended-upgrades.service"]
# What a release starts again: the timers and the daemon, never the apt-daily services
# themselves (starting them would run apt right now).
RESTART_UNITS = ["apt-daily.timer", "apt-daily-upgrade.timer", "unattended-upgrades.service"]
APT_KEYS = ("name", "state", "update_cache", "cache_valid_time", "lock_timeout")
TASK_LIST_KEYS = ("pre_tasks", "tasks", "post_tasks", "handlers")
ROLE_TASK_KEYS = ("ansible.builtin.import_role", "ansible.builtin.include_role", "import_role", "include_role")


class TwinError(Exception):
    pass


def our_modules() -> list[str]:
    """The one list of modules: scripts/modules.py (the binary crates of Cargo.toml), imported
    the way bench.py imports it."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import modules as workspace_modules

    return workspace_modules.modules(str(ROOT))


# ---- the mapping: one entry per module ----------------------------------------------------

@dataclass
class Twin:
    """What a user would write with ansible.builtin instead of one of our modules.
    `convert(args, name, rest)` gets the module's arguments, the task's name and its other keywords
    (when, register, notify, loop, ...) and returns the builtin task(s); `doc` is its line in the
    generated header."""
    doc: str
    convert: Callable[[dict, str, dict], list[dict]]


def _task(name: str, module: str, args, **extra) -> dict:
    out = {"name": name, module: args}
    out.update(extra)
    return out


def _jinja_expr(value) -> str:
    """A module argument as a Jinja expression: `{{ x }}` -> `x`, a literal -> its repr."""
    if isinstance(value, str):
        # DOTALL: folded (`>-`) expressions span lines.
        m = re.fullmatch(r"\{\{\s*(.+?)\s*\}\}", value.strip(), re.S)
        if m:
            return f"({m.group(1)})"
    return repr(value)


def _system_account(args: dict, name: str, rest: dict) -> list[dict]:
    user = {k: args[k] for k in ("name", "group", "system", "home", "create_home", "shell", "comment") if k in args}
    if "groups" in args:
        # Our append defaults to true, the builtin's to false.
        user.update(groups=args["groups"], append=args.get("append", True))
        if "group" not in args and "gid" not in args:
            # Memberships only (alloy's package-made user): the builtin user task alone, as a
            # user would write it; our module does not touch the primary group either.
            return [_task(name, "ansible.builtin.user", user, **rest)]
    both = "group and system user exist"
    gname, uname = ((name.replace(both, "group exists"), name.replace(both, "system user exists"))
                    if both in name else (name + " (group)", name + " (user)"))
    # The user task keeps the register: it is the one whose result says what the account is.
    group_rest = {k: v for k, v in rest.items() if k != "register"}
    return [
        _task(gname, "ansible.builtin.group",
              {"name": args.get("group", args["name"]), "system": args.get("system", False)}, **group_rest),
        _task(uname, "ansible.builtin.user", user, **rest),
    ]


def _apt_packages(args: dict, name: str, rest: dict) -> list[dict]:
    return [_task(name, "ansible.builtin.apt", {k: args[k] for k in APT_KEYS if k in args}, **rest)]


def _kernel_headers(args: dict, name: str, rest: dict) -> list[dict]:
    reg = rest.get("register", "observability_kernel_headers_result")
    release = re.sub(r"_result$", "", reg) + "_release_result"
    apt = {"name": "linux-headers-{{ %s.stdout }}" % release, "state": "present"}
    apt.update({k: args[k] for k in ("update_cache", "cache_valid_time", "lock_timeout") if k in args})
    cond = {k: v for k, v in rest.items() if k == "when"}
    return [
        _task("Find the running kernel release", "ansible.builtin.command", "uname -r",
              register=release, changed_when=False, **cond),
        _task(name, "ansible.builtin.apt", apt, **rest),
    ]


def _apt_lockdown(args: dict, name: str, rest: dict) -> list[dict]:
    state = args.get("state", "locked")
    if state in ("locked", "released"):
        locked = state == "locked"
        units, target = list(LOCK_UNITS if locked else RESTART_UNITS), "stopped" if locked else "started"
    else:
        # The role passes its state as a variable: choose at run time, as ours does.
        expr = _jinja_expr(state)
        units = "{{ %r if %s == 'locked' else %r }}" % (LOCK_UNITS, expr, RESTART_UNITS)
        target = "{{ 'stopped' if %s == 'locked' else 'started' }}" % expr
    return [_task(name, "ansible.builtin.systemd_service", {"name": "{{ item }}", "state": target},
                  loop=units, **rest)]


def _safe_grep(args: dict, name: str, rest: dict) -> list[dict]:
    return [_task(name, "ansible.builtin.command",
                  {"argv": ["grep", "-c", "-E", args["pattern"], args["path"]]},
                  changed_when=False, **rest)]


def _is_loop(rest: dict) -> bool:
    return any(k == "loop" or k.startswith("with_") for k in rest)


def _when(rest: dict, *more: str) -> list:
    """The task's own `when` (a string or a list) followed by more conditions, as one list."""
    own = rest.get("when")
    return ([] if own is None else own if isinstance(own, list) else [own]) + list(more)


def _combined_result(name: str, reg: str, parts: list[str], rest: dict, extra: dict | None = None,
                     task_vars: dict | None = None) -> dict:
    """A set_fact that gives the original register what later tasks read from one task's result
    (`x is changed`, `x is skipped`), from the registers of the tasks that replaced it. It runs
    without the task's `when`: a skipped task registers a skipped result, which counts as unchanged."""
    results = "[" + ", ".join(parts) + "]"
    value = {"changed": "{{ %s | select('changed') | list | length > 0 }}" % results,
             "skipped": "{{ %s | reject('skipped') | list | length == 0 }}" % results}
    value.update(extra or {})
    keep = {k: v for k, v in rest.items() if k in ("no_log", "tags")}
    if task_vars:
        keep["vars"] = task_vars
    return _task(f"{name} (its combined result)", "ansible.builtin.set_fact", {reg: value}, **keep)


FILE_STATES = ("file", "directory", "absent")
# `map('combine', {..., 'state': 'directory', ...})` sets one state on every entry of an expression.
_ONE_STATE = re.compile(r"map\(\s*['\"]combine['\"]\s*,\s*\{[^}]*['\"]state['\"]\s*:\s*['\"](\w+)['\"]")


def _files(args: dict, name: str, rest: dict) -> list[dict]:
    """One ansible.builtin.file (directory, absent) or ansible.builtin.copy with the rendered
    content (file) per entry; copy, not template: the content was rendered on the controller
    already. A register becomes one register per task plus a set_fact with `changed` and
    `changed_paths`, as the module returns them."""
    entries = args["files"]
    reg = rest.get("register")
    each = {k: v for k, v in rest.items() if k != "register"}
    # An entry is secret by itself, by the task's `secret` or by its no_log: no diff of its content.
    all_secret = args.get("secret") is True or rest.get("no_log") is True
    tasks: list[dict] = []
    paths: list = []          # (register of the task, its path) of the entries, for changed_paths
    loops: list[str] = []     # registers of looped tasks (expression entries)
    if isinstance(entries, str):
        if _is_loop(rest):
            raise ValueError("files is an expression on a task with its own loop: the twin loops over the entries "
                             "and cannot nest that loop; list the entries")
        expr = _jinja_expr(entries)
        one = _ONE_STATE.search(entries)
        if one and one.group(1) not in FILE_STATES:
            raise ValueError(f"files: the expression sets state {one.group(1)!r}; use file, directory or absent")
        attrs = {k: "{{ item.%s | default(omit) }}" % k for k in ("owner", "group", "mode")}
        label = {"label": "{{ item.path }}"}
        if one is None or one.group(1) != "file":
            loop = ("{{ %s }}" % expr if one else
                    "{{ %s | selectattr('state', 'defined') | selectattr('state', 'in', ['directory', 'absent']) | list }}"
                    % expr)
            state = one.group(1) if one else "{{ item.state }}"
            tasks.append(_task(name, "ansible.builtin.file", {"path": "{{ item.path }}", "state": state, **attrs},
                               loop=loop, loop_control=label, **each))
        if one is None or one.group(1) == "file":
            loop = ("{{ %s }}" % expr if one else
                    "{{ %s | rejectattr('state', 'defined') | list + (%s | selectattr('state', 'defined') "
                    "| selectattr('state', 'equalto', 'file') | list) }}" % (expr, expr))
            copy_args = {"dest": "{{ item.path }}", "content": "{{ item.content }}", **attrs,
                         "validate": "{{ item.validate | default(omit) }}"}
            # Which entries are secret is known only at run time: no diff of any of them.
            tasks.append(_task(name if not tasks else f"{name} (files)", "ansible.builtin.copy", copy_args,
                               loop=loop, loop_control=label, **{**each, "diff": False}))
        for i, t in enumerate(tasks):
            if reg:
                t["register"] = f"{reg}_part{i + 1}"
                loops.append(t["register"])
    elif isinstance(entries, list):
        n = len(entries)
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or "path" not in e:
                raise ValueError(f"files[{i}] must be a dict with a path")
            state = e.get("state", "file")
            if state not in FILE_STATES:
                raise ValueError(f"files[{i}] ({e['path']}): state must be file, directory or absent, not {state!r}")
            label = name if n == 1 else f"{name} ({state} {i + 1} of {n})"
            attrs = {k: e[k] for k in ("owner", "group", "mode") if k in e}
            if state == "absent":
                new = [_task(label, "ansible.builtin.file", {"path": e["path"], "state": "absent"}, **each)]
            elif state == "directory":
                # ansible.builtin.file makes missing parents of a directory itself (parents: true).
                new = [_task(label, "ansible.builtin.file", {"path": e["path"], "state": "directory", **attrs}, **each)]
            elif "ini" in e:
                new = _ini_entry(e, i, label, attrs, each, all_secret)
            else:
                if "content" not in e:
                    raise ValueError(f"files[{i}] ({e['path']}): state file needs content or ini")
                new = []
                if e.get("parents") is True:
                    # copy does not make a missing directory for a file: a user adds a task for it.
                    new.append(_task(f"{name} (parent directory of entry {i + 1})", "ansible.builtin.file",
                                     {"path": "{{ twin_file_path | dirname }}", "state": "directory"},
                                     vars={"twin_file_path": e["path"]}, **each))
                copy_args = {"dest": e["path"], "content": e["content"], **attrs}
                if "validate" in e:
                    copy_args["validate"] = e["validate"]
                extra = {"diff": False} if all_secret or e.get("secret") is True else {}
                new.append(_task(label, "ansible.builtin.copy", copy_args, **{**each, **extra}))
            if reg:
                for t in new:
                    t["register"] = f"{reg}_part{len(tasks) + 1}"
                    tasks.append(t)
                # An ini entry's path changed when any of its options did.
                for t in (new if "ini" in e else new[-1:]):
                    paths.append((t["register"], e["path"]))
            else:
                tasks.extend(new)
    else:
        raise TypeError(f"files must be a list of entries or an expression, not {type(entries).__name__}")
    if not reg:
        return tasks
    pieces = ["(%s.results | default([]) | selectattr('changed') | map(attribute='item.path') | list)" % r
              for r in loops]
    task_vars = None
    if paths:
        # The entries' paths as the task wrote them (templated here, as they were there).
        task_vars = {"twin_files_paths": [p for _, p in paths]}
        pieces.append("(twin_files_paths | zip([%s]) | selectattr('1', 'changed') | map(attribute='0') | unique "
                      "| list)" % ", ".join(r for r, _ in paths))
    changed_paths = "{{ %s }}" % " + ".join(pieces) if pieces else []
    return tasks + [_combined_result(name, reg, [t["register"] for t in tasks], rest,
                                     {"changed_paths": changed_paths}, task_vars)]


def _ini_entry(e: dict, i: int, label: str, attrs: dict, each: dict, all_secret: bool) -> list[dict]:
    """community.general.ini_file per option of an `ini` entry: what the role had before the entry
    existed (the module follows ini_file's default rules). Owner, group and mode on each task, as a
    user writes it; a secret entry's tasks write no diff."""
    ini = e["ini"]
    if not isinstance(ini, dict) or not ini or not all(isinstance(o, dict) and o for o in ini.values()):
        raise ValueError(f"files[{i}] ({e['path']}): ini must be a dict of sections, each a dict of options")
    if "content" in e:
        raise ValueError(f"files[{i}] ({e['path']}): content and ini are mutually exclusive")
    extra = {"diff": False} if all_secret or e.get("secret") is True else {}
    create = {"create": e["create"]} if "create" in e else {}
    # ini_file validates nothing: a validate of the entry has no twin.
    if "validate" in e:
        raise ValueError(f"files[{i}] ({e['path']}): validate on an ini entry has no ini_file twin")
    return [_task(f"{label} ({section}.{option})", "community.general.ini_file",
                  {"path": e["path"], "section": section, "option": option, "value": value, **attrs, **create},
                  **{**each, **extra})
            for section, options in ini.items() for option, value in options.items()]


def _unit_state(state, restart):
    """systemd_service's state for one unit of ours: `restart` true -> restarted, unless the unit
    should be stopped (ours never restarts a stopped unit)."""
    if restart is None or restart is False:
        return state
    if restart is True:
        return "stopped" if state == "stopped" else "restarted"
    r = "(%s | bool)" % _jinja_expr(restart)
    if state == "stopped":
        return "stopped"
    if state is None:
        return "{{ 'restarted' if %s else omit }}" % r
    if state == "started":
        return "{{ 'restarted' if %s else 'started' }}" % r
    s = _jinja_expr(state)
    return "{{ 'restarted' if (%s and %s != 'stopped') else %s }}" % (r, s, s)


def _units(args: dict, name: str, rest: dict) -> list[dict]:
    """ansible.builtin.systemd_service per unit (a loop when the units are an expression)."""
    units = args["units"]
    reload = args.get("daemon_reload", False)
    reg = rest.get("register")
    each = {k: v for k, v in rest.items() if k != "register"}
    tasks: list[dict] = []
    if isinstance(units, str):
        if _is_loop(rest):
            raise ValueError("units is an expression on a task with its own loop; list the units")
        if reload is True:
            tasks.append(_task(f"{name} (reload systemd)", "ansible.builtin.systemd_service",
                               {"daemon_reload": True}, **each))
        elif reload is not False:
            raise ValueError("daemon_reload must be true or false when units is an expression")
        state = ("{{ 'restarted' if (item.restart | default(false) | bool and item.state | default('started') "
                 "!= 'stopped') else item.state | default(omit) }}")
        tasks.append(_task(name, "ansible.builtin.systemd_service",
                           {"name": "{{ item.name }}", "enabled": "{{ item.enabled | default(omit) }}", "state": state},
                           loop="{{ %s }}" % _jinja_expr(units), loop_control={"label": "{{ item.name }}"}, **each))
    elif isinstance(units, list):
        for i, u in enumerate(units):
            if not isinstance(u, dict) or "name" not in u:
                raise ValueError(f"units[{i}] must be a dict with a name")
            svc = {"name": u["name"]}
            if u.get("enabled") is not None:
                svc["enabled"] = u["enabled"]
            state = _unit_state(u.get("state"), u.get("restart"))
            if state is not None:
                svc["state"] = state
            if i == 0 and reload is not False:
                # systemd_service reloads before it acts on the unit, every run (ours only when needed).
                svc["daemon_reload"] = reload
            tasks.append(_task(name if len(units) == 1 else f"{name} ({u['name']})",
                               "ansible.builtin.systemd_service", svc, **each))
    else:
        raise TypeError(f"units must be a list of units or an expression, not {type(units).__name__}")
    if not reg:
        return tasks
    if len(tasks) == 1:
        tasks[0]["register"] = reg
        return tasks
    for i, t in enumerate(tasks):
        t["register"] = f"{reg}_part{i + 1}"
    return tasks + [_combined_result(name, reg, [t["register"] for t in tasks], rest)]


def _json_path(path: str) -> str:
    """`a.b.0.c` as a Jinja subscript chain (a number indexes a list, as in ours)."""
    return "".join(f"[{p}]" if p.isdigit() else f"[{p!r}]" for p in path.split("."))


def _http_ready(args: dict, name: str, rest: dict) -> list[dict]:
    """ansible.builtin.uri with until/retries/delay: one request (and one module run) per attempt."""
    reg = rest.get("register", "http_ready_twin_result")
    codes = args.get("status_code", [200])
    if not isinstance(codes, (list, str)) or (isinstance(codes, str) and "{{" not in codes):
        codes = [codes]
    uri = {"url": args["url"], "status_code": codes}
    if "request_timeout" in args:
        uri["timeout"] = args["request_timeout"]
    if "headers" in args:
        uri["headers"] = args["headers"]
    if "url_username" in args:
        uri.update(url_username=args["url_username"], force_basic_auth=True)
        if "url_password" in args:
            uri["url_password"] = args["url_password"]
    until = ["(%s.status | default(-1) | string) in (%s | map('string') | list)" % (reg, _jinja_expr(codes))]
    # The expected values and the regex reach the condition as task vars, as written (a Jinja
    # string literal would need them escaped).
    task_vars = dict(rest.get("vars") or {})
    if args.get("json"):
        task_vars["twin_ready_json"] = args["json"]
    for field_path in (args.get("json") or {}):
        # Ours compares as JSON, and a string also matches a number or boolean with that text.
        got = "(%s.json | default({}))%s | default(none) | to_json" % (reg, _json_path(str(field_path)))
        w = "twin_ready_json[%r]" % str(field_path)
        until.append("(%s) in [%s | to_json, %s | string]" % (got, w, w))
    if "body_regex" in args:
        uri["return_content"] = True
        task_vars["twin_ready_body_regex"] = args["body_regex"]
        until.append("%s.content | default('') is search(twin_ready_body_regex)" % reg)
    timeout, interval = args.get("timeout", 60), args.get("interval", 1)
    if isinstance(timeout, int) and isinstance(interval, int):
        retries = -(-timeout // max(interval, 1))
    else:
        retries = "{{ ((%s | int) / ([%s | int, 1] | max)) | round(0, 'ceil') | int }}" % (
            _jinja_expr(timeout), _jinja_expr(interval))
    out = {k: v for k, v in rest.items() if k not in ("register", "vars")}
    if task_vars:
        out["vars"] = task_vars
    return [_task(name, "ansible.builtin.uri", uri, register=reg, until=" and ".join(until), retries=retries,
                  delay=interval, **out)]


HOST_FACTS_COVERED = ("packages", "admindir")


def _host_facts(args: dict, name: str, rest: dict) -> list[dict]:
    """The upgrade guard's package read: dpkg-query per package, dpkg --compare-versions per pin,
    and a set_fact that gives the register the module's `ansible_facts.homeops_packages` (name,
    installed, status, version, architecture, pin, newer_than_pin; not `compare`). The deploy's
    first contact (architecture and/or kernel only) is setup's platform subset, what a builtin
    user runs for those facts."""
    platform = {"architecture", "kernel"}
    if args and set(args) <= platform:
        return [_task(name, "ansible.builtin.setup", {"gather_subset": ["!all", "!min", "platform"]}, **rest)]
    if set(args) & platform:
        # The guard's first contact does both: setup (its register, for `unreachable`), then the
        # packages read, which leaves its facts (homeops_packages) with the host.
        return (_host_facts({k: args[k] for k in args if k in platform}, name, rest)
                + _host_facts({k: args[k] for k in args if k not in platform}, name,
                              {k: v for k, v in rest.items() if k != "register"}))
    other = sorted(set(args) - set(HOST_FACTS_COVERED))
    if other:
        raise ValueError(f"the host_facts twin covers packages only (the deploy's upgrade guard), not {other}")
    if "packages" not in args:
        raise ValueError("host_facts without packages: nothing the twin covers")
    if _is_loop(rest):
        raise ValueError("host_facts on a task with its own loop: the twin loops over the packages")
    reg = rest.get("register")
    base = reg or "homeops_packages_twin"
    query, newer = f"{base}_query", f"{base}_newer"
    admindir = [f"--admindir={args['admindir']}"] if "admindir" in args else []
    each = {k: v for k, v in rest.items() if k != "register"}
    pkgs = args["packages"]
    loop = pkgs if isinstance(pkgs, list) else "{{ %s }}" % _jinja_expr(pkgs)
    facts = (
        "{% set ns = namespace(d={}) %}"
        "{% for q, c in " + query + ".results | default([]) | zip(" + newer + ".results | default([])) %}"
        # An item without rc was skipped or unreachable: nothing read, as with the module.
        "{% if q.rc is defined %}"
        "{% set name, pin = (q.item ~ '=').split('=')[:2] %}"
        "{% set f = ((q.stdout | default('')) ~ '||').split('|') %}"
        "{% set p = {'name': name, 'installed': f[0] == 'installed', 'status': f[0] or 'not-installed',"
        " 'version': f[1] or none, 'architecture': f[2] or none} %}"
        "{% if pin %}{% set p = p | combine({'pin': pin, 'newer_than_pin': (c.rc | default(1)) == 0}) %}{% endif %}"
        "{% set ns.d = ns.d | combine({name: p}) %}"
        "{% endif %}{% endfor %}{{ ns.d }}")
    result = ({reg: {"changed": False, "ansible_facts": {"homeops_packages": "{{ twin_homeops_packages }}"}}}
              if reg else {})
    return [
        _task(f"{name} (dpkg-query)", "ansible.builtin.command",
              {"argv": ["dpkg-query", *admindir, "--show", "--showformat=${db:Status-Status}|${Version}|${Architecture}",
                        "{{ item.split('=')[0] }}"]},
              loop=loop, register=query,
              # rc 1: dpkg knows no such package (never installed).
              failed_when=f"{query}.rc not in [0, 1]", changed_when=False, check_mode=False, **each),
        _task(f"{name} (dpkg --compare-versions)", "ansible.builtin.command",
              {"argv": ["dpkg", "--compare-versions", "{{ item.stdout.split('|')[1] }}", "gt",
                        "{{ item.item.split('=', 1)[1] }}"]},
              loop=f"{{{{ {query}.results | default([]) }}}}", loop_control={"label": "{{ item.item | default('') }}"},
              register=newer,
              when=["not (item.unreachable | default(false))", "item.rc | default(1) == 0",
                    "'=' in item.item", "item.stdout.split('|')[0] == 'installed'"],
              # rc 0: installed is newer than the pin; 1: it is not.
              failed_when=f"{newer}.rc not in [0, 1]", changed_when=False, check_mode=False,
              **{k: v for k, v in each.items() if k != "when"}),
        # Facts, as the module returns them: they stay with the host; the register gets them too.
        _task(f"{name} (set the facts)", "ansible.builtin.set_fact",
              {"homeops_packages": "{{ twin_homeops_packages }}", **result},
              vars={"twin_homeops_packages": facts},
              **{k: v for k, v in rest.items() if k in ("no_log", "tags")}),
    ]


TWINS: dict[str, Twin] = {
    "system_account": Twin("ansible.builtin.group + ansible.builtin.user", _system_account),
    "apt_packages": Twin("ansible.builtin.apt (its lock_timeout only covers python-apt's own lock)", _apt_packages),
    "kernel_headers": Twin("ansible.builtin.command `uname -r` + ansible.builtin.apt linux-headers-<release>",
                           _kernel_headers),
    "apt_lockdown": Twin("ansible.builtin.systemd_service stopped / started over the apt units", _apt_lockdown),
    "safe_grep": Twin("ansible.builtin.command: grep -c", _safe_grep),
    "files": Twin("ansible.builtin.file (directory, absent) / ansible.builtin.copy with the rendered content, "
                  "one task per entry; community.general.ini_file per option of an ini entry", _files),
    "units": Twin("ansible.builtin.systemd_service per unit (restart -> state: restarted)", _units),
    "http_ready": Twin("ansible.builtin.uri with until / retries / delay", _http_ready),
    "host_facts": Twin("ansible.builtin.command dpkg-query + dpkg --compare-versions per package, then set_fact "
                       "(packages only)", _host_facts),
}


# ---- walking tasks ------------------------------------------------------------------------

@dataclass
class Generation:
    """What one run generates: files (path relative to the output dir -> text) and, for the
    bench's time split, the names of our module tasks and of their builtin replacements."""
    files: dict[str, str] = field(default_factory=dict)
    ours: list[str] = field(default_factory=list)
    replacements: list[str] = field(default_factory=list)
    module_tasks: list[tuple[str, str, str]] = field(default_factory=list)   # (file, task name, module)


def module_of(task: dict, modules: list[str]) -> str | None:
    """Which of our modules a task calls (by FQCN, or by bare name through ansible.cfg's library)."""
    for key in task:
        if not isinstance(key, str):
            continue
        name = key[len(NS):] if key.startswith(NS) else key
        if name in modules:
            return name
    for key in ("action", "local_action"):
        spec = task.get(key)
        text = spec if isinstance(spec, str) else (spec or {}).get("module", "") if isinstance(spec, dict) else ""
        head = text.split()[0] if text.split() else ""
        if head.removeprefix(NS) in modules:
            raise TwinError(f"task '{task.get('name')}' calls {head} through `{key}:`, which {ME} cannot rewrite: "
                            f"call the module by its FQCN as a task key")
    return None


def _role_ref(name, roles: set[str]):
    if isinstance(name, str) and name.startswith(NS) and name[len(NS):] in roles:
        return name[len(NS):]
    return name


class Walker:
    def __init__(self, gen: Generation, modules: list[str], roles: set[str], source: str):
        self.gen, self.modules, self.roles, self.source = gen, modules, roles, source

    def tasks(self, tasks):
        if not isinstance(tasks, list):
            return tasks
        out = []
        for task in tasks:
            if not isinstance(task, dict):
                out.append(task)
                continue
            task = copy.deepcopy(task)
            for key in ("block", "rescue", "always"):
                if key in task:
                    task[key] = self.tasks(task[key])
            for key in ROLE_TASK_KEYS:
                if isinstance(task.get(key), dict):
                    task[key]["name"] = _role_ref(task[key].get("name"), self.roles)
            m = module_of(task, self.modules)
            if m is None:
                out.append(task)
                continue
            out.extend(self.convert(task, m))
        return out

    def convert(self, task: dict, m: str) -> list[dict]:
        if m not in TWINS:
            raise TwinError(f"{self.source}: task '{task.get('name', m)}' calls our module {m}, and {ME} has no "
                            f"builtin twin for it: add a TWINS entry (what a user would write with ansible.builtin)")
        key = next(k for k in task if isinstance(k, str) and (k == m or k == NS + m))
        name = task.get("name", m)
        rest = {k: v for k, v in task.items() if k not in (key, "name")}
        try:
            new = TWINS[m].convert(dict(task[key] or {}), name, rest)
        except (KeyError, TypeError, ValueError) as e:
            raise TwinError(f"{self.source}: task '{name}': the {m} twin cannot convert its arguments ({e!r})") from e
        for t in new:
            if module_of(t, self.modules):
                raise TwinError(f"the TWINS entry of {m} returned a task that still calls our module: {t}")
        self.gen.ours.append(name)
        self.gen.replacements.extend(t.get("name", "") for t in new)
        self.gen.module_tasks.append((self.source, name, m))
        return new

    def plays(self, plays):
        for play in plays or []:
            if not isinstance(play, dict):
                continue
            for key in TASK_LIST_KEYS:
                if key in play:
                    play[key] = self.tasks(play[key])
            if isinstance(play.get("roles"), list):
                play["roles"] = [self.role_entry(r) for r in play["roles"]]
        return plays

    def role_entry(self, entry):
        if isinstance(entry, dict):
            entry = dict(entry)
            for k in ("role", "name"):
                if k in entry:
                    entry[k] = _role_ref(entry[k], self.roles)
            return entry
        return _role_ref(entry, self.roles)


# ---- YAML out -----------------------------------------------------------------------------

class _Dumper(yaml.SafeDumper):
    """Indents block sequences under their key, as yamllint (and the originals) want."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _str(dumper, value):
    # Multi-line strings (folded Jinja expressions, file contents) as literal blocks.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def dump(data) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


def header(source: str, comment: str = "#") -> str:
    return f"{comment} GENERATED by {ME} from {source}: do not edit (the builtin-only twin of the deploy).\n"


def playbook_header(source: str) -> str:
    lines = [header(source).rstrip("\n"),
             "# bench/bench.py times it against the real deploy; it is not meant for deploying. Our modules are",
             "# replaced by (TWINS in bench/builtin_twin.py):"]
    lines += [f"#   {m:<15} -> {t.doc}" for m, t in TWINS.items()]
    return "\n".join(lines) + "\n"


# ---- the tree -----------------------------------------------------------------------------

def _load(path: Path):
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise TwinError(f"{path}: not valid YAML: {e}") from e


def _imported_playbooks(plays) -> list[str]:
    out = []
    for play in plays or []:
        if isinstance(play, dict):
            for key in ("ansible.builtin.import_playbook", "import_playbook"):
                if isinstance(play.get(key), str):
                    out.append(play[key])
    return out


VERIFY_ROLES = {"verify"}


def generate(root: Path = ROOT) -> Generation:
    """Everything bench/twin/ should hold, generated from `root`'s roles/ and playbooks/."""
    modules = our_modules()
    stale = sorted(set(TWINS) - set(modules))
    if stale:
        raise TwinError(f"TWINS in {ME} has entries for {', '.join(stale)}, which scripts/modules.py does not list")
    gen = Generation()
    role_root = root / "roles"
    # The deploy's roles: the verify role checks a deploy (it runs against the twin's result as
    # against ours) and is no part of what the twin replaces.
    roles = {p.name for p in role_root.iterdir() if p.is_dir() and p.name not in VERIFY_ROLES}

    # The deploy playbook and every playbook it imports (their paths are relative to it).
    pb_dir = (root / SOURCE_PLAYBOOK).parent
    todo = [SOURCE_PLAYBOOK.name]
    done = set()
    while todo:
        rel = todo.pop(0)
        if rel in done:
            continue
        done.add(rel)
        src = pb_dir / rel
        if not src.is_file():
            raise TwinError(f"{src} (imported by the deploy) does not exist")
        source = str(src.relative_to(root))
        plays = Walker(gen, modules, roles, source).plays(_load(src))
        todo.extend(_imported_playbooks(plays))
        out_name = TWIN_PLAYBOOK_NAME if rel == SOURCE_PLAYBOOK.name else rel
        head = playbook_header(source) if rel == SOURCE_PLAYBOOK.name else header(source)
        gen.files[out_name] = "---\n" + head + "\n" + dump(plays)

    for role in sorted(roles):
        for src in sorted((role_root / role).rglob("*")):
            if not src.is_file() or src.name == "README.md":
                continue
            rel = src.relative_to(role_root)
            source = str(src.relative_to(root))
            part = rel.parts[1] if len(rel.parts) > 2 else ""
            out = str(Path("roles") / rel)
            if src.suffix in (".yml", ".yaml") and part in ("tasks", "handlers"):
                data = Walker(gen, modules, roles, source).tasks(_load(src))
                gen.files[out] = "---\n" + header(source) + dump(data if data is not None else [])
            elif src.suffix in (".yml", ".yaml") and part == "meta":
                data = _load(src) or {}
                if isinstance(data.get("dependencies"), list):
                    w = Walker(gen, modules, roles, source)
                    data["dependencies"] = [w.role_entry(d) for d in data["dependencies"]]
                gen.files[out] = "---\n" + header(source) + dump(data)
            elif src.suffix in (".yml", ".yaml"):
                # defaults and vars: the original text, byte for byte, under the header.
                gen.files[out] = header(source) + src.read_text()
            elif src.suffix == ".j2":
                # A Jinja comment on its own line renders to nothing (trim_blocks, Ansible's default).
                gen.files[out] = "{# " + header(source, "").strip() + " #}\n" + src.read_text()
            elif src.suffix == ".sh":
                # A script the roles run on the controller: the header after its #! line.
                text = src.read_text()
                first, _, rest = text.partition("\n")
                gen.files[out] = (first + "\n" + header(source) + rest) if first.startswith("#!") \
                    else header(source) + text
            else:
                raise TwinError(f"{source}: {ME} does not know how to copy this kind of role file with a "
                                "GENERATED header: teach it (generate())")

    gen.files["README.md"] = (
        f"<!-- {header('roles/ and playbooks/', '').strip()} -->\n"
        "# The builtin-only twin of the deploy\n\n"
        f"`{TWIN_PLAYBOOK_NAME}` is `{SOURCE_PLAYBOOK}` with every task of our Rust modules replaced by what a user\n"
        "would write with `ansible.builtin` (the table `TWINS` in `bench/builtin_twin.py`); `roles/` are copies of\n"
        "the collection's roles with the same replacement. `make bench` times the two against each other.\n"
        "Git-ignored: regenerate with `.venv/bin/python bench/builtin_twin.py`.\n")
    return gen


def differences(out: Path = OUT, root: Path = ROOT) -> list[str]:
    """How `out` differs from what the current roles and playbooks generate (empty: current)."""
    want = generate(root).files
    if not out.is_dir():
        return [f"{out} does not exist"]
    have = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() or p.is_symlink()}
    diffs = [f"missing: {p}" for p in sorted(set(want) - have)]
    diffs += [f"not generated (extra): {p}" for p in sorted(have - set(want))]
    for p in sorted(set(want) & have):
        f = out / p
        if f.is_symlink() or f.read_text(errors="replace") != want[p]:
            diffs.append(f"out of date: {p}")
    return diffs


def is_current(out: Path = OUT, root: Path = ROOT) -> bool:
    return not differences(out, root)


def write(out: Path = OUT, root: Path = ROOT) -> Generation:
    """Replaces `out` with a freshly generated twin. Refuses to delete a directory that is not a
    twin (no generated README.md), so a wrong --out never wipes anything else."""
    gen = generate(root)
    if out.exists():
        marker = out / "README.md"
        if any(out.iterdir()) and not (marker.is_file() and f"GENERATED by {ME}" in marker.read_text(errors="replace")):
            raise TwinError(f"{out} exists and is not a generated twin (no GENERATED README.md): not replacing it")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, text in gen.files.items():
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return gen


def task_names(root: Path = ROOT) -> tuple[set[str], set[str]]:
    """Names of the deploy's tasks that use our modules, and of their builtin replacements in the
    twin (the same code that writes the twin)."""
    gen = generate(root)
    return set(gen.ours), set(gen.replacements)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only say whether the twin is current (exit 1 if not)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"where the twin goes (default {OUT.relative_to(ROOT)})")
    a = ap.parse_args(argv)
    where = a.out.resolve()
    try:
        if a.check:
            diffs = differences(where)
            if diffs:
                print(f"{where} is OUT OF DATE (run bench/builtin_twin.py):\n  " + "\n  ".join(diffs[:20]))
                return 1
            print(f"{where} is current")
            return 0
        gen = write(where)
    except TwinError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {where}: {len(gen.files)} files, {len(gen.module_tasks)} module tasks replaced")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
