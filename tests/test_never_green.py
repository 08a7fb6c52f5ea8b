"""Never green on nothing (issue 10, item 1): the deploy and the verify fail, naming why, when
the inventory cannot be parsed or a group the spec needs is empty, and the verify summary fails
when a group was checked on no host. Each runs the real ansible-playbook; nothing connects to a
host (the preflight and the summary run on localhost)."""

import pytest
import yaml

from homeops_dev import labdriver

DEPLOY = "playbooks/deploy-observability-stack.yml"
VERIFY = "playbooks/tests/verify_observability.yml"
PREFLIGHT = "playbooks/preflight.yml"


def playbook(tmp_path, inventory, path, *args):
    """Run ansible-playbook with the repo's config; inventory is a dict (written as YAML),
    raw text, or None for a path that does not exist. Returns (rc, output)."""
    inv = tmp_path / "inventory.yml"
    if isinstance(inventory, dict):
        inv.write_text(yaml.safe_dump(inventory))
    elif isinstance(inventory, str):
        inv.write_text(inventory)
    # The runners' own way of running a playbook (homeops_dev/labdriver/).
    play = labdriver.Runner(tmp_path, inv).play("run", path, *args, timeout=120)
    return play.rc, play.text


def groups(loki=(), grafana=(), alloy_linux=(), hostvars=None, allvars=None):
    hostvars = hostvars or {}
    inv = {"all": {"children": {}}}
    for name, hosts in (("loki", loki), ("grafana", grafana), ("alloy_linux", alloy_linux)):
        inv["all"]["children"][name] = {"hosts": {h: hostvars.get(h, {}) for h in hosts}} if hosts else None
    if allvars:
        inv["all"]["vars"] = allvars
    return inv


@pytest.mark.parametrize("path", [DEPLOY, VERIFY])
def test_empty_groups_fail_before_anything_runs(tmp_path, path):
    rc, out = playbook(tmp_path, groups(), path)
    assert rc != 0
    assert "no host in the group(s) loki, grafana, alloy_linux" in out
    # The first real play (lockdown / check A) never started.
    assert "PLAY [Lock down" not in out and "PLAY [Verify accounts" not in out


def test_only_the_empty_group_is_named(tmp_path):
    rc, out = playbook(tmp_path, groups(loki=["o"], grafana=["o"]), PREFLIGHT)
    assert rc != 0
    assert "no host in the group(s) alloy_linux" in out
    assert "observability_expect_linux_agents: false" in out


def test_no_linux_agents_on_purpose_is_accepted(tmp_path):
    inv = groups(loki=["o"], grafana=["o"], allvars={"observability_expect_linux_agents": False})
    rc, out = playbook(tmp_path, inv, PREFLIGHT)
    assert rc == 0, out
    assert "loki 1, grafana 1, alloy_linux 0, alloy_windows 0 host(s)" in out


@pytest.mark.parametrize("inventory", ["all: [broken\n", None], ids=["unparseable", "missing"])
@pytest.mark.parametrize("path", [DEPLOY, VERIFY])
def test_an_inventory_that_cannot_be_parsed_fails(tmp_path, inventory, path):
    rc, out = playbook(tmp_path, inventory, path)
    assert rc != 0
    assert "failed to parse inventory source" in out.lower()


# The summary play alone, with the results a verify run would have left in hostvars.
SUMMARY = ("--start-at-task", "Summary Count the hosts of each group that were checked")
GOOD = {"o": {"verify_results": {"A1": True, "B3": True, "C3": True}},
        "a": {"verify_results": {"D1": True, "E1": True}, "verify_e_seconds": "1.2"}}


def test_summary_passes_and_counts_each_group(tmp_path):
    rc, out = playbook(tmp_path, groups(["o"], ["o"], ["a"], GOOD), VERIFY, *SUMMARY)
    assert rc == 0, out
    assert "All checks passed: loki 1, grafana 1, alloy_linux 1 host(s) checked." in out
    assert "log line visible in Loki after 1.2 s" in out


def test_summary_fails_a_failed_check(tmp_path):
    bad = dict(GOOD, a={"verify_results": {"D1": True, "E1": False}, "verify_e_hop": "Grafana: x"})
    rc, out = playbook(tmp_path, groups(["o"], ["o"], ["a"], bad), VERIFY, *SUMMARY)
    assert rc != 0
    assert "Checks failed on: a." in out and "lost at: Grafana" in out


def test_summary_fails_a_group_that_was_never_checked(tmp_path):
    hv = dict(GOOD, o={"verify_results": {"A1": True, "B3": True}})  # C never ran
    rc, out = playbook(tmp_path, groups(["o"], ["o"], ["a"], hv), VERIFY, *SUMMARY)
    assert rc != 0
    assert "Never checked: o." in out and "No host checked in group(s) grafana" in out


def test_summary_fails_when_every_agent_was_unreachable(tmp_path):
    hv = dict(GOOD, a={"verify_unreachable": True})
    rc, out = playbook(tmp_path, groups(["o"], ["o"], ["a"], hv), VERIFY, *SUMMARY)
    assert rc != 0
    assert "No host checked in group(s) alloy_linux" in out
    assert "Never checked" not in out  # an unreachable agent is reported, not failed


def test_summary_keeps_one_unreachable_agent_reported_not_failed(tmp_path):
    hv = dict(GOOD, b={"verify_unreachable": True})
    rc, out = playbook(tmp_path, groups(["o"], ["o"], ["a", "b"], hv), VERIFY, *SUMMARY)
    assert rc == 0, out
    assert "alloy_linux: 1 of 2 host(s) checked, 1 unreachable (reported, not failed)" in out


def test_verify_plays_see_inventory_overrides_of_role_defaults(tmp_path):
    """What each verify play does first (import a role's defaults_only): an inventory's all:
    value beats the role default, as in the deploy."""
    probe = tmp_path / "probe.yml"
    probe.write_text(yaml.safe_dump([{
        "name": "Probe", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "tasks": [
            {"name": "Load", "ansible.builtin.import_role": {"name": "homeops.observability.loki",
                                                              "tasks_from": "defaults_only"}},
            {"name": "Check", "ansible.builtin.import_role": {"name": "homeops.observability.verify",
                                                               "tasks_from": "validate"}},
            {"name": "Show", "ansible.builtin.debug": {"msg": "port={{ loki_http_listen_port }} "
                                                              "timeout={{ verify_log_flow_timeout }}"}},
        ]}]))
    # A loki group: the verify role's check templates its defaults, which derive from loki_url.
    rc, out = playbook(tmp_path, {"all": {"vars": {"loki_http_listen_port": 3999}, "children": {
        "loki": {"hosts": {"localhost": {"ansible_connection": "local"}}}}}}, str(probe))
    assert rc == 0, out
    assert "port=3999 timeout=60" in out
