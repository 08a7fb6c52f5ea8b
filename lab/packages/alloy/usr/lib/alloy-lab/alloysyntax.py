"""LAB STAND-IN: the Alloy configuration syntax, parsed and checked the way Alloy does it.

Not Alloy. Written from Alloy's grammar (grafana/alloy v1.10.2, syntax/scanner/scanner.go
and syntax/parser/internal.go): a newline after an identifier, a literal or a closing
bracket ends a statement (Go-style terminator insertion), so list and object elements need
commas, blocks are `name.parts "label" { body }`, attributes `name = expression`, comments
`//` and `/* */`. Component arguments and blocks are checked against the reference data
extracted from Alloy's docs (upstream/alloy/<version>.json in the repository, shipped with
the lab package), with Alloy's own messages ("unrecognized attribute name", "missing
required attribute", "cannot find the definition of component name").

Used by the lab's alloy stand-in and by the repository's tests (upstream/alloycheck.py), so
the check in `make test` and the lab's start-up refusal are the same code.
Only the Python standard library.
"""
import json
import re

__all__ = ["AlloyError", "Block", "Attr", "parse", "check", "value", "Ref"]


def _q(s):
    """Go's %q, which Alloy's messages use."""
    return json.dumps(s)


class AlloyError(Exception):
    """One or more diagnostics: [(line, col, message)]."""

    def __init__(self, diags):
        super().__init__("; ".join("%d:%d: %s" % d for d in diags))
        self.diags = diags


class Block:
    def __init__(self, name, label, body, line, col):
        self.name, self.label, self.body, self.line, self.col = name, label, body, line, col

    def attrs(self):
        return {s.name: s for s in self.body if isinstance(s, Attr)}

    def blocks(self, name=None):
        return [s for s in self.body if isinstance(s, Block) and (name is None or s.name == name)]


class Attr:
    def __init__(self, name, expr, line, col):
        self.name, self.expr, self.line, self.col = name, expr, line, col


class Ref:
    """A reference such as loki.write.homeops.receiver, resolved at run time."""

    def __init__(self, parts, line, col):
        self.parts, self.line, self.col = parts, line, col

    def __repr__(self):
        return ".".join(self.parts)


# ---------------------------------------------------------------- scanner

_PUNCT = {"{": "LCURLY", "}": "RCURLY", "[": "LBRACK", "]": "RBRACK", "(": "LPAREN",
          ")": "RPAREN", "=": "ASSIGN", ",": "COMMA", ".": "DOT"}
# After these tokens a newline is a statement terminator (scanner.go, insertTerm).
_TERM_AFTER = {"IDENT", "STRING", "NUMBER", "FLOAT", "BOOL", "NULL", "RCURLY", "RBRACK", "RPAREN"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "a": "\a", "b": "\b",
            "f": "\f", "v": "\v"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def _tokens(text):
    toks, i, line, col, last = [], 0, 1, 1, None
    n = len(text)

    def emit(kind, val, ln, cl):
        nonlocal last
        toks.append((kind, val, ln, cl))
        last = kind

    while i < n:
        c = text[i]
        if c == "\n":
            if last in _TERM_AFTER:
                emit("TERMINATOR", "newline", line, col)
            i, line, col = i + 1, line + 1, 1
            continue
        if c in " \t\r":
            i, col = i + 1, col + 1
            continue
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            col += j - i
            i = j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise AlloyError([(line, col, "comment not terminated")])
            chunk = text[i:j + 2]
            if "\n" in chunk and last in _TERM_AFTER:
                emit("TERMINATOR", "newline", line, col)
            line += chunk.count("\n")
            col = len(chunk) - chunk.rfind("\n") if "\n" in chunk else col + len(chunk)
            i = j + 2
            continue
        if c == '"':
            j, out = i + 1, []
            while True:
                if j >= n or text[j] == "\n":
                    raise AlloyError([(line, col, "string literal not terminated")])
                ch = text[j]
                if ch == '"':
                    break
                if ch == "\\":
                    e = text[j + 1:j + 2]
                    if e in _ESCAPES:
                        out.append(_ESCAPES[e])
                        j += 2
                        continue
                    if e in ("u", "U"):
                        width = 4 if e == "u" else 8
                        hexd = text[j + 2:j + 2 + width]
                        if not re.fullmatch(r"[0-9a-fA-F]{%d}" % width, hexd):
                            raise AlloyError([(line, col + j - i, "illegal character in escape sequence")])
                        out.append(chr(int(hexd, 16)))
                        j += 2 + width
                        continue
                    raise AlloyError([(line, col + j - i, "unknown escape sequence")])
                out.append(ch)
                j += 1
            emit("STRING", "".join(out), line, col)
            col += j + 1 - i
            i = j + 1
            continue
        if c == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise AlloyError([(line, col, "raw string literal not terminated")])
            raw = text[i + 1:j]
            emit("STRING", raw, line, col)
            line += raw.count("\n")
            col = len(raw) - raw.rfind("\n") + 1 if "\n" in raw else col + len(raw) + 2
            i = j + 1
            continue
        m = _IDENT.match(text, i)
        if m:
            w = m.group(0)
            kind = "BOOL" if w in ("true", "false") else "NULL" if w == "null" else "IDENT"
            emit(kind, w, line, col)
            col += len(w)
            i = m.end()
            continue
        m = _NUMBER.match(text, i)
        if m:
            w = m.group(0)
            emit("FLOAT" if ("." in w or "e" in w.lower()) else "NUMBER", w, line, col)
            col += len(w)
            i = m.end()
            continue
        if c in _PUNCT:
            emit(_PUNCT[c], c, line, col)
            i, col = i + 1, col + 1
            continue
        raise AlloyError([(line, col, "illegal character %s (operators are not supported by the LAB STAND-IN)" % _q(c))])
    if last in _TERM_AFTER:
        emit("TERMINATOR", "EOF", line, col)
    toks.append(("EOF", "EOF", line, col))
    return toks


# ---------------------------------------------------------------- parser

class _Parser:
    def __init__(self, text):
        self.toks = _tokens(text)
        self.pos = 0

    @property
    def tok(self):
        return self.toks[self.pos]

    def next(self):
        t = self.toks[self.pos]
        self.pos += 1
        return t

    def err(self, msg, t=None):
        t = t or self.tok
        raise AlloyError([(t[2], t[3], msg)])

    def expect(self, kind):
        if self.tok[0] != kind:
            self.err("expected %s, got %s" % (kind, self._desc()))
        return self.next()

    def _desc(self):
        k, v = self.tok[0], self.tok[1]
        return {"TERMINATOR": "newline" if v == "newline" else "EOF", "EOF": "EOF"}.get(k, repr(v) if k != "STRING" else "string")

    def body(self, until):
        stmts = []
        while self.tok[0] not in (until, "EOF"):
            if self.tok[0] == "TERMINATOR":
                self.next()
                continue
            stmts.append(self.statement())
            if self.tok[0] == until:
                break
            if self.tok[0] != "TERMINATOR":
                self.err("expected TERMINATOR, got %s" % self._desc())
            self.next()
        return stmts

    def statement(self):
        start = self.tok
        if start[0] != "IDENT":
            self.err("expected identifier, got %s" % self._desc())
        self.next()
        parts = [start[1]]
        while self.tok[0] == "DOT":
            self.next()
            parts.append(self.expect("IDENT")[1])
        if self.tok[0] == "ASSIGN":
            if len(parts) > 1:
                self.err("expected block body, got =")
            self.next()
            return Attr(parts[0], self.expression(), start[2], start[3])
        label = None
        if self.tok[0] == "STRING":
            label = self.tok[1]
            if not _IDENT.fullmatch(label):
                self.err("expected block label to be a valid identifier, but got %s" % _q(label))
            self.next()
        if self.tok[0] != "LCURLY":
            self.err("expected attribute assignment or block body, got %s" % self._desc())
        self.next()
        body = self.body("RCURLY")
        self.expect("RCURLY")
        return Block(".".join(parts), label, body, start[2], start[3])

    def expression(self):
        t = self.tok
        k = t[0]
        if k == "STRING":
            self.next()
            e = ("lit", t[1])
        elif k == "NUMBER":
            self.next()
            e = ("lit", int(t[1]))
        elif k == "FLOAT":
            self.next()
            e = ("lit", float(t[1]))
        elif k == "BOOL":
            self.next()
            e = ("lit", t[1] == "true")
        elif k == "NULL":
            self.next()
            e = ("lit", None)
        elif k == "LBRACK":
            self.next()
            items = []
            while self.tok[0] not in ("RBRACK", "EOF"):
                items.append(self.expression())
                if self.tok[0] == "RBRACK":
                    break
                if self.tok[0] != "COMMA":
                    self.err("missing ',' in expression list")
                self.next()
            self.expect("RBRACK")
            e = ("list", items)
        elif k == "LCURLY":
            self.next()
            fields = []
            while self.tok[0] not in ("RCURLY", "EOF"):
                f = self.tok
                if f[0] not in ("STRING", "IDENT"):
                    self.err("expected field name (string or identifier), got %s" % self._desc())
                self.next()
                self.expect("ASSIGN")
                fields.append((f[1], self.expression()))
                if self.tok[0] == "RCURLY":
                    break
                if self.tok[0] != "COMMA":
                    self.err("missing ',' in field list")
                self.next()
            self.expect("RCURLY")
            e = ("obj", fields)
        elif k == "IDENT":
            self.next()
            parts = [t[1]]
            while self.tok[0] == "DOT":
                self.next()
                parts.append(self.expect("IDENT")[1])
            if self.tok[0] == "LPAREN":
                self.err("function calls are not supported by the LAB STAND-IN")
            e = ("ref", Ref(parts, t[2], t[3]))
        else:
            self.err("expected expression, got %s" % self._desc())
        if self.tok[0] in ("LBRACK", "LPAREN"):
            self.err("indexing and calls are not supported by the LAB STAND-IN")
        return e


def parse(text):
    """The statements of a config file; AlloyError on a syntax error."""
    p = _Parser(text)
    stmts = p.body("EOF")
    if p.tok[0] != "EOF":
        p.err("expected EOF, got %s" % p._desc())
    return stmts


# ---------------------------------------------------------------- checking

def _type_ok(ref_type, expr):
    """A literal's kind against the documented type; references are checked separately."""
    kind, val = expr
    if kind == "ref":
        return True
    t = ref_type.split("(")[0].strip().lower()
    if t in ("string", "secret", "duration"):
        return kind == "lit" and isinstance(val, str)
    if t == "bool":
        return kind == "lit" and isinstance(val, bool)
    if t in ("int", "uint", "number", "float"):
        return kind == "lit" and isinstance(val, (int, float)) and not isinstance(val, bool)
    if t == "list":
        return kind == "list"
    if t == "map":
        return kind == "obj"
    return True  # capsule types (receivers, RelabelRules): only references make them


def _kind_name(expr):
    kind, val = expr
    if kind == "lit":
        return {str: "string", bool: "bool", int: "number", float: "number", type(None): "null"}[type(val)]
    return {"list": "array", "obj": "object"}.get(kind, kind)


def _refs(expr):
    kind, val = expr
    if kind == "ref":
        yield val
    elif kind == "list":
        for e in val:
            yield from _refs(e)
    elif kind == "obj":
        for _, e in val:
            yield from _refs(e)


def _check_body(stmts, spec, prefix, diags, refs):
    args, blocks = spec.get("arguments", {}), spec.get("blocks", {})
    seen = set()
    for s in stmts:
        full = prefix + s.name
        if isinstance(s, Attr):
            if s.name not in args:
                diags.append((s.line, s.col, "unrecognized attribute name %s" % _q(full)))
                continue
            if s.name in seen:
                diags.append((s.line, s.col, "attribute %s may only be provided once" % _q(full)))
            seen.add(s.name)
            want = args[s.name]["type"]
            if not _type_ok(want, s.expr):
                diags.append((s.line, s.col, "%s: expected %s, got %s" % (full, want, _kind_name(s.expr))))
            refs.extend(_refs(s.expr))
        else:
            if s.name not in blocks or s.label is not None:
                diags.append((s.line, s.col, "unrecognized block name %s" % _q(full)))
                continue
            seen.add(s.name)
            _check_body(s.body, blocks[s.name], full + ".", diags, refs)
    return seen


def _missing(stmts, spec, prefix, line, col, diags):
    seen = {s.name for s in stmts}
    for name, a in sorted(spec.get("arguments", {}).items()):
        if a.get("required") and name not in seen:
            diags.append((line, col, "missing required attribute %s" % _q(prefix + name)))
    for name, b in sorted(spec.get("blocks", {}).items()):
        if b.get("required") and name not in seen:
            diags.append((line, col, "missing required block %s" % _q(prefix + name)))
    for s in stmts:
        if isinstance(s, Block) and s.name in spec.get("blocks", {}):
            _missing(s.body, spec["blocks"][s.name], prefix + s.name + ".", s.line, s.col, diags)


def check(stmts, reference):
    """Diagnostics [(line, col, message)] for a parsed config against reference data
    (the "components" object of upstream/alloy/<version>.json)."""
    diags, refs, defined = [], [], {}
    for s in stmts:
        if isinstance(s, Attr):
            diags.append((s.line, s.col, "unrecognized attribute name %s" % _q(s.name)))
            continue
        spec = reference.get(s.name)
        if spec is None:
            diags.append((s.line, s.col, "cannot find the definition of component name %s" % _q(s.name)))
            continue
        if spec.get("labelled") and not s.label:
            diags.append((s.line, s.col, "component %s must have a label" % _q(s.name)))
            continue
        if not spec.get("labelled") and s.label:
            diags.append((s.line, s.col, "block %s does not support specifying labels" % _q(s.name)))
            continue
        key = s.name + ("." + s.label if s.label else "")
        if key in defined:
            diags.append((s.line, s.col, "block %s already declared at line %d" % (key, defined[key].line)))
            continue
        defined[key] = s
        _check_body(s.body, spec, "", diags, refs)
        _missing(s.body, spec, "", s.line, s.col, diags)
    for r in refs:
        # A component reference is <name>.<label>.<export>; the name has 2 or 3 parts.
        for cut in range(len(r.parts) - 1, 0, -1):
            key = ".".join(r.parts[:cut])
            if key in defined:
                rest = r.parts[cut:]
                exports = reference[defined[key].name].get("exports", {})
                if len(rest) != 1 or rest[0] not in exports:
                    diags.append((r.line, r.col, "field %s does not exist in the exports of %s" % (_q(".".join(rest)), key)))
                break
        else:
            diags.append((r.line, r.col, "component %s does not exist or is out of scope" % _q(".".join(r.parts[:-1]))))
    return sorted(diags)


def value(expr, resolve):
    """The Python value of an expression; resolve(Ref) gives a reference's value."""
    kind, val = expr
    if kind == "lit":
        return val
    if kind == "list":
        return [value(e, resolve) for e in val]
    if kind == "obj":
        return {k: value(e, resolve) for k, e in val}
    return resolve(val)


def load_reference(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)["components"]
