"""The roles of the collection: the parts every role has, the variable prefixes (our rule in
place of ansible-lint's var-naming[no-role-prefix], see .ansible-lint), and the one module list
in the docs."""
import glob
import os
import re

import pytest
import yaml

from conftest import REPO, load_yaml, module_names

ROLES = ("common", "loki", "grafana", "alloy", "apt_lockdown", "verify")
COMPONENTS = ("loki", "grafana", "alloy")


def defaults_of(role):
    files = glob.glob(os.path.join(REPO, "roles", role, "defaults", "main.yml"))
    files += sorted(glob.glob(os.path.join(REPO, "roles", role, "defaults", "main", "*.yml")))
    variables = {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            variables.update(yaml.safe_load(f) or {})
    return variables


def test_the_roles_are_the_ones_documented():
    assert sorted(os.listdir(os.path.join(REPO, "roles"))) == sorted(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_has_readme_meta_and_defaults(role):
    base = os.path.join(REPO, "roles", role)
    assert os.path.isfile(os.path.join(base, "README.md"))
    meta = load_yaml(f"roles/{role}/meta/main.yml")
    assert meta["galaxy_info"]["description"]
    assert defaults_of(role), f"roles/{role} has no defaults"
    if role != "common":
        # The shared defaults reach every role through this dependency.
        assert meta["dependencies"] == [{"role": "homeops.observability.common"}]
        # verify has no main: its check groups run on different host groups (the playbook
        # imports each with tasks_from).
        assert os.path.isfile(os.path.join(base, "tasks", "main.yml")) == (role != "verify")
    else:
        # A dependency's tasks/main.yml would run at the start of every role that lists it.
        assert not os.path.exists(os.path.join(base, "tasks", "main.yml"))


@pytest.mark.parametrize("role", ROLES)
def test_role_defaults_carry_their_component_prefix(role):
    allowed = {
        "common": ("observability_",) + tuple(c + "_" for c in COMPONENTS),
        "loki": ("loki_",),
        # loki_datasource_user pairs with the inventory secret loki_datasource_password.
        "grafana": ("grafana_", "loki_datasource_"),
        "alloy": ("alloy_",),
        "apt_lockdown": ("apt_lockdown_",),
        "verify": ("verify_",),
    }[role]
    for name in defaults_of(role):
        assert name.startswith(allowed), f"roles/{role}/defaults: {name} should start with one of {allowed}"


def test_no_variable_is_defaulted_twice():
    seen = {}
    for role in ROLES:
        for name in defaults_of(role):
            assert name not in seen, f"{name} is a default of both {seen[name]} and {role}"
            seen[name] = role


def test_versions_are_only_in_the_common_role():
    for role in ROLES:
        for name in defaults_of(role):
            if name.endswith("_version"):
                assert role == "common", f"{name} in roles/{role}: pins live in roles/common/defaults/main/versions.yml"
    # The current pins, and the previous release set upgrades are tested from (issue 14).
    assert set(load_yaml("roles/common/defaults/main/versions.yml")) == (
        {c + "_version" for c in COMPONENTS} | {c + "_version_previous" for c in COMPONENTS})


@pytest.mark.parametrize("doc", ["README.md", "docs/design.md", "docs/collection.md"])
def test_no_doc_types_the_module_table_by_hand(doc):
    """The one module table is `python -m homeops_dev.modules --table` (from the sidecars), inserted into
    the collection's README at build (tests/test_collection.py checks it there): a table headed
    "module" in a doc would be a second copy to keep in step by hand."""
    with open(os.path.join(REPO, doc), encoding="utf-8") as f:
        text = f.read()
    tables = [line for line in text.splitlines() if re.match(r"^\s*\| module \|", line)]
    assert not tables, f"{doc} has a hand-written module table {tables}: use python -m homeops_dev.modules --table"


def test_the_module_table_lists_every_module_once_with_its_short_description():
    from homeops_dev import modules

    rows = modules.table(REPO).splitlines()
    assert rows[:2] == ["| module | what it does |", "|---|---|"]
    listed = [re.match(r"^\| `homeops\.observability\.([a-z_]+)` \| (.+) \|$", r).groups() for r in rows[2:]]
    assert [name for name, _ in listed] == module_names()
    for name, line in listed:
        short = load_yaml(f"library/{name}.yml")["DOCUMENTATION"]["short_description"]
        assert line == " ".join(short.split()), name
