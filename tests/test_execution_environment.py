"""execution-environment.yml (ansible-builder v3): `ansible-builder create` writes the build
context (building the image needs podman or docker, which these machines lack), with the pinned
ansible-core and the three collection tarballs: ours, as `make collection` built it, and the
vendored ones."""
import filecmp
import glob
import os
import re

from conftest import REPO, collection_tarball, load_yaml, run, venv_bin


def test_ee_pins_what_the_repository_pins():
    ee = load_yaml("execution-environment.yml")
    assert ee["version"] == 3
    with open(os.path.join(REPO, "requirements.txt"), encoding="utf-8") as f:
        core = re.search(r"^ansible-core==\S+$", f.read(), re.M).group(0)
    assert ee["dependencies"]["ansible_core"]["package_pip"] == core
    galaxy = load_yaml("galaxy.yml")
    sources = {os.path.basename(f["src"]) for f in ee["additional_build_files"]}
    assert "homeops-observability-%s.tar.gz" % galaxy["version"] in sources
    vendored = {os.path.basename(c["source"]) for c in load_yaml("requirements.yml")["collections"]}
    assert vendored <= sources, "the EE must bake the same vendored collections as make setup"
    wanted = {os.path.basename(c["source"]) for c in load_yaml(ee["dependencies"]["galaxy"])["collections"]}
    assert wanted == sources


def test_ansible_builder_create_writes_the_build_context(tmp_path):
    tarball = collection_tarball()
    context = tmp_path / "ee"
    res = run([venv_bin("ansible-builder"), "create", "-f", "execution-environment.yml", "-c", str(context)], cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    build_file = next(p for p in (context / "Containerfile", context / "Dockerfile") if p.exists())
    text = build_file.read_text()
    with open(os.path.join(REPO, "requirements.txt"), encoding="utf-8") as f:
        core = re.search(r"^ansible-core==\S+$", f.read(), re.M).group(0)
    assert core in text
    assert 'ANSIBLE_GALAXY_CLI_COLLECTION_OPTS="--offline"' in text
    baked = sorted(os.path.basename(p) for p in glob.glob(str(context / "_build" / "collections" / "*.tar.gz")))
    assert baked == sorted([os.path.basename(tarball), *(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "vendor", "*.tar.gz")))])
    assert filecmp.cmp(tarball, context / "_build" / "collections" / os.path.basename(tarball), shallow=False)
