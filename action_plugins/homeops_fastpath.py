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
# Architectures: `make build` makes one binary per CPU architecture (library/<name> is x86_64,
# library/.arch/<arch>/<name> the others). The remote script switches on `uname -m` in the same
# command and runs the binary whose sha256 the controller put in it for that architecture; on a
# miss it names the architecture, and only that binary travels. The standard path picks the
# binary too (from the host's facts, else one `uname -m`). A host of an architecture we do not
# build gets an error naming it and the ones we do.
#
# Standard input is used exactly where ansible-core itself would pipeline a module: the
# connection's pipelining option is on, the become method can pipeline (su cannot), no tty is
# requested and remote files are not kept (ConnectionBase.is_pipelining_enabled). Elsewhere
# (e.g. sudo with `requiretty`, which needs `pipelining = False`) the task takes the standard
# path, whose args file and tty Ansible's become handling expects, so no prompt waits on stdin.
#
# The module runs with the session's umask: only the cache's own files are made under 077.
#
# Everything else stays Ansible's: become, check mode, diff and no_log reach the module through
# the usual `_ansible_*` keys, and the answer is parsed exactly as for the standard path.
# `async` tasks, non-POSIX shells and connections that would not pipeline take the standard path.
# Turn the fast path off with `homeops_fastpath: false` (a variable) or HOMEOPS_FASTPATH=0
# (environment of ansible-playbook).
#
# Every one of our modules uses this one file: in the collection it is plugins/action/fastpath.py
# and meta/runtime.yml names it as each module's `action_plugin` (homeops_dev/build_collection.py
# generates both from homeops_dev/modules.py); in this repository, for runs by bare module name with
# ansible.cfg's action_plugins, through a symlink named after the module
# (action_plugins/<module>.py -> homeops_fastpath.py). Playbooks do not change.
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex

from ansible.errors import AnsibleError
from ansible.module_utils.common.json import Direction, get_module_decoder, get_module_encoder
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash
try:
    from ansible.vars.clean import remove_internal_keys
except ImportError:  # ansible-core 2.21+: _parse_returned_data answers an object that cleans itself
    remove_internal_keys = None

display = Display()

# Every task runs in a worker process forked from ansible-playbook, and ansible-core imports this
# file once, in that parent. The JSON profiles for module arguments and results are imported on
# first use, so without this each worker paid ~2.6 ms importing them again; loaded here, every
# fork inherits them.
get_module_encoder("legacy", Direction.CONTROLLER_TO_MODULE)
get_module_decoder("legacy", Direction.MODULE_TO_CONTROLLER)

# Exit codes of the remote script that are never a module's (modules exit 0 or 1).
ARCH_RC = 96
MISS_RC = 97
ERROR_RC = 98
ARCH_MARK = "HOMEOPS_FASTPATH_ARCH"
MISS_MARK = "HOMEOPS_FASTPATH_MISS"
ERROR_MARK = "HOMEOPS_FASTPATH_ERROR"

# The architectures `make build` builds (`uname -m` names) and where each binary lives, relative
# to the directory of the module ansible-core found (library/). The x86_64 build is the module
# itself; the others sit in a hidden directory because ansible-core's module loader searches the
# subdirectories of library/ before library/ itself, but skips hidden ones.
ARCHES = ("x86_64", "aarch64")
ARCH_DIR = ".arch"


def arch_binary(module_path: str, arch: str) -> str:
    """Where the `arch` build of the module at `module_path` (library/<name>) is."""
    if arch == ARCHES[0]:
        return module_path
    return os.path.join(os.path.dirname(module_path), ARCH_DIR, arch, os.path.basename(module_path))


class ArchError(AnsibleError):
    """The host's architecture has no binary here."""


def arch_error(host: str, arch: str, module: str, built: list[str]) -> str:
    """The message for a host whose architecture has no binary here."""
    if arch in ARCHES:
        return ("%s is %s, but the %s build of module %s is missing on this controller (%s): run `make build`"
                % (host, arch, arch, module, ", ".join(built) or "none built"))
    return ("%s is %s (uname -m); the HomeOps modules are built for %s only, so module %s cannot run there"
            % (host, arch or "of an unknown architecture", ", ".join(ARCHES), module))


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

# Creates nothing, so it leaves the umask alone: the module must run with the session's.
_CACHE_DIR = _HOME_LOOKUP + r"""
if [ -z "$h" ] || [ ! -d "$h" ]; then echo "HOMEOPS_FASTPATH_ERROR no home directory for uid $e"; exit 98; fi
d="$h/.cache/homeops-modules"
"""

_SAFE_DIR_TEST = r"""[ -d "$d" ] && [ ! -L "$d" ] && [ -O "$d" ] && [ "$(stat -c %a "$d")" = 700 ]"""

# Hot path: pick this host's binary by `uname -m`, run it if it is cached and intact; otherwise
# say MISS and the architecture. Three child processes (uname, stat, sha256sum), then exec.
# {probe} sets a to the architecture: `$(uname -m)`, or the host's own fact when the controller
# has it (one fork less: measured 39 -> 20 ms a run here on 2 busy cores). {select} is a `case`
# that sets s to the sha256 for the architecture in a (see `render`).
_RUN = r"""
a={probe}
{select}""" + _CACHE_DIR + r"""
f="$d/$s"
if {safe} && [ -f "$f" ] && [ "$(sha256sum < "$f")" = "$s  -" ]; then exec "$f" -; fi
echo "HOMEOPS_FASTPATH_MISS $a"
exit 97
"""

# Miss path: standard input carries exactly {size} bytes of binary, then the arguments.
# `head -c` reads no further than asked on a pipe, so the arguments are left for the module.
# The cache's directory and files are made under umask 077; the module gets the session's back.
_INSTALL_AND_RUN = r"""
o=$(umask)
umask 077
""" + _CACHE_DIR + r"""
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
umask "$o"
exec "$d/{sha}" -
"""


def _check_sha(sha: str) -> str:
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError("not a sha256 hex digest: %r" % sha)
    return sha


def render(template: str, sha: str = "", size: int = 0, passwd: str = "/etc/passwd",
           shas: dict[str, str] | None = None, arch: str | None = None) -> str:
    """Fills a remote script; only hex digests, integers and architecture names go in, never an
    argument value. `sha`/`size`: the binary the install script expects; `shas`: the run
    script's sha256 per architecture; `arch`: the host's architecture when known from its facts
    (else the script asks `uname -m`). `passwd` is for tests of the home lookup's fallback."""
    if arch is not None and (not arch or not all(c.isascii() and (c.isalnum() or c == "_") for c in arch)):
        raise ValueError("not an architecture name: %r" % arch)
    probe = arch if arch is not None else "$(uname -m)"
    if sha:
        _check_sha(sha)
    cases = []
    for arch, digest in (shas or {}).items():
        if arch not in ARCHES:
            raise ValueError("not an architecture we build: %r" % arch)
        cases.append("%s) s=%s;;" % (arch, _check_sha(digest)))
    # An architecture without a binary here is named, so the controller can say so.
    cases.append('*) echo "%s $a"; exit %d;;' % (ARCH_MARK, ARCH_RC))
    select = "case $a in\n%s\nesac\n" % "\n".join(cases)
    return template.format(sha=sha, size=int(size), safe=_SAFE_DIR_TEST, passwd=shlex.quote(passwd),
                           select=select, probe=probe).strip() + "\n"


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise AnsibleError("module binary %s is empty: rebuild the collection (make collection)" % path)
    return data


def mark(res: dict, name: str, rc: int) -> str | None:
    """The text after the remote script's mark `name`, when it exited with `rc` and printed it."""
    if res.get("rc") != rc:
        return None
    for line in (res.get("stdout") or "").splitlines():
        if line.startswith(name):
            return line[len(name):].strip()
    return None


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    # The host's architecture once known in this task (fast path answer, facts or uname -m):
    # _configure_module then hands the standard path that architecture's binary.
    _host_arch: str | None = None

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

        # Every architecture built here, by sha256: the remote script picks its own.
        binaries = {}
        for arch in ARCHES:
            path = arch_binary(module_path, arch)
            if arch == ARCHES[0]:
                # ansible-core 2.21+ hands binary modules over as b"", "use the file as it is".
                binaries[arch] = bits.b_module_data or _read(module_path)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    binaries[arch] = f.read()
        shas = {arch: hashlib.sha256(data).hexdigest() for arch, data in binaries.items()}
        encoder = get_module_encoder(bits.serialization_profile, Direction.CONTROLLER_TO_MODULE)
        args = json.dumps(module_args, cls=encoder).encode("utf-8")
        env = self._compute_environment_string().strip()
        prefix = env + " " if env else ""
        host = task_vars.get("inventory_hostname", "?")

        res = self._remote(prefix, render(_RUN, shas=shas, arch=self._fact_arch(task_vars)), args)
        arch = mark(res, MISS_MARK, MISS_RC)
        if arch is not None and arch in binaries:
            self._host_arch = arch
            binary, sha = binaries[arch], shas[arch]
            display.vvv("homeops fast path: uploading %s for %s from %s (%d bytes, sha256 %s)"
                        % (module_name, arch, module_path if arch == ARCHES[0] else arch_binary(module_path, arch),
                           len(binary), sha[:12]))
            res = self._remote(prefix, render(_INSTALL_AND_RUN, sha, len(binary)), binary + args)
        elif arch is None:
            display.vvv("homeops fast path: cached %s" % module_name)
        unknown = mark(res, ARCH_MARK, ARCH_RC)
        if unknown is not None:
            return merge_hash(result, {"failed": True, "changed": False,
                                       "msg": arch_error(host, unknown, module_name, sorted(binaries))})

        line = mark(res, ERROR_MARK, ERROR_RC)
        if line is None:
            line = mark(res, MISS_MARK, MISS_RC)
        if line is not None:
            # The cache cannot be used on this host (odd home, foreign owner, full disk):
            # say why, then do what ansible-core would have done anyway.
            display.warning("homeops fast path unavailable on %s (%s); using the standard module transfer"
                            % (host, line or "cache miss after upload"))
            return self._standard(result, task_vars)

        if res.get("rc") and not (res.get("stdout") or "").strip() and "must have a tty" in (res.get("stderr") or ""):
            # sudo's `requiretty` refuses a command without a terminal; pipelining sends none.
            return merge_hash(result, {"failed": True, "changed": False, "msg": (
                "sudo on %s requires a tty (Defaults requiretty): set `pipelining = False` for this host "
                "(ansible_pipelining: false), Ansible's remedy for requiretty; our modules then take "
                "the standard path" % host)})

        data = self._parse_returned_data(res, bits.serialization_profile)
        if remove_internal_keys is not None:
            remove_internal_keys(data)
        else:
            # As ActionBase._execute_module does on 2.21+.
            data.remove_internal_keys()
            data = data.as_result_dict(for_round_trip=True)
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
        if getattr(self._connection._shell, "SHELL_FAMILY", "") != "sh":
            return "not a POSIX shell"
        # Standard input only where ansible-core would pipeline a module itself: the connection's
        # pipelining option, a become method that can pipeline, no tty asked for, remote files
        # not kept. A become method that needs a tty cannot take its password on a pipe.
        become = getattr(self._connection, "become", None)
        if become is not None and getattr(become, "require_tty", False):
            return "become method %s needs a tty" % getattr(become, "name", "?")
        if not self._connection.is_pipelining_enabled(wrap_async=False):
            if become is not None and not getattr(become, "pipelining", True):
                return "become method %s cannot pipeline" % getattr(become, "name", "?")
            return "the connection would not pipeline (pipelining off, a tty requested, or keep_remote_files)"
        return None

    def _fact_arch(self, task_vars):
        """The architecture in this host's gathered facts, when they are this host's (a
        delegated task runs elsewhere) and look like one; else None (the script asks uname)."""
        if self._task.delegate_to:
            return None
        arch = str((task_vars.get("ansible_facts") or {}).get("architecture") or "")
        if arch and all(c.isascii() and (c.isalnum() or c == "_") for c in arch):
            return arch
        return None

    def _arch_for_standard(self, task_vars):
        """The host's architecture for the standard path: the gathered facts when they are this
        host's (not delegated), else `uname -m` (one more round trip on a path that makes seven)."""
        if self._host_arch:
            return self._host_arch
        if self._fact_arch(task_vars):
            return self._fact_arch(task_vars)
        res = self._low_level_execute_command("uname -m", sudoable=False)
        if res.get("rc") != 0 or not (res.get("stdout") or "").strip():
            raise AnsibleError("cannot tell the architecture of %s: `uname -m` failed (rc %s): %s"
                               % (task_vars.get("inventory_hostname", "?"), res.get("rc"),
                                  (res.get("stderr") or "").strip()[-200:]))
        return res["stdout"].strip().splitlines()[-1].strip()

    def _configure_module(self, module_name, module_args, task_vars):
        bits, module_path = super()._configure_module(module_name, module_args, task_vars)
        arch = self._host_arch
        if bits.module_style == "binary" and arch and arch != ARCHES[0]:
            path = arch_binary(module_path, arch)
            if arch not in ARCHES or not os.path.isfile(path):
                built = [a for a in ARCHES if os.path.isfile(arch_binary(module_path, a))]
                raise ArchError(arch_error(task_vars.get("inventory_hostname", "?"), arch, module_name, built))
            with open(path, "rb") as f:
                bits = dataclasses.replace(bits, b_module_data=f.read())
            module_path = path
        return bits, module_path

    def _standard(self, result, task_vars):
        """What ansible.builtin's `normal` action does, with this host's architecture's binary."""
        try:
            self._host_arch = self._arch_for_standard(task_vars)
        except AnsibleError as e:
            return merge_hash(result, {"failed": True, "changed": False, "msg": str(e)})
        wrap_async = self._task.async_val and not self._connection.has_native_async
        try:
            result = merge_hash(result, self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
        except ArchError as e:
            return merge_hash(result, {"failed": True, "changed": False, "msg": str(e)})
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
