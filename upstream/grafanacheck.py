"""Check a Grafana datasource provisioning file against the fields of a Grafana version.

The fields are upstream/grafana/<version>.json (made by scripts/extract-grafana-provisioning.py
from Grafana's provisioning docs and the struct Grafana decodes the file into). Grafana
decodes the file leniently: an unknown key is silently ignored, so a misspelt
`basicAuthUsr` means a datasource without a user and a 401 from Loki at query time. The
check is therefore stricter than Grafana on purpose.

effective() gives the values Grafana uses after its environment expansion; it runs the same
code as the lab's Grafana stand-in (lab/packages/grafana/usr/lib/grafana-lab/grafana_values.py).
"""
import json
import os

import yaml

from homeops_dev import labcode

HERE = os.path.dirname(os.path.abspath(__file__))


def values_module():
    return labcode.load("grafana_values", "lab/packages/grafana/usr/lib/grafana-lab/grafana_values.py")


def reference(version):
    with open(os.path.join(HERE, "grafana", "%s.json" % version), encoding="utf-8") as f:
        return json.load(f)


def check_datasource_file(text, version):
    """Problems (strings naming the field and the fix); empty when every key is known."""
    ref = reference(version)
    doc = yaml.safe_load(text)
    problems = []
    if not isinstance(doc, dict):
        return ["the file is not a YAML mapping"]
    for k in doc:
        if k not in ref["file_keys"]:
            problems.append("unknown top-level key %r: Grafana ignores it; known: %s" % (k, ", ".join(sorted(ref["file_keys"]))))
    if doc.get("apiVersion") != 1:
        problems.append("apiVersion must be 1 (the datasources[] format this check knows)")
    known = set(ref["decoded_fields"]) | set(ref["datasource_fields"])
    for i, ds in enumerate(doc.get("datasources") or []):
        where = "datasources[%d]" % i
        for k in ds:
            if k not in known:
                problems.append("%s: unknown field %r: Grafana ignores it; known: %s" % (where, k, ", ".join(sorted(known))))
        for k, spec in ref["datasource_fields"].items():
            if spec.get("required") and k not in ds:
                problems.append("%s: required field %r is missing" % (where, k))
        jd_known = set(ref["json_data"]["common"])
        if ds.get("type") == "loki":
            jd_known |= set(ref["json_data"]["loki"])
        for k in ds.get("jsonData") or {}:
            if k not in jd_known:
                problems.append("%s.jsonData: unknown key %r for type %s" % (where, k, ds.get("type")))
        for k in ds.get("secureJsonData") or {}:
            if k not in ref["secure_json_data"]:
                problems.append("%s.secureJsonData: unknown key %r" % (where, k))
        if ds.get("basicAuth") is True:
            if not ds.get("basicAuthUser"):
                problems.append("%s: basicAuth is true but basicAuthUser is empty" % where)
            if "basicAuthPassword" not in (ds.get("secureJsonData") or {}):
                problems.append("%s: basicAuth is true but secureJsonData.basicAuthPassword is missing" % where)
    return problems


def effective(text, env=None):
    """The datasources as Grafana uses them: every string put through its expansion."""
    doc = yaml.safe_load(text)
    return values_module().interpolate_tree(doc.get("datasources") or [], env)
