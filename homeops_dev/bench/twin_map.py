"""The mapping of the builtin-only twin (homeops_dev/bench/twin.py): TWINS, one entry per module
of homeops_dev/modules.py, each the ansible.builtin tasks a user would write instead of ours."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable


NS = "homeops.observability."


# A Debian 12 host with unattended-upgrades has all of these; packagekit/snapd are not there.
LOCK_UNITS = ["apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service",
              "apt-daily-upgrade.service", "unattended-upgrades.service"]


# What a release starts again: the timers and the daemon, never the apt-daily services
# themselves (starting them would run apt right now).
RESTART_UNITS = ["apt-daily.timer", "apt-daily-upgrade.timer", "unattended-upgrades.service"]
APT_KEYS = ("name", "state", "update_cache", "cache_valid_time", "lock_timeout")


class TwinError(Exception):
    pass


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
