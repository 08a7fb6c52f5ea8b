#!/usr/bin/env python3
"""Loki's own deprecated-config-checker over a Loki config, on the controller (verify check B4).

  loki_deprecated_check.py CONFIG_FILE

The checker is upstream's `tools/deprecated-config-checker` of a Loki release tag, built as a
static binary in ../shared/real-parsers (beside this clone; HOMEOPS_REAL_PARSERS_DIR overrides):
`loki-deprecated-config-checker-v<version>-linux-amd64.xz`, checked against that folder's
SHA256SUMS (the .xz and the decompressed binary), decompressed once into a cache
($XDG_CACHE_HOME/homeops/real-parsers/<sha256>/, else ~/.cache/...). The newest version there is
used. It is not installed on the hosts, so the verify playbook fetches the deployed config (it
holds no secret) and runs this here.

Prints one JSON object and exits 0 whenever it could decide:
  {"checked": true, "ok": true, "checker": "v3.7.6", "findings": []}
  {"checked": true, "ok": false, "checker": "v3.7.6", "findings": ["deleted: limits_config.enforce_metric_name"]}
  {"checked": false, "why": "no checker here: ../shared/real-parsers is absent"}
Findings name the key only, never its value. Exits 2 (with the JSON) when the checker is there but
broken: a checksum mismatch, or an exit code it does not document.
Standard library only.
"""
import hashlib
import json
import lzma
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATTERN = re.compile(r"^loki-deprecated-config-checker-v([0-9]+(?:\.[0-9]+)*)-linux-amd64\.xz$")
# "[-] limits_config.x = v: why" (deleted) or "[*] ..." (deprecated): the section headers say which.
FINDING = re.compile(r"^\[.\]\s+([A-Za-z0-9_.\-\[\]]+)\s*=")
SECTION = re.compile(r"^--\s*(.+?)\s*--$")


def out(result, rc=0):
    print(json.dumps(result, sort_keys=True))
    return rc


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parsers_dir():
    env = os.environ.get("HOMEOPS_REAL_PARSERS_DIR")
    if env:
        return env, env
    return os.path.normpath(os.path.join(REPO, "..", "shared", "real-parsers")), "../shared/real-parsers"


def find_checker(folder, shown):
    """(path, version) of the verified, decompressed newest checker, or raise LookupError(why)
    for 'not here' and ValueError(why) for 'here but broken'."""
    if not os.path.isdir(folder):
        raise LookupError(f"no checker here: {shown} is absent")
    found = sorted(((tuple(int(x) for x in m.group(1).split(".")), m.group(1), name)
                    for name in os.listdir(folder) for m in [PATTERN.match(name)] if m), reverse=True)
    if not found:
        raise LookupError(f"no checker here: {shown} has no loki-deprecated-config-checker-v*-linux-amd64.xz")
    _, version, name = found[0]
    sums = {}
    try:
        with open(os.path.join(folder, "SHA256SUMS"), encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    sums[parts[1].lstrip("*")] = parts[0]
    except OSError as e:
        raise ValueError(f"{shown}/SHA256SUMS cannot be read: {e.strerror}") from None
    want_xz, want_bin = sums.get(name), sums.get(name[:-3])
    if not want_xz or not want_bin:
        raise ValueError(f"{shown}/SHA256SUMS lists no checksum for {name} and {name[:-3]}")
    cache_root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    cache = os.path.join(cache_root, "homeops", "real-parsers", want_bin)
    binary = os.path.join(cache, "loki-deprecated-config-checker")
    if os.path.isfile(binary) and sha256(binary) == want_bin:
        return binary, version
    xz = os.path.join(folder, name)
    if sha256(xz) != want_xz:
        raise ValueError(f"{shown}/{name} does not match its SHA256SUMS entry: a damaged copy, fetch it again")
    os.makedirs(cache, exist_ok=True)
    # Decompress beside, check, then rename: a concurrent run never sees half a binary.
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=".checker.")
    try:
        with os.fdopen(fd, "wb") as f, lzma.open(xz) as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                f.write(chunk)
        if sha256(tmp) != want_bin:
            raise ValueError(f"decompressed {shown}/{name} does not match its SHA256SUMS entry")
        os.chmod(tmp, 0o755)
        os.replace(tmp, binary)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return binary, version


def findings(text):
    """The keys the checker names, 'deleted: a.b' / 'deprecated: a.b', without their values."""
    kind, found = "finding", []
    for line in text.splitlines():
        s = line.strip()
        m = SECTION.match(s)
        if m:
            title = m.group(1).lower()
            kind = "deleted" if "deleted" in title else "deprecated" if "deprecated" in title else "finding"
            if "runtime" in title:
                kind += " (runtime config)"
            continue
        m = FINDING.match(s)
        if m:
            found.append(f"{kind}: {m.group(1)}")
    return found


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    config = argv[1]
    if not os.path.isfile(config):
        return out({"checked": False, "why": f"no config to check: {config} does not exist"}, 2)
    folder, shown = parsers_dir()
    try:
        binary, version = find_checker(folder, shown)
    except LookupError as e:
        return out({"checked": False, "why": str(e)})
    except (ValueError, OSError) as e:
        return out({"checked": False, "why": f"checker unusable: {e}"}, 2)
    try:
        run = subprocess.run([binary, "-no-color", "-config.file", config],
                             capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return out({"checked": False, "why": f"checker v{version} did not run: {e}"}, 2)
    text = run.stdout + run.stderr
    if run.returncode == 0 and "No deprecated or deleted configs found" in text:
        return out({"checked": True, "ok": True, "checker": f"v{version}", "findings": []})
    if run.returncode == 1:
        found = findings(text) or ["a finding the checker printed in a form not understood here"]
        return out({"checked": True, "ok": False, "checker": f"v{version}", "findings": found})
    return out({"checked": False, "why": f"checker v{version} exited {run.returncode} (0 or 1 expected)"}, 2)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
