"""Role argument specs (issue 21): every role has meta/argument_specs.yml, every default of a
role is documented there with the same value (the two cannot drift), and ansible-core rejects a
wrong type, an unknown choice or a missing required secret before the role's first real task,
naming the variable. The playbook runs run the installed collection (./collections, `make
setup`) against localhost with --tags that select only the validation tasks (tagged `always` by
ansible-core), so nothing on the machine is touched even when a check should have failed."""
import glob
import os
import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

ROLES = sorted(os.path.basename(os.path.dirname(os.path.dirname(p)))
               for p in glob.glob(os.path.join(REPO, "roles/*/meta/main.yml")))
from homeops_dev import labdriver

INSTALLED = os.path.join(REPO, "collections/ansible_collections/homeops/observability")


def load(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def defaults(role):
    files = (sorted(glob.glob(os.path.join(REPO, "roles", role, "defaults/main/*.yml")))
             or glob.glob(os.path.join(REPO, "roles", role, "defaults/main.yml")))
    out = {}
    for path in files:
        out.update(load(path))
    return out


def spec(role):
    path = os.path.join(REPO, "roles", role, "meta/argument_specs.yml")
    assert os.path.exists(path), f"roles/{role}/meta/argument_specs.yml is missing"
    specs = load(path)["argument_specs"]
    # common has only `validate` (its argument_specs.yml says why), the others main and validate.
    return specs["validate" if role == "common" else "main"]["options"]


def test_every_role_has_a_spec():
    assert ROLES == ["alloy", "apt_lockdown", "common", "grafana", "loki", "verify"]
    for role in ROLES:
        assert spec(role), role


def test_common_is_never_checked_as_a_dependency():
    """No `main` entry point in common: ansible-core would check it under every role that depends
    on it, defaults_only imports included, and fail templating loki_address without a loki group.
    Its other entry point, give_up (the deploy's rescue path), checks only its own parameter."""
    specs = load(os.path.join(REPO, "roles/common/meta/argument_specs.yml"))["argument_specs"]
    assert sorted(specs) == ["give_up", "validate"]
    assert list(specs["give_up"]["options"]) == ["observability_failed_component"]


@pytest.mark.parametrize("role", ROLES)
def test_the_validate_entry_point_checks_the_same_options(role):
    specs = load(os.path.join(REPO, "roles", role, "meta/argument_specs.yml"))["argument_specs"]
    assert specs["validate"]["options"] == spec(role)
    # It runs nothing but ansible-core's check.
    assert load(os.path.join(REPO, "roles", role, "tasks/validate.yml")) == {}


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_spec_agree(role):
    d, s = defaults(role), spec(role)
    problems = []
    for name, value in d.items():
        if name not in s:
            problems.append(f"{name}: a default of roles/{role}/defaults but not in its argument spec")
        elif s[name].get("default") != value:
            problems.append(f"{name}: default {value!r} in defaults, {s[name].get('default')!r} in the spec")
    for name, opt in s.items():
        if "default" in opt and name not in d:
            problems.append(f"{name}: has a default in the spec but none in roles/{role}/defaults")
        if not opt.get("description"):
            problems.append(f"{name}: no description")
        if "type" not in opt:
            problems.append(f"{name}: no type")
    assert not problems, f"roles/{role}/meta/argument_specs.yml vs defaults:\n" + "\n".join(problems)


def test_secrets_are_no_log_and_have_no_default():
    for role in ROLES:
        for name, opt in spec(role).items():
            if "password" in name:
                assert opt.get("no_log") is True, f"{role}: {name} needs no_log: true"
                assert "default" not in opt, f"{role}: {name} must not have a default"
    assert spec("grafana")["grafana_admin_password"].get("required") is True
    assert spec("grafana")["loki_datasource_password"].get("required") is True


needs_collection = pytest.mark.skipif(
    not all(os.path.exists(os.path.join(INSTALLED, "roles", r, "meta/argument_specs.yml")) for r in ROLES),
    reason="the collection with argument specs is not installed in ./collections: run `make setup`")


def run_role(tmp_path, role, hostvars):
    """Import the installed role on localhost with hostvars (common: its `validate` entry point);
    only `always` tasks (ansible-core's validation tasks) run. Returns (rc, output)."""
    inv = tmp_path / "inventory.yml"
    host = dict({"ansible_connection": "local"}, **hostvars)
    inv.write_text(yaml.safe_dump({"all": {"children": {
        "loki": {"hosts": {"localhost": host}}}}}))
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{
        "name": "Validate the role's variables", "hosts": "loki", "gather_facts": False,
        "tasks": [{"name": "Import the role", "ansible.builtin.import_role": dict(
            {"name": f"homeops.observability.{role}"}, **({"tasks_from": "validate"} if role == "common" else {}))}]}],
        sort_keys=False))
    r = labdriver.Runner(tmp_path, inv).play("run", play, "--tags", "homeops-none", timeout=120)
    return r.rc, r.text


SECRETS = {"grafana_admin_password": "s3cret-admin-pw", "loki_datasource_password": "s3cret-ds-pw",
           "loki_push_password": "s3cret-push-pw"}


@needs_collection
@pytest.mark.parametrize("role", ROLES)
def test_valid_variables_pass(tmp_path, role):
    rc, out = run_role(tmp_path, role, dict(SECRETS))
    assert rc == 0, out
    assert f"Validating arguments against arg spec '{'validate' if role == 'common' else 'main'}'" in out
    for value in SECRETS.values():
        assert value not in out


@needs_collection
@pytest.mark.parametrize("role, hostvars, words", [
    ("common", {"loki_http_listen_port": "abc"}, ["loki_http_listen_port", "int"]),
    ("common", {"observability_package_source": "ppa"}, ["observability_package_source", "grafana, lab"]),
    ("loki", {"loki_log_level": "verbose"}, ["loki_log_level", "debug, info, warn, error"]),
    ("common", {"loki_proxy_enabled": "maybe"}, ["loki_proxy_enabled", "bool"]),
    ("alloy", {"alloy_platform": "macos"}, ["alloy_platform", "linux, windows"]),
    ("alloy", {"alloy_log_paths": {"a": 1}}, ["alloy_log_paths", "list"]),
    ("apt_lockdown", {"apt_lockdown_state": "unlocked"}, ["apt_lockdown_state", "locked, released"]),
    ("grafana", {"grafana_http_port": "eighty"}, ["grafana_http_port", "int"]),
    ("grafana", {"grafana_admin_password": None}, ["grafana_admin_password"]),
    ("verify", {"verify_clock_max_skew": "a minute"}, ["verify_clock_max_skew", "int"]),
])
def test_a_bad_variable_fails_before_the_role_runs(tmp_path, role, hostvars, words):
    provided = dict(SECRETS)
    for k, v in hostvars.items():
        if v is None:
            provided.pop(k)
        else:
            provided[k] = v
    rc, out = run_role(tmp_path, role, provided)
    assert rc != 0, out
    assert "Validation of arguments failed" in out, out
    for w in words:
        assert w in out, f"{w!r} not in:\n{out}"
    for value in SECRETS.values():
        assert value not in out


@needs_collection
@pytest.mark.parametrize("role", ["loki", "common"])
def test_ansible_doc_documents_the_installed_role(role):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-doc"), "-t", "role",
                        f"homeops.observability.{role}"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    opts = spec(role)
    for name in opts:
        assert name in r.stdout, f"ansible-doc -t role does not show {name}"


DEPLOY = "playbooks/deploy-observability-stack.yml"


def run_deploy(tmp_path, allvars, path=DEPLOY):
    """The real deploy against hosts that cannot be reached (port 1 on loopback): whatever the
    check lets through fails unreachable, nothing is touched. Returns (rc, output)."""
    down = {"ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_user": "nobody"}
    inv = tmp_path / "inventory.yml"
    # A None value leaves the variable out (a missing secret).
    allvars = {k: v for k, v in dict(SECRETS, **allvars).items() if v is not None}
    inv.write_text(yaml.safe_dump({"all": {"vars": allvars, "children": {
        "loki": {"hosts": {"o1": down}}, "grafana": {"hosts": {"o1": down}},
        "alloy_linux": {"hosts": {"a1": down}},
        "alloy_windows": {"hosts": {"w1": dict(down, ansible_connection="ssh")}}}}}))
    r = labdriver.Runner(tmp_path, inv).play("run", path, timeout=180)
    return r.rc, r.text


@needs_collection
def test_the_deploy_stops_on_a_bad_variable_before_touching_a_host(tmp_path):
    rc, out = run_deploy(tmp_path, {"loki_http_listen_port": "abc"})
    assert rc != 0, out
    assert "PLAY [Check the roles' variables]" in out
    assert "loki_http_listen_port" in out and "Validation of arguments failed" in out, out
    # No play after the check started: neither the downgrade guard nor the lockdown.
    assert "PLAY [Refuse to downgrade" not in out, out
    assert "PLAY [Lock down" not in out, out
    for value in SECRETS.values():
        assert value not in out


@needs_collection
def test_the_check_passes_good_variables_on_every_group(tmp_path):
    rc, out = run_deploy(tmp_path, {}, path="playbooks/check-variables.yml")
    assert rc == 0, out
    recap = out.split("PLAY RECAP")[-1]
    # One check per host (issue 23), against the roles it runs, nothing failed.
    for host in ("o1", "a1", "w1"):
        assert re.search(rf"^{host}\s+: ok=1\s+changed=0\s+unreachable=0\s+failed=0", recap, re.M), recap


@needs_collection
@pytest.mark.parametrize("allvars, host, words", [
    # Each check is made only where its role runs: a bad Loki or Grafana variable fails o1 alone,
    # an Alloy one the agents (w1 too), an apt_lockdown one the Linux hosts, common's everyone.
    ({"loki_log_level": "verbose"}, {"o1"}, ["loki_log_level", "debug, info, warn, error"]),
    ({"grafana_http_port": "eighty"}, {"o1"}, ["grafana_http_port", "int"]),
    ({"alloy_log_paths": {"a": 1}}, {"a1", "w1"}, ["alloy_log_paths", "list"]),
    ({"apt_lockdown_state": "unlocked"}, {"o1", "a1"}, ["apt_lockdown_state", "locked, released"]),
    ({"loki_http_listen_port": "abc"}, {"o1", "a1", "w1"}, ["loki_http_listen_port", "int"]),
    # Required by grafana's spec only (loki's has it optional): the merged spec keeps it required.
    ({"loki_datasource_password": None}, {"o1"}, ["loki_datasource_password"]),
])
def test_the_check_fails_where_the_role_runs(tmp_path, allvars, host, words):
    rc, out = run_deploy(tmp_path, allvars, path="playbooks/check-variables.yml")
    assert rc != 0, out
    assert "Validation of arguments failed" in out, out
    for w in words:
        assert w in out, f"{w!r} not in:\n{out}"
    recap = out.split("PLAY RECAP")[-1]
    failed = set(re.findall(r"^(\w+)\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=1", recap, re.M))
    assert failed == host, recap
    for value in SECRETS.values():
        assert value not in out
