"""The rendered Alloy configs use only components, arguments and blocks that the pinned Alloy
version documents (upstream/alloy/<version>.json, extracted from Alloy's docs at the tag).
Alloy refuses to load a config with an unknown one; so does this check."""
import filecmp
import json
import os
import subprocess

import pytest

from conftest import REPO, group_vars, render

from upstream import alloycheck


def alloy_version():
    return group_vars()[1]["alloy_version"]


def reference():
    with open(alloycheck.reference_path(alloy_version()), encoding="utf-8") as f:
        return json.load(f)


def test_reference_names_its_upstream_tag_commit_and_files():
    src = reference()["source"]
    assert src["repo"] == "https://github.com/grafana/alloy"
    assert src["tag"] == "v" + alloy_version()
    assert len(src["commit"]) == 40
    assert "docs/sources/reference/components/loki/loki.write.md" in src["files"]
    comps = reference()["components"]
    # Spot checks against the docs at v1.10.2: a required argument, a nested block, an export.
    assert comps["loki.source.file"]["arguments"]["targets"]["required"] is True
    assert comps["loki.write"]["blocks"]["endpoint"]["arguments"]["url"]["required"] is True
    assert "basic_auth" in comps["loki.write"]["blocks"]["endpoint"]["blocks"]
    assert comps["loki.relabel"]["exports"]["rules"] == "RelabelRules"
    assert comps["loki.source.journal"]["arguments"]["max_age"]["default"] == '"7h"'


def test_lab_package_ships_the_upstream_reference(tmp_path):
    """The lab's Alloy stand-in checks configs with the reference packaged from upstream/."""
    out = tmp_path / "repo"
    out.mkdir()
    script = ('source lab/lib/common.sh; source lab/lib/config.sh; source lab/lib/packages.sh; '
              'build_standin lab/packages/alloy "$1" "$2" "" prepare_alloy_standin')
    subprocess.run(["bash", "-c", script, "build", str(out), alloy_version()], cwd=REPO, check=True,
                   env=dict(os.environ, LAB_ROOT=REPO, LAB_DIR=os.path.join(REPO, "lab")))
    deb = next(out.glob("alloy_*.deb"))
    tree = tmp_path / "tree"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
    shipped = tree / "usr/share/alloy-lab/reference" / ("%s.json" % alloy_version())
    assert filecmp.cmp(shipped, alloycheck.reference_path(alloy_version()), shallow=False)


@pytest.mark.parametrize("overrides", [
    {},
    {"ansible_os_family": "Windows", "inventory_hostname": "win-01"},
    {"alloy_log_paths": ["/var/log/*.log", "/srv/app/**/*.log"]},
], ids=["linux", "windows", "two-paths"])
def test_rendered_config_loads_in_the_pinned_alloy(overrides):
    assert alloycheck.check_config(render("alloy-config.alloy.j2", **overrides), alloy_version()) == []


@pytest.mark.parametrize("old,new,message", [
    ("target_label", "target_lable", 'unrecognized attribute name "rule.target_lable"'),
    ("relabel_rules", "relabel_rule", 'unrecognized attribute name "relabel_rule"'),
    ("  endpoint {", "  endpoints {", 'unrecognized block name "endpoints"'),
    ('loki.write "homeops"', 'loki.writer "homeops"', 'cannot find the definition of component name "loki.writer"'),
    ("loki.relabel.journal.rules", "loki.relabel.journal.rule", 'field "rule" does not exist'),
    ("loki.write.homeops.receiver]\n  relabel", "loki.write.home.receiver]\n  relabel", 'component "loki.write.home" does not exist'),
    ('"job" = "varlog" },', '"job" = "varlog" }', "missing ',' in expression list"),
    ('level  = "info"', "level  = 3", 'level: expected string, got number'),
    ("    url = ", "    uri = ", 'missing required attribute "endpoint.url"'),
])
def test_a_wrong_name_in_the_config_is_caught(old, new, message):
    text = render("alloy-config.alloy.j2")
    assert old in text
    diags = alloycheck.check_config(text.replace(old, new, 1), alloy_version())
    assert any(message in d[2] for d in diags), diags
