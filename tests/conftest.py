"""Shared helpers: render the project's templates with ansible-core's own Templar, so filters
and tests (`version`, `to_json`, ...) behave exactly as they do in a playbook run."""
import glob
import os

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def repo():
    return REPO


def group_vars():
    """playbooks/group_vars/all/*.yml as Ansible loads them (trusted for templating)."""
    from ansible.parsing.dataloader import DataLoader

    loader = DataLoader()
    variables = {}
    for path in sorted(glob.glob(os.path.join(REPO, "playbooks/group_vars/all/*.yml"))):
        variables.update(loader.load_from_file(path, trusted_as_template=True) or {})
    return loader, variables


def render(template_name, **overrides):
    """Render templates/<template_name> with the group_vars defaults plus overrides."""
    from ansible.template import Templar, trust_as_template

    loader, variables = group_vars()
    variables.update(
        {
            "groups": {"loki": ["obs-01"], "grafana": ["obs-01"], "alloy_linux": ["srv-01"]},
            "hostvars": {"obs-01": {"ansible_host": "192.0.2.10"}},
            "inventory_hostname": "srv-01",
        }
    )
    variables.update(overrides)
    templar = Templar(loader=loader, variables=variables)
    with open(os.path.join(REPO, "templates", template_name), encoding="utf-8") as f:
        source = f.read()
    return templar.template(trust_as_template(source))


def load_yaml(relpath):
    with open(os.path.join(REPO, relpath), encoding="utf-8") as f:
        return yaml.safe_load(f)
