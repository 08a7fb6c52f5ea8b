"""LICENSE and THIRD-PARTY.md (issue 21): the notices list exactly the crates the module binaries
link, with the versions of Cargo.lock and the licenses of vendor/crates (homeops_dev/third_party_notices.py
--check), and both files ship in the collection (tests/test_collection.py)."""
import os
import shutil

import pytest

from conftest import REPO

from homeops_dev import third_party_notices as notices

needs_cargo = pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is not on PATH (it lists the linked crates)")


def test_license_is_mit_everywhere():
    with open(os.path.join(REPO, "LICENSE"), encoding="utf-8") as f:
        text = f.read()
    assert text.startswith("MIT License") and "HomeOps observability contributors" in text
    import yaml
    with open(os.path.join(REPO, "galaxy.yml"), encoding="utf-8") as f:
        assert yaml.safe_load(f)["license"] == ["MIT"]
    for role in os.listdir(os.path.join(REPO, "roles")):
        with open(os.path.join(REPO, "roles", role, "meta", "main.yml"), encoding="utf-8") as f:
            assert yaml.safe_load(f)["galaxy_info"]["license"] == "MIT", role


@needs_cargo
def test_notices_match_cargo_lock_and_vendor(capsys):
    assert notices.main_check() == 0, capsys.readouterr().err


@needs_cargo
def test_a_stale_notice_fails(tmp_path, monkeypatch, capsys):
    """A version that is not the lock file's (a `cargo update` without regenerating) and a crate
    missing from the notices both fail the check, naming the line."""
    with open(notices.OUT, encoding="utf-8") as f:
        good = f.read()
    stale = tmp_path / "THIRD-PARTY.md"
    stale.write_text(good.replace("| [libc](https://crates.io/crates/libc/0.2.", "| [libc](https://crates.io/crates/libc/0.1.", 1))
    monkeypatch.setattr(notices, "OUT", str(stale))
    assert notices.main_check() == 1
    assert "libc" in capsys.readouterr().err
    missing = "\n".join(line for line in good.splitlines() if not line.startswith("| [regex-syntax]"))
    stale.write_text(missing + "\n")
    assert notices.main_check() == 1
    assert "regex-syntax" in capsys.readouterr().err


@needs_cargo
def test_only_linked_crates_are_listed():
    crates = {name for name, _ in notices.linked("x86_64-unknown-linux-musl")}
    # serde_json is linked by every module; tempfile is a dev-dependency (tests only) and
    # serde_derive a proc-macro (runs in the compiler): neither is in the binaries.
    assert "serde_json" in crates and "libc" in crates
    assert "tempfile" not in crates and "serde_derive" not in crates
