"""The module binaries `make build` installs into library/: what ansible-core copies to hosts.

cargo test runs the modules as host debug builds; these tests look at the release files
themselves, for every architecture we build (library/<name> is x86_64,
library/.arch/aarch64/<name> aarch64): each is a static executable of its architecture (no
program interpreter, so it runs whatever libc a host has), fits the 1 MiB budget, and answers
bad input with failed JSON, not a crash. The aarch64 ones run under qemu-aarch64-static
(qemu-user-static, in scripts/build-packages.txt).
"""
import json
import os
import shutil
import struct
import subprocess

import pytest

from conftest import REPO, module_names

# The one list of modules (homeops_dev/modules.py, from the Cargo workspace).
MODULES = module_names()
BUDGET = 1024 * 1024
PT_INTERP = 3
PT_DYNAMIC = 2
# arch -> (path under library/, ELF e_machine, how to run it here)
ARCHES = {
    "x86_64": ("", 62, []),
    "aarch64": (".arch/aarch64/", 183, ["qemu-aarch64-static"]),
}


def program_headers(path, machine_wanted):
    """The p_type of every program header of a 64-bit little-endian ELF file."""
    with open(path, "rb") as f:
        header = f.read(64)
        assert header[:4] == b"\x7fELF", "%s is not an ELF file" % path
        assert header[4] == 2 and header[5] == 1, "%s is not 64-bit little-endian" % path
        (machine,) = struct.unpack_from("<H", header, 18)
        assert machine == machine_wanted, "%s has e_machine %d, not %d" % (path, machine, machine_wanted)
        phoff, = struct.unpack_from("<Q", header, 32)
        phentsize, phnum = struct.unpack_from("<HH", header, 54)
        types = []
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            types.append(struct.unpack("<I", f.read(4))[0])
        return types


class Binary(str):
    arch = ""
    machine = 0
    runner: list = []


@pytest.fixture(params=[(a, m) for a in ARCHES for m in MODULES], ids=lambda p: "%s-%s" % p)
def binary(request):
    arch, name = request.param
    sub, machine, runner = ARCHES[arch]
    path = os.path.join(REPO, "library", sub + name)
    if not os.path.exists(path):
        pytest.fail("library/%s%s is missing: run make build" % (sub, name))
    b = Binary(path)
    b.arch, b.machine, b.runner = arch, machine, runner
    return b


def test_is_a_static_executable_of_its_architecture(binary):
    types = program_headers(binary, binary.machine)
    assert PT_INTERP not in types, "%s asks for a program interpreter (dynamically linked)" % binary
    assert PT_DYNAMIC not in types, "%s has a dynamic section" % binary


def test_fits_the_size_budget(binary):
    size = os.path.getsize(binary)
    assert size <= BUDGET, "%s is %d bytes, over the %d-byte budget" % (binary, size, BUDGET)


def run(binary, *args, stdin=b""):
    if binary.runner and not shutil.which(binary.runner[0]):
        pytest.fail("%s is needed to run the %s binaries here: apt-get install qemu-user-static"
                    % (binary.runner[0], binary.arch))
    proc = subprocess.run([*binary.runner, binary, *args], input=stdin, capture_output=True, timeout=60,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_a_missing_args_file_is_a_failed_answer(binary, tmp_path):
    rc, answer, stderr = run(binary, str(tmp_path / "absent.json"))
    assert rc == 1 and answer["failed"] is True and answer["changed"] is False
    assert "absent.json" in answer["msg"]
    assert stderr == b""


def test_args_that_are_not_an_object_are_a_failed_answer(binary):
    rc, answer, _ = run(binary, "-", stdin=b"[1, 2]")
    assert rc == 1 and answer["failed"] is True
    assert "object" in answer["msg"]


def test_an_unknown_parameter_is_named(binary):
    rc, answer, _ = run(binary, "-", stdin=b'{"no_such_option": 1, "_ansible_check_mode": true}')
    assert rc == 1 and answer["failed"] is True
    assert "no_such_option" in answer["msg"]


def test_prints_its_argument_spec(binary):
    """`MODULE --argument-spec` (the spec test reads the x86_64 one): every architecture's
    binary declares the same options, under its own name."""
    rc, answer, stderr = run(binary, "--argument-spec")
    assert rc == 0 and "failed" not in answer, answer
    assert answer["module"] == os.path.basename(binary)
    x86 = os.path.join(REPO, "library", os.path.basename(binary))
    rc, reference, _ = run(Binary(x86), "--argument-spec")
    assert answer["options"] == reference["options"], "%s declares other options than %s" % (binary, x86)
    assert stderr == b""
