#!/usr/bin/env python3
"""Extract Grafana's datasource provisioning fields from Grafana's docs.

Usage: scripts/extract-grafana-provisioning.py PROVISIONING_MD LOKI_DS_MD TYPES_GO SOURCE_JSON
       > upstream/grafana/<version>.json

PROVISIONING_MD is docs/sources/administration/provisioning/index.md of grafana/grafana (or
its "Using Environment Variables" and "Data sources" sections), LOKI_DS_MD the "Provisioning
examples" of docs/sources/datasources/loki/_index.md, TYPES_GO the upsertDataSourceFromConfigV1
struct of pkg/services/provisioning/datasources/types.go (the Go type each field is decoded
into: a values.* type is put through environment expansion), SOURCE_JSON a small JSON object saying
where those came from (repo, tag, commit, files); it is copied into the output as "source".

What it reads:
- the "Example data source config file" YAML: the file's top-level keys and each datasource's
  keys, with the type from the `# <type, required>` comment above each key;
- the "JSON Data" and "Secure JSON Data" tables (name, type, data sources they apply to);
- the Loki page's provisioning examples: jsonData keys a Loki datasource uses (maxLines ...);
- the interpolation rule sentences ($VAR, ${VAR}, `$$` for a literal `$`), kept verbatim so
  the check that relies on them can cite them.
Only the Python standard library.
"""
import json
import re
import sys

TYPE_COMMENT = re.compile(r"^\s*#\s*<([^>]+)>")
KEY = re.compile(r"^(\s*)(-\s+)?([A-Za-z_][A-Za-z0-9_]*):")


def fenced_yaml(text):
    """Each ```yaml fenced block of a markdown page, as a list of lines."""
    blocks, cur = [], None
    for line in text.splitlines():
        s = line.strip()
        if cur is None and s.startswith("```yaml"):
            cur = []
        elif cur is not None and s.startswith("```"):
            blocks.append(cur)
            cur = None
        elif cur is not None:
            cur.append(line)
    return blocks


def keys_with_types(lines):
    """{path: type}: the key tree of a YAML example; a list item's keys are under 'path[]'."""
    out, stack, pending = {}, [], None
    for line in lines:
        m = TYPE_COMMENT.match(line)
        if m:
            pending = m.group(1)
            continue
        if line.strip().startswith("#") or not line.strip():
            continue
        m = KEY.match(line)
        if not m:
            continue
        indent = len(m.group(1))
        if m.group(2):
            # "- key:" opens a list item: its keys sit two columns right of the dash.
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, (stack[-1][1] if stack else "") + "[]"))
            indent += len(m.group(2))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else ""
        path = (parent + "." if parent else "") + m.group(3)
        out.setdefault(path, pending)
        stack.append((indent, path))
        pending = None
    return out


def table_after(text, heading):
    """Rows (dicts keyed by lower-cased header) of the first table after a '#### heading' line."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip().lstrip("#").strip() == heading)
    except StopIteration:
        sys.exit("no heading %r in the provisioning page" % heading)
    rows, header = [], None
    for line in lines[start + 1:]:
        s = line.strip()
        if s.startswith("#"):
            break
        if not s.startswith("|"):
            if header is not None:
                break
            continue
        cells = [c.strip() for c in s.strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
        elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
            rows.append(dict(zip(header, cells)))
    return rows


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: %s PROVISIONING_MD LOKI_DS_MD TYPES_GO SOURCE_JSON" % sys.argv[0])
    prov = open(sys.argv[1], encoding="utf-8").read()
    loki = open(sys.argv[2], encoding="utf-8").read()
    types_go = open(sys.argv[3], encoding="utf-8").read()
    source = json.load(open(sys.argv[4], encoding="utf-8"))
    m = re.search(r"type upsertDataSourceFromConfigV1 struct \{(.*?)\n\}", types_go, re.S)
    if not m:
        sys.exit("no upsertDataSourceFromConfigV1 struct in %s" % sys.argv[3])
    decoded = {f.group(2): f.group(1) for f in
               re.finditer(r"^\s*\w+\s+(\S+)\s+`[^`]*yaml:\"([^\"]+)\"", m.group(1), re.M)}

    example = keys_with_types(fenced_yaml(prov)[-1])
    top = {k: v for k, v in example.items() if "." not in k and "[]" not in k}
    ds = {k[len("datasources[]."):]: v for k, v in example.items() if k.startswith("datasources[].")}
    datasource_fields = {k: {"type": (t or "").split(",")[0].strip() or None,
                             "required": "required" in (t or "")}
                         for k, t in ds.items() if "." not in k}
    json_data = {r["name"]: {"type": r["type"], "datasources": r.get("data source", "")}
                 for r in table_after(prov, "JSON Data")}
    secure = {r["name"]: {"type": r["type"], "datasources": r.get("data source", "")}
              for r in table_after(prov, "Secure JSON Data")}
    for k in ds:
        if k.startswith("jsonData."):
            json_data.setdefault(k.split(".", 1)[1], {"type": ds[k], "datasources": "example"})
        if k.startswith("secureJsonData."):
            secure.setdefault(k.split(".", 1)[1], {"type": ds[k], "datasources": "example"})
    loki_json = {}
    for block in fenced_yaml(loki):
        for k in keys_with_types(block):
            if k.startswith("datasources[].jsonData.") and k.count(".") == 2:
                loki_json[k.rsplit(".", 1)[1]] = "loki provisioning example"
    rules = [line.strip() for line in (prov + "\n" + loki).splitlines()
             if "interpolat" in line.lower() or "$$" in line or "escape the dollar" in line.lower()]
    doc = {
        "source": source,
        "file_keys": {k: v for k, v in top.items()},
        "datasource_fields": datasource_fields,
        "json_data": {"common": json_data, "loki": loki_json},
        "secure_json_data": secure,
        # Every field Grafana decodes (types.go): a values.* type is env-expanded.
        "decoded_fields": decoded,
        "interpolation": {
            "quoted_from_docs": [r for r in rules if not r.startswith("url:")],
            "rule": "values, not keys, expand $NAME and ${NAME}; `$$` yields a literal `$`",
        },
    }
    json.dump(doc, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
