"""Real Loki where we have it (../shared/real-loki, or HOMEOPS_REAL_LOKI_DIR): our rendered config
passes each version's own `loki -verify-config`, the version gate is needed, the upstream key
trees and configcheck agree with the real parser, and the lab packages the real binary."""
import glob
import hashlib
import os
import subprocess

import pytest
import yaml

from conftest import REPO, lab_cache_dir, load_yaml, render
from test_loki_standin import deb_field, deb_files, lab_sh
from test_loki_template import PINNED, SUPPORTED_VERSIONS

from upstream import configcheck

REAL_DIR = os.environ.get("HOMEOPS_REAL_LOKI_DIR") or os.path.normpath(os.path.join(REPO, "..", "shared", "real-loki"))
REAL_VERSIONS = [v for v in SUPPORTED_VERSIONS if os.path.isfile(os.path.join(REAL_DIR, f"loki-{v}-linux-amd64.xz"))]
pytestmark = pytest.mark.skipif(
    not REAL_VERSIONS,
    reason=f"no real Loki binaries: {REAL_DIR} is absent or has none of {SUPPORTED_VERSIONS} "
           "(set HOMEOPS_REAL_LOKI_DIR; the lab then uses its stand-in)",
)


def vtuple(v):
    return tuple(int(x) for x in v.split("."))


@pytest.fixture(scope="module")
def real_bin(tmp_path_factory):
    """version -> path of the checked, decompressed binary (cached as the lab caches it)."""
    cache = lab_cache_dir(tmp_path_factory)
    paths = {}

    def get(version):
        if version not in paths:
            run = lab_sh(f'real_loki_binary "{version}"', env={"HOMEOPS_REAL_LOKI_DIR": REAL_DIR, "LAB_CACHE_DIR": cache})
            paths[version] = run.stdout.strip()
        return paths[version]

    return get


def verify(binary, text, tmp_path, name="config.yaml"):
    cfg = tmp_path / name
    cfg.write_text(text)
    run = subprocess.run([binary, "-verify-config", f"-config.file={cfg}"], capture_output=True, text=True, timeout=120)
    return run.returncode, run.stderr


@pytest.mark.parametrize("version", REAL_VERSIONS)
def test_real_loki_says_our_render_is_valid(version, real_bin, tmp_path):
    rc, err = verify(real_bin(version), render("loki-config.yaml.j2", loki_version=version), tmp_path)
    assert rc == 0, err
    assert 'msg="config is valid"' in err


def test_newest_real_loki_accepts_the_renders_of_older_versions(real_bin, tmp_path):
    newest = REAL_VERSIONS[-1]
    for version in [v for v in SUPPORTED_VERSIONS if vtuple(v) <= vtuple(newest)]:
        rc, err = verify(real_bin(newest), render("loki-config.yaml.j2", loki_version=version), tmp_path)
        assert rc == 0, f"real {newest} on the {version} render: {err}"


@pytest.mark.skipif("3.4.3" not in REAL_VERSIONS or "3.5.7" not in REAL_VERSIONS, reason="needs real 3.4.3 and 3.5.7")
def test_real_3_4_rejects_the_3_5_render_at_the_gated_key(real_bin, tmp_path):
    text = render("loki-config.yaml.j2", loki_version="3.5.7")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "enable_multi_variant_queries:" in t)
    rc, err = verify(real_bin("3.4.3"), text, tmp_path)
    assert rc == 1
    assert f"  line {line}: field enable_multi_variant_queries not found in type validation.plain" in err
    # configcheck with the 3.4.3 tree says the same line and field.
    assert configcheck.loki_errors(text, configcheck.load_tree(configcheck.tree_path("3.4.3"))) == [
        f"line {line}: field enable_multi_variant_queries not found in type limits_config"]


def every_key_config(version):
    """A config with every key of a version's tree (null values keep Loki's defaults)."""
    tree = configcheck.load_tree(configcheck.tree_path(version))
    blocks = tree["blocks"]

    def gen(fields):
        out = {}
        for key, spec in fields.items():
            if "fields" in spec:
                out[key] = gen(spec["fields"])
            elif "block" in spec:
                out[key] = gen(blocks[spec["block"]])
            elif "list_of" in spec:
                item = gen(blocks[spec["list_of"]])
                # Values Loki validates while it unmarshals (a schema version, a non-empty rule).
                if spec["list_of"] == "period_config":
                    item.update({"from": "2024-04-01", "store": "tsdb", "object_store": "filesystem",
                                 "schema": "v13", "index": {"prefix": "index_", "period": "24h"}})
                if spec["list_of"] == "attributes_config":
                    item.update({"action": "drop", "regex": ".*"})
                out[key] = [item]
            elif "map_of" in spec:
                out[key] = {"x": gen(blocks[spec["map_of"]])}
            else:
                out[key] = None
        if "basic_auth" in out:  # Prometheus' HTTP client refuses two auth methods at once
            out.pop("oauth2", None)
            out.pop("authorization", None)
        return out

    return yaml.safe_dump(gen(tree["root"]), sort_keys=False)


def error_lines(text):
    return sorted(int(line.split()[1].rstrip(":")) for line in text.splitlines()
                  if line.lstrip().startswith("line ") and " not found in type " in line)


@pytest.mark.parametrize("version", REAL_VERSIONS)
def test_real_loki_parses_every_key_of_its_tree(version, real_bin, tmp_path):
    """The tree has no key the real parser lacks (it may lack hidden ones: see upstream/README.md)."""
    rc, err = verify(real_bin(version), every_key_config(version), tmp_path)
    # It then fails Loki's own validation of such a config (e.g. several storage backends at
    # once), which comes after parsing: what matters is that parsing passed.
    assert "unmarshal errors" not in err and "yaml:" not in err, err[:2000]


# Keys a version parses but hides from its reference (Go `doc:"hidden"`), so its tree lacks them
# and configcheck is stricter than Loki there (upstream/README.md, "Known limits"). Listed when a
# newer version documents them; read in pkg/validation/limits.go at the tag.
HIDDEN_KEYS = {
    v: {"pattern_ingester_tokenizable_json_fields_default", "pattern_ingester_tokenizable_json_fields_append",
        "pattern_ingester_tokenizable_json_fields_delete"}  # limits_config, doc:"hidden" in v3.4.3 and v3.5.7
    for v in ("3.4.3", "3.5.7")
}


@pytest.mark.parametrize("older, newer", [(a, b) for a in REAL_VERSIONS for b in SUPPORTED_VERSIONS if vtuple(a) < vtuple(b)])
def test_real_loki_and_configcheck_reject_the_same_newer_keys(older, newer, real_bin, tmp_path):
    """Every key a newer version added: real `older` and configcheck(older tree) name the same lines,
    apart from the keys `older` hides from its reference (HIDDEN_KEYS), which only configcheck flags."""
    text = every_key_config(newer)
    _, err = verify(real_bin(older), text, tmp_path)
    ours = configcheck.loki_errors(text, configcheck.load_tree(configcheck.tree_path(older)))
    hidden = HIDDEN_KEYS.get(older, set())
    ours = [e for e in ours if not any(f"field {k} not found" in e for k in hidden)]
    real_lines = error_lines(err)
    assert real_lines, err[:2000]
    assert real_lines == error_lines("\n".join(ours))


def test_lab_packages_the_real_binary_of_the_pin(real_bin, tmp_path):
    if PINNED not in REAL_VERSIONS:
        pytest.skip(f"no real Loki {PINNED} in {REAL_DIR}")
    binary = real_bin(PINNED)  # fills the cache the build uses
    cache = os.path.dirname(os.path.dirname(os.path.dirname(binary)))
    run = lab_sh(f'build_loki_package "{tmp_path}" "{PINNED}"', env={"HOMEOPS_REAL_LOKI_DIR": REAL_DIR, "LAB_CACHE_DIR": cache})
    assert run.stdout == f"lab: loki package: real Loki {PINNED} from {REAL_DIR}\n"
    deb = str(tmp_path / f"loki_{PINNED}_amd64.deb")
    assert deb_field(deb, "Architecture") == "amd64"
    assert "LAB STAND-IN" not in deb_field(deb, "Description")
    files = deb_files(deb)
    assert {"/usr/bin/loki", "/etc/loki/config.yml", "/lib/systemd/system/loki.service"} <= files
    assert not any(f.startswith("/usr/share/loki-standin") for f in files)
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", deb, str(root)], check=True)
    sums = dict(reversed(line.split()) for line in open(os.path.join(REAL_DIR, "SHA256SUMS")))
    with open(root / "usr/bin/loki", "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == sums[f"loki-{PINNED}-linux-amd64"]
    unit = (root / "lib/systemd/system/loki.service").read_text()
    assert "User=loki" in unit and "ExecStart=/usr/bin/loki -config.file=/etc/loki/config.yml" in unit
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", deb, str(control)], check=True)
    assert (control / "conffiles").read_text().split() == ["/etc/loki/config.yml"]
    assert "--gid nogroup" in (control / "postinst").read_text()
    run = subprocess.run([str(root / "usr/bin/loki"), "-version"], capture_output=True, text=True)
    assert run.stdout.startswith(f"loki, version {PINNED} (branch: release")


def test_standin_answers_as_real_loki_does(real_bin, tmp_path_factory):
    """The same pushes and queries against real Loki and the LAB STAND-IN of the pinned version:
    the same streams, lines, labels and errors (what the lab's verify relies on)."""
    import json
    import time

    from test_loki_standin import Loki, push_json, push_request, snappy_literals, standin_build

    if PINNED not in REAL_VERSIONS:
        pytest.skip(f"no real Loki {PINNED} in {REAL_DIR}")
    _, root = standin_build(tmp_path_factory)
    real = Loki(None, tmp_path_factory.mktemp("real"), binary=real_bin(PINNED), ready_timeout=120)
    lab = Loki(root, tmp_path_factory.mktemp("standin"))
    now = time.time_ns()
    json_streams = [
        ({"host": "srv-01", "job": "journal"}, [(now, "hello marker-1"), (now + 1, "level=error boom"), (now + 2, "INFO: up")]),
        ({"host": "ws-01-linux"}, [(now + 3, '{"level":"warn","msg":"marker-2"}')]),
        ({}, [(now + 4, "no labels at all")]),
    ]
    proto = snappy_literals(push_request([('{host="agent-04", app="web"}', [(now + 5, "proto marker-3"), (now + 6, "x" * 3000)])]))
    old = [({"host": "old"}, [(now - 30 * 86400 * 10**9, "a month old")])]
    queries = [
        ({"query": '{host="srv-01"}'}),
        ({"query": '{host=~"srv-.*|ws-.*"} |= "marker"', "direction": "forward"}),
        ({"query": '{job="journal"} != "boom"'}),
        ({"query": '{host!="srv-01", host=~".+"}', "limit": "2"}),
        ({"query": '{service_name="unknown_service"}'}),
        ({"query": '{app="web"} |~ "marker-[0-9]"'}),
    ]
    bad = ['{host=~".*"}', '{host="a"', "foo", '{host="a"} |= ']
    answers = {}
    try:
        for inst in (real, lab):
            inst.start()
        for name, inst in (("real", real), ("standin", lab)):
            got = answers[name] = {}
            got["push json"] = push_json(inst, json_streams)[0]
            got["push proto"] = inst.request("POST", "/loki/api/v1/push", proto, {"Content-Type": "application/x-protobuf"})[0]
            status, body = push_json(inst, old)
            got["push old"] = (status, body.split(", oldest")[0])
            for q in queries:
                res = json.loads(inst.get("/loki/api/v1/query_range", start=str(now - 10**9), **q)[1])
                got[json.dumps(q)] = sorted((sorted(r["stream"].items()), r["values"]) for r in res["data"]["result"])
            for path in ("/loki/api/v1/labels", "/loki/api/v1/label/host/values", "/loki/api/v1/label/service_name/values"):
                got[path] = json.loads(inst.get(path)[1])
            for q in bad:
                got[q] = inst.get("/loki/api/v1/query_range", query=q)
    finally:
        real.stop()
        lab.stop()
    assert answers["standin"] == answers["real"]


# The versions the deploy installs (versions.yml: the pin and the previous one we upgrade from),
# whether or not upstream/ has their key tree yet: each through its own real binary where
# ../shared/real-loki has it; and every real binary at least as new as the pin on the current render.
PINS = load_yaml("roles/common/defaults/main/versions.yml")
PINNED_VERSIONS = sorted({PINS[k] for k in ("loki_version", "loki_version_previous") if k in PINS}, key=vtuple)
ALL_REAL = sorted((os.path.basename(p)[len("loki-"):-len("-linux-amd64.xz")]
                   for p in glob.glob(os.path.join(REAL_DIR, "loki-[0-9]*-linux-amd64.xz"))), key=vtuple)


@pytest.mark.parametrize("version", PINNED_VERSIONS)
def test_real_loki_of_each_pinned_version_accepts_its_render(version, real_bin, tmp_path):
    if version not in ALL_REAL:
        pytest.skip(f"no real Loki {version} in {REAL_DIR}")
    rc, err = verify(real_bin(version), render("loki-config.yaml.j2", loki_version=version), tmp_path)
    assert rc == 0 and 'msg="config is valid"' in err, err


@pytest.mark.parametrize("binary_version", ALL_REAL)
def test_every_newer_real_loki_accepts_the_current_render(binary_version, real_bin, tmp_path):
    if vtuple(binary_version) < vtuple(PINS["loki_version"]):
        pytest.skip(f"{binary_version} is older than the pin {PINS['loki_version']}")
    rc, err = verify(real_bin(binary_version), render("loki-config.yaml.j2", loki_version=PINS["loki_version"]), tmp_path)
    assert rc == 0, f"real {binary_version} on the {PINS['loki_version']} render: {err}"
