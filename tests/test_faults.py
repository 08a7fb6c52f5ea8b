"""The itest-faults runner's parsing (homeops_dev/faults/) and its bad-input table, no lab. Its
playbook runs and their recaps are homeops_dev/labdriver/'s (tests/test_labdriver.py)."""
import json
import os
import re
import subprocess

from conftest import REPO, module_names
from test_module_specs import argument_spec

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


def bad_inputs():
    """The refused inputs derived from each built binary's argument spec (homeops_dev/modules.py)."""
    from homeops_dev import modules

    return modules.bad_inputs(REPO)


def test_the_derived_bad_inputs_break_every_rule_of_every_option():
    """python -m homeops_dev.modules --bad-inputs: for every module an unknown option, and for every option
    (and every key of a list of dicts' entries) a wrong type, and where the spec says so a missing
    required one, a value outside the choices, one under the minimum. A new module gets its cases
    from its crate, nothing is listed by hand (docs/design.md, "Adding a module")."""
    cases = bad_inputs()
    assert {c["module"] for c in cases} == set(module_names())
    whys = {(c["module"], c["why"]) for c in cases}
    for module in module_names():
        assert (module, "unknown option") in whys, module
        for parent, option in argument_spec(module).items():
            scopes = [("", parent, option)]
            if option["elements"] == "dict":
                assert (module, f"{parent}[0]: unknown key") in whys, (module, parent)
                scopes += [(f"{parent}[0]: ", name, sub) for name, sub in option["suboptions"].items()]
            for at, name, o in scopes:
                assert any(w.startswith(f"{at}{name} not ") for m, w in whys if m == module), (module, at, name)
                assert ((module, f"{at}{name} missing") in whys) == o["required"], (module, at, name)
                assert ((module, f"{at}{name} outside its choices") in whys) == bool(o["choices"]), (module, at, name)
                assert ((module, f"{at}{name} below its minimum") in whys) == (o["min"] is not None), (module, at, name)
    for c in cases:
        assert set(c) == {"module", "why", "args", "needle"}, c
        assert isinstance(c["args"], dict) and c["needle"], c


def test_each_derived_bad_input_is_refused_by_its_binary_with_its_message():
    """Every derived case, run here against the built binary (args on standard input, as the fast
    path sends them; in check mode, so a case that slipped through would change nothing): failed,
    changed=false, the needle in msg. The fault suite runs the same cases through Ansible."""
    wrong = []
    for c in bad_inputs():
        args = json.dumps(dict(c["args"], _ansible_check_mode=True)).encode()
        proc = subprocess.run([os.path.join(REPO, "library", c["module"]), "-"], input=args, capture_output=True,
                              timeout=30, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
        answer = json.loads(proc.stdout)
        refused = answer.get("failed") is True and answer.get("changed") is False
        if not (refused and c["needle"] in answer.get("msg", "")):
            wrong.append(f"{c['module']} ({c['why']}): wanted {c['needle']!r}, got {answer.get('msg')!r}")
    assert not wrong, "\n".join(wrong)


# The parser's own refusals (crates/runtime/src/params.rs), which the derived cases cover.
GENERIC = re.compile(r"missing required parameter|must be of type|must be one of|must be at least|must be a boolean"
                     r"|Unsupported parameters for|unsupported keys in")


def test_the_extra_bad_inputs_are_semantic_and_match_the_crates():
    """tests/faults/bad-input.json holds only refusals of a module's own code (a bad account name,
    an injected unit, an owner missing on the host), run on a real host by the fault suite. They
    are optional: the parser's refusals are derived, so listing one here is refused as a duplicate."""
    cases = json.load(open(os.path.join(REPO, "tests/faults/bad-input.json")))
    assert cases and {c["module"] for c in cases} <= set(module_names())
    for c in cases:
        assert set(c) == {"module", "why", "args", "needle"}, c
        assert isinstance(c["args"], dict) and c["needle"], c
        assert not GENERIC.search(c["needle"]), (
            f"{c['module']} ({c['why']}): the parser's own refusal; python -m homeops_dev.modules --bad-inputs derives "
            "those from the argument spec, drop it from tests/faults/bad-input.json")
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
