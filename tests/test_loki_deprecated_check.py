"""Verify B4's helper, scripts/loki_deprecated_check.py: Loki's own deprecated-config-checker
(../shared/real-parsers, or HOMEOPS_REAL_PARSERS_DIR) over a Loki config on the controller."""
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, render

SCRIPT = os.path.join(REPO, "scripts", "loki_deprecated_check.py")
PARSERS = os.environ.get("HOMEOPS_REAL_PARSERS_DIR") or os.path.normpath(os.path.join(REPO, "..", "shared", "real-parsers"))
HAVE_CHECKER = os.path.isdir(PARSERS) and any(n.startswith("loki-deprecated-config-checker-v") for n in os.listdir(PARSERS))
needs_checker = pytest.mark.skipif(not HAVE_CHECKER, reason=f"no loki-deprecated-config-checker in {PARSERS}")
PINNED = str(yaml.safe_load(open(os.path.join(REPO, "roles/common/defaults/main/versions.yml")))["loki_version"])


def check(config, tmp_path, parsers=None):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    if parsers is not None:
        env["HOMEOPS_REAL_PARSERS_DIR"] = str(parsers)
    run = subprocess.run([sys.executable, SCRIPT, str(config)], capture_output=True, text=True, env=env, timeout=180)
    return run.returncode, json.loads(run.stdout), run.stdout + run.stderr


@needs_checker
def test_our_render_of_the_pinned_version_has_no_deprecated_key(tmp_path):
    cfg = tmp_path / "config.yml"
    cfg.write_text(render("loki-config.yaml.j2", loki_version=PINNED))
    rc, out, _ = check(cfg, tmp_path)
    assert rc == 0 and out["checked"] and out["ok"] and out["findings"] == [], out
    assert out["checker"].startswith("v")


@needs_checker
def test_deleted_and_deprecated_keys_are_named_without_their_values(tmp_path):
    cfg = tmp_path / "config.yml"
    secretish = "s3cr3t-looking-value"
    text = render("loki-config.yaml.j2", loki_version=PINNED).replace(
        "limits_config:\n", f"limits_config:\n  enforce_metric_name: false\n  unordered_writes: true\n", 1)
    text = text.replace("storage_config:\n", f"storage_config:\n  boltdb_shipper:\n    shared_store: {secretish}\n", 1)
    cfg.write_text(text)
    rc, out, raw = check(cfg, tmp_path)
    assert rc == 0 and out["checked"] and out["ok"] is False
    assert set(out["findings"]) == {"deleted: limits_config.enforce_metric_name", "deprecated: limits_config.unordered_writes",
                                    "deleted: storage_config.boltdb_shipper.shared_store"}, out
    assert secretish not in raw


def test_no_checker_is_not_checked_and_says_why(tmp_path):
    cfg = tmp_path / "config.yml"
    cfg.write_text("auth_enabled: false\n")
    rc, out, _ = check(cfg, tmp_path, parsers=tmp_path / "absent")
    assert rc == 0 and out == {"checked": False, "why": f"no checker here: {tmp_path / 'absent'} is absent"}
    (tmp_path / "empty").mkdir()
    rc, out, _ = check(cfg, tmp_path, parsers=tmp_path / "empty")
    assert rc == 0 and out["checked"] is False and "has no loki-deprecated-config-checker" in out["why"]


@needs_checker
def test_a_damaged_checker_is_refused(tmp_path):
    copy = tmp_path / "parsers"
    copy.mkdir()
    name = sorted(n for n in os.listdir(PARSERS) if n.startswith("loki-deprecated-config-checker-v"))[-1]
    shutil.copy(os.path.join(PARSERS, "SHA256SUMS"), copy / "SHA256SUMS")
    data = bytearray(open(os.path.join(PARSERS, name), "rb").read())
    data[len(data) // 2] ^= 0xFF
    (copy / name).write_bytes(bytes(data))
    cfg = tmp_path / "config.yml"
    cfg.write_text("auth_enabled: false\n")
    rc, out, _ = check(cfg, tmp_path, parsers=copy)
    assert rc == 2 and out["checked"] is False and "does not match its SHA256SUMS entry" in out["why"]


VERIFY_LOKI_TASKS = os.path.join(REPO, "roles/verify/tasks/loki.yml")


def test_verify_reads_only_the_loki_config_for_b4():
    """B4 reads one file off a host (raw cat: no Python there): the Loki config, which holds no
    secret. No other task of the verify role reads a file's text back."""
    tasks = []
    for path in sorted(glob.glob(os.path.join(REPO, "roles/verify/tasks/*.yml"))):
        tasks += yaml.safe_load(open(path)) or []
    reads = [t for t in tasks if "ansible.builtin.fetch" in t or "ansible.builtin.slurp" in t
             or str(t.get("ansible.builtin.raw", "")).startswith("cat ")]
    assert [t["ansible.builtin.raw"] for t in reads] == ["cat -- {{ loki_config_path | quote }}"]
    assert all(t["name"].startswith("B4 ") for t in reads)


def b4_record(stdout, read=None, fetch=None):
    """The verify's 'B4 Record' task templated as Ansible would, for a checker output."""
    from ansible.template import Templar, trust_as_template

    tasks = yaml.safe_load(open(VERIFY_LOKI_TASKS))
    task = next(t for t in tasks if t["name"].startswith("B4 Record"))
    variables = {"verify_results": {"B1": True}, "verify_b4_result": {"stdout": stdout},
                 "verify_b4_read": read or {"rc": 0}, "verify_b4_fetch": fetch or {}}
    variables.update({k: trust_as_template(v) for k, v in task["vars"].items()})
    templar = Templar(variables=variables)
    facts = task["ansible.builtin.set_fact"]
    return (templar.template(trust_as_template(facts["verify_results"])),
            " ".join(templar.template(trust_as_template(facts["verify_b4_note"])).split()))


def test_b4_passes_fails_or_is_not_checked_as_the_checker_says():
    ok = json.dumps({"checked": True, "ok": True, "checker": "v3.7.6", "findings": []})
    results, note = b4_record(ok)
    assert results == {"B1": True, "B4": True}
    assert note == "Loki deprecated-config-checker v3.7.6: no deprecated or deleted key"
    bad = json.dumps({"checked": True, "ok": False, "checker": "v3.7.6",
                      "findings": ["deleted: limits_config.enforce_metric_name"]})
    results, note = b4_record(bad)
    assert results == {"B1": True, "B4": False}
    assert note == "Loki deprecated-config-checker v3.7.6: deleted: limits_config.enforce_metric_name"
    absent = json.dumps({"checked": False, "why": "no checker here: ../shared/real-parsers is absent"})
    results, note = b4_record(absent)
    assert results == {"B1": True}  # neither passed nor failed
    assert note == "B4 not checked (no checker here: ../shared/real-parsers is absent)"
    results, note = b4_record("", read={
        "rc": 1, "stdout_lines": ["cat: /etc/loki/config.yml: No such file or directory"],
        "stderr_lines": ["Shared connection to 10.77.2.11 closed."]})
    assert results == {"B1": True}
    assert note == ("B4 not checked (the deployed config could not be read: "
                    "cat: /etc/loki/config.yml: No such file or directory)")
