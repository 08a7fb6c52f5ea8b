"""A small parser for the argument specs our Rust modules declare (modules/runtime/src/spec.rs):

    const SPEC: &[Param] = &[
        Param::str("state").default(Default::Str("present")).choices(&["present", "absent"]),
        Param::list("units").default(Default::List(DEFAULT_UNITS)),
        Param::int("lock_timeout").default(Default::Int(600)).min(0),
        Param::str("path").required(),
    ];

It understands exactly the builder calls of `Param` (str/bool/int/list/dict, entries with the
name of its suboptions table, required, default, choices, aliases, no_log, min) and `const NAME: &str` / `&[&str]` constants used as values, and
fails loudly on anything else, so a new builder method cannot be skipped silently."""
from __future__ import annotations

import re

# Param::<kind> -> (Ansible type, list elements). `entries` is a list of dicts with suboptions.
KINDS = {"str": ("str", None), "bool": ("bool", None), "int": ("int", None), "list": ("list", "str"),
         "dict": ("dict", None), "entries": ("list", "dict")}
_STRING = r'"((?:[^"\\]|\\.)*)"'


class SpecError(ValueError):
    pass


def strip_comments(src: str) -> str:
    """Removes // comments outside string literals (the spec tables hold no block comments)."""
    out = []
    for line in src.splitlines():
        in_str = False
        cut = len(line)
        i = 0
        while i < len(line):
            c = line[i]
            if c == "\\" and in_str:
                i += 2
                continue
            if c == '"':
                in_str = not in_str
            elif not in_str and line.startswith("//", i):
                cut = i
                break
            i += 1
        out.append(line[:cut])
    return "\n".join(out)


def _unescape(s: str) -> str:
    return s.encode("utf-8").decode("unicode_escape")


def constants(src: str) -> dict:
    """`const X: &str = "..";` and `const X: &[&str] = &[..];` (pub or not) in the file."""
    src = strip_comments(src)
    found = {}
    for m in re.finditer(r'(?:pub\s+)?const\s+([A-Z][A-Z0-9_]*)\s*:\s*&(?:\'static\s+)?str\s*=\s*' + _STRING + r'\s*;', src):
        found[m.group(1)] = _unescape(m.group(2))
    for m in re.finditer(r'(?:pub\s+)?const\s+([A-Z][A-Z0-9_]*)\s*:\s*&\[&(?:\'static\s+)?str\]\s*=\s*&\[(.*?)\]\s*;', src, re.S):
        found[m.group(1)] = _string_list(m.group(2), {})
    return found


def _string_list(body: str, consts: dict) -> list:
    body = body.strip()
    if not body:
        return []
    items = []
    for part in _split_top(body):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(_STRING, part)
        if m:
            items.append(_unescape(m.group(1)))
        elif part in consts and isinstance(consts[part], str):
            items.append(consts[part])
        else:
            raise SpecError("not a string literal in a list: %r" % part)
    return items


def _split_top(text: str) -> list:
    """Splits on commas that are not inside brackets, parentheses or strings."""
    parts, depth, cur, in_str, i = [], 0, [], False, 0
    while i < len(text):
        c = text[i]
        if in_str:
            cur.append(c)
            if c == "\\":
                cur.append(text[i + 1])
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            cur.append(c)
        elif c in "([{":
            depth += 1
            cur.append(c)
        elif c in ")]}":
            depth -= 1
            cur.append(c)
        elif c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    if "".join(cur).strip():
        parts.append("".join(cur))
    return parts


def _value(expr: str, consts: dict, where: str):
    expr = expr.strip()
    m = re.fullmatch(_STRING, expr)
    if m:
        return _unescape(m.group(1))
    if expr in consts:
        return consts[expr]
    m = re.fullmatch(r"&\[(.*)\]", expr, re.S)
    if m:
        return _string_list(m.group(1), consts)
    if re.fullmatch(r"-?\d+", expr.replace("_", "")):
        return int(expr.replace("_", ""))
    if expr in ("true", "false"):
        return expr == "true"
    raise SpecError("%s: cannot read the value %r" % (where, expr))


def _default(expr: str, kind: str, consts: dict, where: str):
    m = re.fullmatch(r"Default::(Str|Bool|Int|List)\((.*)\)", expr.strip(), re.S)
    if kind == "dict":
        raise SpecError("%s: a dict parameter cannot have a default" % where)
    if not m:
        raise SpecError("%s: default is not Default::<Kind>(..): %r" % (where, expr))
    variant = m.group(1).lower()
    if variant != kind:
        raise SpecError("%s: a %s parameter with a Default::%s" % (where, kind, m.group(1)))
    value = _value(m.group(2), consts, where)
    expected = {"str": str, "bool": bool, "int": int, "list": list}[variant]
    if not isinstance(value, expected) or (variant == "int" and isinstance(value, bool)):
        raise SpecError("%s: Default::%s holds %r" % (where, m.group(1), value))
    return value


def parse_spec(src: str, const_name: str = "SPEC") -> dict:
    """{name: {type, elements, required, default, choices, aliases, no_log, min, suboptions}} of the
    module's spec table; suboptions (for Param::entries) is the parsed table it names, else None."""
    clean = strip_comments(src)
    consts = constants(src)
    m = re.search(r"const\s+" + const_name + r"\s*:\s*&\[Param\]\s*=\s*&\[", clean)
    if not m:
        raise SpecError("no `const %s: &[Param] = &[...]` in the source" % const_name)
    # The table ends at the bracket that closes the one opened by `= &[`.
    depth, i, start = 1, m.end(), m.end()
    in_str = False
    while depth and i < len(clean):
        c = clean[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        i += 1
    if depth:
        raise SpecError("the %s table is not closed" % const_name)
    table = clean[start:i - 1]
    params = {}
    for entry in _split_top(table):
        entry = " ".join(entry.split())
        if not entry:
            continue
        head = re.match(r"Param::(\w+)\(\s*" + _STRING + r"\s*(?:,\s*([A-Z][A-Z0-9_]*)\s*)?\)", entry)
        if not head:
            raise SpecError("not a Param::<kind>(\"name\") entry: %r" % entry)
        kind, name, table = head.group(1), head.group(2), head.group(3)
        if kind not in KINDS:
            raise SpecError("%s: unknown parameter kind Param::%s" % (name, kind))
        if (kind == "entries") != (table is not None):
            raise SpecError("%s: Param::entries takes (name, SUBOPTIONS_TABLE), the others only a name" % name)
        if table == const_name:
            raise SpecError("%s: the suboptions table %s is the table itself" % (name, table))
        ptype, elements = KINDS[kind]
        param = {"type": ptype, "elements": elements, "required": False, "default": None, "choices": [],
                 "aliases": [], "no_log": False, "min": None,
                 "suboptions": parse_spec(src, table) if table else None}
        rest = entry[head.end():]
        pos = 0
        while pos < len(rest):
            mm = re.match(r"\s*\.\s*(\w+)\s*\(", rest[pos:])
            if not mm:
                if rest[pos:].strip():
                    raise SpecError("%s: cannot read %r" % (name, rest[pos:]))
                break
            method = mm.group(1)
            j = pos + mm.end()
            depth, k, in_str = 1, j, False
            while depth and k < len(rest):
                c = rest[k]
                if in_str:
                    if c == "\\":
                        k += 1
                    elif c == '"':
                        in_str = False
                elif c == '"':
                    in_str = True
                elif c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                k += 1
            arg = rest[j:k - 1]
            where = "%s.%s" % (name, method)
            if method == "required":
                param["required"] = True
            elif method == "no_log":
                param["no_log"] = True
            elif method == "no_log_keys":
                # A dict whose values are secret only under some keys (a function names them).
                param["no_log"] = "keys"
            elif method == "default":
                if param["suboptions"] is not None:
                    raise SpecError("%s: a Param::entries cannot have a default" % name)
                param["default"] = _default(arg, param["type"], consts, name)
            elif method in ("choices", "aliases"):
                param[method] = _value(arg, consts, where)
            elif method == "min":
                param["min"] = _value(arg, consts, where)
            else:
                raise SpecError("%s: unknown Param method .%s(): teach tests/rust_spec.py about it" % (name, method))
            pos = k
        if name in params:
            raise SpecError("parameter %s declared twice" % name)
        params[name] = param
    if not params:
        raise SpecError("the %s table is empty" % const_name)
    return params
