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
"""
from __future__ import annotations

import glob
import json
import os
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


def main(argv: list[str]) -> int:
    if "--table" in argv:
        print(table(), end="")
        return 0
    names = modules()
    print(json.dumps(names) if "--json" in argv else " ".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
