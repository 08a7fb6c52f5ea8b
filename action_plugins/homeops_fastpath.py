# HomeOps fast path for our binary modules: one SSH round trip per task.
#
# ansible-core never pipelines a binary module. Each task makes a remote tmp dir, copies the
# whole binary and an args file, chmods, runs and cleans up: about seven SSH operations, and the
# arguments (which may hold secrets) sit on the remote disk meanwhile. This action plugin keeps
# each module binary in a content-addressed cache on the host and runs it in ONE command with
# the arguments on standard input (argv[1] = "-"), so arguments never touch the remote disk.
#
# Cache: ~/.cache/homeops-modules of the user the module runs as (the become user, or the
# connection user), home looked up in /etc/passwd (or getent) so a preserved $HOME cannot point
# root at somebody else's directory. The directory must be owned by that user, mode 0700 and not a
# symlink; each file is named by its sha256, and the sha256 is checked before every use.
# On a cache miss the binary travels over the same SSH channel's standard input, ahead of the
# arguments, and is installed atomically: two round trips once per host and binary.
#
# Everything else stays Ansible's: become, check mode, diff and no_log reach the module through
# the usual `_ansible_*` keys, and the answer is parsed exactly as for the standard path.
# `async` tasks, non-POSIX shells and connections without stdin fall back to the standard path.
# Turn the fast path off with `homeops_fastpath: false` (a variable) or HOMEOPS_FASTPATH=0
# (environment of ansible-playbook).
#
# Every one of our modules uses this file through a symlink named after it
# (action_plugins/<module>.py -> homeops_fastpath.py), so playbooks do not change.
from __future__ import annotations

import hashlib
import json
import os
import shlex

from ansible.module_utils.common.json import Direction, get_module_decoder, get_module_encoder
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash
from ansible.vars.clean import remove_internal_keys

display = Display()

# Every task runs in a worker process forked from ansible-playbook, and ansible-core imports this
# file once, in that parent. The JSON profiles for module arguments and results are imported on
# first use, so without this each worker paid ~2.6 ms importing them again; loaded here, every
# fork inherits them.
get_module_encoder("legacy", Direction.CONTROLLER_TO_MODULE)
get_module_decoder("legacy", Direction.MODULE_TO_CONTROLLER)

# Exit codes of the remote script that are never a module's (modules exit 0 or 1).
MISS_RC = 97
ERROR_RC = 98
MISS_MARK = "HOMEOPS_FASTPATH_MISS"
ERROR_MARK = "HOMEOPS_FASTPATH_ERROR"

# Finds the cache directory of the user the command runs as: the effective uid from the
# shell's own /proc/self/status, its home from /etc/passwd, else from getent (LDAP, sssd), and
# never from $HOME. Builtins only on the usual path: every fork+exec costs a millisecond or
# more on every task, and this runs before each module. No braces: filled in with str.format.
_HOME_LOOKUP = r"""
e=
while read -r k r e x; do [ "$k" = Uid: ] && break; e=; done < /proc/self/status
[ -n "$e" ] || e=$(id -u)
h=
while IFS=: read -r n x u x x p x || [ -n "$n" ]; do [ "$u" = "$e" ] && h=$p && break; n=; done < {passwd}
[ -n "$h" ] || h=$(getent passwd "$e" | cut -d: -f6)
"""

_CACHE_DIR = r"""
umask 077
""" + _HOME_LOOKUP + r"""
if [ -z "$h" ] || [ ! -d "$h" ]; then echo "HOMEOPS_FASTPATH_ERROR no home directory for uid $e"; exit 98; fi
d="$h/.cache/homeops-modules"
"""

_SAFE_DIR_TEST = r"""[ -d "$d" ] && [ ! -L "$d" ] && [ -O "$d" ] && [ "$(stat -c %a "$d")" = 700 ]"""

# Hot path: run the cached binary if it is there and intact; otherwise say MISS.
# Two child processes (stat, sha256sum), then exec.
_RUN = _CACHE_DIR + r"""
f="$d/{sha}"
if {safe} && [ -f "$f" ] && [ "$(sha256sum < "$f")" = "{sha}  -" ]; then exec "$f" -; fi
echo "HOMEOPS_FASTPATH_MISS"
exit 97
"""

# Miss path: standard input carries exactly {size} bytes of binary, then the arguments.
# `head -c` reads no further than asked on a pipe, so the arguments are left for the module.
_INSTALL_AND_RUN = _CACHE_DIR + r"""
fail() (echo "HOMEOPS_FASTPATH_ERROR $1"; exit 98)
t="$d/.{sha}.$$.tmp"
mkdir -p "$d" || fail "cannot create $d" || exit 98
if [ -L "$d" ] || [ ! -O "$d" ]; then fail "$d is not owned by uid $e"; exit 98; fi
chmod 700 "$d" || exit 98
if ! head -c {size} > "$t"; then rm -f "$t"; fail "cannot write $t"; exit 98; fi
if [ "$(sha256sum < "$t")" != "{sha}  -" ]; then rm -f "$t"; fail "checksum mismatch after upload"; exit 98; fi
if ! chmod 700 "$t" || ! mv -f "$t" "$d/{sha}"; then rm -f "$t"; fail "cannot install into $d"; exit 98; fi
# Binaries of older builds and temp files of killed runs are pruned after a month / a day.
find "$d" -maxdepth 1 -type f ! -name '.*' -mtime +30 -delete 2>/dev/null
find "$d" -maxdepth 1 -type f -name '.*.tmp' -mtime +1 -delete 2>/dev/null
exec "$d/{sha}" -
"""


def render(template: str, sha: str, size: int = 0, passwd: str = "/etc/passwd") -> str:
    """Fills a remote script; only hex digests and integers go in, never an argument value.
    `passwd` is for tests of the home lookup's fallback."""
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError("not a sha256 hex digest: %r" % sha)
    return template.format(sha=sha, size=int(size), safe=_SAFE_DIR_TEST, passwd=shlex.quote(passwd)).strip() + "\n"


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp

        reason = self._fallback_reason(task_vars)
        if reason:
            display.vvv("homeops fast path off for %s: %s" % (self._task.action, reason))
            return self._standard(result, task_vars)

        module_name = self._task.action
        module_args = self._task.args.copy()
        self._update_module_args(module_name, module_args, task_vars)
        bits, module_path = self._configure_module(module_name=module_name, module_args=module_args, task_vars=task_vars)
        if bits.module_style != "binary":
            display.vvv("homeops fast path off for %s: not a binary module" % module_name)
            return self._standard(result, task_vars)

        binary = bits.b_module_data
        sha = hashlib.sha256(binary).hexdigest()
        encoder = get_module_encoder(bits.serialization_profile, Direction.CONTROLLER_TO_MODULE)
        args = json.dumps(module_args, cls=encoder).encode("utf-8")
        env = self._compute_environment_string().strip()
        prefix = env + " " if env else ""

        res = self._remote(prefix, render(_RUN, sha), args)
        if res.get("rc") == MISS_RC and MISS_MARK in res.get("stdout", ""):
            display.vvv("homeops fast path: uploading %s (%d bytes, sha256 %s)" % (module_path, len(binary), sha[:12]))
            res = self._remote(prefix, render(_INSTALL_AND_RUN, sha, len(binary)), binary + args)
        else:
            display.vvv("homeops fast path: cached %s (sha256 %s)" % (module_name, sha[:12]))

        if res.get("rc") in (MISS_RC, ERROR_RC) and (ERROR_MARK in res.get("stdout", "") or MISS_MARK in res.get("stdout", "")):
            # The cache cannot be used on this host (odd home, foreign owner, full disk):
            # say why, then do what ansible-core would have done anyway.
            line = next((x for x in res.get("stdout", "").splitlines() if x.startswith("HOMEOPS_FASTPATH")), "")
            display.warning("homeops fast path unavailable on %s (%s); using the standard module transfer"
                            % (task_vars.get("inventory_hostname", "?"), line.partition(" ")[2] or line))
            return self._standard(result, task_vars)

        data = self._parse_returned_data(res, bits.serialization_profile)
        remove_internal_keys(data)
        for stream in ("stdout", "stderr"):
            if stream in data and stream + "_lines" not in data:
                data[stream + "_lines"] = (data.get(stream) or "").splitlines()
        return merge_hash(result, data)

    def _remote(self, prefix, script, data):
        cmd = prefix + "/bin/sh -c " + shlex.quote(script)
        return self._low_level_execute_command(cmd, sudoable=True, in_data=data)

    def _fallback_reason(self, task_vars):
        if os.environ.get("HOMEOPS_FASTPATH", "1").strip().lower() in ("0", "false", "no", "off"):
            return "HOMEOPS_FASTPATH is off"
        wanted = task_vars.get("homeops_fastpath", True)
        try:
            if not boolean(self._templar.template(wanted), strict=False):
                return "homeops_fastpath is false"
        except Exception:  # a broken variable must not break the task: use the standard path
            return "homeops_fastpath could not be read"
        if self._task.async_val:
            return "async task"
        if not getattr(self._connection, "has_pipelining", False):
            return "connection cannot send standard input"
        if getattr(self._connection._shell, "SHELL_FAMILY", "") != "sh":
            return "not a POSIX shell"
        return None

    def _standard(self, result, task_vars):
        """What ansible.builtin's `normal` action does."""
        wrap_async = self._task.async_val and not self._connection.has_native_async
        result = merge_hash(result, self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
