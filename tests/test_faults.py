"""The itest-faults runner's parsing (homeops_dev/faults/) and its bad-input table, no lab. Its
playbook runs and their recaps are homeops_dev/labdriver/'s (tests/test_labdriver.py)."""
import json
import os
import re

from conftest import REPO, module_names

from homeops_dev.faults import helpers
from homeops_dev.faults.registry import SCENARIOS
from homeops_dev.faults.scenarios import grafana_password_chars, interrupted_restart, secrets


def test_wait_warnings_of_the_lockdown_and_the_apt_engine_are_found():
    text = (
        "[WARNING]: waited 23.4 s for apt work already running to finish:\n"
        "/var/lib/dpkg/lock-frontend held by PID 652 (python3)\n"
        "[WARNING]: waited 5.0 s for /var/lib/dpkg/lock-frontend, held by PID 77 (apt-get)\n"
    )
    assert helpers.waits(text) == [
        (23.4, "apt work", "PID 652 (python3)"),
        (5.0, "/var/lib/dpkg/lock-frontend", "PID 77 (apt-get)"),
    ]
    assert helpers.waits("nothing here") == []


def test_the_bad_input_table_covers_every_module_and_matches_the_crates():
    cases = json.load(open(os.path.join(REPO, "tests/faults/bad-input.json")))
    modules = {c["module"] for c in cases}
    # Every module of the workspace (homeops_dev/modules.py), so a new one needs its cases here.
    assert modules == set(module_names())
    for c in cases:
        assert set(c) == {"module", "why", "args", "needle"}, c
        assert isinstance(c["args"], dict) and c["needle"], c
    # Every needle is a message the module's crate really produces (a quoted literal in its
    # sources or in the shared runtime/apt crates), so the table cannot drift silently.
    sources = ""
    for tree in ("modules", "crates"):
        for top, _, names in os.walk(os.path.join(REPO, tree)):
            for n in names:
                if n.endswith(".rs"):
                    sources += open(os.path.join(top, n)).read()
    flat = re.sub(r"\\\n\s*", "", sources)
    for c in cases:
        probe = re.split(r"[{}']|/etc\b", c["needle"])
        longest = max(probe, key=len)
        assert longest in flat, f"{c['module']}: {c['needle']!r} not found in modules/ or crates/"


def test_host_scripts_take_no_values_from_data():
    # Secrets go to hosts on stdin only: the scan script reads them there.
    assert "sys.stdin" in secrets.HOST_SCAN
    assert "hoplab" not in secrets.HOST_SCAN


def test_the_interrupted_restart_scenario_is_registered_after_the_secrets_one():
    numbers = [num for num, *_ in SCENARIOS]
    assert "17" in numbers and numbers.index("17") == numbers.index("11") + 1
    num, name, title, hosts, fn = SCENARIOS[numbers.index("17")]
    assert (name, title) == ("interrupted_restart", "a run interrupted between a config change and its restart")
    # Its host script is a fixed string (it reads the times on the host, never data).
    assert "{" not in interrupted_restart.LOKI_START_VS_CONFIG


def test_scenarios_are_numbered_once_and_18_is_the_grafana_password():
    numbers = [x[0] for x in SCENARIOS]
    assert len(numbers) == len(set(numbers))
    (num, name, title, hosts, _), = [x for x in SCENARIOS if x[0] == "18"]
    assert (name, title, hosts) == ("grafana_password_chars", "a Grafana admin password with # ; $ and quotes", 1)
    # What it deploys has what breaks each reader; its prefix up to '#' is what go-ini gives.
    assert all(c in grafana_password_chars.HARD_PASSWORD for c in "#;$'\"`\\ ")
    assert " #" in grafana_password_chars.HARD_PASSWORD  # also ends a value for configparser (the old stand-in)
    assert "${" in grafana_password_chars.REFUSED_PASSWORD
    assert "sys.stdin" in grafana_password_chars.GRAFANA_LOGIN and "Tr0ub4dor" not in grafana_password_chars.GRAFANA_LOGIN
