"""The vendored collections: what requirements.yml installs is in vendor/, recorded in
vendor/README.md with its sha256, and needs nothing that is not vendored (offline install)."""
import hashlib
import json
import os
import tarfile

from conftest import REPO, load_yaml


def requirements():
    return load_yaml("requirements.yml")["collections"]


def test_every_requirement_is_a_vendored_file():
    for req in requirements():
        assert req["type"] == "file"
        assert req["source"].startswith("./vendor/")
        assert os.path.isfile(os.path.join(REPO, req["source"])), req["source"]


def test_checksums_are_recorded_in_the_vendor_readme():
    with open(os.path.join(REPO, "vendor/README.md"), encoding="utf-8") as f:
        readme = f.read()
    for req in requirements():
        with open(os.path.join(REPO, req["source"]), "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        assert digest in readme, f"{req['source']}: sha256 {digest} not in vendor/README.md"


def test_dependencies_are_satisfied_offline():
    manifests = {}
    for req in requirements():
        with tarfile.open(os.path.join(REPO, req["source"])) as tar:
            manifest = json.load(tar.extractfile("MANIFEST.json"))
        info = manifest["collection_info"]
        fqcn = f"{info['namespace']}.{info['name']}"
        assert fqcn == req["name"]
        manifests[fqcn] = info
    for fqcn, info in manifests.items():
        for dependency in info.get("dependencies") or {}:
            assert dependency in manifests, f"{fqcn} needs {dependency}, which is not vendored"
