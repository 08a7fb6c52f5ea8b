"""homeops_dev/labdriver/, the driver itest, itest-upgrade, the fault suite and the bench share: the
PLAY RECAP parser and the checks built on it, the secrets scan, the SSH command lines (root and
sudo users), the exit path of a run and the detection of other runs. No lab."""
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from pathlib import Path

from conftest import REPO

from homeops_dev import labdriver

RECAP = """\
TASK [Install Grafana Alloy] ****************************************************
changed: [srv-01] => {{"changed": true}}

PLAY RECAP *********************************************************************
localhost                  : ok=3    changed={local}    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
obs-01                     : ok=18   changed=0    unreachable=0    failed=0    skipped=10   rescued=0    ignored=0
srv-01                     : ok=10   changed={srv}    unreachable=0    failed=1    skipped=7    rescued=1    ignored=0
ws-01-linux                : ok=3    changed=0    unreachable=1    failed=0    skipped=3    rescued=0    ignored=1
"""


def play(srv=0, local=0, name="deploy", before=""):
    return labdriver.Play(0, before + RECAP.format(srv=srv, local=local), 1.0, name)


def test_recap_is_read_per_host_with_every_counter():
    p = play(srv=12)
    assert p.recap["srv-01"] == {"ok": 10, "changed": 12, "unreachable": 0, "failed": 1, "skipped": 7,
                                 "rescued": 1, "ignored": 0}
    assert p.recap["ws-01-linux"]["unreachable"] == 1 and p.recap["ws-01-linux"]["ignored"] == 1
    # localhost runs the preflight and summary plays: not a managed host.
    assert p.hosts() == ["obs-01", "srv-01", "ws-01-linux"] and p.localhost["ok"] == 3
    assert p.clean(["obs-01"]) and not p.clean() and not p.clean(["nobody"])


def test_lines_before_the_recap_are_not_hosts():
    p = play(before="obs-99 : ok=1 changed=5 unreachable=0 failed=0\n")
    assert "obs-99" not in p.recap and p.changed() == {}


def test_output_without_a_recap_has_none():
    p = labdriver.Play(2, "ERROR! the playbook could not be found\n", 0.1, "x")
    assert not p.has_recap and p.recap == {} and p.hosts() == []
    with pytest.raises(labdriver.CheckFailed, match="no PLAY RECAP in the second deploy"):
        labdriver.check_no_change("itest", p, "the second deploy")


def test_changed_hosts_and_tasks_break_idempotence():
    assert labdriver.check_no_change("itest", play(), "the second deploy") == "    idempotent: changed=0 on every host"
    with pytest.raises(labdriver.CheckFailed) as e:
        labdriver.check_no_change("itest", play(srv=12), "the second deploy")
    assert str(e.value).splitlines() == [
        "itest: NOT IDEMPOTENT: the second deploy changed something:",
        "    srv-01 changed=12",
        "    the changed tasks:",
        "    changed: [srv-01]",
    ]
    # A change on localhost counts too: a second run changes nothing anywhere.
    assert play(local=1).changed() == {"localhost": 1}


def test_the_run_must_report_on_the_hosts_it_started_with():
    ok = labdriver.check_same_hosts("itest", play(), ["ws-01-linux", "obs-01", "srv-01"])
    assert ok == "    deploy reported on the 3 host(s) the run started with"
    with pytest.raises(labdriver.CheckFailed) as e:
        labdriver.check_same_hosts("itest", play(), ["obs-01", "srv-01"])
    assert str(e.value).splitlines() == [
        "itest: the deploy run reported on other hosts than the run started with:",
        "    started with: obs-01 srv-01",
        "    deploy reported: obs-01 srv-01 ws-01-linux",
    ]
    empty = labdriver.Play(0, "PLAY [Deploy Loki]\nskipping: no hosts matched\n\nPLAY RECAP ****\n", 1, "verify")
    with pytest.raises(labdriver.CheckFailed, match="verify reported: nothing"):
        labdriver.check_same_hosts("itest", empty, ["obs-01"])


INVENTORY = {"all": {
    "vars": {"grafana_admin_password": "hoplab-grafana-aaaaaaaa", "loki_datasource_password": "hoplab-loki-bbbbbbbb",
             "grafana_admin_user": "admin", "short": "x"},
    "hosts": {"ws-01-linux": {"ansible_host": "10.9.9.2", "ansible_user": "pi",
                              "ansible_become_password": "hoplab-become-cccccccc"},
              "tiny": {"ansible_become_password": "abc"}}}}


def test_secrets_are_found_by_name_at_any_depth():
    assert labdriver.secrets_of(INVENTORY) == ["hoplab-become-cccccccc", "hoplab-grafana-aaaaaaaa",
                                               "hoplab-loki-bbbbbbbb"]
    assert labdriver.secrets_of([{"x": [INVENTORY]}]) == labdriver.secrets_of(INVENTORY)


def test_the_scan_names_every_file_holding_a_secret(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "clean.out").write_text("password: ********\n")
    (tmp_path / "d" / "leak.log").write_bytes(b"\x00 diff: +hoplab-loki-bbbbbbbb\n")
    (tmp_path / "become.out").write_text("BECOME password hoplab-become-cccccccc")
    files = labdriver.files_under([tmp_path, tmp_path / "missing.log"])
    assert len(files) == 3
    hits = labdriver.files_with(labdriver.secrets_of(INVENTORY), files)
    assert sorted(p.name for p in hits) == ["become.out", "leak.log"]


def test_the_scan_names_files_holding_a_password_hash_or_a_private_key(tmp_path):
    import subprocess
    hashed = subprocess.run(["openssl", "passwd", "-6", "-salt", "0123456789abcdef", "-stdin"], input="x\n",
                            capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / "hash.log").write_text(f"users.htpasswd: alloy:{hashed}\n")
    (tmp_path / "key.log").write_text("-----BEGIN PRIVATE KEY-----\nMIGH\n")
    (tmp_path / "ec.log").write_text("-----BEGIN EC PRIVATE KEY-----\n")
    (tmp_path / "cert.log").write_text("-----BEGIN CERTIFICATE-----\n$6$short$notahash\n")
    hits = labdriver.files_with([], labdriver.files_under([tmp_path]))
    assert sorted(p.name for p in hits) == ["ec.log", "hash.log", "key.log"]


def test_inventory_secrets_reads_the_inventory_as_ansible_does(tmp_path):
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump(INVENTORY))
    assert labdriver.inventory_secrets(inv) == labdriver.secrets_of(INVENTORY)


HV = {"ansible_host": "10.9.9.1", "ansible_ssh_private_key_file": "/k/id_ed25519",
      "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o ConnectTimeout=5"}


def test_ssh_as_root_runs_the_script_directly():
    cmd, data = labdriver.ssh_command(dict(HV, ansible_user="root"), "echo 'a b'", b"in")
    assert cmd[0] == "ssh" and ["-i", "/k/id_ed25519"] == cmd[cmd.index("-i"):cmd.index("-i") + 2]
    assert "StrictHostKeyChecking=no" in cmd and cmd[-2] == "root@10.9.9.1"
    assert cmd[-1] == "/bin/sh -c 'echo '\"'\"'a b'\"'\"''" and data == b"in"


def test_ssh_as_a_sudo_user_goes_through_sudo_without_a_password():
    cmd, data = labdriver.ssh_command(dict(HV, ansible_user="admin"), "id -u")
    assert cmd[-2] == "admin@10.9.9.1" and cmd[-1] == "sudo -n -- /bin/sh -c 'id -u'" and data == b""


def test_ssh_with_a_become_password_gives_it_on_stdin_never_in_argv():
    hv = dict(HV, ansible_user="pi", ansible_become_password="hoplab-become-secret")
    cmd, data = labdriver.ssh_command(hv, "cat", b"payload\n")
    assert cmd[-2] == "pi@10.9.9.1" and cmd[-1] == "sudo -k -S -p '' -- /bin/sh -c cat"
    assert not any("hoplab-become-secret" in c for c in cmd)
    assert data == b"hoplab-become-secret\npayload\n"


FAKE_SUDO = """\
#!/bin/bash
# sudo as the lab's hosts run it, for the remote command line: -S reads the password line.
while [[ $1 == -* && $1 != -- ]]; do
    case $1 in
        -S) IFS= read -r pw; [[ $pw == "$EXPECT_PW" ]] || { echo "sudo: wrong password" >&2; exit 1; } ;;
        -p) shift ;;
    esac
    shift
done
shift
exec "$@"
"""


@pytest.mark.parametrize("user", ["root", "admin", "pi"])
def test_the_remote_command_line_runs_and_the_script_sees_only_its_input(tmp_path, user):
    """The remote half of each command line, run by a local shell with a stand-in sudo: the
    script gets its input, and never the password line."""
    sudo = tmp_path / "sudo"
    sudo.write_text(FAKE_SUDO)
    sudo.chmod(sudo.stat().st_mode | stat.S_IEXEC)
    hv = dict(HV, ansible_user=user)
    if user == "pi":
        hv["ansible_become_password"] = "hoplab-become-pw"
    cmd, data = labdriver.ssh_command(hv, "cat; echo done", b"line one\nline two\n")
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}", EXPECT_PW="hoplab-become-pw")
    p = subprocess.run(["/bin/sh", "-c", cmd[-1]], input=data, capture_output=True, env=env, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"line one\nline two\ndone\n"


STEPS = """\
import os, signal, sys, time
from homeops_dev import labdriver

class FakeLab:
    echo = False
    started = False
    def down(self):
        print("FAKE LAB DOWN", flush=True)
    def keep(self, why):
        print(f"FAKE LAB KEEP: {{why}}", flush=True)

lab = FakeLab()
steps = labdriver.Steps("itest", "docs/runbook.md", labdriver.Path({log!r}), lab)

def body():
    steps.step("lab up: make lab-up")
    lab.started = True
    steps.step("deploy: the thing")
    how = sys.argv[1]
    if how == "fail":
        steps.fail("NOT IDEMPOTENT: x")
    if how == "term":
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
    if how == "bug":
        {{}}["missing"]

sys.exit(steps.run(body))
"""


@pytest.mark.parametrize("how,rc,said", [
    ("ok", 0, None), ("fail", 1, "itest: NOT IDEMPOTENT: x"), ("term", 143, None), ("bug", 1, "KeyError"),
])
def test_every_ending_tears_the_lab_down_and_names_the_step(tmp_path, how, rc, said):
    script = tmp_path / "run.py"
    script.write_text(STEPS.format(log=str(tmp_path / "logs")))
    p = subprocess.run([sys.executable, str(script), how], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=REPO))
    assert p.returncode == rc, p.stdout + p.stderr
    assert "==> itest [   0s] lab down: make lab-down\nFAKE LAB DOWN\n" in p.stdout
    if rc == 0:
        assert "==> itest PASSED in 0 s (logs: " in p.stdout
    else:
        assert f"==> itest FAILED at step 'deploy: the thing' (exit {rc}) after 0 s" in p.stderr
        assert "    where to look: docs/runbook.md" in p.stderr
    if said:
        assert said in p.stderr


@pytest.mark.parametrize("env,how,kept", [
    ({"LAB_KEEP": "1"}, "fail", "LAB_KEEP=1 make itest"),
    ({"LAB_KEEP": "1"}, "ok", "LAB_KEEP=1 make itest"),
    ({"LAB_KEEP_ON_FAILURE": "1"}, "fail", "LAB_KEEP_ON_FAILURE=1 make itest"),
    ({"LAB_KEEP_ON_FAILURE": "1"}, "ok", None),
])
def test_a_kept_lab_stays_up_and_is_marked_kept(tmp_path, env, how, kept):
    """LAB_KEEP=1 (and LAB_KEEP_ON_FAILURE=1 on a failed run) leave the lab up and mark it kept
    (`lab/lab keep`), so the janitor of a later `lab up` does not reap it once this run is gone."""
    script = tmp_path / "run.py"
    script.write_text(STEPS.format(log=str(tmp_path / "logs")))
    base = {k: v for k, v in os.environ.items() if k not in ("LAB_KEEP", "LAB_KEEP_ON_FAILURE", "LAB_ID")}
    p = subprocess.run([sys.executable, str(script), how], capture_output=True, text=True, timeout=60,
                       env=dict(base, PYTHONPATH=REPO, **env))
    assert p.returncode == (1 if how == "fail" else 0), p.stdout + p.stderr
    if kept:
        assert "FAKE LAB DOWN" not in p.stdout
        assert f"FAKE LAB KEEP: {kept}\n" in p.stdout
        assert (f"itest: {kept.split()[0]}: the lab stays up, kept until you end it "
                "(make lab-status; make lab-down when done)") in p.stdout
    else:
        assert "FAKE LAB DOWN" in p.stdout and "FAKE LAB KEEP" not in p.stdout


def test_a_kept_lab_of_another_lab_id_names_it_in_the_commands(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(STEPS.format(log=str(tmp_path / "logs")))
    p = subprocess.run([sys.executable, str(script), "ok"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=REPO, LAB_KEEP="1", LAB_ID="hid"))
    assert "(LAB_ID=hid make lab-status; LAB_ID=hid make lab-down when done)" in p.stdout, p.stdout


def test_the_inventory_path_is_the_labs_own_for_every_lab_id():
    """The driver asks lab/lab for the inventory (one rule): .lab/inventory.yml for the clone's
    own lab, .lab/inventory-<id>.yml for another LAB_ID (the crash of issue 24: LAB_ID=hid
    make itest read .lab/inventory.yml)."""
    base = {k: v for k, v in os.environ.items() if k != "LAB_ID"}
    own_id, own_state, own_inv = labdriver.lab_id(base)
    assert own_inv == Path(REPO) / ".lab" / "inventory.yml"
    assert own_state == Path("/run/homeops-labs") / own_id
    hid_id, hid_state, hid_inv = labdriver.lab_id(dict(base, LAB_ID="hid"))
    assert (hid_id, hid_state, hid_inv) == ("hid", Path("/run/homeops-labs/hid"), Path(REPO) / ".lab" / "inventory-hid.yml")
    # The default id given explicitly is still the clone's own lab.
    assert labdriver.lab_id(dict(base, LAB_ID=own_id))[2] == own_inv
    with pytest.raises(labdriver.LabError, match="LAB_ID='Bad-1'"):
        labdriver.lab_id(dict(base, LAB_ID="Bad-1"))


def test_the_driver_reads_the_inventory_of_its_lab_id(tmp_path, monkeypatch):
    """Lab.inventory() (hosts, secrets, SSH of every runner) reads the file of its LAB_ID."""
    monkeypatch.setenv("LAB_ID", "zq9")
    labdriver._LAB_IDS.pop("zq9", None)
    assert labdriver.LAB_INVENTORY == Path(REPO) / ".lab" / "inventory-zq9.yml"
    inv = Path(REPO) / ".lab" / "inventory-zq9.yml"
    monkeypatch.setitem(labdriver._LAB_IDS, "zq9", ("zq9", Path("/run/homeops-labs/zq9"), tmp_path / "inv.yml"))
    (tmp_path / "inv.yml").write_text("all:\n  hosts:\n    obs-01: {ansible_host: 10.9.9.11}\n")
    lab = labdriver.Lab()
    assert lab.inventory_path() == tmp_path / "inv.yml" != inv
    assert lab.address("obs-01") == "10.9.9.11"


def test_quiet_runs_show_progress_lines_without_payloads(tmp_path, capsys):
    progress = labdriver.re.compile(r"^(TASK|changed:|\S+ +: ok=)")
    out = tmp_path / "x.out"
    text = "TASK [Write it] ******\nchanged: [obs-01] => {\"secret\": 1}\n<obs-01> SSH: EXEC ssh\n"
    r = labdriver.execute(["printf", "%s", text], out=out, echo=progress)
    assert r.returncode == 0 and out.read_text() == text == r.text
    assert capsys.readouterr().out == "TASK [Write it]\nchanged: [obs-01]\n"


def test_on_line_kills_the_run_where_it_says(tmp_path):
    t0 = time.monotonic()
    r = labdriver.execute(["sh", "-c", "echo one; echo PLAY two; sleep 30; echo three"], out=tmp_path / "x.out",
                          on_line=lambda line: line.startswith("PLAY"))
    assert time.monotonic() - t0 < 10 and r.returncode == -signal.SIGKILL
    assert r.text == "one\nPLAY two\n"


def detached(name, cwd):
    """A process named name working in cwd that is not our descendant (its shell exits at once,
    so it is reparented); its PID."""
    return subprocess.run(["bash", "-c", f"exec -a {name} sleep 30 </dev/null >/dev/null 2>&1 & echo $!"], cwd=cwd,
                          capture_output=True, text=True, timeout=10).stdout.strip()


def test_another_run_in_this_clone_is_seen_and_our_own_children_are_not():
    # Ours: a child named like a playbook run. Another's: the same, reparented away from us.
    ours = subprocess.Popen(["bash", "-c", "exec -a ansible-playbook-ours sleep 30"], cwd=REPO)
    other = detached("ansible-playbook-other", REPO)
    try:
        time.sleep(0.3)
        seen = labdriver.others_using(clone_only=True)
        assert any(x.startswith(f"{other}: ansible-playbook-other") for x in seen), seen
        assert not any("ansible-playbook-ours" in x for x in seen), seen
        elsewhere = detached("ansible-playbook-far", "/")
        try:
            time.sleep(0.3)
            assert not any("ansible-playbook-far" in x for x in labdriver.others_using(clone_only=True))
            assert any("ansible-playbook-far" in x for x in labdriver.others_using(clone_only=False))
        finally:
            os.kill(int(elsewhere), signal.SIGTERM)
    finally:
        os.kill(int(other), signal.SIGTERM)
        ours.kill()
        ours.wait()


def test_lab_state_file_values_are_unquoted(tmp_path):
    env = tmp_path / "lab.env"
    env.write_text(textwrap.dedent("""\
        ID=ab12
        OWNER=/work/some\\ clone
        STARTED=2025-01-02T03:04:05Z
        not a pair
        """))
    assert labdriver.read_state(env) == {"ID": "ab12", "OWNER": "/work/some clone", "STARTED": "2025-01-02T03:04:05Z"}
    assert labdriver.read_state(tmp_path / "none") is None


def test_the_scan_finds_a_secret_with_quotes_escaped_as_logs_show_it(tmp_path):
    """The lab's secrets hold # ; $ quotes backquotes backslashes spaces (lab/lib/inventory.sh): a
    -vvv result shows them JSON-escaped, a Python traceback repr-escaped, YAML doubles a quote."""
    secret = "hoplab-grafana-e5vJId0N#kSwW;JIlq$7CL4 idIq\"NU1S'hOjt`fKqg\\lVjm"
    forms = {"raw": secret, "json": json.dumps({"v": secret}), "repr": repr({"v": secret}),
             "yaml": yaml.safe_dump({"v": secret}), "fragment": "...hoplab-grafana-e5vJId0N#k (cut)"}
    for name, text in forms.items():
        (tmp_path / f"{name}.log").write_text(text)
    (tmp_path / "clean.log").write_text("hoplab-grafana-e5vJ kSwW JIlq")
    hits = labdriver.files_with([secret], labdriver.files_under([tmp_path]))
    assert sorted(p.name for p in hits) == sorted(f"{n}.log" for n in forms)
    # A secret without a distinctive run is looked for in its escaped forms only.
    assert labdriver.secret_needles('a"b#c;d$e') == sorted([b'a"b#c;d$e', b'a\\"b#c;d$e'])


@pytest.mark.parametrize("cmd", [
    ".venv/bin/python -m homeops_dev.itest", ".venv/bin/python -m homeops_dev.itest_upgrade",
    ".venv/bin/python -m homeops_dev.faults 1 storm", ".venv/bin/python -m homeops_dev.bench",
    "python3 scripts/itest.py", "python3 bench/bench.py", "python3 tests/faults/faults.py",
])
def test_the_runners_are_seen_as_lab_runs_by_module_and_by_former_path(cmd):
    """others_using() spots our runners by command line: `python -m homeops_dev.<runner>`, and the
    former script paths an older clone on the machine may still run."""
    assert labdriver.RUN_PATTERN.search(cmd)
    assert not labdriver.RUN_PATTERN.search(".venv/bin/python -m homeops_dev.modules --table")
