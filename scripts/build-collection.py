#!/usr/bin/env python3
"""Builds the collection tarball homeops.observability (`make collection`).

Stages a clean tree under build/collection/ from exactly the files that belong in it, then runs
`ansible-galaxy collection build` on it:

    galaxy.yml, CHANGELOG.md, LICENSE, THIRD-PARTY.md, meta/runtime.yml, plugins/doc_fragments/*.py,
    roles/**                                  as they are
    docs/collection.md                       -> README.md
    library/<module> and library/<module>.yml -> plugins/modules/ (every module of scripts/modules.py)
    library/<dir>/.../<module>               -> plugins/modules/<dir>/.../<module>, for every file under
                                                a subdirectory of library/ named after a module (the
                                                per-architecture builds, e.g. library/.arch/aarch64/<module>,
                                                land where the fast path looks: beside plugins/modules/<module>)
    action_plugins/homeops_fastpath.py       -> plugins/action/<module>.py, one copy per module (the fast path
                                                is found by the module's own name, as in the repo's symlinks)

Staging (instead of building the repo root) keeps target/, .venv/, lab/, vendor/ and the rest out
of the tarball by construction, not by a list of ignores that must keep up.

    scripts/build-collection.py [--output-dir build]   prints the tarball path on its last line
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from modules import ROOT, modules  # noqa: E402

COPIED = ["galaxy.yml", "CHANGELOG.md", "LICENSE", "THIRD-PARTY.md", "meta/runtime.yml", "roles", "plugins/doc_fragments"]
SKIP_NAMES = {"__pycache__", ".pytest_cache"}


def library_files(root: str, names: list[str]) -> list[str]:
    """Paths under library/ (relative to it) that go into plugins/modules/: each module's binary
    and sidecar docs at the top, and any file named after a module in a subdirectory."""
    wanted = set(names) | {n + ".yml" for n in names}
    found = []
    lib = os.path.join(root, "library")
    for dirpath, dirnames, filenames in os.walk(lib):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_NAMES)
        for f in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, f), lib)
            top = os.sep not in rel
            if (top and f in wanted) or (not top and f in names):
                found.append(rel)
    missing = [x for n in names for x in (n, n + ".yml") if x not in found]
    if missing:
        raise SystemExit("error: library/ lacks %s: run `make build` (binaries) or add the sidecar docs"
                         % ", ".join("library/" + m for m in missing))
    return sorted(found)


def copy_tree(src: str, dst: str) -> None:
    shutil.copytree(src, dst, ignore=lambda d, names: [n for n in names if n in SKIP_NAMES or n.endswith(".pyc")])


def stage(root: str, stage_dir: str) -> list[str]:
    names = modules(root)
    shutil.rmtree(stage_dir, ignore_errors=True)
    os.makedirs(stage_dir)
    for rel in COPIED:
        src, dst = os.path.join(root, rel), os.path.join(stage_dir, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.isdir(src):
            copy_tree(src, dst)
        else:
            shutil.copy2(src, dst)
    shutil.copy2(os.path.join(root, "docs", "collection.md"), os.path.join(stage_dir, "README.md"))
    for rel in library_files(root, names):
        dst = os.path.join(stage_dir, "plugins", "modules", rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(os.path.join(root, "library", rel), dst)
    action_dir = os.path.join(stage_dir, "plugins", "action")
    os.makedirs(action_dir)
    for name in names:
        shutil.copy2(os.path.join(root, "action_plugins", "homeops_fastpath.py"), os.path.join(action_dir, name + ".py"))
    return names


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=os.path.join(ROOT, "build"))
    args = parser.parse_args(argv)
    with open(os.path.join(ROOT, "galaxy.yml"), encoding="utf-8") as f:
        galaxy = yaml.safe_load(f)
    stage_dir = os.path.join(args.output_dir, "collection")
    names = stage(ROOT, stage_dir)
    tarball = os.path.join(args.output_dir, "%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"], galaxy["version"]))
    tmp_out = os.path.join(args.output_dir, ".galaxy-out")
    shutil.rmtree(tmp_out, ignore_errors=True)
    os.makedirs(tmp_out)
    subprocess.run(["ansible-galaxy", "collection", "build", stage_dir, "--output-path", tmp_out, "--force"],
                   check=True, stdout=subprocess.DEVNULL)
    # Replaced by rename: a concurrent install never reads a half-written tarball.
    os.replace(os.path.join(tmp_out, os.path.basename(tarball)), tarball)
    shutil.rmtree(tmp_out)
    print("collection %s.%s %s with modules %s" % (galaxy["namespace"], galaxy["name"], galaxy["version"], " ".join(names)))
    print(tarball)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
