#!/usr/bin/env python3
"""Extract the Alloy component reference our template uses from Alloy's own docs at a tag.

Usage: scripts/extract-alloy-reference.py GIT_DIR TAG > upstream/alloy/<version>.json

GIT_DIR is a clone (bare is fine) of github.com/grafana/alloy. The script reads, with
`git show TAG:<path>`, the reference page of each component in COMPONENTS and the shared
pages they include ({{< docs/shared lookup="..." >}}), and writes for each component its
arguments (type, required, default), its blocks (nested, from the "Blocks" table whose
`a > b` rows give the nesting, each block's arguments from its `### block` section or the
shared page it includes) and its exported fields. Alloy rejects a config with an unknown
argument or block at load time, so this is the key tree a config is checked against.

Only the Python standard library; the output is sorted and stable, so a re-run at the same
tag gives the same file (tests/test_alloy_reference.py checks the shape).
"""
import json
import re
import subprocess
import sys

DOCS = "docs/sources/reference"
SHARED = "docs/sources/shared"
# The components and config blocks roles/alloy/templates/alloy-config.alloy.j2 uses (Linux and Windows).
COMPONENTS = {
    "logging": ("config-block", DOCS + "/config-blocks/logging.md"),
    "loki.write": ("component", DOCS + "/components/loki/loki.write.md"),
    "loki.relabel": ("component", DOCS + "/components/loki/loki.relabel.md"),
    "loki.source.journal": ("component", DOCS + "/components/loki/loki.source.journal.md"),
    "loki.source.file": ("component", DOCS + "/components/loki/loki.source.file.md"),
    "loki.source.windowsevent": ("component", DOCS + "/components/loki/loki.source.windowsevent.md"),
    "local.file_match": ("component", DOCS + "/components/local/local.file_match.md"),
}

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
LOOKUP = re.compile(r'\{\{<\s*docs/shared\s+lookup="([^"]+)"')
LINKDEF = re.compile(r"^\[([^\]]+)\]:\s*#(\S+)\s*$")


def git_show(git_dir, tag, path):
    return subprocess.run(
        ["git", "--git-dir", git_dir, "show", "%s:%s" % (tag, path)],
        check=True, capture_output=True, text=True,
    ).stdout


def strip_code(s):
    return s.strip().strip("`").strip()


def sections(text):
    """[(level, title, [lines])]; fenced code is kept as body, never read as headings."""
    out, fence = [(0, "", [])], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        m = None if fence else HEADING.match(line)
        if m:
            out.append((len(m.group(1)), strip_code(m.group(2)), []))
        else:
            out[-1][2].append(line)
    return out


def section_body(secs, title, level=None):
    """The lines under a heading and its sub-headings (up to the next heading of its level)."""
    for i, (lvl, t, body) in enumerate(secs):
        if t == title and (level is None or lvl == level):
            lines = list(body)
            for lvl2, t2, body2 in secs[i + 1:]:
                if lvl2 <= lvl:
                    break
                lines += body2
            return lines
    return None


def tables(lines):
    """Markdown tables as lists of dicts keyed by the lower-cased header cells."""
    found, cur, header = [], None, None
    for line in lines + [""]:
        s = line.strip()
        if s.startswith("|"):
            cells = [c.strip() for c in s.strip("|").split("|")]
            if header is None:
                header, cur = [c.lower() for c in cells], []
            elif all(re.fullmatch(r":?-+:?", c) for c in cells if c):
                continue
            else:
                cur.append(dict(zip(header, cells)))
        elif header is not None:
            found.append(cur)
            header, cur = None, None
    return found


def argument_table(lines):
    """The first table with Name and Type columns: {name: {type, required, default}}."""
    for t in tables(lines):
        if t and "name" in t[0] and "type" in t[0]:
            args = {}
            for row in t:
                name = strip_code(row["name"])
                args[name] = {"type": strip_code(row["type"])}
                if "required" in row:
                    args[name]["required"] = row["required"].strip().lower() == "yes"
                if row.get("default", "").strip():
                    args[name]["default"] = strip_code(row["default"])
            return args
    return None


def shared_args(git_dir, tag, lines, used):
    for line in lines:
        m = LOOKUP.search(line)
        if m:
            path = "%s/%s" % (SHARED, m.group(1))
            text = git_show(git_dir, tag, path)
            args = argument_table(text.splitlines())
            if args is not None:
                used.add(path)
                return args
    return None


def block_tree(git_dir, tag, secs, text, used):
    body = section_body(secs, "Blocks", 2) or []
    anchors = {}
    for line in text.splitlines():
        m = LINKDEF.match(line.strip())
        if m:
            anchors[m.group(1)] = m.group(2)
    tree = {}
    for t in tables(body):
        # The header says "Name" on some pages and "Block" on others.
        key = "name" if t and "name" in t[0] else "block"
        if not t or key not in t[0] or "type" in t[0]:
            continue
        for row in t:
            cell = row[key]
            parts = [p.strip() for p in cell.split(">")]
            names = [re.search(r"`([^`]+)`", p).group(1) for p in parts]
            ref = re.search(r"\]\[([^\]]+)\]\s*$", parts[-1])
            anchor = anchors.get(ref.group(1), names[-1]) if ref else names[-1]
            node = tree
            for n in names[:-1]:
                node = node[n].setdefault("blocks", {})
            sec = section_body(secs, anchor.replace("-", "_")) or section_body(secs, anchor) or []
            args = argument_table(sec)
            if args is None:
                args = shared_args(git_dir, tag, sec, used)
            node[names[-1]] = {
                "required": row.get("required", "").strip().lower() == "yes",
                "arguments": args or {},
                "blocks": {},
            }
    return tree


def component(git_dir, tag, kind, path, used):
    text = git_show(git_dir, tag, path)
    used.add(path)
    secs = sections(text)
    args = argument_table(section_body(secs, "Arguments", 2) or [])
    if args is None:
        args = shared_args(git_dir, tag, section_body(secs, "Arguments", 2) or [], used) or {}
    exports = {}
    for t in tables(section_body(secs, "Exported fields", 2) or []):
        if t and "name" in t[0]:
            exports = {strip_code(r["name"]): strip_code(r.get("type", "")) for r in t}
            break
    return {
        "kind": kind,
        "labelled": kind == "component",
        "doc": path,
        "arguments": args,
        "blocks": block_tree(git_dir, tag, secs, text, used),
        "exports": exports,
    }


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: %s GIT_DIR TAG" % sys.argv[0])
    git_dir, tag = sys.argv[1:]
    commit = subprocess.run(
        ["git", "--git-dir", git_dir, "rev-parse", tag + "^{commit}"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    used = set()
    comps = {name: component(git_dir, tag, kind, path, used) for name, (kind, path) in COMPONENTS.items()}
    doc = {
        "source": {
            "repo": "https://github.com/grafana/alloy",
            "tag": tag,
            "commit": commit,
            "files": sorted(used),
            "extracted_by": "scripts/extract-alloy-reference.py",
        },
        "components": comps,
    }
    json.dump(doc, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
