"""LAB STAND-IN: how Grafana turns a provisioned string value into the value it uses.

Not Grafana. Same rule, written from Grafana's source (read in the public-code index; see
upstream/grafana/<version>.json for the files and commits):

- pkg/services/provisioning/values/values.go, interpolateValue: the raw YAML string is split
  on "$$"; each part goes through setting.ExpandVar and then os.ExpandEnv; the parts are
  joined with "$". So "$$" is the only way to write a literal "$".
- pkg/setting/expanders.go, ExpandVar: the regex \\$(|__\\w+){([^}]+)} replaces ${NAME} and
  $__env{NAME} with the environment variable, and $__file{PATH} with the trimmed content of
  the file (an unreadable file is an error: the datasource is not provisioned).
- Go's os.Expand (src/os/env.go): "$" + a special character (*#$@!?- or a digit) is that
  one-character variable; "$" + letters/digits/_ is a variable; "${}" and "${..." without a
  closing brace are eaten; a "$" followed by anything else, or at the end, stays.
Every string of a datasource (name, uid, url, basicAuthUser, jsonData strings,
secureJsonData values) goes through it: types.go decodes them into values.StringValue,
values.JSONValue and values.StringMapValue.

Used by the lab's grafana-server stand-in and by the repository's tests.
"""
import os
import re

_EXPANDER = re.compile(r"\$(|__\w+){([^}]+)}")
_SPECIAL = set("*#$@!?-0123456789")


class ExpandError(Exception):
    pass


def _expand_var(s, env):
    # Grafana's expanders in priority order: env (-10), then file (-5).
    for name in ("env", "file"):
        for m in list(_EXPANDER.finditer(s)):
            prefix, arg = m.group(1), m.group(2)
            if name == "env" and prefix in ("", "__env"):
                val = env.get(arg, "")
                if arg == "HOSTNAME" and not val:
                    val = os.uname().nodename
                s = s.replace(m.group(0), val, 1)
            elif name == "file" and prefix == "__file":
                try:
                    with open(arg, encoding="utf-8") as f:
                        val = f.read().strip()
                except OSError as e:
                    raise ExpandError("got error while expanding expander file: %s" % e.strerror)
                s = s.replace(m.group(0), val, 1)
    return s


def _shell_name(s):
    if s[0] == "{":
        if len(s) > 2 and s[1] in _SPECIAL and s[2] == "}":
            return s[1:2], 3
        for i in range(1, len(s)):
            if s[i] == "}":
                if i == 1:
                    return "", 2  # bad syntax; eat "${}"
                return s[1:i], i + 1
        return "", 1  # bad syntax; eat "${"
    if s[0] in _SPECIAL:
        return s[0:1], 1
    i = 0
    while i < len(s) and (s[i] == "_" or s[i].isascii() and s[i].isalnum()):
        i += 1
    return s[:i], i


def _expand_env(s, env):
    buf, i, j = [], 0, 0
    while j < len(s):
        if s[j] == "$" and j + 1 < len(s):
            buf.append(s[i:j])
            name, w = _shell_name(s[j + 1:])
            if name == "" and w > 0:
                pass  # invalid syntax: the characters are eaten
            elif name == "":
                buf.append("$")  # "$" not followed by a name stays
            else:
                buf.append(env.get(name, ""))
            j += w
            i = j + 1
        j += 1
    return "".join(buf) + s[i:]


def interpolate(value, env=None):
    """The string Grafana uses for a provisioned value (values.go interpolateValue)."""
    env = os.environ if env is None else env
    return "$".join(_expand_env(_expand_var(part, env), env) for part in value.split("$$"))


def interpolate_tree(obj, env=None):
    """interpolate() on every string of a YAML tree (values.go transformInterface)."""
    if isinstance(obj, str):
        return interpolate(obj, env)
    if isinstance(obj, list):
        return [interpolate_tree(v, env) for v in obj]
    if isinstance(obj, dict):
        return {k: interpolate_tree(v, env) for k, v in obj.items()}
    return obj


def escape(value):
    """The provisioned form of a literal string: every "$" doubled."""
    return value.replace("$", "$$")


# ---- grafana.ini, for a package built without the real go-ini ------------------------------
# The stand-in reads grafana.ini with the real go-ini and Grafana's expanders where the lab
# shipped them (../shared/real-parsers); this is its fallback, written from go-ini v1.67.0's
# parser.go (readValue) and Grafana's expandConfig. It is not go-ini: continuation lines,
# %(key)s references and python-style multi-line values are not modelled.

def _ini_value(raw):
    """go-ini's readValue for one line's value (default LoadOptions)."""
    line = raw.lstrip()
    if not line:
        return ""
    for quote in ('"""', "`"):
        if (len(line) > 3 or quote == "`") and line.startswith(quote):
            end = line.rfind(quote, len(quote))
            if end >= len(quote):
                return line[len(quote):end]
    line = line.strip()
    cut = min([i for i in (line.find("#"), line.find(";")) if i >= 0], default=-1)
    if cut >= 0:
        line = line[:cut]
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "'\"":
        line = line[1:-1]
    return line


def read_ini(text, env=None):
    """{section: {key: value}} as Grafana reads grafana.ini (go-ini, then ${..}/$__env{..}/
    $__file{..} expansion); keys before the first section are under "DEFAULT"."""
    env = os.environ if env is None else env
    out, section = {}, "DEFAULT"
    for raw in text.splitlines():
        line = raw.lstrip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            close = line.find("]")
            if close < 0:
                raise ExpandError("unclosed section: %s" % line.split()[0][:40])
            section = line[1:close].strip()
            out.setdefault(section, {})
            continue
        seps = [i for i in (line.find("="), line.find(":")) if i >= 0]
        if not seps:
            # go-ini's error names the line; here only its place (it may hold a secret).
            raise ExpandError("key-value delimiter not found in section %s" % section)
        key = line[:min(seps)].strip()
        out.setdefault(section, {})[key] = _expand_var(_ini_value(line[min(seps) + 1:]), env)
    return out
