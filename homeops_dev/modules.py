#!/usr/bin/env python3
"""The one list of our Ansible modules, derived from the Cargo workspace: every member crate of
Cargo.toml under modules/ builds one binary (src/main.rs), a module of that name; the library
crates live under crates/ (crates/runtime, crates/apt). A library crate under modules/ or a
binary crate elsewhere is an error, so the two never mix again. Make (`MODULES`), the tests,
the collection build, meta/runtime.yml's checks and the docs read it from here, so a new module
is added by adding its crate, nowhere else.

    homeops_dev/modules.py            the names, one line, space-separated (for Make)
    python -m homeops_dev.modules --json     the names as a JSON list
    python -m homeops_dev.modules --table    the one module table (Markdown): each module's FQCN and the
                                  short_description of its library/<name>.yml (needs PyYAML:
                                  .venv/bin/python); the collection's README gets it at build
    python -m homeops_dev.modules --bad-inputs
                                  the refused inputs derived from each built binary's argument
                                  spec (`library/<name> --argument-spec`), as a JSON list of
                                  {module, why, args, needle}: the fault suite's `bad_input`
                                  runs them through Ansible (needs `make build`)
"""
from __future__ import annotations

import copy
import glob
import json
import os
import subprocess
import sys
import tomllib

from homeops_dev import ROOT as _ROOT  # noqa: E402

ROOT = str(_ROOT)


def members(root: str = ROOT) -> list[str]:
    """The workspace member directories (globs expanded, excludes removed), relative to root."""
    with open(os.path.join(root, "Cargo.toml"), "rb") as f:
        workspace = tomllib.load(f).get("workspace", {})
    found: set[str] = set()
    for pattern in workspace.get("members", []):
        for path in glob.glob(os.path.join(root, pattern)):
            if os.path.isfile(os.path.join(path, "Cargo.toml")):
                found.add(os.path.relpath(path, root))
    excluded = {os.path.normpath(p) for p in workspace.get("exclude", [])}
    return sorted(m for m in found if os.path.normpath(m) not in excluded)


def binaries(root: str, member: str) -> list[str]:
    """The binaries a member crate builds: its [[bin]] targets, else src/main.rs under the
    package name, else none (a library crate)."""
    with open(os.path.join(root, member, "Cargo.toml"), "rb") as f:
        manifest = tomllib.load(f)
    bins = [b["name"] for b in manifest.get("bin", []) if "name" in b]
    if bins:
        return bins
    if os.path.isfile(os.path.join(root, member, "src", "main.rs")):
        return [manifest["package"]["name"]]
    return []


MODULES_DIR = "modules"


def modules(root: str = ROOT) -> list[str]:
    """Every binary of the workspace, all of them crates under modules/: one binary = one
    module of the same name."""
    names = []
    for member in members(root):
        bins = binaries(root, member)
        in_modules = os.path.dirname(os.path.normpath(member)) == MODULES_DIR
        if in_modules and not bins:
            raise SystemExit("error: %s is a library crate: modules/ holds only module (binary) crates; "
                             "move it to crates/" % member)
        if bins and not in_modules:
            raise SystemExit("error: %s builds the binaries %s: a module crate belongs in modules/<name>, "
                             "library crates in crates/" % (member, ", ".join(bins)))
        names.extend(bins)
    if not names:
        raise SystemExit("error: no binary crate among the workspace members of %s/Cargo.toml" % root)
    return sorted(names)


TABLE_MARKER = "<!-- module table: homeops_dev/modules.py --table, inserted by homeops_dev/build_collection.py -->"


def table(root: str = ROOT) -> str:
    """The module table: one row per module, its FQCN and the short_description of its sidecar
    docs (library/<name>.yml), the one place that line is written."""
    import yaml  # only here: Make runs this script with the system python3 for the names

    rows = ["| module | what it does |", "|---|---|"]
    for name in modules(root):
        path = os.path.join(root, "library", name + ".yml")
        try:
            with open(path, encoding="utf-8") as f:
                short = yaml.safe_load(f)["DOCUMENTATION"]["short_description"]
        except (OSError, KeyError, TypeError) as e:
            raise SystemExit("error: %s has no DOCUMENTATION.short_description (%s): every module's sidecar "
                             "docs need one" % (path, e))
        rows.append("| `homeops.observability.%s` | %s |" % (name, " ".join(str(short).split())))
    return "\n".join(rows) + "\n"


def argument_spec(name: str, root: str = ROOT) -> dict:
    """The options the built binary library/<name> declares (`--argument-spec`,
    crates/runtime/src/spec.rs)."""
    path = os.path.join(root, "library", name)
    if not os.access(path, os.X_OK):
        raise SystemExit("error: %s is missing or not executable: run `make build`" % path)
    proc = subprocess.run([path, "--argument-spec"], capture_output=True, timeout=30,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
    try:
        answer = json.loads(proc.stdout)
        options = answer["options"]
    except (ValueError, KeyError, TypeError):
        raise SystemExit("error: %s --argument-spec printed no argument spec (rc %d): %r; is it built from "
                         "this tree? run `make build`" % (path, proc.returncode, proc.stdout[:200])) from None
    if answer.get("module") != name:
        raise SystemExit("error: %s says it is module %r: run `make build`" % (path, answer.get("module")))
    return options


# The refusals every module makes before it looks at a value's meaning: the shared runtime's
# parser (crates/runtime/src/params.rs) checks keys, types, required, choices and minimums, in
# that order, before the module's own code runs. Each case below breaks exactly one of those
# rules in arguments that are otherwise valid to the parser, so the message is known in advance:
# the needles are the parser's own wording up to the value it quotes back.
UNKNOWN = "homeops_no_such_option"
NO_SUCH_CHOICE = "homeops-no-such-choice"
# A value of the wrong JSON type for each spec type (a string for a number is coerced by Ansible's
# rules, so the wrong values are those no rule turns into the type).
WRONG_TYPE = {"str": {"homeops": "not a string"}, "int": "not-a-number", "bool": "maybe", "dict": "not-a-dict",
              "list": {"homeops": "not a list"}}


def _kind(option: dict) -> str:
    """The type's name in the parser's messages (Kind::name)."""
    if option["type"] == "list" and option.get("elements") == "dict":
        return "list of dicts"
    return option["type"]


def _valid(option: dict):
    """A value the parser accepts for the option (its meaning is never reached)."""
    kind = _kind(option)
    if option.get("choices"):
        return int(option["choices"][0]) if kind == "int" else option["choices"][0]
    return {"str": "homeops-bad-input", "int": max(option.get("min") or 0, 0), "bool": False, "dict": {},
            "list": [], "list of dicts": []}[kind]


def _base(options: dict) -> dict:
    """The arguments the parser accepts with only the required options set."""
    return {name: _valid(o) for name, o in sorted(options.items()) if o.get("required")}


def _refusals(options: dict, prefix) -> list[tuple[str, dict, str]]:
    """(why, arguments, needle) for one object of the spec (the module's options, or one entry of
    a list of dicts); `prefix(arguments)` is how the parser names that object in its messages."""
    base = _base(options)
    found = []

    def add(why, args, needle):
        found.append((why, args, prefix(args) + needle))

    for name, o in sorted(options.items()):
        kind = _kind(o)
        if o.get("required"):
            args = {k: v for k, v in base.items() if k != name}
            add("%s missing" % name, args, "missing required parameter '%s' (%s)" % (name, kind))
        wrong = dict(base, **{name: WRONG_TYPE[o["type"]]})
        if kind == "bool":
            add("%s not a boolean" % name, wrong, "parameter '%s' must be a boolean" % name)
        else:
            add("%s not of type %s" % (name, kind), wrong, "parameter '%s' must be of type %s, got" % (name, kind))
        if o.get("choices"):
            add("%s outside its choices" % name, dict(base, **{name: NO_SUCH_CHOICE}),
                "value of parameter '%s' must be one of: %s; got" % (name, ", ".join(map(str, o["choices"]))))
        if o.get("min") is not None:
            low = o["min"] - 1
            add("%s below its minimum" % name, dict(base, **{name: low}),
                "parameter '%s' must be at least %d, got %d" % (name, o["min"], low))
    return found


def _entry_prefix(parent: str):
    """How the parser names entry 0 of `parent`: by its path or name when it has one."""
    def prefix(entry: dict) -> str:
        label = next((entry[k] for k in ("path", "name") if isinstance(entry.get(k), str)), None)
        if label is None:
            return "%s[0]: " % parent
        return "%s[0] (%s): " % (parent, label if len(label) <= 80 else label[:77] + "...")
    return prefix


def bad_inputs(root: str = ROOT) -> list[dict]:
    """Every module's refused inputs, derived from its argument spec: an unknown option, each
    required option missing, each option of a wrong type, outside its choices, under its minimum,
    and the same inside one entry of each list of dicts. Each case is {module, why, args, needle}:
    the module must fail (changed=false) with the needle in its msg."""
    cases = []
    for module in modules(root):
        options = argument_spec(module, root)
        base = _base(options)
        cases.append({"module": module, "why": "unknown option", "args": dict(base, **{UNKNOWN: 1}),
                      "needle": "Unsupported parameters for (%s) module: %s." % (module, UNKNOWN)})
        for why, args, needle in _refusals(options, lambda args: ""):
            cases.append({"module": module, "why": why, "args": args, "needle": needle})
        for parent, o in sorted(options.items()):
            if _kind(o) != "list of dicts":
                continue
            entry_base = _base(o["suboptions"])
            prefix = _entry_prefix(parent)
            entry = dict(entry_base, **{UNKNOWN: 1})
            entry_cases = [("unknown key", entry, prefix(entry) + "unsupported keys in '%s': %s." % (parent, UNKNOWN))]
            entry_cases += _refusals(o["suboptions"], prefix)
            for why, entry, needle in entry_cases:
                cases.append({"module": module, "why": "%s[0]: %s" % (parent, why),
                              "args": dict(copy.deepcopy(base), **{parent: [entry]}), "needle": needle})
    return cases


def main(argv: list[str]) -> int:
    if "--bad-inputs" in argv:
        print(json.dumps(bad_inputs(), indent=1))
        return 0
    if "--table" in argv:
        print(table(), end="")
        return 0
    names = modules()
    print(json.dumps(names) if "--json" in argv else " ".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
