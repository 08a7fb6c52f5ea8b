"""The secrets scan: the inventory's secret values, the forms they may take in a log, and the
files that hold any of them."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Iterable

from homeops_dev import ROOT
from homeops_dev.labdriver.core import _tool, ansible_env


# The inventory variables that hold secrets: the scans look for their values everywhere.
SECRET_NAMES = ("grafana_admin_password", "loki_datasource_password", "loki_push_password",
                "ansible_become_password")


# Shorter values would match by chance (and no real secret is that short).
SECRET_MIN_LEN = 6


def secrets_of(data) -> list[str]:
    """The values of SECRET_NAMES anywhere in an inventory's data (ansible-inventory --list
    output or the YAML itself), sorted."""
    found = set()

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in SECRET_NAMES and isinstance(v, str) and len(v) >= SECRET_MIN_LEN:
                    found.add(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(data)
    return sorted(found)


def inventory_secrets(inventory: Path | str) -> list[str]:
    """The plain secret values of an inventory, as Ansible reads it (vaulted values it cannot
    open are not plain). Never printed; ansible-inventory's output stays out of Ansible's log,
    which would otherwise hold the whole inventory."""
    r = subprocess.run([_tool("ansible-inventory"), "-i", str(inventory), "--list"], cwd=ROOT,
                       env=ansible_env({"ANSIBLE_LOG_PATH": "/dev/null"}), stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    try:
        return secrets_of(json.loads(r.stdout))
    except ValueError:
        return []


def files_under(paths: Iterable[Path]) -> list[Path]:
    """Every regular file of these paths (a file, or a directory walked), sorted."""
    out = []
    for p in map(Path, paths):
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += [Path(top) / n for top, _, names in os.walk(p) for n in names if (Path(top) / n).is_file()]
    return sorted(out)


def secret_needles(secret: str) -> list[bytes]:
    """What a leak of `secret` looks like in a log: the value itself, and as JSON, Python repr and
    YAML single quotes escape it (the lab's secrets hold quotes and backslashes: a -vvv result
    shows `a\\"b` for `a"b`); and its longest run of letters, digits, '-' and '_' when that is
    distinctive on its own (16+ characters), which survives any escaping."""
    forms = {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1], secret.replace("'", "''"),
             json.dumps(secret, ensure_ascii=False)[1:-1]}
    runs = sorted(re.findall(r"[A-Za-z0-9_-]+", secret), key=len)
    if runs and len(runs[-1]) >= 16:
        forms.add(runs[-1])
    return sorted(f.encode() for f in forms if f)


# What is secret whatever its value: a password hash as the Loki proxy's file holds them (SHA-512
# crypt, from the inventory's passwords) and a PEM private key (the proxy's server key, the CA's).
SECRET_SHAPES = (re.compile(rb"\$6\$[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}"),
                 re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----"))


def files_with(secrets: Iterable[str], files: Iterable[Path]) -> list[Path]:
    """The files that hold any of the secrets (byte for byte, or escaped: secret_needles) or
    anything of SECRET_SHAPES."""
    needles = [n for s in secrets if s for n in secret_needles(s)]
    hits = []
    for f in files:
        try:
            data = Path(f).read_bytes()
        except OSError:
            continue
        if any(n in data for n in needles) or any(p.search(data) for p in SECRET_SHAPES):
            hits.append(Path(f))
    return hits
