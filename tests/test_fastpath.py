"""The fast path's remote scripts, run here with sh against a scratch home directory.

The action plugin itself needs a connection; these tests check the part that decides whether
a cached binary may run, and that installing from standard input leaves the arguments for the
module. End to end, `make itest` runs every module task through it on the lab hosts.
"""
from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "action_plugins"))
import homeops_fastpath as fp  # noqa: E402

# A stand-in "module": prints what it got on standard input, so the tests see exactly which
# bytes reached the module after the binary was consumed.
MODULE = b"#!/bin/sh\n# homeops fast path test module\necho \"argv1=$1\"\ncat\n"
SHA = hashlib.sha256(MODULE).hexdigest()
ARGS = b'{"name": "loki", "_ansible_check_mode": false}'


def script(template: str, home: Path, size: int = 0) -> str:
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


def run(template: str, home: Path, data: bytes, size: int = 0) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", "-c", script(template, home, size)], input=data, capture_output=True, timeout=30)


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
