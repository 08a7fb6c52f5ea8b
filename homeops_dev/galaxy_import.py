#!/usr/bin/env python3
"""Galaxy's own importer (galaxy-importer, pinned in requirements.txt) on the built tarball
(`make galaxy-import`, part of `make lint`).

Runs it locally with tests/galaxy-importer.cfg (no container: ansible-doc, ansible-lint production
offline, flake8; ansible-test sanity is `make sanity`'s) and fails unless it succeeds, reports
every module of homeops_dev/modules.py with its docs (DOCUMENTATION, EXAMPLES, RETURN as Galaxy shows
them), and logs no warning or error.

Galaxy requires `repository` in galaxy.yml, and this repository has no public address yet: while
galaxy.yml names none, the importer would stop at that, so this script says so and checks
everything else on a copy of the tarball whose MANIFEST.json names a marker URL. Setting the real
`repository:` in galaxy.yml ends that.

    homeops_dev/galaxy_import.py build/homeops-observability-X.tar.gz [--venv .venv]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time

from homeops_dev.modules import ROOT, modules

CONFIG = os.path.join(ROOT, "tests", "galaxy-importer.cfg")
MARKER_URL = "https://repository.invalid/homeops/observability"
# The importer's log lines that are findings (its INFO lines say what it is doing).
FINDING = re.compile(r"^(WARNING|ERROR)\b")


def with_marker_repository(tarball: str, out: str) -> None:
    """A copy of the tarball whose MANIFEST.json names MARKER_URL as repository."""
    with tarfile.open(tarball) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            if member.name.lstrip("./") == "MANIFEST.json":
                manifest = json.loads(data)
                manifest["collection_info"]["repository"] = MARKER_URL
                data = json.dumps(manifest, indent=4).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tarball")
    parser.add_argument("--venv", default=os.path.join(ROOT, ".venv"))
    args = parser.parse_args(argv)
    venv = os.path.abspath(args.venv)
    with tarfile.open(args.tarball) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    # As on Galaxy: none of this repository's Ansible settings (make exports ANSIBLE_CONFIG, whose
    # inventory rules fail the syntax check ansible-lint runs without an inventory).
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(GALAXY_IMPORTER_CONFIG=CONFIG, PATH=os.path.join(venv, "bin") + os.pathsep + os.environ.get("PATH", ""))
    with tempfile.TemporaryDirectory(prefix="homeops-galaxy-import-") as tmp:
        tarball = os.path.abspath(args.tarball)
        if not manifest["collection_info"].get("repository"):
            print("note: galaxy.yml names no repository, which Galaxy requires (the importer stops at "
                  "\"'repository' is required\"): set it to the public address before publishing. "
                  "Checking the rest with repository %s." % MARKER_URL)
            tarball = os.path.join(tmp, os.path.basename(args.tarball))
            with_marker_repository(args.tarball, tarball)
        env.update(ANSIBLE_LOCAL_TEMP=os.path.join(tmp, "ansible-tmp"), HOME=os.path.join(tmp, "home"))
        started = time.monotonic()
        res = subprocess.run([os.path.join(venv, "bin", "python"), "-m", "galaxy_importer.main", "--print-result",
                              tarball], cwd=tmp, env=env, capture_output=True, text=True)
        took = time.monotonic() - started
    out = res.stdout + res.stderr
    findings = [line for line in out.splitlines() if FINDING.match(line)]
    problems = []
    if res.returncode != 0 or "Importer processing completed successfully" not in out:
        problems.append("the import failed (rc %d)" % res.returncode)
    problems += ["importer: " + line for line in findings]
    result = None
    if "{" in res.stdout:
        try:
            result = json.loads(res.stdout[res.stdout.index("\n{") + 1:] if "\n{" in res.stdout else res.stdout)
        except ValueError as e:
            problems.append("its result is not JSON (%s)" % e)
    if result is not None:
        wanted = sorted(modules(ROOT))
        found = sorted(c["name"] for c in result["contents"] if c["content_type"] == "module")
        if found != wanted:
            problems.append("it found the modules %s, not %s" % (found, wanted))
        for item in result["docs_blob"]["contents"]:
            if item["content_type"] != "module":
                continue
            docs = item.get("doc_strings") or {}
            missing = [k for k in ("doc", "examples", "return") if not docs.get(k)]
            if missing:
                problems.append("module %s has no %s in Galaxy's docs" % (item["content_name"], ", ".join(missing)))
    elif not problems:
        problems.append("it printed no result")
    if problems:
        log = res.stdout.split("\n{", 1)[0] + "\n" + res.stderr
        print("\n".join(log.strip().splitlines()[-40:]), file=sys.stderr)
        for p in problems:
            print("error: galaxy-importer: %s" % p, file=sys.stderr)
        return 1
    print("galaxy-importer: %d modules with docs, %d contents, no warnings (%.0f s)"
          % (len(found), len(result["contents"]), took))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
