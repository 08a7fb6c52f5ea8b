"""The collection tarball `make collection` writes, installed the way another project would:
offline into a directory of its own, with its own ansible.cfg (no `library`, no
`action_plugins`), then ansible-doc on every module and a playbook that runs
homeops.observability.safe_grep and homeops.observability.apt_packages against localhost through
the fast path."""
import ast
import filecmp
import os
import re
import sys
import tarfile

import pytest
import yaml

from conftest import REPO, collection_tarball, load_yaml, module_names, run, venv_bin

from homeops_dev import build_collection

ROLES = ("common", "loki", "grafana", "alloy", "apt_lockdown")


def test_requires_ansible_matches_the_pinned_ansible_core():
    with open(os.path.join(REPO, "requirements.txt"), encoding="utf-8") as f:
        pinned = re.search(r"^ansible-core==(\d+)\.(\d+)\.(\d+)$", f.read(), re.M)
    major, minor, patch = pinned.groups()
    runtime = load_yaml("meta/runtime.yml")
    # The tested version is the lower bound; no upper bound (ansible-core warns on every newer one).
    assert runtime["requires_ansible"] == f">={major}.{minor}.{patch}"
    # The other tested end, `make test-newest`, is inside the range.
    with open(os.path.join(REPO, "requirements-newest.txt"), encoding="utf-8") as f:
        newest = re.search(r"^ansible-core==(\d+)\.(\d+)\.(\d+)$", f.read(), re.M).groups()
    assert tuple(map(int, newest)) > (int(major), int(minor), int(patch)), newest


def test_the_module_list_comes_from_the_cargo_workspace():
    # Binary crates only: the shared runtime and the apt engine are libraries, in crates/.
    names = module_names()
    assert "runtime" not in names and "apt" not in names
    assert os.path.isfile(os.path.join(REPO, "crates", "runtime", "Cargo.toml"))
    for name in names:
        assert os.path.isfile(os.path.join(REPO, "modules", name, "src", "main.rs"))
    res = run([sys.executable, "-m", "homeops_dev.modules"], cwd=REPO)
    assert res.stdout.split() == names


def _workspace(tmp_path, crates):
    """A Cargo workspace in tmp_path with the crates {dir: (package name, binary?)}."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "Cargo.toml").write_text('[workspace]\nmembers = ["modules/*", "crates/*"]\n')
    for path, (name, binary) in crates.items():
        src = tmp_path / path / "src"
        src.mkdir(parents=True)
        (tmp_path / path / "Cargo.toml").write_text(f'[package]\nname = "{name}"\n')
        (src / ("main.rs" if binary else "lib.rs")).write_text("")
    return str(tmp_path)


def test_modules_are_the_binary_crates_of_modules_and_the_two_kinds_never_mix(tmp_path):
    from homeops_dev import modules

    root = _workspace(tmp_path / "ok", {"modules/b": ("b", True), "modules/a": ("a", True), "crates/lib": ("lib", False)})
    assert modules.modules(root) == ["a", "b"]
    root = _workspace(tmp_path / "lib", {"modules/a": ("a", True), "modules/lib": ("lib", False)})
    with pytest.raises(SystemExit, match="modules/lib is a library crate.*move it to crates/"):
        modules.modules(root)
    root = _workspace(tmp_path / "bin", {"modules/a": ("a", True), "crates/tool": ("tool", True)})
    with pytest.raises(SystemExit, match="crates/tool builds the binaries tool: a module crate belongs in modules/"):
        modules.modules(root)


def test_library_layout_is_copied_whatever_its_subdirectories(tmp_path):
    """Per-architecture builds (library/.arch/<arch>/<module>, or any other subdirectory) go to
    the same place under plugins/modules/; files that are no module's are left out."""
    lib = tmp_path / "library"
    (lib / ".arch" / "aarch64").mkdir(parents=True)
    for f in ("safe_grep", "safe_grep.yml", ".arch/aarch64/safe_grep", "notes.txt", ".arch/aarch64/other"):
        (lib / f).write_text("x")
    assert build_collection.library_files(str(tmp_path), ["safe_grep"]) == [
        os.path.join(".arch", "aarch64", "safe_grep"), "safe_grep", "safe_grep.yml"]
    (lib / "safe_grep").unlink()
    with pytest.raises(SystemExit, match="library/safe_grep"):
        build_collection.library_files(str(tmp_path), ["safe_grep"])


def test_the_routing_is_generated_and_never_written_by_hand(tmp_path):
    """meta/runtime.yml in the repository lists no module: the build appends each one's
    action_plugin, and refuses a hand-written plugin_routing it would have to merge."""
    assert "plugin_routing" not in load_yaml("meta/runtime.yml")
    routing = yaml.safe_load(build_collection.routing(["a", "b"]))
    assert routing == {"plugin_routing": {"modules": {"a": {"action_plugin": "homeops.observability.fastpath"},
                                                      "b": {"action_plugin": "homeops.observability.fastpath"}}}}
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "runtime.yml").write_text("---\nplugin_routing:\n  modules: {}\n")
    with pytest.raises(SystemExit, match="meta/runtime.yml sets plugin_routing"):
        build_collection.write_runtime(str(tmp_path), str(tmp_path / "stage"), ["a"])


@pytest.fixture(scope="module")
def tarball():
    return collection_tarball()


def test_tarball_holds_modules_docs_fast_path_and_roles(tarball):
    with tarfile.open(tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
        for name in module_names():
            # The module is a symlink to the x86_64 build (ansible-doc -l skips symlinks and reads
            # <name>.py: homeops_dev/build_collection.py says why).
            link = members[f"plugins/modules/{name}"]
            assert link.issym() and link.linkname == f".arch/x86_64/{name}", (link.type, link.linkname)
            binary = members[f"plugins/modules/.arch/x86_64/{name}"]
            assert binary.isfile() and binary.mode & 0o111, f"plugins/modules/.arch/x86_64/{name} is not executable"
            assert f"plugins/modules/{name}.yml" in members
            # The docs-only <name>.py says what the sidecar says.
            stub = ast.parse(tar.extractfile(f"plugins/modules/{name}.py").read())
            strings = {n.targets[0].id: n.value.value for n in stub.body if isinstance(n, ast.Assign)}
            assert sorted(strings) == ["DOCUMENTATION", "EXAMPLES", "RETURN"], sorted(strings)
            sidecar = load_yaml(f"library/{name}.yml")
            for key, text in strings.items():
                if key == "EXAMPLES":
                    assert text.strip() == sidecar[key].strip(), (name, key)
                else:
                    assert yaml.safe_load(text) == sidecar[key], (name, key)
        # ONE action plugin, the fast path of this tree, and every module routed to it by
        # meta/runtime.yml (homeops_dev/build_collection.py generates the routing from homeops_dev/modules.py).
        actions = sorted(n for n in members if n.startswith("plugins/action/") and members[n].isfile())
        assert actions == ["plugins/action/fastpath.py"], actions
        with open(os.path.join(REPO, "action_plugins", "homeops_fastpath.py"), "rb") as f:
            assert tar.extractfile(actions[0]).read() == f.read(), "plugins/action/fastpath.py is not this tree's fast path"
        runtime = yaml.safe_load(tar.extractfile("meta/runtime.yml"))
        assert runtime["plugin_routing"] == {"modules": {
            name: {"action_plugin": "homeops.observability.fastpath"} for name in module_names()}}, runtime.get("plugin_routing")
        # The rest is the repository's meta/runtime.yml as written.
        assert {k: v for k, v in runtime.items() if k != "plugin_routing"} == load_yaml("meta/runtime.yml")
        # The one module table (python -m homeops_dev.modules --table) is in the README, where the marker was.
        readme = tar.extractfile("README.md").read().decode()
        assert build_collection.TABLE_MARKER not in readme
        assert build_collection.table(REPO) in "\n".join(line.strip() for line in readme.splitlines()) + "\n"
        for path in ("meta/runtime.yml", "plugins/doc_fragments/apt.py", "README.md", "MANIFEST.json", "FILES.json",
                     "LICENSE", "THIRD-PARTY.md"):
            assert path in members, path
        for role in ROLES:
            assert f"roles/{role}/README.md" in members and f"roles/{role}/meta/main.yml" in members
            assert any(n.startswith(f"roles/{role}/defaults/main") for n in members), role
        tops = {n.split("/")[0] for n in members}
        assert tops <= {"plugins", "roles", "meta", "README.md", "CHANGELOG.md", "MANIFEST.json", "FILES.json",
                        "LICENSE", "THIRD-PARTY.md", ".ansible-lint"}, tops
        # Galaxy's importer lints without the dependencies: the ansible.windows modules the roles
        # call are mocked in the collection's own .ansible-lint (homeops_dev/build_collection.py).
        lint = yaml.safe_load(tar.extractfile(".ansible-lint"))
        assert "ansible.windows.win_service" in lint["mock_modules"], lint
        assert all(m.startswith(("ansible.windows.", "community.general.")) for m in lint["mock_modules"]), lint
        for role in ROLES:
            assert f"roles/{role}/meta/argument_specs.yml" in members, role


@pytest.fixture(scope="module")
def project(tmp_path_factory, tarball):
    """A project outside this repository: its own ansible.cfg and collections path, the
    collection installed offline from the tarball with its dependencies from vendor/."""
    root = tmp_path_factory.mktemp("elsewhere")
    (root / "ansible.cfg").write_text(
        "[defaults]\ncollections_path = ./collections\nhome = ./.ansible\nnocows = True\n"
        "interpreter_python = auto_silent\n"
        # The fast path sends the arguments on stdin only where ansible-core would pipeline
        # (issue 12); a project that wants it turns pipelining on, as the README says.
        "[connection]\npipelining = True\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(root / "ansible.cfg"), ANSIBLE_LOG_PATH=str(root / "ansible.log"),
               ANSIBLE_NOCOLOR="1", HOMEOPS_FASTPATH="1")
    for key in ("ANSIBLE_LIBRARY", "ANSIBLE_ACTION_PLUGINS", "ANSIBLE_COLLECTIONS_PATH"):
        env.pop(key, None)
    vendored = sorted(os.path.join(REPO, "vendor", f) for f in os.listdir(os.path.join(REPO, "vendor")) if f.endswith(".tar.gz"))
    res = run([venv_bin("ansible-galaxy"), "collection", "install", "--offline", tarball, *vendored, "-p", "./collections"],
              cwd=root, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (root / "collections/ansible_collections/homeops/observability/MANIFEST.json").is_file()
    return root, env


@pytest.mark.parametrize("module", module_names())
def test_ansible_doc_shows_each_module(project, module):
    root, env = project
    res = run([venv_bin("ansible-doc"), "-t", "module", f"homeops.observability.{module}"], cwd=root, env=env)
    assert res.returncode == 0 and "OPTIONS" in res.stdout, res.stderr
    assert res.stdout.lstrip().startswith(f"> MODULE homeops.observability.{module}"), res.stdout[:200]
    if module in ("apt_packages", "kernel_headers"):
        # From the doc fragment homeops.observability.apt, not the sidecar itself.
        assert "lock_timeout" in res.stdout and "retry_delay" in res.stdout


def test_ansible_doc_lists_every_module(project):
    """ansible-doc -l (and so Galaxy's and editors' module lists) shows each binary module with
    its short description; it printed a decode error for each binary before (issue 21)."""
    root, env = project
    res = run([venv_bin("ansible-doc"), "-t", "module", "-l", "homeops.observability"], cwd=root, env=env)
    assert res.returncode == 0, res.stderr
    assert "formatting error" not in res.stdout + res.stderr, res.stderr
    listed = dict(line.split(None, 1) for line in res.stdout.splitlines() if line.strip())
    assert sorted(listed) == sorted(f"homeops.observability.{m}" for m in module_names()), res.stdout
    for module in module_names():
        short = load_yaml(f"library/{module}.yml")["DOCUMENTATION"]["short_description"]
        assert short.startswith(listed[f"homeops.observability.{module}"].rstrip(".").strip()), module


PLAYBOOK = """---
- name: Use the collection from another project
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  module_defaults:
    group/homeops.observability.apt:
      lock_timeout: 5
      retries: 0
  tasks:
    - name: Find the marker in the file with safe_grep
      homeops.observability.safe_grep:
        path: "%(path)s"
        pattern: "^marker="
        state: present
      register: grep_result

    - name: Ask apt_packages for a package that is installed, in check mode
      homeops.observability.apt_packages:
        name: dpkg
        state: present
      check_mode: true
      register: apt_result

    - name: Check what the modules answered
      ansible.builtin.assert:
        that:
          - grep_result is not changed
          - grep_result.count == 1
          - grep_result.lines == [2]
          - apt_result is not changed
          - apt_result is not failed
"""


def test_a_playbook_elsewhere_runs_our_modules_through_the_fast_path(project):
    root, env = project
    target = root / "settings.conf"
    target.write_text("# settings\nmarker=secret-value\nother=1\n")
    (root / "use.yml").write_text(PLAYBOOK % {"path": target})
    res = run([venv_bin("ansible-playbook"), "-i", "localhost,", "-vvv", "use.yml"], cwd=root, env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert re.search(r"localhost\s*:\s*ok=3\s+changed=0\s+unreachable=0\s+failed=0", out), out[-2000:]
    # The fast path ran both modules (cached or uploaded), from the installed collection.
    for module in ("safe_grep", "apt_packages"):
        assert re.search(r"homeops fast path: (uploading homeops\.observability\.%s for \w+ from \S*collections/"
                         r"ansible_collections/homeops/observability/plugins/modules/(\.arch/\w+/)?%s "
                         r"|cached homeops\.observability\.%s$)" % (module, module, module), out, re.M), module
    assert "homeops fast path off" not in out
    assert "secret-value" not in out


def test_every_module_of_the_collection_takes_the_fast_path(project):
    """Each module's task, by FQCN from the installed collection, is handled by the one fast path
    that meta/runtime.yml routes it to: every module answers an unknown option (the parser's
    refusal, before the module does anything) after the fast path ran it. A module missing from
    the routing would fall back to ansible-core's own module transfer, without the fast path's
    log line. The module_defaults of group/homeops.observability.apt must reach only the group's
    members (a routing that renamed the task's resolved action would hand them to every module,
    and the refusal would then name lock_timeout and retries too)."""
    root, env = project
    from homeops_dev import modules

    cases = [c for c in modules.bad_inputs(REPO) if c["why"] == "unknown option"]
    assert sorted(c["module"] for c in cases) == module_names()
    tasks = []
    for i, c in enumerate(cases):
        tasks.append({"name": f"Run {c['module']} with an unknown option", f"homeops.observability.{c['module']}": c["args"],
                      "register": f"case_{i}", "ignore_errors": True})
        tasks.append({"name": f"Check that {c['module']} refused it alone", "ansible.builtin.assert": {
            "that": [f"case_{i} is failed", f"case_{i} is not changed", f"{c['needle']!r} in case_{i}.msg"]}})
    play = [{"name": "Every module through the fast path", "hosts": "localhost", "connection": "local",
             "gather_facts": False, "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
             "module_defaults": {"group/homeops.observability.apt": {"lock_timeout": 5, "retries": 0}},
             "tasks": tasks}]
    (root / "every.yml").write_text(yaml.safe_dump(play, sort_keys=False, width=200))
    res = run([venv_bin("ansible-playbook"), "-i", "localhost,", "-vvv", "every.yml"], cwd=root, env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    n = len(cases)
    # An ignored failure counts as ok too: each module's task and its assert.
    assert re.search(rf"localhost\s*:\s*ok={2 * n}\s+changed=0\s+unreachable=0\s+failed=0\s+skipped=0\s+rescued=0\s+"
                     rf"ignored={n}", out), out[-2000:]
    missed = [c["module"] for c in cases if not re.search(
        r"^homeops fast path: (uploading|cached) homeops\.observability\.%s\b" % c["module"], out, re.M)]
    assert not missed, f"no fast path for {missed}: is each module routed to it in meta/runtime.yml?"
    assert "homeops fast path off" not in out


def test_version_is_the_newest_release_of_the_changelog():
    """galaxy.yml's version is the newest release of changelogs/changelog.yaml (antsibull-changelog;
    CHANGELOG.md is generated from it, `make changelog-lint`), and the execution environment bakes
    that tarball: a new content is a new version (issue 21: 0.1.0 was reused)."""
    releases = load_yaml("changelogs/changelog.yaml")["releases"]
    newest = max(releases, key=lambda v: tuple(int(x) for x in v.split(".")))
    assert load_yaml("galaxy.yml")["version"] == newest, sorted(releases)
    assert f"homeops-observability-{newest}.tar.gz" in load_yaml("ee/requirements.yml")["collections"][0]["source"]
    with open(os.path.join(REPO, "CHANGELOG.md"), encoding="utf-8") as f:
        headings = re.findall(r"^## v(.+)$", f.read(), re.M)
    assert headings and headings[0].replace("\\", "") == newest, headings[:2]


def documented_install():
    """The shell block under docs/collection.md's "## Install (offline, ...)" heading."""
    with open(os.path.join(REPO, "docs", "collection.md"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^## Install \(offline[^\n]*\n(.*?)^```sh\n(.*?)^```", text, re.M | re.S)
    assert m, "docs/collection.md has no ```sh block under '## Install (offline, ...)'"
    return m.group(2)


def test_the_documented_offline_install_works(tmp_path, tarball):
    """docs/collection.md's offline install, run as written in an empty directory that holds the
    tarballs it names (ours from build/, the dependencies from vendor/): it failed with 'Could not
    satisfy community.general:>=11.0.0' when it named our tarball alone (issue 21)."""
    block = documented_install()
    named = re.findall(r"\S+\.tar\.gz", block)
    assert os.path.basename(tarball) in named, f"the doc installs {named}, not {os.path.basename(tarball)}"
    for name in named:
        src = next((p for p in (os.path.join(REPO, "build", name), os.path.join(REPO, "vendor", name))
                    if os.path.isfile(p)), None)
        assert src, f"docs/collection.md names {name}, which is neither in build/ nor in vendor/"
        os.symlink(src, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(PATH=os.path.dirname(sys.executable) + os.pathsep + env["PATH"], HOME=str(tmp_path / "home"),
               ANSIBLE_NOCOLOR="1")
    res = run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    for fqcn in ("homeops/observability", "community/general", "ansible/windows"):
        assert (tmp_path / "collections" / "ansible_collections" / fqcn / "MANIFEST.json").is_file(), fqcn
    assert re.search(r"^> MODULE homeops\.observability\.apt_packages ", res.stdout, re.M), res.stdout[-2000:]
