#!/usr/bin/env python3
"""The one list of our Ansible modules, derived from the Cargo workspace: every member crate of
Cargo.toml that builds a binary (src/main.rs) is a module of that name; library crates
(modules/runtime, modules/apt) are not. Make (`MODULES`), the tests, the collection build and
the docs read it from here, so a new module is added by adding its crate, nowhere else.

    scripts/modules.py            the names, one line, space-separated (for Make)
    scripts/modules.py --json     the names as a JSON list
"""
from __future__ import annotations

import glob
import json
import os
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def modules(root: str = ROOT) -> list[str]:
    """Every binary of the workspace: one binary = one module of the same name."""
    names = []
    for member in members(root):
        names.extend(binaries(root, member))
    if not names:
        raise SystemExit("error: no binary crate among the workspace members of %s/Cargo.toml" % root)
    return sorted(names)


def main(argv: list[str]) -> int:
    names = modules()
    print(json.dumps(names) if "--json" in argv else " ".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
