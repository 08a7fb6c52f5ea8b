#!/usr/bin/env python3
"""Rebuild the vendored collection tarballs in vendor/ from the `ansible` package on PyPI.

The `ansible` wheel ships each collection as an installed tree (MANIFEST.json, FILES.json,
plugins/...), but with tests/, docs/ and CI files stripped while FILES.json still lists them.
`ansible-galaxy collection install` extracts every file FILES.json names and verifies its
sha256, so a tarball made from the tree as is fails on the first missing file. We therefore
rewrite FILES.json to the files that are really there (their recorded checksums are kept and
re-checked), put the new FILES.json checksum into MANIFEST.json, and write a deterministic
tar.gz (sorted members, fixed mtime and owner) so a refresh of the same version gives the
same bytes.

Usage:
  scripts/vendor-collections.py [--ansible-version 12.3.0] [--wheel PATH] [--out vendor]
        [--collection community.general] [--collection ansible.windows]
Without --wheel, the wheel is fetched with `pip download --no-deps ansible==VERSION`.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile

DEFAULT_COLLECTIONS = ["community.general", "ansible.windows"]
# A fixed timestamp (the same one pip and reproducible-builds folks use) keeps the
# tarball bytes stable across refreshes of the same version.
FIXED_MTIME = 315532800  # 1980-01-01T00:00:00Z


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def read_collection(wheel, namespace, name):
    """Return {relative path: bytes} for one collection inside the ansible wheel."""
    prefix = f"ansible_collections/{namespace}/{name}/"
    files = {}
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.filename.startswith(prefix) and not info.is_dir():
                rel = info.filename[len(prefix):]
                if rel:
                    files[rel] = zf.read(info)
    if "MANIFEST.json" not in files or "FILES.json" not in files:
        sys.exit(f"error: {namespace}.{name} in {wheel} has no MANIFEST.json/FILES.json")
    return files


def rebuild_manifests(files):
    """Filter FILES.json to present files, verify their checksums, fix MANIFEST.json."""
    manifest = json.loads(files["MANIFEST.json"])
    files_json = json.loads(files["FILES.json"])
    present_dirs = {"."}
    for rel in files:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            present_dirs.add("/".join(parts[:i]))
    kept, dropped = [], 0
    for entry in files_json["files"]:
        rel = entry["name"]
        if entry["ftype"] == "dir":
            if rel in present_dirs:
                kept.append(entry)
            else:
                dropped += 1
            continue
        if rel not in files:
            dropped += 1
            continue
        actual = sha256_bytes(files[rel])
        if actual != entry["chksum_sha256"]:
            sys.exit(f"error: checksum mismatch for {rel}: the wheel does not match its FILES.json")
        kept.append(entry)
    listed = {e["name"] for e in kept}
    unlisted = sorted(r for r in files if r not in listed and r not in ("MANIFEST.json", "FILES.json"))
    if unlisted:
        sys.exit(f"error: files not listed in FILES.json: {unlisted[:5]}")
    files_json["files"] = kept
    new_files_json = (json.dumps(files_json, indent=4, sort_keys=False) + "\n").encode()
    manifest["file_manifest_file"]["chksum_sha256"] = sha256_bytes(new_files_json)
    new_manifest = (json.dumps(manifest, indent=4, sort_keys=False) + "\n").encode()
    return manifest, new_manifest, new_files_json, kept, dropped


def write_tarball(path, manifest_bytes, files_json_bytes, entries, files):
    def add(tar, name, data=None, is_dir=False):
        info = tarfile.TarInfo(name)
        info.mtime = FIXED_MTIME
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if is_dir:
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        else:
            info.mode = 0o644
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        add(tar, "MANIFEST.json", manifest_bytes)
        add(tar, "FILES.json", files_json_bytes)
        for entry in entries:
            rel = entry["name"]
            if rel == ".":
                continue
            if entry["ftype"] == "dir":
                add(tar, rel, is_dir=True)
            else:
                add(tar, rel, files[rel])
    with open(path, "wb") as out:
        # mtime=0 and no file name in the gzip header: same input, same bytes.
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
            gz.write(raw.getvalue())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ansible-version", default="12.3.0")
    parser.add_argument("--wheel", help="an already downloaded ansible-<version>-py3-none-any.whl")
    parser.add_argument("--out", default="vendor")
    parser.add_argument("--collection", action="append", dest="collections")
    args = parser.parse_args()
    collections = args.collections or DEFAULT_COLLECTIONS

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel
        if not wheel:
            print(f"==> pip download --no-deps ansible=={args.ansible_version}", flush=True)
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "-d", tmp, f"ansible=={args.ansible_version}"],
                check=True,
            )
            wheel = os.path.join(tmp, f"ansible-{args.ansible_version}-py3-none-any.whl")
        print(f"==> wheel {os.path.basename(wheel)} sha256 {sha256_bytes(open(wheel, 'rb').read())}")
        os.makedirs(args.out, exist_ok=True)
        for fqcn in collections:
            namespace, name = fqcn.split(".", 1)
            files = read_collection(wheel, namespace, name)
            manifest, manifest_bytes, files_json_bytes, entries, dropped = rebuild_manifests(files)
            info = manifest["collection_info"]
            version = info["version"]
            tarball = os.path.join(args.out, f"{namespace}-{name}-{version}.tar.gz")
            write_tarball(tarball, manifest_bytes, files_json_bytes, entries, files)
            digest = sha256_bytes(open(tarball, "rb").read())
            deps = info.get("dependencies") or {}
            print(f"==> {tarball}: {fqcn} {version}, {len(entries)} entries "
                  f"({dropped} listed by upstream but not shipped in the wheel, dropped), "
                  f"dependencies {deps or 'none'}, sha256 {digest}")


if __name__ == "__main__":
    main()
