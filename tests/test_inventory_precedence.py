"""An inventory overrides the roles' defaults at every level a user would set a variable: the
inventory file's `all: vars`, its group vars and host vars, and the group_vars/ and host_vars/
directories beside it. Runs ansible-playbook for real (its variable precedence, not a model of
it), with a probe playbook in playbooks/ beside the deploy, so anything that would outrank the
inventory there (playbook group_vars, as before issue 13) makes this fail."""
import json
import os
import uuid

import pytest
import yaml

from conftest import REPO, load_yaml, run, venv_bin

PROBED = ("loki_version", "observability_apt_lock_timeout")

# Imports the real roles (their tasks are skipped by --tags; their defaults and dependencies load
# as in the deploy), then prints what the variables resolve to, at play level and as the roles'
# own derived defaults see them.
PROBE = [
    {
        "name": "Probe the variables the roles see",
        "hosts": "loki",
        "gather_facts": False,
        "tasks": [
            {"name": "Load the loki role", "ansible.builtin.import_role": {"name": "homeops.observability.loki"}},
            {"name": "Load the apt_lockdown role", "ansible.builtin.import_role": {"name": "homeops.observability.apt_lockdown"}},
            {
                "name": "Write the probed variables to a file per host",
                "ansible.builtin.copy": {
                    "dest": "{{ lookup('ansible.builtin.env', 'PROBE_DIR') }}/{{ inventory_hostname }}.json",
                    "mode": "0644",
                    "content": "{{ {'loki_version': loki_version, 'loki_package': loki_package,"
                               " 'observability_apt_lock_timeout': observability_apt_lock_timeout,"
                               " 'apt_lockdown_wait_timeout': apt_lockdown_wait_timeout} | to_json }}",
                },
                "tags": ["precedence-probe"],
            },
        ],
    }
]


def values(level, var):
    """A distinct value per level and variable, so a wrong winner is named in the failure."""
    if var == "loki_version":
        return {"all": "9.1.0", "group": "9.2.0", "host": "9.3.0"}[level]
    return {"all": 101, "group": 202, "host": 303}[level]


def hosts_and_groups():
    # h-all sees only the all-level value, h-group is in a group with its own value, h-host has
    # its own host value (and is in that group too, so host must beat group).
    return {"h-all": "all", "h-group": "group", "h-host": "host"}


def file_inventory(path):
    """Every level in the inventory file itself."""
    inv = {
        "all": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}", **{v: values("all", v) for v in PROBED}},
            "children": {
                "loki": {
                    "hosts": {"h-all": None},
                    "children": {
                        "site_a": {
                            "vars": {v: values("group", v) for v in PROBED},
                            "hosts": {"h-group": None, "h-host": {v: values("host", v) for v in PROBED}},
                        }
                    },
                }
            },
        }
    }
    path.write_text(yaml.safe_dump(inv))
    return str(path)


def dir_inventory(root):
    """Every level in group_vars/ and host_vars/ beside a plain inventory file."""
    os.makedirs(root / "group_vars")
    os.makedirs(root / "host_vars")
    inv = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}, "children": {"loki": {
        "hosts": {"h-all": None}, "children": {"site_a": {"hosts": {"h-group": None, "h-host": None}}}}}}}
    (root / "hosts.yml").write_text(yaml.safe_dump(inv))
    (root / "group_vars" / "all.yml").write_text(yaml.safe_dump({v: values("all", v) for v in PROBED}))
    (root / "group_vars" / "site_a.yml").write_text(yaml.safe_dump({v: values("group", v) for v in PROBED}))
    (root / "host_vars" / "h-host.yml").write_text(yaml.safe_dump({v: values("host", v) for v in PROBED}))
    return str(root / "hosts.yml")


def defaults_inventory(path):
    inv = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}, "children": {"loki": {"hosts": {"h-all": None}}}}}
    path.write_text(yaml.safe_dump(inv))
    return str(path)


@pytest.fixture(scope="module")
def probe_playbook():
    # Beside the deploy, so it gets whatever playbook-level variables the deploy gets.
    path = os.path.join(REPO, "playbooks", ".precedence-probe-%s.yml" % uuid.uuid4().hex[:8])
    with open(path, "w", encoding="utf-8") as f:
        f.write("---\n" + yaml.safe_dump(PROBE, sort_keys=False))
    yield path
    os.unlink(path)


def probe(playbook, inventory, tmp_path):
    out = tmp_path / "probe"
    out.mkdir()
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), PROBE_DIR=str(out),
               ANSIBLE_LOG_PATH=str(tmp_path / "ansible.log"), ANSIBLE_NOCOLOR="1")
    res = run([venv_bin("ansible-playbook"), "-i", inventory, "--tags", "precedence-probe", playbook], env=env, cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return {f[:-5]: json.loads((out / f).read_text()) for f in os.listdir(out)}


def expected(level):
    v, t = values(level, "loki_version"), values(level, "observability_apt_lock_timeout")
    return {"loki_version": v, "loki_package": "loki=%s" % v, "observability_apt_lock_timeout": t, "apt_lockdown_wait_timeout": t}


def normalise(seen):
    return {k: (int(x) if k.endswith("timeout") else str(x)) for k, x in seen.items()}


@pytest.mark.parametrize("layout", ["inventory file", "group_vars and host_vars dirs"])
def test_inventory_overrides_role_defaults_at_every_level(probe_playbook, tmp_path, layout):
    inventory = file_inventory(tmp_path / "hosts.yml") if layout == "inventory file" else dir_inventory(tmp_path)
    seen = probe(probe_playbook, inventory, tmp_path)
    for host, level in hosts_and_groups().items():
        assert normalise(seen[host]) == expected(level), f"{layout}, {level} level ({host}): {seen[host]}"


def test_without_an_override_the_role_defaults_apply(probe_playbook, tmp_path):
    seen = normalise(probe(probe_playbook, defaults_inventory(tmp_path / "hosts.yml"), tmp_path)["h-all"])
    pins = load_yaml("roles/common/defaults/main/versions.yml")
    shared = load_yaml("roles/common/defaults/main/observability.yml")
    assert seen["loki_version"] == pins["loki_version"]
    assert seen["observability_apt_lock_timeout"] == shared["observability_apt_lock_timeout"] == 600
    assert seen["apt_lockdown_wait_timeout"] == 600
