"""Moving the pins is one edit plus its data and docs (issue 20, item 5): versions.yml, the
upstream data the lab's packages and the tests check against, the lab's packages themselves and
the docs (README's version table, docs/upstream.md, CHANGELOG) must agree. Each failure names the
file to fix; the checklist is docs/runbook.md, "Moving to a new upstream release"."""
import glob
import json
import os
import re
import subprocess

import pytest
import yaml

from conftest import REPO
from test_loki_standin import deb_field, deb_files, lab_sh

VF = os.path.join(REPO, "roles/common/defaults/main/versions.yml")
PINS = yaml.safe_load(open(VF))
COMPONENTS = ("loki", "grafana", "alloy")
NAMES = {"loki": "Loki", "grafana": "Grafana", "alloy": "Alloy"}
RUNBOOK = 'docs/runbook.md, "Moving to a new upstream release"'
HOW = {
    "loki": "scripts/extract-loki-config.py --git-dir <loki.git> --tag v{v} --out upstream/loki/{v}.json",
    "alloy": "scripts/extract-alloy-reference.py <alloy.git> v{v} > upstream/alloy/{v}.json",
    "grafana": "scripts/extract-grafana-provisioning.py ... > upstream/grafana/{v}.json (upstream/README.md, Grafana)",
}


def pinned(c):
    return str(PINS[f"{c}_version"]), str(PINS[f"{c}_version_previous"])


def pin_table(path):
    """{component: [cells after the name]} of the markdown table after '<!-- pins' in path."""
    text = open(os.path.join(REPO, path), encoding="utf-8").read()
    at = text.find("<!-- pins")
    assert at >= 0, f"{path}: no '<!-- pins' marker before its version table ({RUNBOOK})"
    rows = {}
    for line in text[at:].splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        for c, name in NAMES.items():
            if cells[0] == name:
                rows[c] = cells[1:]
    return rows


def test_pins_are_exact_versions():
    for c in COMPONENTS:
        for v in pinned(c):
            assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", v), \
                f"{VF}: {c} pin '{v}' is not an exact X.Y.Z release (never 'latest' or a range)"


@pytest.mark.parametrize("component", COMPONENTS)
def test_upstream_data_exists_for_both_pinned_versions(component):
    for v in pinned(component):
        path = os.path.join(REPO, "upstream", component, f"{v}.json")
        assert os.path.isfile(path), (f"upstream/{component}/{v}.json is missing for the pinned {component} {v}: "
                                      f"make it with {HOW[component].format(v=v)} ({RUNBOOK})")
        data = json.load(open(path))
        assert data["source"]["tag"] == f"v{v}", \
            f"upstream/{component}/{v}.json says tag {data['source']['tag']}, not v{v}: regenerate it"
        if component == "loki":
            assert data["version"] == v, f"upstream/loki/{v}.json is the tree of {data['version']}"


def test_lab_reads_the_pins_from_versions_yml():
    keys = [f"{c}_version{s}" for c in COMPONENTS for s in ("", "_previous")]
    run = lab_sh("; ".join(f'echo "{k}=$(read_version {k} "{VF}")"' for k in keys))
    assert run.stdout.split() == [f"{k}={PINS[k]}" for k in keys]


def test_lab_packages_are_the_pinned_versions_with_their_data(tmp_path):
    """The stand-ins lab up builds for the current pins carry those versions and their data."""
    lv, gv, av = (pinned(c)[0] for c in COMPONENTS)
    run = lab_sh(f'build_loki_package "{tmp_path}" "{lv}"; '
                 f'build_standin "$LAB_DIR/packages/grafana" "{tmp_path}" "{gv}" "" prepare_grafana_standin; '
                 f'build_standin "$LAB_DIR/packages/alloy" "{tmp_path}" "{av}" "" prepare_alloy_standin',
                 env={"HOMEOPS_REAL_LOKI_DIR": str(tmp_path / "no-real-loki")})
    assert f"lab: loki package: LAB STAND-IN (no {tmp_path / 'no-real-loki'})" in run.stdout
    for c, v in (("loki", lv), ("grafana", gv), ("alloy", av)):
        deb = str(tmp_path / f"{c}_{v}_all.deb")
        assert os.path.isfile(deb), sorted(os.listdir(tmp_path))
        assert deb_field(deb, "Version") == v
    root = tmp_path / "loki-root"
    subprocess.run(["dpkg-deb", "-x", str(tmp_path / f"loki_{lv}_all.deb"), str(root)], check=True)
    tree = json.loads((root / "usr/share/loki-standin/config-tree.json").read_text())
    assert tree["version"] == lv
    assert f"/usr/share/alloy-lab/reference/{av}.json" in deb_files(str(tmp_path / f"alloy_{av}_all.deb"))


def test_real_loki_is_at_hand_for_both_pins_where_the_folder_exists():
    """The lab picks real Loki by version (lab/lib/packages.sh, real_loki_binary)."""
    real = os.environ.get("HOMEOPS_REAL_LOKI_DIR") or os.path.normpath(os.path.join(REPO, "..", "shared", "real-loki"))
    if not os.path.isdir(real):
        pytest.skip(f"{real} is absent: the lab uses its Loki stand-in for every version")
    sums = open(os.path.join(real, "SHA256SUMS")).read()
    for v in pinned("loki"):
        name = f"loki-{v}-linux-amd64"
        assert os.path.isfile(os.path.join(real, name + ".xz")) and f" {name}.xz" in sums and f" {name}\n" in sums, \
            (f"{real} has no checksummed {name}.xz: the lab would fall back to the stand-in for Loki {v}; "
             "build it from the tag (../shared/real-loki/README.md) or pick a pin that has one")


@pytest.mark.parametrize("doc", ["README.md", "docs/upstream.md"])
def test_docs_version_tables_match_the_pins(doc):
    rows = pin_table(doc)
    for c in COMPONENTS:
        assert c in rows, f"{doc}: the version table has no row for {NAMES[c]}"
        cur, prev = pinned(c)
        assert rows[c][:2] == [cur, prev], (f"{doc}: {NAMES[c]} row says pinned {rows[c][0]}, previous "
                                            f"{rows[c][1]}; versions.yml says {cur}, {prev} ({RUNBOOK})")


def test_changelog_and_upstream_readme_name_the_pins():
    # Said in a fragment (changelogs/fragments/) while the move is unreleased, then in the release
    # that shipped it (changelogs/changelog.yaml, from which CHANGELOG.md is generated; 0.2.0
    # shipped these pins): anywhere in either.
    sources = [os.path.join(REPO, "changelogs", "changelog.yaml")] + glob.glob(
        os.path.join(REPO, "changelogs", "fragments", "*.yml"))
    unreleased = " ".join(" ".join(open(p, encoding="utf-8").read() for p in sources).split())  # wrapping does not matter
    readme = open(os.path.join(REPO, "upstream/README.md"), encoding="utf-8").read()
    for c in COMPONENTS:
        cur, prev = pinned(c)
        assert f"{NAMES[c]} {prev} -> {cur}" in unreleased, \
            f"changelogs/ (a fragment, or the release that shipped them): say '{NAMES[c]} {prev} -> {cur}' (what moved)"
        assert f"| {cur} | v{cur} |" in readme or f"| {cur} | **carried**" in readme or f"| {cur} | extracted" in readme, \
            f"upstream/README.md: no row for {NAMES[c]} {cur} in its table"


@pytest.mark.parametrize("version, sbin", [("12.1.1", True), ("13.3.2", False)])
def test_grafana_standin_has_the_layout_of_its_version(tmp_path, version, sbin):
    """Grafana 13 removed the grafana-server command: its stand-in has no /usr/sbin/grafana-server,
    and the unit runs /usr/share/grafana/bin/grafana server, as the real unit does (docs/upstream.md)."""
    lab_sh(f'build_standin "$LAB_DIR/packages/grafana" "{tmp_path}" "{version}" "" prepare_grafana_standin')
    deb = str(tmp_path / f"grafana_{version}_all.deb")
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    files = {line.split()[5].lstrip(".") for line in listing.splitlines()}  # a symlink's name, not its target
    assert "/usr/share/grafana/bin/grafana" in files
    assert ("/usr/sbin/grafana-server" in files) == sbin
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", deb, str(root)], check=True)
    unit = (root / "lib/systemd/system/grafana-server.service").read_text()
    assert "\nExecStart=/usr/share/grafana/bin/grafana server --config=/etc/grafana/grafana.ini" in unit
    run = subprocess.run([str(root / "usr/share/grafana/bin/grafana"), "server", "--version"],
                         capture_output=True, text=True, timeout=60)
    assert run.stdout == f"Version {version} (LAB STAND-IN)\n", run.stderr
