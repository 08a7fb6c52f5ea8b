"""Our rendered files read by the real upstream parsers (../shared/real-parsers, see its README):
grafana.ini through go-ini and Grafana's expanders, the datasource provisioning through Grafana's
provisioning values package, the Alloy configs through Alloy's syntax parser, the Loki config
through Loki's deprecated-config-checker; and the lab's Grafana stand-in reading its files with
them. Each test skips, saying why, where ../shared/real-parsers is absent (the `shared_binary`
fixture, tests/conftest.py)."""
import base64
import functools
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

from conftest import RENDER_CONTEXT, REPO, SHARED_DIRS, load_yaml, render, role_defaults

FILES_MODULE = os.path.join(REPO, "library", "files")
TASKS = "roles/grafana/tasks/main.yml"
PRINTABLE = [chr(c) for c in range(32, 127)]
# The characters with a meaning to go-ini, Grafana's expanders, os.ExpandEnv, YAML or a shell.
SPECIAL = list("$#;'\"`\\ {}%()=:")
# Sequences no form carries: Grafana expands them after go-ini (no escape), go-ini resolves
# %(key)s against the file's own keys.
CANNOT_CARRY = ["${HOME}", "x$__env{HOME}y", "$__file{/etc/hostname}", "a%(admin_user)sb", "line\nbreak",
                "$__anything{x}", "${ x }"]


# ---- the role's own expressions ---------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def grafana_tasks():
    """The role's tasks as Ansible loads them (trusted templates)."""
    loader, _ = defaults()
    return loader.load_from_file(os.path.join(REPO, TASKS), trusted_as_template=True)


@functools.lru_cache(maxsize=None)
def defaults():
    return role_defaults()


def task_named(prefix):
    return next(t for t in grafana_tasks() if t.get("name", "").startswith(prefix))


def templar(**variables):
    from ansible.template import Templar

    loader, variables_ = defaults()
    return Templar(loader=loader, variables={**variables_, **variables})


def template(t, expression):
    from ansible.template import trust_as_template

    return t.template(trust_as_template(expression))


def render_fast(template_name, **overrides):
    """conftest.render with the role defaults loaded once (many renders per test)."""
    from conftest import template_path

    t = templar(**{**RENDER_CONTEXT, **overrides})
    with open(template_path(template_name), encoding="utf-8") as f:
        return template(t, f.read())


def refusals(password, user="admin"):
    """What the role's check task finds in the admin account (its own set_fact expression and vars)."""
    task = task_named("Find what in the admin account grafana.ini cannot carry")
    t = templar(grafana_admin_password=password, grafana_admin_user=user, **task["vars"])
    return template(t, task["ansible.builtin.set_fact"]["grafana_ini_refused"])


def refusal_message(refused):
    task = task_named("Check that grafana.ini can carry the admin account exactly")
    return template(templar(grafana_ini_refused=refused), task["ansible.builtin.assert"]["fail_msg"])


def ini_values(passwords, user="admin"):
    """The role's files-module `ini` values for grafana.ini, one option per password (k0, k1, ...)
    in [security], rendered with the task's own expressions."""
    task = task_named("Provision the Loki datasource and set the admin account in grafana.ini")
    entry = task["homeops.observability.files"]["files"][2]
    security = entry["ini"]["security"]
    out = {"admin_user": template(templar(grafana_admin_user=user), security["admin_user"])}
    for i, pw in enumerate(passwords):
        out[f"k{i}"] = template(templar(grafana_admin_password=pw), security["admin_password"])
    return out


def write_ini(tmp_path, security, base=None):
    """grafana.ini as the deploy writes it: the real files module (library/files) sets the options
    in the packaged file (the lab's copy of it)."""
    if not os.access(FILES_MODULE, os.X_OK):
        pytest.fail(f"{FILES_MODULE} is missing: run make build (make setup does)")
    path = tmp_path / "grafana.ini"
    with open(base or os.path.join(REPO, "lab/packages/grafana/etc/grafana/grafana.ini")) as f:
        path.write_text(f.read())
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"files": [{"path": str(path), "ini": {"security": security}, "secret": True}]}))
    r = subprocess.run([FILES_MODULE, str(args)], capture_output=True, text=True, timeout=60)
    result = json.loads(r.stdout)
    assert not result.get("failed"), result.get("msg")
    return path


def grafana_reads(checker, path):
    r = subprocess.run([checker, str(path)], capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": "/root"})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def candidates():
    """Every printable character alone, at both ends, doubled and among letters; every pair of
    the characters with a meaning to a parser; and the combinations that broke or could break each form."""
    out = []
    for c in PRINTABLE:
        out += [f"pw{c}pw{c}pw", f"{c}edge-pw{c}", c * 8]
    out += [f"p{a}{b}w-pw" for a in SPECIAL for b in SPECIAL]
    out += ["Tr0ub4dor#3;x$y1", "Tr0ub4dor#3;x$y1 ", "  lead-and-trail  ", '`"""`mixed"""`', '"""only-triple"""',
            "`backquoted`", "'single'", '"double"', "a\\", "\\`", "$HOME$$x", "${HOME", "$__env{}", "%(x)", "100%",
            "%(nope)", "tab\there", "; lead", "# lead", "= lead", "[section]", "a = b", "ünïcødé-pw"]
    return out


@pytest.fixture(scope="module")
def ini_check(shared_binary):
    return shared_binary("grafana-ini-check")


@pytest.fixture(scope="module")
def provisioning_check(shared_binary):
    return shared_binary("grafana-provisioning-check")


# ---- grafana.ini -----------------------------------------------------------------------------

def test_the_plain_form_loses_the_password_in_the_real_go_ini(ini_check, tmp_path):
    """Issue 19's report, reproduced with the real reader: `admin_password = Tr0ub4dor#3;x$y1`."""
    path = write_ini(tmp_path, {"admin_password": "Tr0ub4dor#3;x$y1"})
    assert grafana_reads(ini_check, path)["security"]["admin_password"] == "Tr0ub4dor"


def test_grafana_reads_exactly_every_password_the_role_accepts(ini_check, tmp_path):
    passwords = [p for p in candidates() if not refusals(p)]
    assert len(passwords) > 3 * len(PRINTABLE) + len(SPECIAL) ** 2 - 10  # all but the sequences below: nothing printable is refused on its own
    security = ini_values(passwords, user="ad#m;in `x`")
    read = grafana_reads(ini_check, write_ini(tmp_path, security))["security"]
    assert read["admin_user"] == "ad#m;in `x`"
    wrong = [i for i, pw in enumerate(passwords) if read[f"k{i}"] != pw]
    # Names the characters, not whole values (a value may be long).
    assert not wrong, "grafana reads differently: %s" % [repr(passwords[i]) for i in wrong[:10]]


def test_the_role_accepts_every_printable_character(ini_check):
    assert [c for c in PRINTABLE if refusals(f"pw{c}pw{c}pw")] == []
    assert refusals("Tr0ub4dor#3;x$y1 `'\"\\ ") == []


@pytest.mark.parametrize("value", CANNOT_CARRY)
def test_what_no_form_carries_is_refused_and_grafana_would_change_it(value, ini_check, tmp_path):
    refused = refusals(value)
    assert refused and all(r.startswith("grafana_admin_password has a ") for r in refused)
    message = refusal_message(refused)
    assert value not in message and value.strip("x") not in message
    assert "line break" in message or "${...}" in message or "%(...)s" in message
    if "\n" in value:
        return  # one line only: the files module refuses it as well
    if value.startswith("$__anything"):
        # An expander Grafana does not have today stays as it is; refused all the same, as the
        # next Grafana may add it (its syntax is reserved).
        return
    security = {"admin_user": "admin", "admin_password": "`" + value + "`"}
    read = grafana_reads(ini_check, write_ini(tmp_path, security))["security"]
    assert read["admin_password"] != value, "the real reader keeps it: the refusal is not needed"


def test_the_user_gets_the_same_rules(ini_check):
    assert refusals("good-password", user="${USER}") == [
        "grafana_admin_user has a ${...} or $__<name>{...} sequence (Grafana expands it after reading the file;"
        " there is no escape)"]


def test_the_written_file_passes_a_second_run_unchanged(tmp_path):
    """Idempotence of the quoted form: the module finds its own line as it left it."""
    security = ini_values(["Tr0ub4dor#3;x$y1 `\"\\ "])
    path = write_ini(tmp_path, security)
    before = path.read_text()
    args = tmp_path / "args.json"
    r = json.loads(subprocess.run([FILES_MODULE, str(args)], capture_output=True, text=True).stdout)
    assert r["changed"] is False and path.read_text() == before


# ---- datasource provisioning -----------------------------------------------------------------

def test_grafana_provisions_exactly_every_datasource_password(provisioning_check, tmp_path):
    passwords = candidates() + CANNOT_CARRY[:-2]
    passwords = [p for p in passwords if "\n" not in p]
    d = tmp_path / "datasources"
    d.mkdir()
    for i, pw in enumerate(passwords):
        text = render_fast("grafana-datasource-loki.yaml.j2", loki_datasource_password=pw, loki_datasource_user=f"u{pw}",
                           grafana_loki_datasource_name=f"Loki {i} {pw}", grafana_loki_datasource_uid=f"uid-{i}")
        # One default per organization (Grafana refuses more), as in one directory here.
        (d / f"ds{i:04d}.yaml").write_text(text if i == 0 else text.replace("isDefault: true", "isDefault: false"))
    r = subprocess.run([provisioning_check, str(d)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HOME": "/root", "USER": "root"})
    assert r.returncode == 0, r.stderr[:500]
    files = json.loads(r.stdout)["files"]
    assert len(files) == len(passwords)
    wrong = []
    for f in files:
        i = int(os.path.basename(f["file"])[2:6])
        (ds,) = f["datasources"]
        want = passwords[i]
        if (ds["secureJsonData"]["basicAuthPassword"], ds["basicAuthUser"], ds["name"]) != (want, f"u{want}", f"Loki {i} {want}"):
            wrong.append(repr(want))
    assert not wrong, wrong[:10]


def test_the_current_datasource_reads_back_as_meant(provisioning_check, tmp_path):
    d = tmp_path / "datasources"
    d.mkdir()
    (d / "loki.yaml").write_text(render("grafana-datasource-loki.yaml.j2", loki_datasource_password="pa$$word#1"))
    r = subprocess.run([provisioning_check, str(d)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    (ds,) = doc["files"][0]["datasources"]
    defaults = templar()
    assert ds["name"] == template(defaults, "{{ grafana_loki_datasource_name }}")
    assert ds["uid"] == template(defaults, "{{ grafana_loki_datasource_uid }}")
    assert ds["url"] == render("grafana-datasource-loki.yaml.j2", loki_datasource_password="x").split("url: ")[1].split("\n")[0].strip('"')
    assert (ds["type"], ds["access"], ds["isDefault"], ds["basicAuth"]) == ("loki", "proxy", True, True)
    assert ds["basicAuthUser"] == template(defaults, "{{ loki_datasource_user }}")
    assert ds["secureJsonData"]["basicAuthPassword"] == "pa$$word#1"
    if template(defaults, "{{ loki_proxy_enabled | bool }}"):
        # Loki's proxy: the CA PEM as given, and Grafana told to trust only it.
        assert ds["secureJsonData"]["tlsCACert"] == RENDER_CONTEXT["observability_tls_ca_pem"]
        assert ds["jsonData"]["tlsAuthWithCACert"] is True
    assert not [w for w in doc.get("warnings") or [] if "secureJSONData" in w or "not read" in w]


# ---- Alloy ------------------------------------------------------------------------------------

ALLOY_PARSERS = ["alloy-syntax-check-v1.10.2", "alloy-syntax-check-v1.19.0-rc.3"]


@pytest.mark.parametrize("stem", ALLOY_PARSERS)
@pytest.mark.parametrize("overrides", [{}, {"ansible_os_family": "Windows", "inventory_hostname": "win-01"}],
                         ids=["linux", "windows"])
def test_alloy_parses_our_config(stem, overrides, shared_binary, tmp_path):
    checker = shared_binary("alloy-syntax-check", stem)
    cfg = tmp_path / "config.alloy"
    cfg.write_text(render("alloy-config.alloy.j2", **overrides))
    r = subprocess.run([checker, str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is True
    names = {b["name"] for b in doc["blocks"]}
    assert "loki.write" in names
    assert ("loki.source.windowsevent" in names) == bool(overrides)


@pytest.mark.parametrize("stem", ALLOY_PARSERS)
def test_alloy_parser_rejects_a_broken_render(stem, shared_binary, tmp_path):
    checker = shared_binary("alloy-syntax-check", stem)
    cfg = tmp_path / "config.alloy"
    text = render("alloy-config.alloy.j2")
    cfg.write_text(text.replace("},", "}", 1).rstrip().rstrip("}"))
    r = subprocess.run([checker, str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and json.loads(r.stdout)["errors"], r.stdout


# ---- Loki 4.0 readiness ----------------------------------------------------------------------

def test_loki_deprecated_config_checker_finds_nothing_in_the_current_render(shared_binary, tmp_path):
    checker = shared_binary("loki-deprecated-config-checker")
    version = load_yaml("roles/common/defaults/main/versions.yml")["loki_version"]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(render("loki-config.yaml.j2", loki_version=version))
    r = subprocess.run([checker, "-no-color", "-config.file", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No deprecated or deleted configs found." in r.stdout


def test_loki_deprecated_config_checker_catches_a_deleted_key(shared_binary, tmp_path):
    checker = shared_binary("loki-deprecated-config-checker")
    doc = yaml.safe_load(render("loki-config.yaml.j2"))
    doc.setdefault("limits_config", {})["enforce_metric_name"] = False
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    r = subprocess.run([checker, "-no-color", "-config.file", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "limits_config.enforce_metric_name" in r.stdout


# ---- the lab's Grafana stand-in with the real readers ------------------------------------------

STANDIN = os.path.join(REPO, "lab/packages/grafana/usr/sbin/grafana-server")


def start_standin(tmp_path, ini, env):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    prov = tmp_path / "provisioning"
    (prov / "datasources").mkdir(parents=True)
    text = ini.read_text().replace("[security]", f"[server]\nhttp_addr = 127.0.0.1\nhttp_port = {port}\n\n"
                                   f"[paths]\nprovisioning = {prov}\n\n[security]", 1)
    ini.write_text(text)
    log = tmp_path / "grafana.log"
    proc = subprocess.Popen([sys.executable, STANDIN, f"--config={ini}"], stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, env={**os.environ, **env})
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).read()
            return proc, port, log
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.terminate()
    raise AssertionError("stand-in did not start: " + log.read_text())


def login(port, user, password):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/datasources", headers={
        "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


# Not in the repo's lab (at first start the admin's password is that of grafana.ini).
HARD = "Tr0ub4dor#3;x$y1 'q\"`b\\ s"


@pytest.mark.parametrize("reader", ["real", "own"])
def test_the_standin_logs_in_with_exactly_the_vault_password(reader, request, tmp_path):
    """The lab's stand-in, with the real readers (skips without ../shared) and with its own."""
    env = {"GRAFANA_LAB_INI_CHECK": "/nonexistent", "GRAFANA_LAB_PROVISIONING_CHECK": "/nonexistent"}
    if reader == "real":
        env = {"GRAFANA_LAB_INI_CHECK": request.getfixturevalue("ini_check"),
               "GRAFANA_LAB_PROVISIONING_CHECK": request.getfixturevalue("provisioning_check")}
    path = write_ini(tmp_path, ini_values([HARD]) | {"admin_password": ini_values([HARD])["k0"]})
    proc, port, log = start_standin(tmp_path, path, env)
    try:
        assert login(port, "admin", HARD) == 200
        assert login(port, "admin", HARD.split("#")[0]) == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    said = log.read_text()
    if reader == "real":
        assert "the real go-ini and Grafana's expanders (grafana-ini-check)" in said
    else:
        assert "the stand-in's own parser" in said
    assert HARD not in said


def test_the_lab_package_ships_the_verified_readers(shared_binary, tmp_path):
    shared_binary("grafana-ini-check")  # skips without ../shared; fills the cache the build uses
    from test_loki_standin import deb_files, lab_sh

    run = lab_sh(f'build_standin "$LAB_DIR/packages/grafana" "{tmp_path}" 12.1.1 "" prepare_grafana_standin')
    assert "LAB STAND-IN reading grafana.ini and provisioning with the real go-ini" in run.stdout
    deb = next(tmp_path.glob("grafana_*.deb"))
    files = deb_files(str(deb))
    assert {"/usr/lib/grafana-lab/real/grafana-ini-check", "/usr/lib/grafana-lab/real/grafana-provisioning-check"} <= files
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    listed = dict(reversed(line.split()) for line in open(os.path.join(SHARED_DIRS["real-parsers"], "SHA256SUMS")))
    for name in ("grafana-ini-check", "grafana-provisioning-check"):
        digest = hashlib.sha256((root / "usr/lib/grafana-lab/real" / name).read_bytes()).hexdigest()
        assert digest in {v for k, v in listed.items() if k.startswith(name + "-") and k.endswith("-linux-amd64")}


def test_the_lab_package_says_it_falls_back_without_the_readers(tmp_path):
    from test_loki_standin import deb_files, lab_sh

    run = lab_sh(f'build_standin "$LAB_DIR/packages/grafana" "{tmp_path}" 12.1.1 "" prepare_grafana_standin',
                 env={"HOMEOPS_REAL_PARSERS_DIR": str(tmp_path / "absent")})
    assert f"with its own parser (no grafana-ini-check and grafana-provisioning-check in {tmp_path / 'absent'})" in run.stdout
    deb = next(tmp_path.glob("grafana_*.deb"))
    assert not [f for f in deb_files(str(deb)) if "/real/" in f]


def test_no_checker_binary_is_in_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    assert not [f for f in tracked if os.path.basename(f).startswith(("grafana-ini-check", "grafana-provisioning-check",
                                                                      "alloy-syntax-check", "loki-deprecated-config-checker"))]



def test_a_damaged_reader_fails_the_grafana_package_build(tmp_path):
    """A ../shared/real-parsers copy that fails its checksum is an error, not a silent fall-back."""
    from test_loki_standin import lab_sh

    real = tmp_path / "real-parsers"
    real.mkdir()
    for name in ("grafana-ini-check-v0", "grafana-provisioning-check-v0"):
        subprocess.run(["bash", "-c", f'printf "not it" | xz > "{real}/{name}-linux-amd64.xz"'], check=True)
    (real / "SHA256SUMS").write_text("".join(f"{'0' * 64}  {n}-linux-amd64.xz\n{'1' * 64}  {n}-linux-amd64\n"
                                             for n in ("grafana-ini-check-v0", "grafana-provisioning-check-v0")))
    out = tmp_path / "out"
    out.mkdir()
    run = lab_sh(f'build_standin "$LAB_DIR/packages/grafana" "{out}" 12.1.1 "" prepare_grafana_standin',
                 env={"HOMEOPS_REAL_PARSERS_DIR": str(real), "LAB_CACHE_DIR": str(tmp_path / "cache")}, check=False)
    assert run.returncode != 0
    assert "real grafana-ini-check: " in run.stderr and "does not match its SHA256SUMS entry" in run.stderr
    assert not list(out.glob("*.deb"))
