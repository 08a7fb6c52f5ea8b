"""Shared helpers: render the project's templates with ansible-core's own Templar, so filters
and tests (`version`, `to_json`, ...) behave exactly as they do in a playbook run."""
import glob
import os
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROLE_PREFIX = "homeops.observability."


@pytest.fixture(scope="session")
def repo():
    return REPO


def role_defaults_files():
    """The defaults of every role, the shared `common` role first (the others depend on it, so
    their own defaults win on a clash, as in a run)."""
    common = sorted(glob.glob(os.path.join(REPO, "roles/common/defaults/main/*.yml")))
    others = sorted(p for p in glob.glob(os.path.join(REPO, "roles/*/defaults/main.yml")))
    return common + others


def role_defaults():
    """roles/*/defaults as Ansible loads them (trusted for templating)."""
    from ansible.parsing.dataloader import DataLoader

    loader = DataLoader()
    variables = {}
    for path in role_defaults_files():
        variables.update(loader.load_from_file(path, trusted_as_template=True) or {})
    return loader, variables


# The name the template tests grew up with: the defaults lived in playbooks/group_vars/all.
group_vars = role_defaults


def template_path(template_name):
    """roles/<role>/templates/<template_name>: each template lives in exactly one role."""
    found = glob.glob(os.path.join(REPO, "roles", "*", "templates", template_name))
    assert len(found) == 1, f"expected one roles/*/templates/{template_name}, found {found}"
    return found[0]


# The host and run context a template sees in a run, for render().
RENDER_CONTEXT = {
    "groups": {"loki": ["obs-01"], "grafana": ["obs-01"], "alloy_linux": ["srv-01"]},
    "hostvars": {"obs-01": {"ansible_host": "192.0.2.10"}},
    "inventory_hostname": "srv-01",
    "group_names": ["alloy_linux"],
    # What an inventory and the common role's loki_tls.yml provide in a run.
    "loki_push_password": "test-push-password",
    "observability_tls_ca_pem": "-----BEGIN CERTIFICATE-----\nTEST\n-----END CERTIFICATE-----",
}


def render(template_name, **overrides):
    """Render roles/*/templates/<template_name> with the role defaults plus overrides."""
    from ansible.template import Templar, trust_as_template

    loader, variables = role_defaults()
    variables.update(RENDER_CONTEXT)
    variables.update(overrides)
    templar = Templar(loader=loader, variables=variables)
    with open(template_path(template_name), encoding="utf-8") as f:
        source = f.read()
    return templar.template(trust_as_template(source))


def load_yaml(relpath):
    with open(os.path.join(REPO, relpath), encoding="utf-8") as f:
        return yaml.safe_load(f)


def module_names():
    """The one list of modules (homeops_dev/modules.py, from the Cargo workspace)."""
    from homeops_dev import modules

    return modules.modules(REPO)


def collection_tarball():
    """The tarball `make collection` wrote (build/homeops-observability-<version>.tar.gz)."""
    galaxy = load_yaml("galaxy.yml")
    path = os.path.join(REPO, "build", "%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"], galaxy["version"]))
    if not os.path.isfile(path):
        pytest.fail(f"{path} is missing: run make collection (make setup does)")
    return path


def venv_bin(tool):
    return os.path.join(os.path.dirname(sys.executable), tool)


def run(cmd, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 300)
    return subprocess.run(cmd, **kwargs)


# ---- real upstream binaries beside the clone (../shared), never in the repo ------------------

SHARED_DIRS = {
    "real-parsers": os.environ.get("HOMEOPS_REAL_PARSERS_DIR") or os.path.normpath(os.path.join(REPO, "..", "shared", "real-parsers")),
    "real-loki": os.environ.get("HOMEOPS_REAL_LOKI_DIR") or os.path.normpath(os.path.join(REPO, "..", "shared", "real-loki")),
}


def lab_cache_dir(tmp_path_factory):
    """The lab's cache (LAB_CACHE_DIR, /var/cache/homeops-lab), where unpacked upstream binaries and
    downloaded Debian packages are kept between runs; a temp dir where it cannot be written."""
    cache = os.environ.get("LAB_CACHE_DIR", "/var/cache/homeops-lab")
    try:
        os.makedirs(cache, exist_ok=True)
        if os.access(cache, os.W_OK):
            return cache
    except OSError:
        pass
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def shared_binary(tmp_path_factory):
    """shared_binary(name, stem=None) -> the path of a real upstream checker from ../shared/real-parsers
    (name: grafana-ini-check, grafana-provisioning-check, alloy-syntax-check,
    loki-deprecated-config-checker; stem: a file's name without -linux-amd64.xz, default the newest
    of that name), unpacked and checked against its SHA256SUMS by the lab's own unpacker
    (lab/lib/packages.sh shared_binary) into the lab's cache, or a temp one; never into the repo.
    Skips, saying why, where the folder or the file is absent; fails on a bad checksum."""
    cache = lab_cache_dir(tmp_path_factory)
    found = {}

    def get(name, stem=None):
        where = SHARED_DIRS["real-parsers"]
        if not os.path.isdir(where):
            pytest.skip(f"no real upstream parsers: {where} is absent (set HOMEOPS_REAL_PARSERS_DIR); "
                        "this check runs where ../shared/real-parsers exists")
        key = (name, stem)
        if key not in found:
            prelude = (f'LAB_DIR="{REPO}/lab"; LAB_ROOT="{REPO}"; export LAB_DIR LAB_ROOT; '
                       'source "$LAB_DIR/lib/common.sh"; source "$LAB_DIR/lib/config.sh"; '
                       'source "$LAB_DIR/lib/packages.sh"; ')
            r = subprocess.run(["bash", "-c", prelude + f'real_parser_binary "{name}" "{stem or ""}"'],
                               capture_output=True, text=True, timeout=300,
                               env={**os.environ, "LAB_CACHE_DIR": cache, "HOMEOPS_REAL_PARSERS_DIR": where})
            if r.returncode == 1:
                pytest.skip(f"{where} has no {stem or name + '-<tag>'}-linux-amd64.xz")
            assert r.returncode == 0, r.stderr
            found[key] = r.stdout.strip()
        return found[key]

    return get
