"""The fast path's remote scripts, run here with sh against a scratch home directory.

The action plugin itself needs a connection; these tests check the part that decides whether
a cached binary may run, which architecture's binary it is (with a fake `uname` first on PATH),
that installing from standard input leaves the arguments for the module, that the module keeps
the session's umask, and when the plugin uses standard input at all (with ansible-core's own
connection and become plugins). End to end, `make itest` runs every module task through it on
the lab hosts.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from action_plugins import homeops_fastpath as fp  # a namespace package (pytest.ini: pythonpath)

# A stand-in "module": prints what it got on standard input, so the tests see exactly which
# bytes reached the module after the binary was consumed.
MODULE = b"#!/bin/sh\n# homeops fast path test module\necho \"argv1=$1\"\ncat\n"
SHA = hashlib.sha256(MODULE).hexdigest()
ARGS = b'{"name": "loki", "_ansible_check_mode": false}'


def script(template: str, home: Path, size: int = 0, shas: dict | None = None) -> str:
    if template is fp._RUN:
        text = fp.render(template, shas=shas or {"x86_64": SHA, "aarch64": SHA})
    else:
        text = fp.render(template, SHA, size)
    lookup = fp._HOME_LOOKUP.format(passwd="/etc/passwd")
    assert lookup in text, "the script must look the home up, not trust $HOME"
    return text.replace(lookup, "\ne=$(id -u)\nh=%s\n" % home)


def home_of_this_user(passwd: str, env: dict | None = None) -> str:
    """What the remote scripts' home lookup finds for the uid running this test."""
    text = fp._HOME_LOOKUP.format(passwd=passwd) + 'printf "%s|%s" "$e" "$h"\n'
    res = subprocess.run(["/bin/sh", "-c", text], capture_output=True, timeout=30, check=True,
                         env=env if env is not None else dict(os.environ))
    uid, _, home = res.stdout.decode().partition("|")
    assert uid == str(os.geteuid())
    return home


def test_the_home_lookup_reads_passwd_not_the_environment(tmp_path):
    import pwd
    real = pwd.getpwuid(os.geteuid()).pw_dir
    assert home_of_this_user("/etc/passwd", env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]}) == real


def test_the_home_lookup_takes_this_uids_line_even_unterminated(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("other:x:4242:4242::/nonexistent:/bin/sh\nme:x:%d:0:Me, Myself:/srv/me home:/bin/sh"
                      % os.geteuid())
    assert home_of_this_user(str(passwd)) == "/srv/me home"


def test_the_home_lookup_falls_back_to_getent_for_users_not_in_passwd(tmp_path):
    import pwd
    empty = tmp_path / "passwd"
    empty.write_text("")
    assert home_of_this_user(str(empty)) == pwd.getpwuid(os.geteuid()).pw_dir


def run(template: str, home: Path, data: bytes, size: int = 0, shas: dict | None = None,
        arch: str | None = None, umask: str = "022") -> subprocess.CompletedProcess:
    """Runs a remote script with the session umask `umask`; `arch` fakes what `uname -m` says."""
    env = dict(os.environ)
    if arch is not None:
        fake = home / "fakebin"
        fake.mkdir(exist_ok=True)
        (fake / "uname").write_text("#!/bin/sh\n[ \"$1\" = -m ] && echo %s\n" % arch)
        (fake / "uname").chmod(0o755)
        env["PATH"] = "%s:%s" % (fake, env["PATH"])
    text = "umask %s\n" % umask + script(template, home, size, shas)
    return subprocess.run(["/bin/sh", "-c", text], input=data, capture_output=True, timeout=30, env=env)


def cache(home: Path) -> Path:
    return home / ".cache" / "homeops-modules"


def test_a_cold_host_misses_then_installs_and_runs_with_args_on_stdin(tmp_path):
    res = run(fp._RUN, tmp_path, ARGS)
    assert res.returncode == fp.MISS_RC and fp.MISS_MARK.encode() in res.stdout

    res = run(fp._INSTALL_AND_RUN, tmp_path, MODULE + ARGS, len(MODULE))
    assert res.returncode == 0, res
    assert res.stdout == b"argv1=-\n" + ARGS
    installed = cache(tmp_path) / SHA
    assert installed.read_bytes() == MODULE
    assert stat.S_IMODE(cache(tmp_path).stat().st_mode) == 0o700
    assert stat.S_IMODE(installed.stat().st_mode) == 0o700
    assert sorted(p.name for p in cache(tmp_path).iterdir()) == [SHA], "no temp file left"


def test_a_warm_host_runs_in_one_command(tmp_path):
    run(fp._INSTALL_AND_RUN, tmp_path, MODULE + ARGS, len(MODULE))
    res = run(fp._RUN, tmp_path, ARGS)
    assert res.returncode == 0 and res.stdout == b"argv1=-\n" + ARGS


def test_a_tampered_binary_is_never_run(tmp_path):
    run(fp._INSTALL_AND_RUN, tmp_path, MODULE + ARGS, len(MODULE))
    installed = cache(tmp_path) / SHA
    installed.write_bytes(b"#!/bin/sh\necho pwned\n")
    res = run(fp._RUN, tmp_path, ARGS)
    assert res.returncode == fp.MISS_RC and b"pwned" not in res.stdout
    # Reinstalling replaces it with the real one.
    res = run(fp._INSTALL_AND_RUN, tmp_path, MODULE + ARGS, len(MODULE))
    assert res.returncode == 0 and installed.read_bytes() == MODULE


def test_a_cache_dir_others_could_write_is_not_trusted(tmp_path):
    run(fp._INSTALL_AND_RUN, tmp_path, MODULE + ARGS, len(MODULE))
    os.chmod(cache(tmp_path), 0o777)
    assert run(fp._RUN, tmp_path, ARGS).returncode == fp.MISS_RC
    # The install path takes the directory back to 0700 and then runs.
    res = run(fp._INSTALL_AND_RUN, tmp_path, MODULE + ARGS, len(MODULE))
    assert res.returncode == 0 and stat.S_IMODE(cache(tmp_path).stat().st_mode) == 0o700


def test_a_symlinked_cache_dir_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / ".cache").mkdir()
    cache(tmp_path).symlink_to(elsewhere)
    assert run(fp._RUN, tmp_path, ARGS).returncode == fp.MISS_RC
    res = run(fp._INSTALL_AND_RUN, tmp_path, MODULE + ARGS, len(MODULE))
    assert res.returncode == fp.ERROR_RC and fp.ERROR_MARK.encode() in res.stdout
    assert list(elsewhere.iterdir()) == []


def test_a_corrupted_upload_installs_nothing(tmp_path):
    broken = MODULE[:-3] + b"xx\n"
    res = run(fp._INSTALL_AND_RUN, tmp_path, broken + ARGS, len(MODULE))
    assert res.returncode == fp.ERROR_RC and b"checksum mismatch" in res.stdout
    assert list(cache(tmp_path).iterdir()) == []


def test_only_digests_and_sizes_reach_the_command_line():
    with pytest.raises(ValueError):
        fp.render(fp._RUN, "abc; rm -rf /")
    text = fp.render(fp._INSTALL_AND_RUN, SHA, 123)
    assert "head -c 123" in text and SHA in text


# ---- architectures ----------------------------------------------------------------------------

# A second stand-in "module" for the other architecture: says which one ran.
OTHER = b"#!/bin/sh\necho aarch64-build\n"
OTHER_SHA = hashlib.sha256(OTHER).hexdigest()
BOTH = {"x86_64": SHA, "aarch64": OTHER_SHA}


def install(home: Path, module: bytes) -> None:
    sha = hashlib.sha256(module).hexdigest()
    subprocess.run(["/bin/sh", "-c", fp.render(fp._INSTALL_AND_RUN, sha, len(module)).replace(
        fp._HOME_LOOKUP.format(passwd="/etc/passwd"), "\ne=$(id -u)\nh=%s\n" % home)],
        input=module, capture_output=True, timeout=30, check=True)


def test_the_run_script_runs_the_binary_of_the_hosts_architecture(tmp_path):
    install(tmp_path, MODULE)
    install(tmp_path, OTHER)
    res = run(fp._RUN, tmp_path, ARGS, shas=BOTH, arch="aarch64")
    assert res.returncode == 0 and res.stdout == b"aarch64-build\n", res
    res = run(fp._RUN, tmp_path, ARGS, shas=BOTH, arch="x86_64")
    assert res.returncode == 0 and res.stdout == b"argv1=-\n" + ARGS, res


def test_a_miss_names_the_architecture_so_only_its_binary_travels(tmp_path):
    install(tmp_path, MODULE)
    res = run(fp._RUN, tmp_path, ARGS, shas=BOTH, arch="aarch64")
    answer = {"rc": res.returncode, "stdout": res.stdout.decode()}
    assert fp.mark(answer, fp.MISS_MARK, fp.MISS_RC) == "aarch64"


def test_an_architecture_we_do_not_build_is_named_with_the_ones_we_do(tmp_path):
    res = run(fp._RUN, tmp_path, ARGS, shas=BOTH, arch="armv7l")
    answer = {"rc": res.returncode, "stdout": res.stdout.decode()}
    assert res.returncode == fp.ARCH_RC
    assert fp.mark(answer, fp.ARCH_MARK, fp.ARCH_RC) == "armv7l"
    assert not cache(tmp_path).exists(), "nothing is installed for a foreign architecture"
    msg = fp.arch_error("pi-02", "armv7l", "safe_grep", ["aarch64", "x86_64"])
    assert "pi-02 is armv7l" in msg and "x86_64, aarch64" in msg and "safe_grep" in msg
    # A built architecture whose binary is missing here says how to get it.
    msg = fp.arch_error("pi-01", "aarch64", "safe_grep", ["x86_64"])
    assert "pi-01 is aarch64" in msg and "make build" in msg


def test_a_built_architecture_missing_here_is_as_unknown_to_the_script(tmp_path):
    res = run(fp._RUN, tmp_path, ARGS, shas={"x86_64": SHA}, arch="aarch64")
    assert res.returncode == fp.ARCH_RC and b"aarch64" in res.stdout


def test_a_known_architecture_from_facts_saves_the_uname(tmp_path):
    install(tmp_path, OTHER)
    text = fp.render(fp._RUN, shas=BOTH, arch="aarch64")
    assert "uname" not in text and "a=aarch64" in text
    text = text.replace(fp._HOME_LOOKUP.format(passwd="/etc/passwd"), "\ne=$(id -u)\nh=%s\n" % tmp_path)
    res = subprocess.run(["/bin/sh", "-c", text], input=b"", capture_output=True, timeout=30)
    assert res.returncode == 0 and res.stdout == b"aarch64-build\n", res
    action = plugin(True)
    assert action._fact_arch({"ansible_facts": {"architecture": "aarch64"}}) == "aarch64"
    assert action._fact_arch({"ansible_facts": {"architecture": "x86_64; rm -rf /"}}) is None
    assert action._fact_arch({}) is None
    action._task = type("T", (), {"async_val": 0, "delegate_to": "elsewhere"})()
    assert action._fact_arch({"ansible_facts": {"architecture": "aarch64"}}) is None


def test_only_our_architecture_names_reach_the_script():
    with pytest.raises(ValueError):
        fp.render(fp._RUN, shas={"x86_64": SHA}, arch="x86_64; rm -rf /")
    with pytest.raises(ValueError):
        fp.render(fp._RUN, shas={"x86_64; rm -rf /": SHA})
    with pytest.raises(ValueError):
        fp.render(fp._RUN, shas={"aarch64": "nope"})


def test_the_per_arch_binaries_sit_where_the_module_loader_never_looks(tmp_path):
    """ansible-core searches library/*/ before library/ (so library/aarch64/x would shadow the
    x86_64 module) but its glob skips hidden directories."""
    from ansible.plugins.loader import PluginLoader
    lib = tmp_path / "library"
    (lib / fp.ARCH_DIR / "aarch64").mkdir(parents=True)
    assert fp.arch_binary(str(lib / "safe_grep"), "aarch64") == str(lib / ".arch" / "aarch64" / "safe_grep")
    assert fp.arch_binary(str(lib / "safe_grep"), "x86_64") == str(lib / "safe_grep")
    loader = PluginLoader("", "ansible.modules", [str(lib)], "library")
    paths = [p.path for p in loader._get_paths_with_context(subdirs=True)]
    assert not any(fp.ARCH_DIR in p for p in paths), paths


# ---- how ansible-core finds the fast path for each module ---------------------------------------

REPO = Path(__file__).resolve().parent.parent
RESOLVE = r"""
import json, sys
from ansible.plugins.loader import action_loader, init_plugin_loader, module_loader
init_plugin_loader([sys.argv[1]])
found = {}
for name in sys.argv[2:]:
    module = module_loader.find_plugin_with_context("homeops.observability." + name)
    handler = module.action_plugin if module.resolved else None
    found[name] = [handler, handler and action_loader.find_plugin(handler)]
print(json.dumps(found))
"""


def test_the_installed_collection_routes_every_module_to_the_one_fast_path():
    """What the playbooks use (make setup installs the collection into ./collections): ansible-core's
    own loader gives each module the action plugin homeops.observability.fastpath from
    meta/runtime.yml (the handler TaskExecutor takes first), and that is this tree's fast path.
    tests/test_collection.py runs every module through it from an installed tarball."""
    from conftest import module_names
    collections = REPO / "collections"
    if not (collections / "ansible_collections" / "homeops" / "observability" / "MANIFEST.json").is_file():
        pytest.fail(f"{collections} has no homeops.observability: run make setup")
    names = module_names()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    res = subprocess.run([sys.executable, "-c", RESOLVE, str(collections), *names], capture_output=True, text=True,
                         timeout=120, env=dict(env, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")), cwd=str(REPO))
    assert res.returncode == 0, res.stderr[-2000:]
    found = json.loads(res.stdout.splitlines()[-1])
    plugin = collections / "ansible_collections/homeops/observability/plugins/action/fastpath.py"
    for name in names:
        handler, path = found[name]
        assert handler == "homeops.observability.fastpath", f"{name}: no action_plugin in meta/runtime.yml ({handler})"
        assert path == str(plugin), (name, path)
    assert plugin.read_bytes() == (REPO / "action_plugins" / "homeops_fastpath.py").read_bytes(), \
        "the installed fast path is not this tree's: run make setup"


def test_bare_name_runs_find_the_fast_path_for_every_module():
    """The bench and the fault suite run modules by bare name (ansible.cfg's action_plugins): each
    module's action_plugins/<name>.py, made by make build, is a symlink to the one fast path."""
    from conftest import module_names
    for name in module_names():
        link = REPO / "action_plugins" / f"{name}.py"
        assert link.is_symlink() and os.readlink(link) == "homeops_fastpath.py", f"{link}: run make build"


# ---- umask --------------------------------------------------------------------------------------

UMASK_MODULE = b"#!/bin/sh\numask\n"
UMASK_SHA = hashlib.sha256(UMASK_MODULE).hexdigest()


@pytest.mark.parametrize("session", ["022", "027", "002"])
def test_the_module_runs_with_the_sessions_umask(tmp_path, session):
    shas = {"x86_64": UMASK_SHA, "aarch64": UMASK_SHA}
    cold = subprocess.run(["/bin/sh", "-c", "umask %s\n" % session + fp.render(
        fp._INSTALL_AND_RUN, UMASK_SHA, len(UMASK_MODULE)).replace(
        fp._HOME_LOOKUP.format(passwd="/etc/passwd"), "\ne=$(id -u)\nh=%s\n" % tmp_path)],
        input=UMASK_MODULE, capture_output=True, timeout=30)
    assert cold.returncode == 0 and cold.stdout.strip() == b"0" + session.encode(), cold
    # The cache itself stays private whatever the session's umask.
    assert stat.S_IMODE(cache(tmp_path).stat().st_mode) == 0o700
    assert stat.S_IMODE((cache(tmp_path) / UMASK_SHA).stat().st_mode) == 0o700
    warm = run(fp._RUN, tmp_path, b"", shas=shas, umask=session)
    assert warm.returncode == 0 and warm.stdout.strip() == b"0" + session.encode(), warm


# ---- when standard input is used ----------------------------------------------------------------

class _Templar:
    @staticmethod
    def template(value):
        return value


class _Task:
    async_val = 0
    delegate_to = None


def plugin(pipelining: bool, become: str | None = None, ssh_args: str | None = None):
    """The action plugin on ansible-core's real ssh connection and become plugins."""
    import io
    from ansible.playbook.play_context import PlayContext
    from ansible.plugins.loader import become_loader, connection_loader

    conn = connection_loader.get("ssh", PlayContext(), io.StringIO())
    options = {"pipelining": pipelining}
    if ssh_args is not None:
        options["ssh_args"] = ssh_args
    conn.set_options(direct=options)
    if become:
        conn.set_become_plugin(become_loader.get(become))
    action = fp.ActionModule.__new__(fp.ActionModule)
    action._connection, action._templar, action._task = conn, _Templar(), _Task()
    return action


def test_stdin_is_used_only_where_ansible_core_would_pipeline():
    assert plugin(True)._fallback_reason({}) is None
    assert plugin(True, "sudo")._fallback_reason({}) is None
    assert "pipelining off" in plugin(False)._fallback_reason({})
    assert "pipelining off" in plugin(False, "sudo")._fallback_reason({})
    # su reads its password from the terminal, so ansible-core never pipelines through it.
    assert "become method su cannot pipeline" == plugin(True, "su")._fallback_reason({})
    # A tty asked for in the ssh arguments: ansible-core does not pipeline either.
    assert "tty" in plugin(True, ssh_args="-tt -o ControlMaster=auto")._fallback_reason({})


def test_a_become_method_that_needs_a_tty_takes_the_standard_path():
    action = plugin(True, "sudo")
    action._connection.become.require_tty = True
    assert action._fallback_reason({}) == "become method sudo needs a tty"


# ---- the standard path's architecture -----------------------------------------------------------

def test_the_standard_path_takes_the_architecture_from_facts_or_uname():
    action = plugin(True)
    assert action._arch_for_standard({"ansible_facts": {"architecture": "aarch64"}}) == "aarch64"
    calls = []

    def uname(cmd, sudoable=True, in_data=None):
        calls.append(cmd)
        return {"rc": 0, "stdout": "armv7l\n", "stderr": ""}
    action._low_level_execute_command = uname
    assert action._arch_for_standard({}) == "armv7l" and calls == ["uname -m"]
    # Delegated: the facts are the inventory host's, not the delegate's.
    action._task = type("T", (), {"async_val": 0, "delegate_to": "elsewhere"})()
    assert action._arch_for_standard({"ansible_facts": {"architecture": "aarch64"}}) == "armv7l"
