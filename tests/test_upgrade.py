"""Upgrades (issue 14), offline: the previous release set in versions.yml, the lab repo with both
sets, the downgrade guard, the snapshot comparisons of homeops_dev/upgrade_check.py and the marker
count of playbooks/tests/upgrade_markers.yml (against a local fake of the two HTTP answers)."""
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from conftest import REPO, render
from test_loki_standin import lab_sh

VERSIONS = yaml.safe_load(open(os.path.join(REPO, "roles/common/defaults/main/versions.yml")))
COMPONENTS = ("loki", "grafana", "alloy")
CHECK = "homeops_dev.upgrade_check"  # python -m, from the repository root
# The environment of every Ansible run of the runners (homeops_dev/labdriver/).
from homeops_dev import labdriver

ENV = labdriver.ansible_env()


def dpkg_lt(a, b):
    return subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0


def test_previous_set_is_pinned_and_older():
    for c in COMPONENTS:
        prev, cur = VERSIONS[f"{c}_version_previous"], VERSIONS[f"{c}_version"]
        assert dpkg_lt(prev, cur), f"{c}_version_previous {prev} must be older than {c}_version {cur}"
    # The lab builds stand-ins of both sets, each checked against its own upstream data.
    for v in (VERSIONS["loki_version_previous"], VERSIONS["loki_version"]):
        assert os.path.isfile(os.path.join(REPO, "upstream/loki", f"{v}.json"))
    for v in (VERSIONS["alloy_version_previous"], VERSIONS["alloy_version"]):
        assert os.path.isfile(os.path.join(REPO, "upstream/alloy", f"{v}.json"))


def test_deploy_refuses_downgrades_right_after_the_preflight():
    # After the preflight and the check of the roles' variables (controller only): before the
    # first play that changes a host.
    deploy = yaml.safe_load(open(os.path.join(REPO, "playbooks/deploy-observability-stack.yml")))
    imports = [p.get("ansible.builtin.import_playbook") for p in deploy[:3]]
    assert imports == ["preflight.yml", "check-variables.yml", "upgrade-guard.yml"]


@pytest.fixture(scope="module")
def both_sets(tmp_path_factory):
    """build_repo's previous-set step as lab up runs it, stand-ins only, unpacked."""
    out = tmp_path_factory.mktemp("repo")
    vf = os.path.join(REPO, "roles/common/defaults/main/versions.yml")
    run = lab_sh(f'LAB_LOKI_KIND=standin; build_previous_set "{out}" "{vf}"; echo "prev=$LAB_PREVIOUS_VERSIONS"',
                 env={"HOMEOPS_REAL_LOKI_DIR": str(out / "none")})
    prev = {c: VERSIONS[f"{c}_version_previous"] for c in COMPONENTS}
    assert f"prev=loki={prev['loki']} grafana={prev['grafana']} alloy={prev['alloy']}" in run.stdout
    assert "lab: previous loki package: LAB STAND-IN" in run.stderr
    roots = {}
    for c in COMPONENTS:
        deb = out / f"{c}_{prev[c]}_all.deb"
        assert deb.exists(), sorted(p.name for p in out.iterdir())
        root = tmp_path_factory.mktemp(c)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        roots[c] = root
    return roots


def verify_config(loki_root, tmp_path, version):
    cfg = tmp_path / f"config-{version}.yml"
    cfg.write_text(render("loki-config.yaml.j2", loki_version=version, loki_data_dir=str(tmp_path / "data")))
    return subprocess.run([str(loki_root / "usr/bin/loki"), "-verify-config", f"-config.file={cfg}"],
                          capture_output=True, text=True, timeout=60)


def test_previous_loki_standin_checks_its_own_version(both_sets, tmp_path):
    prev, cur = VERSIONS["loki_version_previous"], VERSIONS["loki_version"]
    tree = json.loads((both_sets["loki"] / "usr/share/loki-standin/config-tree.json").read_text())
    assert tree["version"] == prev
    assert verify_config(both_sets["loki"], tmp_path, prev).returncode == 0
    # It checks against its own version's tree, not the current one: a limits_config key only the
    # current version documents is refused by the previous stand-in, naming it.
    trees = {v: json.load(open(os.path.join(REPO, "upstream/loki", f"{v}.json"))) for v in (prev, cur)}
    only_new = sorted(set(trees[cur]["blocks"]["limits_config"]) - set(trees[prev]["blocks"]["limits_config"]))
    assert only_new, f"Loki {cur} documents no limits_config key that {prev} lacks: pick another block"
    cfg = tmp_path / "config-newer-key.yml"
    cfg.write_text(render("loki-config.yaml.j2", loki_version=prev, loki_data_dir=str(tmp_path / "data"))
                   .replace("\nlimits_config:\n", f"\nlimits_config:\n  {only_new[0]}: null\n", 1))
    newer = subprocess.run([str(both_sets["loki"] / "usr/bin/loki"), "-verify-config", f"-config.file={cfg}"],
                           capture_output=True, text=True, timeout=60)
    assert newer.returncode != 0 and only_new[0] in newer.stdout + newer.stderr


def test_previous_alloy_standin_ships_its_reference(both_sets):
    ref = both_sets["alloy"] / "usr/share/alloy-lab/reference" / f"{VERSIONS['alloy_version_previous']}.json"
    assert json.loads(ref.read_text())["source"]["tag"] == f"v{VERSIONS['alloy_version_previous']}"


# ---- the downgrade guard, run by Ansible against this machine with a dpkg database of its own -----

def guard(tmp_path, installed, playbook=None, **pins):
    # The guard reads dpkg's database with host_facts (no dpkg-query): give it one in which
    # `installed` are installed, plus a removed package that must never count.
    admindir = tmp_path / "dpkg"
    admindir.mkdir(exist_ok=True)
    stanzas = [f"Package: {p}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {v}\n"
               for p, v in installed.items()]
    stanzas.append("Package: grafana-old\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 99\n")
    (admindir / "status").write_text("\n".join(stanzas))
    inv = tmp_path / "inv.yml"
    inv.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        "children": {"loki": {"hosts": {"obs": None}}, "grafana": {"hosts": {"obs": None}},
                     "alloy_linux": {"hosts": {"agent": None}}}}}))
    extra = [a for k, v in {**pins, "observability_dpkg_admindir": str(admindir)}.items() for a in ("-e", f"{k}={v}")]
    return subprocess.run(["ansible-playbook", "-i", str(inv), *extra, playbook or os.path.join(REPO, "playbooks/upgrade-guard.yml")],
                          capture_output=True, text=True, timeout=120,
                          env={**ENV, "ANSIBLE_LOG_PATH": "/dev/null"})


def test_guard_refuses_a_downgrade_and_names_it(tmp_path):
    run = guard(tmp_path, {"loki": VERSIONS["loki_version"], "grafana": VERSIONS["grafana_version"]},
                loki_version=VERSIONS["loki_version_previous"])
    assert run.returncode != 0
    flat = " ".join(run.stdout.split())
    assert (f"Refusing to downgrade on obs: loki {VERSIONS['loki_version']} is installed and its pin is "
            f"{VERSIONS['loki_version_previous']}") in flat
    assert "grafana" not in flat.split("Refusing to downgrade", 1)[1].split(". Nothing")[0]


def test_one_refusal_stops_every_host_and_names_each(tmp_path):
    # One run_once task over all hosts (issue 23): a downgrade on one host stops the others too,
    # no later play runs, and every host with a downgrade is named.
    after = tmp_path / "deploy.yml"
    after.write_text(yaml.safe_dump([
        {"ansible.builtin.import_playbook": os.path.join(REPO, "playbooks/upgrade-guard.yml")},
        {"name": "A later play", "hosts": "loki:grafana:alloy_linux", "gather_facts": False,
         "tasks": [{"name": "Run after the guard", "ansible.builtin.debug": {"msg": "AFTER"}}]}]))
    cur = {c: VERSIONS[f"{c}_version"] for c in COMPONENTS}
    run = guard(tmp_path, cur, playbook=str(after), loki_version=VERSIONS["loki_version_previous"],
                alloy_version=VERSIONS["alloy_version_previous"])
    assert run.returncode != 0, run.stdout
    flat = " ".join(run.stdout.split())
    assert f"Refusing to downgrade on obs: loki {cur['loki']} is installed and its pin is" in flat
    assert f"Refusing to downgrade on agent: alloy {cur['alloy']} is installed and its pin is" in flat
    assert "A later play" not in run.stdout and "AFTER" not in run.stdout
    # One task on the controller (run_once): one per host would fail each host with the whole list.
    assert flat.count("FAILED! =>") == 1, flat[-3000:]
    # Without a downgrade the later play runs on both.
    ok = guard(tmp_path, cur, playbook=str(after))
    assert ok.returncode == 0 and ok.stdout.count('"msg": "AFTER"') + ok.stdout.count("msg: AFTER") == 2, ok.stdout


def test_guard_lets_upgrades_fresh_hosts_and_same_versions_pass(tmp_path):
    prev = {c: VERSIONS[f"{c}_version_previous"] for c in COMPONENTS}
    assert guard(tmp_path, prev).returncode == 0                       # an upgrade
    assert guard(tmp_path, {}).returncode == 0                         # fresh hosts
    same = {c: VERSIONS[f"{c}_version"] for c in COMPONENTS}
    run = guard(tmp_path, same)
    assert run.returncode == 0, run.stdout


# ---- homeops_dev/upgrade_check.py ------------------------------------------------------------------

def snap(version, invocation, checksum="c1", active="active", host="obs"):
    return {host: {"services": [{"service": "loki", "package": "loki", "configs": ["/etc/loki/config.yml"]}],
                   "versions": [version],
                   "units": [f"InvocationID={invocation}\nActiveEnterTimestamp=t\nActiveState={active}\nNRestarts=0"],
                   "checksums": {"/etc/loki/config.yml": checksum}}}


def check(tmp_path, *args):
    files = []
    for i, a in enumerate(args):
        if isinstance(a, dict):
            f = tmp_path / f"s{i}.json"
            f.write_text(json.dumps(a))
            files.append(str(f))
        else:
            files.append(a)
    return subprocess.run([sys.executable, "-m", CHECK, *files], capture_output=True, text=True, timeout=60,
                          cwd=REPO)


@pytest.mark.parametrize("before,after,ok,why", [
    (snap("3.4.3", "a"), snap("3.5.7", "b"), True, ""),
    (snap("3.4.3", "a"), snap("3.5.7", "a"), False, "was not restarted"),
    (snap("3.5.7", "a"), snap("3.5.7", "a", checksum="c2"), False, "was not restarted"),
    (snap("3.5.7", "a"), snap("3.5.7", "a", checksum="c2", active="failed"), False, "not active"),
    (snap("3.5.7", "a"), snap("3.5.7", "b"), False, "needless restart"),
    (snap("3.5.7", "a"), snap("3.5.7", "a"), True, ""),
])
def test_restarts_exactly_when_package_or_config_changed(tmp_path, before, after, ok, why):
    run = check(tmp_path, "restarts", before, after)
    assert (run.returncode == 0) == ok, run.stdout + run.stderr
    assert why in run.stderr


def test_restarts_with_pins_names_a_package_left_behind(tmp_path):
    pins = tmp_path / "pins.yml"
    pins.write_text("loki_version: '3.5.7'\n")
    run = check(tmp_path, "restarts", snap("3.4.2", "a"), snap("3.4.3", "b"), "--pins", str(pins))
    assert run.returncode == 1 and "loki 3.4.3 is installed, the pin is 3.5.7" in run.stderr


def test_unchanged_sees_any_change(tmp_path):
    assert check(tmp_path, "unchanged", snap("3.5.7", "a"), snap("3.5.7", "a")).returncode == 0
    for other in (snap("3.5.7", "b"), snap("3.5.8", "a"), snap("3.5.7", "a", checksum="x")):
        assert check(tmp_path, "unchanged", snap("3.5.7", "a"), other).returncode == 1


@pytest.mark.parametrize("rendered,rc,ok,why", [
    ("3.5.7", 0, True, ""),
    ("3.4.3", 0, False, "lacks limits_config.enable_multi_variant_queries"),
    ("3.5.7", 1, False, "the installed loki rejects"),
])
def test_loki_config_is_the_new_versions(tmp_path, rendered, rc, ok, why):
    state = {"obs": {"services": [], "versions": [], "units": [], "checksums": {}, "loki_verify_rc": rc,
                     "loki_verify_output": "line 60: field x not found" if rc else "config is valid",
                     "loki_config": render("loki-config.yaml.j2", loki_version=rendered)}}
    run = check(tmp_path, "loki-config", state, "3.5.7")
    assert (run.returncode == 0) == ok, run.stdout + run.stderr
    assert why in run.stderr
    # A newer key than the version knows is caught too (3.5.7's render against the 3.4.3 tree).
    if rendered == "3.5.7" and rc == 0:
        older = check(tmp_path, "loki-config", state, "3.4.3")
        assert older.returncode == 1 and "enable_multi_variant_queries" in older.stderr


def test_loki_config_with_no_loki_host_fails(tmp_path):
    assert check(tmp_path, "loki-config", {}, "3.5.7").returncode == 1


# ---- the marker count, against a fake of Loki's and Grafana's query_range answers --------------

class FakeQueryRange(BaseHTTPRequestHandler):
    """Answers query_range with the marker of the line filter, unless it is in `drop`.
    Test double for the marker playbook's arithmetic, not a stand-in of any program."""
    drop: set = set()
    seen: list = []

    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)["query"][0]
        line = q.split('|= "', 1)[1].rstrip('"')
        type(self).seen.append(self.path.split("?")[0])
        result = [] if line in self.drop else [{"stream": {}, "values": [["1", line]]}]
        body = json.dumps({"status": "success", "data": {"resultType": "streams", "result": result}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def fake_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeQueryRange)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    FakeQueryRange.drop, FakeQueryRange.seen = set(), []
    yield srv
    srv.shutdown()


def markers_check(tmp_path, port, markers):
    record = tmp_path / "markers.json"
    record.write_text(json.dumps({"markers": markers}))
    inv = tmp_path / "inv.yml"
    inv.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "grafana_admin_password": "test-only-password", "loki_datasource_password": "test-only-password"},
        "children": {"loki": {"hosts": {"obs": None}}, "grafana": {"hosts": {"obs": None}},
                     "alloy_linux": {"hosts": {"agent": None}}}}}))
    # The fake's port as extra vars: they outrank the role defaults (3100, 3000).
    return subprocess.run(["ansible-playbook", "-i", str(inv), "-e", "upgrade_markers_mode=check",
                           "-e", f"loki_http_listen_port={port}", "-e", f"grafana_http_port={port}",
                           "-e", f"upgrade_markers_file={record}",
                           os.path.join(REPO, "playbooks/tests/upgrade_markers.yml")],
                          capture_output=True, text=True, timeout=180, env={**ENV, "ANSIBLE_LOG_PATH": "/dev/null"})


MARKERS = [{"host": "agent", "line": f"homeops-upgrade r1 agent line-{i}-end", "written_at": 1.0e9} for i in (1, 2, 3)]


def test_markers_all_found(tmp_path, fake_server):
    run = markers_check(tmp_path, fake_server.server_port, MARKERS)
    assert run.returncode == 0, run.stdout
    assert "3 of 3 markers found after the upgrade" in " ".join(run.stdout.split())
    # Each marker asked of Loki and of Grafana's datasource proxy.
    assert FakeQueryRange.seen.count("/loki/api/v1/query_range") == 3
    assert FakeQueryRange.seen.count("/api/datasources/proxy/uid/homeops-loki/loki/api/v1/query_range") == 3
    assert "test-only-password" not in run.stdout


def test_a_missing_marker_fails_and_is_named(tmp_path, fake_server):
    FakeQueryRange.drop = {MARKERS[1]["line"]}
    run = markers_check(tmp_path, fake_server.server_port, MARKERS)
    flat = " ".join(run.stdout.split())
    assert run.returncode != 0
    assert "2 of 3 markers found after the upgrade" in flat
    assert f"MISSING: {MARKERS[1]['line']} (not in Loki)" in flat


def test_an_empty_record_fails(tmp_path, fake_server):
    assert markers_check(tmp_path, fake_server.server_port, []).returncode != 0


def test_a_versions_file_without_a_previous_set_builds_nothing_more(tmp_path):
    vf = tmp_path / "versions.yml"
    vf.write_text('---\nloki_version: "3.5.7"\ngrafana_version: "12.1.1"\nalloy_version: "1.10.2"\n')
    run = lab_sh(f'LAB_LOKI_KIND=standin; build_previous_set "{tmp_path}" "{vf}"; echo "prev=[$LAB_PREVIOUS_VERSIONS]"')
    assert "prev=[]" in run.stdout and not list(tmp_path.glob("*.deb"))
