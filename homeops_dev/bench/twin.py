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

The mapping is the table TWINS (homeops_dev/bench/twin_map.py), keyed by module name: a new
module (homeops_dev/modules.py, from the Cargo workspace) needs exactly one entry there, and the generator stops, naming the module and
the task, when a role or playbook calls a module that has none. Role references
(`homeops.observability.<role>` in import_role/include_role and meta dependencies) become the
twin's own roles, found by their bare name in bench/twin/roles/ beside the playbook.

bench/twin/ is git-ignored and generated on demand: every file carries a GENERATED header
(`{# #}` in templates, which renders to nothing), `--check` says whether it matches what the
current roles and playbooks generate, and homeops_dev/bench/ regenerates it when it does not.
Run by hand: `.venv/bin/python -m homeops_dev.bench.twin [--check] [--out DIR]`.
"""
from __future__ import annotations

import argparse
import copy
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from homeops_dev import ROOT
from homeops_dev.bench.twin_map import NS, TwinError, TWINS


OUT = ROOT / "bench" / "twin"
SOURCE_PLAYBOOK = Path("playbooks") / "deploy-observability-stack.yml"
TWIN_PLAYBOOK_NAME = "deploy-builtin.yml"
ME = "homeops_dev/bench/twin.py"


# Twins generated before the tooling became one package carry the old name: still ours to replace.
FORMER_ME = "bench/builtin_twin.py"
TASK_LIST_KEYS = ("pre_tasks", "tasks", "post_tasks", "handlers")
ROLE_TASK_KEYS = ("ansible.builtin.import_role", "ansible.builtin.include_role", "import_role", "include_role")


def our_modules() -> list[str]:
    """The one list of modules: homeops_dev/modules.py (the binary crates of Cargo.toml), imported
    the way bench.py imports it."""
    from homeops_dev import modules as workspace_modules

    return workspace_modules.modules(str(ROOT))


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
             "# homeops_dev/bench/ times it against the real deploy; it is not meant for deploying. Our modules are",
             "# replaced by (TWINS in homeops_dev/bench/twin_map.py):"]
    lines += [f"#   {m:<15} -> {t.doc}" for m, t in TWINS.items()]
    return "\n".join(lines) + "\n"


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
        raise TwinError(f"TWINS in {ME} has entries for {', '.join(stale)}, which homeops_dev/modules.py does not list")
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
        "would write with `ansible.builtin` (the table `TWINS` in `homeops_dev/bench/twin_map.py`); `roles/` are copies of\n"
        "the collection's roles with the same replacement. `make bench` times the two against each other.\n"
        "Git-ignored: regenerate with `.venv/bin/python -m homeops_dev.bench.twin`.\n")
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
        if any(out.iterdir()) and not (marker.is_file() and any(f"GENERATED by {me}" in marker.read_text(errors="replace")
                                                                for me in (ME, FORMER_ME))):
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
                print(f"{where} is OUT OF DATE (run python -m homeops_dev.bench.twin):\n  " + "\n  ".join(diffs[:20]))
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
