"""The provisioned Grafana datasource uses only fields Grafana knows (upstream/grafana/<version>.json),
and every value reaches Grafana unchanged after Grafana's environment expansion: "$" in a
password must be written "$$" (pkg/services/provisioning/values/values.go)."""
import json

import pytest
import yaml

from conftest import group_vars, render

from upstream import grafanacheck

ENV = {"X": "from-env", "HOME": "/root", "word": "W"}
PASSWORDS = [
    "plain-password",
    "pa$word",
    "pa$$word",
    "${X}",
    "$X$HOME",
    "$__env{X}",
    "$__file{/etc/hostname}",
    "trailing$",
    "$1$!$-$?",
    "${}",
    'quo"te\'s',
    "back\\slash\\",
    "colon: hash # and 'both'",
    "ünïcode-€",
]


def grafana_version():
    return group_vars()[1]["grafana_version"]


def values():
    return grafanacheck.values_module()


def test_reference_names_its_upstream_source():
    ref = grafanacheck.reference(grafana_version())
    assert ref["source"]["tag"] == "v" + grafana_version()
    assert "docs/sources/administration/provisioning/index.md" in ref["source"]["files"]
    assert ref["decoded_fields"]["secureJsonData"] == "values.StringMapValue"
    assert "maxLines" in ref["json_data"]["loki"]


def test_rendered_datasource_uses_only_known_fields():
    text = render("grafana-datasource-loki.yaml.j2", loki_datasource_password="x" * 12)
    assert grafanacheck.check_datasource_file(text, grafana_version()) == []


@pytest.mark.parametrize("old,new,message", [
    ("basicAuthUser:", "basicAuthUsr:", "unknown field 'basicAuthUsr'"),
    ("maxLines:", "maxLine:", "unknown key 'maxLine'"),
    ("basicAuthPassword:", "basicAuthPasswd:", "unknown key 'basicAuthPasswd'"),
    ("apiVersion: 1", "apiVersion: 1\nprunes: true", "unknown top-level key 'prunes'"),
    ("    type: loki\n", "", "required field 'type' is missing"),
])
def test_a_wrong_field_in_the_datasource_is_caught(old, new, message):
    text = render("grafana-datasource-loki.yaml.j2", loki_datasource_password="x" * 12)
    assert old in text
    problems = grafanacheck.check_datasource_file(text.replace(old, new, 1), grafana_version())
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize("password", PASSWORDS)
def test_password_reaches_grafana_unchanged(password):
    text = render("grafana-datasource-loki.yaml.j2", loki_datasource_password=password)
    (ds,) = grafanacheck.effective(text, ENV)
    assert ds["secureJsonData"]["basicAuthPassword"] == password


@pytest.mark.parametrize("field,var,value", [
    ("basicAuthUser", "loki_datasource_user", "us$er"),
    ("url", "grafana_loki_datasource_url", "http://192.0.2.10:3100/p$th"),
    ("name", "grafana_loki_datasource_name", "Lo$ki"),
    ("uid", "grafana_loki_datasource_uid", "l$ki"),
])
def test_other_expanded_fields_reach_grafana_unchanged(field, var, value):
    text = render("grafana-datasource-loki.yaml.j2", loki_datasource_password="x" * 12, **{var: value})
    (ds,) = grafanacheck.effective(text, ENV)
    assert ds[field] == value


def test_without_escaping_grafana_alters_the_password():
    """The defect the escaping fixes: the raw value written as before is expanded."""
    raw = "apiVersion: 1\ndatasources:\n  - name: L\n    type: loki\n    secureJsonData:\n      basicAuthPassword: %s\n"
    # $word is the environment variable "word" (W here, usually unset: empty).
    for password, seen in [("pa$word", "paW"), ("pa$unset", "pa"), ("${X}", "from-env"), ("pa$$word", "pa$word")]:
        (ds,) = grafanacheck.effective(raw % json.dumps(password), ENV)
        assert ds["secureJsonData"]["basicAuthPassword"] == seen


@pytest.mark.parametrize("raw,expanded", [
    # values.go interpolateValue + expanders.go ExpandVar + Go's os.Expand.
    ("a$$b", "a$b"),
    ("$$$$", "$$"),
    ("$$$X", "$from-env"),
    ("a$word.b", "aW.b"),
    ("${X}y", "from-envy"),
    ("$__env{X}", "from-env"),
    ("a${}b", "ab"),
    ("a${b", "ab"),
    ("$1x", "x"),
    ("$-x", "x"),
    ("end$", "end$"),
    ("a$%b", "a$%b"),
    ("$UNSET_VAR", ""),
])
def test_expansion_follows_grafana_and_go(raw, expanded):
    assert values().interpolate(raw, ENV) == expanded


def test_file_expander_reads_a_file_and_fails_on_a_missing_one(tmp_path):
    f = tmp_path / "secret"
    f.write_text("  from-file\n")
    assert values().interpolate("$__file{%s}" % f, ENV) == "from-file"
    with pytest.raises(values().ExpandError):
        values().interpolate("$__file{%s}" % (tmp_path / "missing"), ENV)


def test_rendered_file_is_still_plain_yaml_with_the_escaped_secret():
    text = render("grafana-datasource-loki.yaml.j2", loki_datasource_password="a$b")
    doc = yaml.safe_load(text)
    assert doc["datasources"][0]["secureJsonData"]["basicAuthPassword"] == "a$$b"
