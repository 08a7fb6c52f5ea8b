#!/usr/bin/env python3
"""Compare the state snapshots of playbooks/tests/upgrade_state.yml (homeops_dev/itest_upgrade.py).

  upgrade_check.py restarts BEFORE AFTER [--pins VERSIONS_YML]
      Every service restarted exactly when its package version or one of its config files
      changed (a new unit InvocationID means it was started again), and is active afterwards.
      With --pins, every package is at its current pin afterwards.
  upgrade_check.py unchanged BEFORE AFTER
      Nothing changed: same package versions, config checksums and InvocationIDs (a deploy
      that should have done nothing, or a refused downgrade).
  upgrade_check.py loki-config STATE VERSION
      On every Loki host the installed loki accepts the config on disk (-verify-config), the
      config has no key unknown to Loki VERSION (upstream/loki/VERSION.json, the check the
      stand-in and tests use), and from 3.5.0 on it sets limits_config.enable_multi_variant_queries.

Exit 0 when the check holds, 1 with one line per violation otherwise. Standard library + PyYAML.
"""
import json
import os
import sys

import yaml

from homeops_dev import ROOT  # noqa: E402

REPO = str(ROOT)


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def services(state):
    """{(host, service): {"package", "version", "invocation", "active", "since", "configs": {path: sum}}}"""
    out = {}
    for host, s in state.items():
        for i, svc in enumerate(s["services"]):
            unit = dict(line.split("=", 1) for line in s["units"][i].splitlines() if "=" in line)
            out[(host, svc["service"])] = {
                "package": svc["package"],
                "version": s["versions"][i],
                "invocation": unit.get("InvocationID", ""),
                "active": unit.get("ActiveState", ""),
                "since": unit.get("ActiveEnterTimestamp", ""),
                "configs": {p: s["checksums"].get(p, "absent") for p in svc["configs"]},
            }
    return out


def paired(before, after):
    """Both snapshots' services, the error list (it starts with one if they name other services)
    and the keys of the services both name."""
    b, a = services(before), services(after)
    errors = []
    if set(b) != set(a):
        errors.append(f"the snapshots name other services: before {sorted(b)}, after {sorted(a)}")
    return b, a, errors, sorted(set(b) & set(a))


def check_restarts(before, after, pins=None):
    b, a, errors, shared = paired(before, after)
    for key in shared:
        host, svc = key
        x, y = b[key], a[key]
        pkg = x["version"] != y["version"]
        cfg = [p for p in x["configs"] if x["configs"][p] != y["configs"].get(p)]
        restarted = x["invocation"] != y["invocation"]
        why = ", ".join(([f"package {x['version']} -> {y['version']}"] if pkg else [])
                        + [f"{p} changed" for p in cfg]) or "package and config unchanged"
        print(f"    {host} {svc}: {why}; {'restarted' if restarted else 'not restarted'}"
              f" (active since {y['since'] or '?'})")
        if y["active"] != "active":
            errors.append(f"{host}: {svc} is {y['active'] or 'unknown'} after the deploy, not active")
        if (pkg or cfg) and not restarted:
            errors.append(f"{host}: {svc} still runs the old program or config ({why}) but was not restarted:"
                          " the deploy must restart it (handler) when its package or config changes")
        if not (pkg or cfg) and restarted:
            errors.append(f"{host}: {svc} was restarted although its package and config did not change:"
                          " a needless restart (a handler notified by a task that changes nothing?)")
        if pins is not None:
            want = pins.get(f"{x['package']}_version")
            if want and y["version"] != want:
                errors.append(f"{host}: {x['package']} {y['version']} is installed, the pin is {want}")
    return errors


def check_unchanged(before, after):
    b, a, errors, shared = paired(before, after)
    for key in shared:
        host, svc = key
        for field in ("version", "invocation", "configs", "active"):
            if b[key][field] != a[key][field]:
                errors.append(f"{host}: {svc} {field} changed: {b[key][field]} -> {a[key][field]}")
    print(f"    {len(a)} services: {'nothing changed' if not errors else f'{len(errors)} change(s)'}")
    return errors


def keys(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            yield path
            yield from keys(v, path)


def check_loki_config(state, version):
    from upstream import configcheck  # a namespace package: upstream/ has no __init__.py

    with open(os.path.join(REPO, "upstream", "loki", f"{version}.json"), encoding="utf-8") as f:
        tree = json.load(f)
    errors, hosts = [], 0
    for host, s in sorted(state.items()):
        if not s.get("loki_config"):
            continue
        hosts += 1
        if str(s.get("loki_verify_rc")) != "0":
            errors.append(f"{host}: the installed loki rejects {host}'s config: {s.get('loki_verify_output', '').strip()}")
        for e in configcheck.loki_errors(s["loki_config"], tree):
            errors.append(f"{host}: Loki {version} would reject the config: {e}")
        present = set(keys(yaml.safe_load(s["loki_config"]) or {}))
        vt = tuple(int(p) for p in version.split(".")[:3])
        if vt >= (3, 5, 0) and "limits_config.enable_multi_variant_queries" not in present:
            errors.append(f"{host}: the config lacks limits_config.enable_multi_variant_queries, which the "
                          f"template sets from Loki 3.5.0 on: the config was not re-rendered for {version}")
        print(f"    {host}: loki -verify-config rc={s.get('loki_verify_rc')}, {len(present)} keys, "
              f"enable_multi_variant_queries {'present' if 'limits_config.enable_multi_variant_queries' in present else 'absent'}")
    if hosts == 0:
        errors.append("no Loki host in the snapshot: nothing was checked")
    return errors


def main(argv):
    if len(argv) < 3 or argv[0] not in ("restarts", "unchanged", "loki-config"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "restarts":
        pins = None
        if "--pins" in argv:
            with open(argv[argv.index("--pins") + 1], encoding="utf-8") as f:
                pins = yaml.safe_load(f)
        errors = check_restarts(load(argv[1]), load(argv[2]), pins)
    elif argv[0] == "unchanged":
        errors = check_unchanged(load(argv[1]), load(argv[2]))
    else:
        errors = check_loki_config(load(argv[1]), argv[2])
    for e in errors:
        print(f"upgrade check {argv[0]}: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
