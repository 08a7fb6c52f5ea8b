#!/usr/bin/env python3
"""`ansible-test sanity` on the built collection, installed as a user gets it (`make sanity`).

Installs the tarball offline into a temporary directory (ansible_collections/homeops/observability,
outside any git work tree), puts tests/sanity/ignore-<core>.txt into it and runs every sanity test
of the venv's ansible-test there, on the controller (`--local`, no container), for Python 3.11.

The ignore file holds only what a binary module cannot satisfy, each line with its `# reason`;
it is generated here (`--write-ignores`) from the module list (homeops_dev/modules.py) and the
architectures, and the run fails when the committed file differs from what this script would
write. ansible-test's own `ignores` test fails on an entry that no longer matches anything.

ansible-test keeps a virtual environment per sanity test under ~/.ansible/test (pylint,
pycodestyle, voluptuous, ... from PyPI, pinned by ansible-test) and bootstraps pip in each with a
script it downloads from its own CI host, which these machines cannot reach. So HOME is
~/.cache/homeops-observability/ansible-test-<core>/home for ansible-test (kept across clones, so CI
reuses the environments), and its bootstrap script is a stand-in that takes pip
from the Python's own ensurepip and then installs the pinned pip from PyPI (the package index is
reachable). The first run builds the environments (minutes); later runs reuse them.

    python -m homeops_dev.sanity --tarball build/homeops-observability-X.tar.gz [--venv .venv] [--python 3.11]
    python -m homeops_dev.sanity --write-ignores [--venv .venv]   rewrites tests/sanity/ignore-<core>.txt
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from homeops_dev.modules import ROOT, modules

ARCHES = ("x86_64", "aarch64")
MODULE_DIR = "plugins/modules"
# The stand-in for ansible-test's pip bootstrap script (get-pip.py): it is run as
# `python get_pip.py [pip options] pip==X.Y`. ensurepip runs in a child process: it clears the
# PIP_* settings of the process it runs in, and the pip install after it needs them (the CA).
GET_PIP = '''"""Stand-in for get-pip.py, written by homeops_dev/sanity.py: pip from ensurepip, then the pinned one."""
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
'''
# What ansible-test prints that is worth showing in `make lint` (the rest is pip's progress).
SHOWN = re.compile(r"^(Running sanity test|ERROR|WARNING|FATAL|See documentation)")


def ignore_lines(names: list[str]) -> list[str]:
    """The ignore file: what binary modules cannot satisfy, and why."""
    lines = []
    for arch in ARCHES:
        for name in names:
            lines.append("%s/.arch/%s/%s validate-modules!skip # a static %s binary, not Python or PowerShell: its docs"
                         " are %s.py and %s.yml, checked by validate-modules" % (MODULE_DIR, arch, name, arch, name, name))
    lines.append("plugins/action/fastpath.py action-plugin-docs # the one fast path of every module (meta/runtime.yml"
                 " routes each module's action_plugin to it), not a module: the modules' docs are theirs")
    for name in names:
        for ext in ("py", "yml"):
            lines.append("%s/%s.%s validate-modules:missing-gplv3-license # the collection is MIT (LICENSE), not"
                         " GPLv3; this file holds docs only" % (MODULE_DIR, name, ext))
    return lines


def core_version(venv: str) -> str:
    """major.minor of the ansible-core in the venv (the ignore file is per version)."""
    res = subprocess.run([os.path.join(venv, "bin", "python"), "-c",
                          "import ansible.release as r; print(r.__version__)"], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit("error: no ansible-core in %s (%s): run make setup" % (venv, res.stderr.strip()))
    return ".".join(res.stdout.strip().split(".")[:2])


def pip_bootstrap_version(venv: str) -> str:
    """The pip version whose get-pip.py ansible-test asks for (it names the cached file)."""
    found = glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", "ansible_test", "_internal",
                                   "python_requirements.py"))
    text = open(found[0], encoding="utf-8").read() if found else ""
    m = re.search(r"^\s*pip='([\d.]+)',", text, re.M)
    if not m:
        raise SystemExit("error: cannot find the pip version of ansible-test's bootstrap in %s "
                         "(ansible-test changed?): update pip_bootstrap_version() in homeops_dev/sanity.py" % venv)
    return m.group(1)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", help="the collection tarball (make collection)")
    parser.add_argument("--venv", default=os.path.join(ROOT, ".venv"), help="the venv whose ansible-test runs")
    parser.add_argument("--python", default="3.11", help="the Python version the tests run for")
    parser.add_argument("--write-ignores", action="store_true", help="rewrite tests/sanity/ignore-<core>.txt")
    args = parser.parse_args(argv)
    venv = os.path.abspath(args.venv)
    core = core_version(venv)
    ignore_name = "ignore-%s.txt" % core
    ignore_path = os.path.join(ROOT, "tests", "sanity", ignore_name)
    wanted = "\n".join(ignore_lines(modules(ROOT))) + "\n"
    if args.write_ignores:
        os.makedirs(os.path.dirname(ignore_path), exist_ok=True)
        with open(ignore_path, "w", encoding="utf-8") as f:
            f.write(wanted)
        print("wrote %s" % os.path.relpath(ignore_path, ROOT))
        return 0
    if not args.tarball:
        parser.error("--tarball is required (or --write-ignores)")
    current = open(ignore_path, encoding="utf-8").read() if os.path.exists(ignore_path) else None
    if current != wanted:
        raise SystemExit("error: tests/sanity/%s is %s what the modules need (ansible-core %s): run "
                         "`python -m homeops_dev.sanity --write-ignores --venv %s` and commit it"
                         % (ignore_name, "missing, not" if current is None else "not", core, args.venv))

    # ansible-test's HOME: its per-test venvs are kept across clones and runs (like pip's cache),
    # so a fresh clone (CI) does not build them again; they are keyed by their requirements.
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    work = os.path.join(cache, "homeops-observability", "ansible-test-%s" % core)
    os.makedirs(work, exist_ok=True)
    # Outside any git work tree: inside one, ansible-test lists the files git knows, and this
    # repository ignores build/ (it then skips every target and passes on nothing).
    collections = tempfile.mkdtemp(prefix="homeops-sanity-")
    try:
        return run_sanity(args, venv, core, ignore_path, work, collections)
    finally:
        shutil.rmtree(collections, ignore_errors=True)


def run_sanity(args: argparse.Namespace, venv: str, core: str, ignore_path: str, work: str, collections: str) -> int:
    ignore_name = os.path.basename(ignore_path)
    subprocess.run([os.path.join(venv, "bin", "ansible-galaxy"), "collection", "install", "--offline", "--no-deps",
                    "--force", os.path.abspath(args.tarball), "-p", collections], check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections))
    installed = os.path.join(collections, "ansible_collections", "homeops", "observability")
    os.makedirs(os.path.join(installed, "tests", "sanity"))
    shutil.copy2(ignore_path, os.path.join(installed, "tests", "sanity", ignore_name))

    home = os.path.join(work, "home")
    cache = os.path.join(home, ".ansible", "test", "cache")
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, "get_pip_%s.py" % pip_bootstrap_version(venv).replace(".", "_")), "w",
              encoding="utf-8") as f:
        f.write(GET_PIP)
    env = dict(os.environ, HOME=home, PATH=os.path.join(venv, "bin") + os.pathsep + os.environ.get("PATH", ""))
    log_path = os.path.join(work, "ansible-test.log")
    cmd = [os.path.join(venv, "bin", "ansible-test"), "sanity", "--python", args.python, "--local", "--color", "no"]
    print("==> sanity: %s (ansible-core %s) in %s" % (" ".join(cmd[1:]), core, installed))
    started = time.monotonic()
    skipped_all = False
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, cwd=installed, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            if SHOWN.match(line):
                print(line.rstrip())
            skipped_all = skipped_all or "All targets skipped" in line
        rc = proc.wait()
    took = time.monotonic() - started
    if rc != 0:
        print("error: ansible-test sanity failed (rc %d, %.0f s); full output: %s"
              % (rc, took, log_path), file=sys.stderr)
        return 1
    if skipped_all:
        print("error: ansible-test found no file to test in %s (a git work tree around it?)" % installed, file=sys.stderr)
        return 1
    print("sanity: passed on ansible-core %s, Python %s (%.0f s)" % (core, args.python, took))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
