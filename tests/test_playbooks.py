"""Static checks of the playbooks and the roles they call: the rules of the deploy that a syntax
check cannot see (task order, lock timeouts, secrets handling, unreachable handling, FQCN,
verify naming). Role imports are inlined, so a play is checked with the tasks it really runs."""
import glob
import os
import re

import pytest
import yaml

from conftest import REPO, group_vars, load_yaml, module_names

DEPLOY = "playbooks/deploy-observability-stack.yml"
VERIFY = "playbooks/tests/verify_observability.yml"
SECRETS = ("grafana_admin_password", "loki_datasource_password")
NS = "homeops.observability."
APT_MODULES = (NS + "apt_packages", NS + "kernel_headers")
LOCKDOWN = NS + "apt_lockdown"
FORBIDDEN_APT = ("ansible.builtin.apt", "apt", "ansible.builtin.package", "package",
                 "ansible.builtin.apt_repository", "ansible.builtin.deb822_repository")


def role_dir(name):
    assert name.startswith(NS), f"role {name} is not called by its FQCN ({NS}<role>)"
    return os.path.join("roles", name[len(NS):])


def role_task_files(name, tasks_from=None, task_vars=None):
    """The task files a role import runs: tasks_from (or main.yml) with its include_tasks and
    import_tasks inlined. `alloy_platform` in the import's vars picks the alloy include."""
    path = os.path.join(role_dir(name), "tasks", tasks_from or "main.yml")
    if not path.endswith(".yml"):
        path += ".yml"
    return path, task_vars or {}


def tasks_of(node, base="playbooks", task_vars=None):
    """Every task under a list of tasks, descending into block/rescue/always, with imported and
    included task files and imported roles inlined (their tasks come right after the import)."""
    task_vars = task_vars or {}
    for task in node or []:
        yield task
        for key in ("block", "rescue", "always"):
            if key in task:
                yield from tasks_of(task[key], base, task_vars)
        role = task.get("ansible.builtin.import_role") or task.get("ansible.builtin.include_role")
        if role:
            path, more = role_task_files(role["name"], role.get("tasks_from"), {**task_vars, **(task.get("vars") or {})})
            yield from tasks_of(load_yaml(path), os.path.dirname(path), more)
        for key in ("ansible.builtin.import_tasks", "ansible.builtin.include_tasks"):
            imported = task.get(key)
            if imported:
                imported = imported.replace("{{ alloy_platform }}", task_vars.get("alloy_platform", "linux"))
                yield from tasks_of(load_yaml(os.path.join(base, imported)), base, task_vars)


def handlers_of(role_name):
    path = os.path.join(role_dir(role_name), "handlers", "main.yml")
    return load_yaml(path) if os.path.exists(path) else []


def play_tasks(play):
    """The play's tasks and handlers, with those of the roles it imports (and of `common`, the
    dependency of every role)."""
    seen_roles = []
    for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
        for task in tasks_of(play.get(key)):
            role = task.get("ansible.builtin.import_role") or task.get("ansible.builtin.include_role")
            if role and role["name"] not in seen_roles:
                seen_roles.append(role["name"])
            yield task
    if seen_roles:
        seen_roles.append(NS + "common")
    for role in dict.fromkeys(seen_roles):
        yield from tasks_of(handlers_of(role))


def module_of(task):
    skip = {"module_defaults", "name", "register", "when", "loop", "notify", "no_log", "diff", "until", "retries",
            "delay", "vars", "changed_when", "failed_when", "run_once", "block", "rescue",
            "always", "loop_control", "tags", "become", "check_mode", "ignore_errors",
            "listen", "delegate_to"}
    keys = [k for k in task if k not in skip]
    return keys[0] if keys else None


def plays_of(path):
    """The playbook's own plays, without the imported preflight (tested on its own)."""
    return [p for p in load_yaml(path) if "ansible.builtin.import_playbook" not in p]


@pytest.fixture(scope="module")
def deploy():
    return plays_of(DEPLOY)


@pytest.fixture(scope="module")
def verify():
    return plays_of(VERIFY)


@pytest.mark.parametrize("path", [DEPLOY, VERIFY])
def test_deploy_and_verify_start_with_the_preflight(path):
    first = load_yaml(path)[0]
    imported = first.get("ansible.builtin.import_playbook", "")
    assert os.path.basename(imported) == "preflight.yml"
    assert os.path.normpath(os.path.join(os.path.dirname(path), imported)) == "playbooks/preflight.yml"


def play(plays, hosts):
    matches = [p for p in plays if p["hosts"] == hosts]
    assert len(matches) == 1, f"expected one play for hosts {hosts}"
    return matches[0]


def names(play_):
    return [t.get("name") for t in play_tasks(play_)]


def test_play_order(deploy):
    assert [p["hosts"] for p in deploy] == [
        "loki:grafana:alloy_linux", "loki", "grafana", "alloy_linux", "alloy_windows",
        "loki:grafana:alloy_linux",
    ]
    assert deploy[3]["name"] == "Deploy Grafana Alloy on Linux hosts"
    assert deploy[4]["name"] == "Deploy Grafana Alloy on Windows hosts"


def lockdown_states(play_):
    """The states of the apt lockdown a play sets, in order: the module called directly, or the
    apt_lockdown role with its apt_lockdown_state."""
    states = []
    for task in tasks_of(play_["tasks"]):
        role = task.get("ansible.builtin.import_role") or {}
        if role.get("name") == LOCKDOWN:
            states.append((task.get("vars") or {}).get("apt_lockdown_state", "locked"))
        elif module_of(task) == LOCKDOWN and task[LOCKDOWN]["state"] != "{{ apt_lockdown_state }}":
            states.append(task[LOCKDOWN]["state"])
    return states


def test_lockdown_first_and_released_last(deploy):
    assert lockdown_states(deploy[0]) == ["locked", "released"]
    assert lockdown_states(deploy[-1]) == ["released"]
    role_task = load_yaml("roles/apt_lockdown/tasks/main.yml")[0]
    assert role_task[LOCKDOWN]["state"] == "{{ apt_lockdown_state }}"
    assert role_task["changed_when"] is False
    assert load_yaml("roles/apt_lockdown/defaults/main.yml")["apt_lockdown_wait_timeout"] == \
        "{{ observability_apt_lock_timeout }}"


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_every_linux_play_gives_up_through_the_one_rescue_path(deploy, index):
    """Each Linux play (the lockdown, Loki, Grafana, Alloy) rescues its block with the common
    role's give_up.yml and nothing else: one rescue path, written once."""
    blocks = [t for t in deploy[index]["tasks"] if "rescue" in t]
    assert len(blocks) == 1
    rescue = blocks[0]["rescue"]
    assert len(rescue) == 2, "a play's rescue holds the import of the shared rescue path and end_host"
    step = rescue[0]["ansible.builtin.import_role"]
    assert step == {"name": NS + "common", "tasks_from": "give_up"}
    assert rescue[0]["vars"]["observability_failed_component"]
    # end_host must be the rescue's own task: ended from inside the imported file, ansible-core
    # counts the host as failed and drops it from the last play (fault scenario 2 saw it).
    assert rescue[1]["ansible.builtin.meta"] == "end_host"


def test_the_rescue_path_releases_records_and_ends_the_host():
    tasks = load_yaml("roles/common/tasks/give_up.yml")
    assert module_of(tasks[0]) == LOCKDOWN and tasks[0][LOCKDOWN]["state"] == "released"
    # The failure is recorded for the final play (which fails the host), not dropped.
    assert "observability_failed_step" in tasks[1]["ansible.builtin.set_fact"]
    assert len(tasks) == 2


def test_the_last_play_fails_the_recorded_hosts(deploy):
    final_fail = [t for t in play_tasks(deploy[-1]) if module_of(t) == "ansible.builtin.fail"]
    assert final_fail and "observability_failed_step is defined" in str(final_fail[0]["when"])


def test_loki_account_before_data_dirs_before_package(deploy):
    loki = play(deploy, "loki")
    order = names(loki)
    account = order.index("Ensure the loki group and system user exist")
    dirs = order.index("Ensure Loki data directories exist")
    package = order.index("Install the Loki package")
    assert account < dirs < package
    task = next(t for t in play_tasks(loki) if t.get("name") == order[account])
    assert module_of(task) == NS + "system_account"
    assert task[NS + "system_account"]["group"] == "{{ loki_group }}"
    dirs_task = next(t for t in play_tasks(loki) if t.get("name") == order[dirs])
    files = dirs_task[NS + "files"]["files"]
    # One task for every directory: the list is built from loki_data_dir and its subdirs.
    for needle in ("loki_data_dir", "loki_data_subdirs", "'state': 'directory'", "'owner': loki_user",
                   "'group': loki_group", "'mode': '0750'"):
        assert needle in files, needle


def test_loki_config_is_validated_and_restarts_loki(deploy):
    loki = play(deploy, "loki")
    task = next(t for t in play_tasks(loki) if t.get("name") == "Write the Loki configuration")
    [entry] = task[NS + "files"]["files"]
    assert entry["path"] == "{{ loki_config_path }}"
    assert entry["content"] == "{{ lookup('ansible.builtin.template', 'loki-config.yaml.j2') }}"
    assert entry["validate"] == "loki -verify-config -config.file=%s"
    assert (entry["owner"], entry["group"], entry["mode"]) == ("root", "{{ loki_group }}", "0640")
    # The restart is the units task's, when the package or this config changed.
    assert task["register"] == "loki_config_result"
    units = next(t for t in play_tasks(loki) if NS + "units" in t)
    [unit] = units[NS + "units"]["units"]
    assert unit["name"] == "loki" and unit["state"] == "started" and unit["enabled"] is True
    assert "loki_config_result is changed" in unit["restart"] and "loki_package_result is changed" in unit["restart"]
    _, variables = group_vars()
    assert variables["loki_config_path"] == "/etc/loki/config.yml"


def test_kernel_headers_before_alloy(deploy):
    order = names(play(deploy, "alloy_linux"))
    assert order.index("Install kernel headers for the running kernel") < order.index("Install Grafana Alloy")


def test_alloy_linux_ignores_unreachable_and_windows_uses_ansible_windows(deploy):
    assert play(deploy, "alloy_linux")["ignore_unreachable"] is True
    windows = play(deploy, "alloy_windows")
    # The role's dispatch (include_tasks by alloy_platform, a fail for an unknown one) and the
    # controller-side work (asserts, facts, the proxy's CA made on localhost) aside, every task
    # a Windows host runs is from ansible.windows.
    dispatch = {"ansible.builtin.import_role", "ansible.builtin.include_tasks", "ansible.builtin.fail",
                "ansible.builtin.assert", "ansible.builtin.set_fact"}
    modules = {module_of(t) for t in tasks_of(windows["tasks"])
               if t.get("delegate_to") != "localhost"} - dispatch
    assert modules and all(m.startswith("ansible.windows.") for m in modules), modules
    linux = {module_of(t) for t in tasks_of(play(deploy, "alloy_linux")["tasks"])}
    assert not any(m and m.startswith("ansible.windows.") for m in linux), linux


def test_unreachable_loki_or_grafana_host_fails_but_agent_is_reported(deploy):
    # The first contact is the guard's play (playbooks/upgrade-guard.yml, one host_facts run per
    # host for the ping and the installed versions); the lockdown play skips what it found.
    [guard] = load_yaml("playbooks/upgrade-guard.yml")
    assert guard["ignore_unreachable"] is True
    assert "max_fail_percentage" not in guard, "an unreachable Loki host must fail only itself"
    tasks = list(play_tasks(guard))
    first = next(t for t in tasks if NS + "host_facts" in t)
    assert first["register"] == "observability_ping_result"
    assert first[NS + "host_facts"]["architecture"] is True and "packages" in first[NS + "host_facts"]
    fail = next(t for t in tasks if module_of(t) == "ansible.builtin.fail")
    assert "'loki', 'grafana'" in str(fail["when"])
    report = next(t for t in tasks if module_of(t) == "ansible.builtin.debug")
    assert "UNREACHABLE" in report["ansible.builtin.debug"]["msg"]
    # The downgrade refusal stops every host: one run_once task, after the unreachable are skipped.
    refuse = [t for t in tasks if module_of(t) == "ansible.builtin.fail"][-1]
    assert refuse["run_once"] is True and "Refusing to downgrade" in refuse["ansible.builtin.fail"]["msg"]
    lockdown = deploy[0]
    assert lockdown["ignore_unreachable"] is True
    skip = list(play_tasks(lockdown))[0]
    assert module_of(skip) == "ansible.builtin.meta" and "observability_unreachable" in str(skip["when"])
    # No second round trip before the lockdown.
    assert not any(NS + "host_facts" in t for t in play_tasks(lockdown))


def test_every_apt_operation_goes_through_our_modules_with_the_lock_timeout(deploy):
    _, variables = group_vars()
    assert variables["observability_apt_lock_timeout"] == 600
    seen = 0
    for play_ in deploy:
        for task in play_tasks(play_):
            module = module_of(task)
            assert module not in FORBIDDEN_APT, f"{task.get('name')}: apt via {module}"
            if module in APT_MODULES:
                seen += 1
                assert task[module]["lock_timeout"] == "{{ observability_apt_lock_timeout }}", task.get("name")
    assert seen >= 4


def test_versions_are_pinned(deploy):
    _, variables = group_vars()
    assert variables["loki_package"] == "loki={{ loki_version }}"
    assert variables["grafana_package"] == "grafana={{ grafana_version }}"
    assert variables["alloy_package"] == "alloy={{ alloy_version }}"
    versions = load_yaml("roles/common/defaults/main/versions.yml")
    for key in ("loki_version", "grafana_version", "alloy_version"):
        assert re.fullmatch(r"\d+\.\d+\.\d+", versions[key])


def test_grafana_repository_skipped_for_the_lab():
    for task in load_yaml("roles/common/tasks/grafana_apt_repository.yml"):
        if module_of(task) != "ansible.builtin.meta":
            when = task["when"] if isinstance(task["when"], list) else [task["when"]]
            assert "observability_use_grafana_repo | bool" in when, task["name"]


def test_the_deploy_has_no_playbook_group_vars():
    """Playbook group_vars outrank an inventory's `all: vars` and its group vars: a default
    there would silently win over the user's setting. Defaults live in roles/*/defaults."""
    for name in ("group_vars", "host_vars"):
        assert not os.path.exists(os.path.join(REPO, "playbooks", name))


@pytest.mark.parametrize("source, expected", [(None, True), ("grafana", True), ("lab", False)])
def test_package_source_switch(source, expected):
    from ansible.template import Templar

    loader, variables = group_vars()
    if source is not None:
        variables["observability_package_source"] = source
    templar = Templar(loader=loader, variables=variables)
    assert templar.template(variables["observability_use_grafana_repo"]) is expected


@pytest.mark.parametrize("path", [DEPLOY, VERIFY])
def test_tasks_touching_secrets_are_no_log_and_no_diff(path):
    for play_ in load_yaml(path):
        for task in play_tasks(play_):
            if "block" in task:
                continue
            text = yaml.safe_dump(task)
            if any(secret in text for secret in SECRETS):
                assert task.get("no_log") is True, f"{task.get('name')} touches a secret without no_log"
                module = module_of(task)
                assert module != "ansible.builtin.debug", f"{task.get('name')} debugs a secret"
                if module in ("ansible.builtin.template", "community.general.ini_file",
                              "ansible.builtin.copy", "ansible.builtin.lineinfile"):
                    assert task.get("diff") is False, f"{task.get('name')} would diff a secret"


# Files that hold a secret once a deploy has run. A task writing any part of one must not
# diff it: ini_file and friends send the whole file back as the diff, secret included, even
# when the task itself sets something harmless (found by make itest-faults, scenario 11).
SECRET_FILES = ("{{ grafana_ini_path }}", "{{ grafana_datasources_dir }}/loki.yaml")


@pytest.mark.parametrize("path", [DEPLOY, VERIFY])
def test_tasks_writing_a_file_that_holds_secrets_never_diff(path):
    for play_ in load_yaml(path):
        for task in play_tasks(play_):
            module = module_of(task)
            args = task.get(module or "")
            # safe_grep and stat only read, and return no content to diff.
            if module in ("safe_grep", NS + "safe_grep", "ansible.builtin.stat") or not isinstance(args, dict):
                continue
            targets = [args.get("path") or args.get("dest")]
            if module == NS + "files":
                # Our files module writes many paths per task. It hides a secret entry's
                # content in its diff itself, but the house rule stands: no diff of such a task.
                entries = args.get("files")
                if not isinstance(entries, list):
                    # A list built by Jinja: it must not name a secret file at all.
                    for secret_file in SECRET_FILES:
                        assert secret_file.strip("{} ").split()[0] not in str(entries), task.get("name")
                    continue
                targets = [e.get("path") for e in entries]
            for target in targets:
                if target in SECRET_FILES:
                    assert task.get("diff") is False, f"{task.get('name')} would diff {target}"


def test_secret_bearing_files_are_written_no_log_and_root_grafana_0640(deploy):
    grafana = play(deploy, "grafana")
    task = next(t for t in play_tasks(grafana)
                if t.get("name") == "Provision the Loki datasource and set the admin account in grafana.ini")
    directory, datasource, ini = task[NS + "files"]["files"]
    assert directory["path"] == "{{ grafana_datasources_dir }}" and directory["state"] == "directory"
    assert datasource["content"] == "{{ lookup('ansible.builtin.template', 'grafana-datasource-loki.yaml.j2') }}"
    assert datasource["path"] == "{{ grafana_datasources_dir }}/loki.yaml"
    assert (datasource["owner"], datasource["group"], datasource["mode"]) == ("root", "{{ grafana_group }}", "0640")
    assert datasource["secret"] is True
    # The admin account in grafana.ini, set in the packaged file (no Python module on the host).
    assert ini["path"] == "{{ grafana_ini_path }}" and "content" not in ini
    # As text: a password of digits (or 1234.5) from YAML must not reach the module as a number.
    # In go-ini's backquote form: `#`, `;`, quotes and edge spaces reach Grafana as written
    # (tests/test_real_parsers.py reads it back with the real go-ini).
    assert ini["ini"] == {"security": {"admin_user": "{{ '`' ~ (grafana_admin_user | string) ~ '`' }}",
                                       "admin_password": "{{ '`' ~ (grafana_admin_password | string) ~ '`' }}"}}
    assert (ini["owner"], ini["group"], ini["mode"], ini["secret"]) == ("root", "{{ grafana_group }}", "0640", True)
    assert task["no_log"] is True and task["diff"] is False
    # The restart follows every result that can change Grafana's configuration.
    units = next(t for t in play_tasks(grafana) if NS + "units" in t)
    restart = units[NS + "units"]["units"][0]["restart"]
    assert task["register"] in restart and "grafana_package_result" in restart


def test_no_secret_defaults_in_group_vars():
    _, variables = group_vars()
    for secret in SECRETS:
        assert secret not in variables


def test_verify_tasks_are_named_with_their_check(verify):
    check_plays = [p for p in verify if p["hosts"] != "localhost"]
    for play_ in check_plays:
        for task in tasks_of(play_.get("tasks")):
            if "ansible.builtin.import_role" in task:
                continue  # the verify role's check groups (inlined here) or other roles' defaults
            assert re.match(r"^[A-F][0-9](-[A-F][0-9])? ", task["name"]), task["name"]
    summary = play(verify, "localhost")
    assert all(t["name"].startswith("Summary ") for t in tasks_of(summary["tasks"])
               if "ansible.builtin.import_role" not in t)


def test_verify_is_a_thin_playbook_over_the_verify_role(verify):
    """Every check lives in the verify role, one task file per check group; the playbook only
    loads defaults and imports those files, per host group."""
    groups = {}
    for play_ in verify:
        for task in play_.get("tasks", []):
            role = task.get("ansible.builtin.import_role")
            assert role, f"{play_['name']}: task {task.get('name')!r} is not a role import"
            if role["name"] == NS + "verify" and role["tasks_from"] != "validate":
                groups[role["tasks_from"]] = play_["hosts"]
    assert groups == {"accounts": "loki", "loki": "loki", "grafana": "grafana", "agents": "alloy_linux",
                      "log_flow": "alloy_linux", "access": "alloy_linux", "summary": "localhost"}
    for name in groups:
        ids = {re.match(r"^([A-F])[0-9]", t["name"]).group(1) for t in tasks_of(
            load_yaml(os.path.join(role_dir(NS + "verify"), "tasks", name + ".yml")))
               if re.match(r"^[A-F][0-9]", t["name"])}
        # One check group per file (loki.yml also records A with B: one fact for the Loki host).
        assert len(ids - {"A"} if name == "loki" else ids) <= 1, (name, ids)


def test_verify_implements_exactly_the_spec(verify):
    with open(os.path.join(REPO, "docs/verification-spec.md"), encoding="utf-8") as f:
        spec = set(re.findall(r"^\| ([A-F][0-9]) \|", f.read(), flags=re.M))
    implemented = set()
    for play_ in verify:
        for task in play_tasks(play_):
            implemented.update(re.findall(r"\b([A-F][0-9])\b", task.get("name", "").split(" ", 1)[0]))
            ids = re.match(r"^([A-F])([0-9])-([A-F])([0-9]) ", task.get("name", ""))
            if ids and ids[1] == ids[3]:
                # A range within one group names every check in it (F2-F4: F2, F3, F4).
                implemented.update(f"{ids[1]}{n}" for n in range(int(ids[2]), int(ids[4]) + 1))
            elif ids:
                implemented.update((ids[1] + ids[2], ids[3] + ids[4]))
    assert spec == {"A1", "A2", "A3", "B1", "B2", "B3", "B4", "B5", "C1", "C2", "C3", "D1", "D2", "D3", "D4",
                    "E1", "E2", "E3", "F1", "F2", "F3", "F4"}
    assert implemented == spec


def test_verify_never_reads_the_datasource_file(verify):
    for play_ in verify:
        for task in play_tasks(play_):
            module = module_of(task)
            assert module not in ("ansible.builtin.slurp", "ansible.builtin.fetch", "ansible.builtin.raw",
                                  "ansible.builtin.shell", "ansible.builtin.command") or \
                "loki.yaml" not in yaml.safe_dump(task), task["name"]
            if " cat " in f" {yaml.safe_dump(task)} ":
                # Only B4 reads a file: the Loki config, which holds no secret (raw: no Python).
                assert task.get("ansible.builtin.raw") == "cat -- {{ loki_config_path | quote }}", task["name"]
    c1 = next(t for p in verify for t in play_tasks(p) if t.get("name", "").startswith("C1 "))
    assert module_of(c1) in ("safe_grep", NS + "safe_grep")
    # C2 stats the file without reading it: host_facts' paths never checksum or open a file.
    c2 = next(t for p in verify for t in play_tasks(p) if t.get("name", "").startswith("C2 "))
    assert module_of(c2) == NS + "host_facts" and set(c2[NS + "host_facts"]) == {"paths"}


def test_verify_loads_the_role_defaults_at_role_precedence(verify):
    """Each check play imports the roles whose settings it reads (ports, paths, names) with an
    empty task file: their defaults at role-defaults precedence, so an inventory's all:, group
    and host vars override them in the verify as in the deploy. No playbook group_vars."""
    assert not os.path.exists(os.path.join(REPO, "playbooks/tests/group_vars"))
    wanted = {"loki": {"loki"}, "grafana": {"grafana"}, "alloy_linux": {"alloy", "grafana", "loki"}}
    for play_ in verify:
        if play_["hosts"] == "localhost":
            continue
        imports = [t["ansible.builtin.import_role"] for t in play_.get("tasks", [])
                   if "ansible.builtin.import_role" in t]
        # The other roles' defaults first (empty task files), then the verify role's checks.
        others = [i for i in imports if i["name"] != NS + "verify"]
        assert {i["name"].split(".")[-1] for i in others} == wanted[play_["hosts"]], play_["name"]
        assert all(i["tasks_from"] == "defaults_only" for i in others)
        assert imports[:len(others)] == others, play_["name"]
    for role in ("loki", "grafana", "alloy"):
        assert load_yaml(f"roles/{role}/tasks/defaults_only.yml") == []


OUR_MODULES = None


def all_task_files():
    files = glob.glob(os.path.join(REPO, "roles/*/tasks/*.yml")) + glob.glob(os.path.join(REPO, "roles/*/handlers/*.yml"))
    files += [os.path.join(REPO, p) for p in (DEPLOY, VERIFY, "playbooks/preflight.yml")]
    return sorted(files)


def walk_tasks(node):
    for item in node or []:
        if not isinstance(item, dict):
            continue
        yield item
        for key in ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always"):
            yield from walk_tasks(item.get(key))


@pytest.mark.parametrize("path", all_task_files(), ids=lambda p: os.path.relpath(p, REPO))
def test_our_modules_and_roles_are_called_by_fqcn(path):
    """The playbooks and roles run from the installed collection: a bare module name would only
    resolve through a `library` path, which ansible.cfg keeps for the bench and faults alone."""
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    for task in walk_tasks(data):
        bare = set(task) & set(module_names())
        assert not bare, f"{os.path.relpath(path, REPO)}: task {task.get('name')!r} calls {bare} without {NS}"
        for key in ("ansible.builtin.import_role", "ansible.builtin.include_role"):
            if key in task:
                assert task[key]["name"].startswith(NS), task.get("name")


# What runs on the controller whatever the play's hosts: no module reaches a host.
CONTROLLER_ONLY = {"ansible.builtin.set_fact", "ansible.builtin.debug", "ansible.builtin.meta",
                   "ansible.builtin.assert", "ansible.builtin.fail", "ansible.builtin.import_role"}


def test_verify_needs_no_python_on_the_hosts(verify):
    """Issue 23: every host may be python-free. On a host only our binary modules and raw run;
    anything else (uri, copy, tempfile, command) is delegated to the controller, and nothing uses
    a Python-backed action on a host (fetch and slurp)."""
    on_hosts = set()
    for play_ in verify:
        if play_["hosts"] == "localhost":
            continue
        for task in tasks_of(play_.get("tasks")):
            module = module_of(task)
            if module is None or module in CONTROLLER_ONLY or task.get("delegate_to") == "localhost":
                continue
            assert module.startswith(NS) or module == "ansible.builtin.raw", \
                f"{task['name']}: {module} needs Python on the host; use one of our modules, raw, or the controller"
            on_hosts.add(task["name"].split(" ", 1)[0])
    # The LAN-facing TLS proxy is asked from the controller; loopback-only ports on the hosts.
    for check in ("E1", "E3", "F2-F4"):
        proxy_tasks = [t for p in verify for t in tasks_of(p.get("tasks"))
                       if t["name"].startswith(check + " ") and module_of(t) == "ansible.builtin.uri"]
        assert proxy_tasks and all(t.get("delegate_to") == "localhost" for t in proxy_tasks), check
        assert all("observability_tls_ca_file" in t["ansible.builtin.uri"]["ca_path"] for t in proxy_tasks)
    assert {"B1", "B3", "B5", "C3", "E2"} <= on_hosts


def test_verify_agents_ignore_unreachable(verify):
    assert play(verify, "alloy_linux")["ignore_unreachable"] is True
