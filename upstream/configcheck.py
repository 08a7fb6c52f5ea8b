"""Check a Loki config file against Loki's configuration key tree, the way Loki parses it.

Loki reads its config with yaml.UnmarshalStrict: an unknown key, a key given twice, or a value
of the wrong kind stops it at start with "failed parsing config: F: yaml: unmarshal errors:" and
one "line N: ..." per problem. loki_errors() gives the same list for a config text and the key
tree of one Loki version (upstream/loki/<version>.json, made by scripts/extract-loki-config.py
from that version's configuration reference). The tests use it on our rendered template, and the
lab's Loki stand-in uses it for its own strict parsing, so the lab fails where real Loki would.

Type names differ from Loki's (it names Go types, e.g. validation.plain; the reference names
blocks, e.g. limits_config): the line and the field are what matter. Fields the reference hides
(Go `doc:"hidden"`) are not in the tree, so on those this check is stricter than Loki.

Python stdlib + PyYAML only: this file is copied as-is into the lab's loki package.
"""
import json
import os

import yaml

ROOT_TYPE = "loki.ConfigWrapper"
TAG = "tag:yaml.org,2002:"
# Placeholder types whose values are YAML scalars; Loki cannot unmarshal a map or list into them.
SCALAR_TYPES = {
    "string", "int", "float", "boolean", "duration", "labelname", "labelvalue", "filename",
    "host", "secret", "url", "daytime", "time",
}


def load_tree(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def tree_path(version, directory=None):
    """upstream/loki/<version>.json next to this file (or in `directory`)."""
    base = directory or os.path.join(os.path.dirname(os.path.abspath(__file__)), "loki")
    return os.path.join(base, f"{version}.json")


def _short(node):
    """How yaml.v2 names a node in 'cannot unmarshal' errors: !!str `value`, !!map, !!seq."""
    tag = node.tag[len(TAG):] if node.tag.startswith(TAG) else node.tag
    if isinstance(node, yaml.ScalarNode):
        # yaml.v2 shortens values past 10 characters to their first 7 and "...".
        value = node.value if len(node.value) <= 10 else node.value[:7] + "..."
        return f"!!{tag} `{value}`"
    return f"!!{tag}"


def _is_null(node):
    return isinstance(node, yaml.ScalarNode) and node.tag == TAG + "null"


def _line(node):
    return node.start_mark.line + 1


class _Checker:
    def __init__(self, tree):
        self.blocks = tree["blocks"]
        self.root = tree["root"]
        self.errors = []

    def err(self, node, msg):
        self.errors.append(f"line {_line(node)}: {msg}")

    def fields(self, node, fields, type_name):
        """A mapping node against a block's fields."""
        if _is_null(node):
            return
        if not isinstance(node, yaml.MappingNode):
            self.err(node, f"cannot unmarshal {_short(node)} into {type_name}")
            return
        seen = set()
        for key_node, value in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None:
                self.err(key_node, f"cannot unmarshal {_short(key_node)} into a field name of {type_name}")
                continue
            if key in seen:
                self.err(key_node, f"field {key} already set in type {type_name}")
                continue
            seen.add(key)
            spec = fields.get(key)
            if spec is None:
                self.err(key_node, f"field {key} not found in type {type_name}")
                continue
            self.value(value, spec, f"{type_name}.{key}" if "fields" in spec else None)

    def value(self, node, spec, inline_name):
        if _is_null(node):
            return
        if "fields" in spec:
            self.fields(node, spec["fields"], inline_name)
        elif "block" in spec:
            self.fields(node, self.blocks[spec["block"]], spec["block"])
        elif "list_of" in spec:
            name = spec["list_of"]
            if not isinstance(node, yaml.SequenceNode):
                self.err(node, f"cannot unmarshal {_short(node)} into []{name}")
                return
            for item in node.value:
                self.fields(item, self.blocks[name], name)
        elif "map_of" in spec:
            name = spec["map_of"]
            if not isinstance(node, yaml.MappingNode):
                self.err(node, f"cannot unmarshal {_short(node)} into map[string]{name}")
                return
            for _, item in node.value:
                self.fields(item, self.blocks[name], name)
        else:
            self.leaf(node, spec["type"])

    def leaf(self, node, typ):
        if typ in SCALAR_TYPES and not isinstance(node, yaml.ScalarNode):
            self.err(node, f"cannot unmarshal {_short(node)} into {typ}")
        elif typ == "boolean" and node.tag != TAG + "bool":
            self.err(node, f"cannot unmarshal {_short(node)} into bool")
        elif typ == "int" and node.tag != TAG + "int":
            self.err(node, f"cannot unmarshal {_short(node)} into int")
        elif typ == "float" and node.tag not in (TAG + "int", TAG + "float"):
            self.err(node, f"cannot unmarshal {_short(node)} into float64")
        elif typ.startswith("map of ") and not isinstance(node, yaml.MappingNode):
            self.err(node, f"cannot unmarshal {_short(node)} into {typ}")


def loki_errors(text: str, tree: dict) -> list:
    """Loki-like errors of a config text against a key tree; [] means Loki would accept it.

    Items are "line N: ..." (unmarshal errors, all of them, in document order) or one
    "yaml: line N: ..." when the text is not YAML at all.
    """
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        return [f"yaml: line {line}: {e.problem or e.context}"]
    # Like yaml.v2's Unmarshal, only the first document counts; an empty file is all defaults.
    if not documents or documents[0] is None:
        return []
    checker = _Checker(tree)
    checker.fields(documents[0], checker.root, ROOT_TYPE)
    return checker.errors


def format_failure(path, errors):
    """Loki's start-up failure text for loki_errors() output (one line per unmarshal error)."""
    hint = ". Use `-config.expand-env=true` flag if you want to expand environment variables in your config file"
    if len(errors) == 1 and errors[0].startswith("yaml: "):
        return f"failed parsing config: {path}: {errors[0]}{hint}"
    return f"failed parsing config: {path}: yaml: unmarshal errors:\n  " + "\n  ".join(errors) + hint


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: configcheck.py CONFIG.yaml TREE.json")
    with open(sys.argv[1], encoding="utf-8") as f:
        problems = loki_errors(f.read(), load_tree(sys.argv[2]))
    if problems:
        sys.exit(format_failure(sys.argv[1], problems))
    print(f"{sys.argv[1]}: valid against {sys.argv[2]}")
