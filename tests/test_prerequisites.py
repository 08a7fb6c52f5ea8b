"""scripts/prerequisites.sh, which `make setup` and .ci/run run first: one list from three
files, a missing package is named, and without root nothing is installed but the one command
to run is printed. The root install branch is not run here (it would change the machine)."""
import os
import shutil
import subprocess

import pytest

from conftest import REPO

SCRIPT = os.path.join(REPO, "scripts/prerequisites.sh")
LISTS = ("scripts/base-packages.txt", "scripts/build-packages.txt", "lab/host-packages.txt")
FAKE = "homeops-no-such-package"
# dpkg itself is installed wherever dpkg-query runs.
PRESENT = "dpkg"


def run(*args, packages=None, as_nobody=False):
    env = dict(os.environ)
    env.pop("PREREQUISITES_PACKAGES", None)
    if packages is not None:
        env["PREREQUISITES_PACKAGES"] = packages
    command = [SCRIPT, *args]
    if as_nobody and os.geteuid() == 0:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def listed():
    names = []
    for path in LISTS:
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
            for line in f:
                name = line.split("#", 1)[0].strip()
                if name and name not in names:
                    names.append(name)
    return names


def test_the_list_is_the_three_files_without_comments_or_repeats():
    result = run("--list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == listed()
    assert {"make", "git", "python3-venv", "cargo-web", "debootstrap"} <= set(listed())


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs Debian's dpkg-query")
def test_check_names_exactly_the_missing_packages():
    assert run("--check", packages=PRESENT).returncode == 0
    result = run("--check", packages=f"{PRESENT} {FAKE}")
    assert result.returncode == 1
    assert f"missing: {FAKE}" in result.stderr and f"{PRESENT} " not in result.stderr


def nobody_can_run_the_script():
    """As root: whether nobody reaches the script (a clone under /root is out of its reach)."""
    if os.geteuid() != 0:
        return True
    if shutil.which("setpriv") is None:
        return False
    probe = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "test", "-x", SCRIPT]
    return subprocess.run(probe, check=False).returncode == 0


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs Debian's dpkg-query")
@pytest.mark.skipif(not nobody_can_run_the_script(),
                    reason="as root: needs setpriv, and a clone that user nobody can read")
def test_without_root_it_installs_nothing_and_names_the_one_command():
    result = run(packages=f"{PRESENT} {FAKE}", as_nobody=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"apt-get install -y --no-install-recommends {FAKE}" in result.stderr
    assert "sudo" in result.stderr and "installing" not in result.stdout
    # Nothing missing: a user passes straight through to the rest of make setup.
    assert run(packages=PRESENT, as_nobody=True).returncode == 0


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs Debian's dpkg-query")
def test_a_package_named_with_its_architecture_counts_when_installed():
    native = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert run("--check", packages=f"{PRESENT}:{native}").returncode == 0
    result = run("--check", packages=f"{PRESENT}:s390x")
    assert result.returncode == 1 and f"missing: {PRESENT}:s390x" in result.stderr


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs Debian's dpkg-query")
@pytest.mark.skipif(not nobody_can_run_the_script(),
                    reason="as root: needs setpriv, and a clone that user nobody can read")
def test_a_foreign_architecture_is_added_in_the_one_command():
    result = run(packages=f"{FAKE}:s390x", as_nobody=True)
    assert result.returncode == 1
    assert ("sudo dpkg --add-architecture s390x && sudo apt-get update && "
            f"sudo apt-get install -y --no-install-recommends {FAKE}:s390x") in result.stderr
