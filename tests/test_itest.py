"""The itest's idempotence rule (scripts/recap-changed.awk) on real PLAY RECAP shapes."""
import os
import subprocess

from conftest import REPO

RECAP = """\
TASK [Install Grafana Alloy] ****************************************************
changed: [srv-01]

PLAY RECAP *********************************************************************
obs-01                     : ok=18   changed=0    unreachable=0    failed=0    skipped=10   rescued=0    ignored=0
srv-01                     : ok=10   changed={srv}    unreachable=0    failed=0    skipped=7    rescued=0    ignored=0
ws-01-linux                : ok=3    changed=0    unreachable=0    failed=0    skipped=3    rescued=0    ignored=1
"""


def awk_lines(script, text, tmp_path):
    """Run scripts/<script> over text, as itest does over a playbook's output."""
    path = tmp_path / "out.txt"
    path.write_text(text)
    return subprocess.run(
        ["awk", "-f", os.path.join(REPO, "scripts", script), str(path)],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()


def changed(text, tmp_path):
    return awk_lines("recap-changed.awk", text, tmp_path)


def test_all_hosts_unchanged_is_idempotent(tmp_path):
    assert changed(RECAP.format(srv=0), tmp_path) == []


def test_a_changed_host_is_reported(tmp_path):
    assert changed(RECAP.format(srv=12), tmp_path) == ["srv-01 changed=12"]


def test_lines_before_the_recap_are_ignored(tmp_path):
    text = "obs-01 : ok=1 changed=5 unreachable=0\n" + RECAP.format(srv=0)
    assert changed(text, tmp_path) == []


def recap_hosts(text, tmp_path):
    return awk_lines("recap-hosts.awk", text, tmp_path)


def test_recap_hosts_are_the_hosts_the_run_reported_on(tmp_path):
    text = RECAP.format(srv=0) + "localhost                  : ok=3    changed=0    unreachable=0\n"
    assert recap_hosts(text, tmp_path) == ["obs-01", "srv-01", "ws-01-linux"]


def test_a_run_on_no_hosts_reports_none(tmp_path):
    text = "PLAY [Deploy Loki]\nskipping: no hosts matched\n\nPLAY RECAP ****\n"
    assert recap_hosts(text, tmp_path) == []
