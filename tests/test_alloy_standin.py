"""The lab's Alloy stand-in (LAB STAND-IN) runs the rendered config as Alloy would: it refuses
unknown names, tails the journal from max_age ago or its stored cursor, relabels, tails files,
and pushes JSON with the configured auth, retrying. Run on 127.0.0.1 with temp dirs; the
journal is a fake journalctl (ALLOY_LAB_JOURNALCTL) fed from a file."""
import base64
import http.server
import json
import os
import re
import signal
import socket
import ssl
import string
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from conftest import REPO, group_vars, render

import atexit
import functools
import shutil
import tempfile


@functools.lru_cache(maxsize=None)
def alloy_binary():
    """The stand-in as its package installs it: lab/packages/alloy/usr plus the component
    reference of the pinned version from upstream/alloy/ (lab/lib/packages.sh ships it the same
    way; the package tree itself keeps no second copy)."""
    version = group_vars()[1]["alloy_version"]
    root = tempfile.mkdtemp(prefix="alloy-standin-")
    atexit.register(shutil.rmtree, root, True)
    shutil.copytree(os.path.join(REPO, "lab/packages/alloy/usr"), os.path.join(root, "usr"))
    ref_dir = os.path.join(root, "usr/share/alloy-lab/reference")
    os.makedirs(ref_dir, exist_ok=True)
    shutil.copy(os.path.join(REPO, "upstream/alloy", version + ".json"), os.path.join(ref_dir, version + ".json"))
    return os.path.join(root, "usr/bin/alloy")

FAKE_JOURNALCTL = r'''#!/usr/bin/env python3
"""Fake journalctl: records its arguments, prints the feed's entries after --after-cursor
(from --cursor: that entry too; or from --since) and exits; with --follow it then follows the feed. As systemd 252's
journalctl, --follow without --merge or --boot implies --boot: only entries of the current boot
(FJ_BOOT; an entry without _BOOT_ID is of it) are shown, and an --after-cursor whose entry is
not of that boot skips the first entry that is too (systemd#30288, fixed in 255)."""
import json, os, sys, time
args = sys.argv[1:]
with open(os.environ["FJ_ARGS"], "a") as f:
    f.write(json.dumps(args) + "\n")
after = next((a.split("=", 1)[1] for a in args if a.startswith("--after-cursor=")), None)
at = next((a.split("=", 1)[1] for a in args if a.startswith("--cursor=")), None)
since = next((float(a.split("=@", 1)[1]) for a in args if a.startswith("--since=@")), None)
follow = "--follow" in args
this_boot = follow and "--merge" not in args and not any(a.startswith(("--boot", "-b")) for a in args)
boot = os.environ.get("FJ_BOOT", "")
seen, skipping, extra_skip = 0, after is not None or at is not None, 0
while True:
    with open(os.environ["FJ_FEED"]) as f:
        lines = f.read().splitlines()
    for line in lines[seen:]:
        e = json.loads(line)
        shown = not this_boot or e.get("_BOOT_ID", boot) == boot
        if skipping:
            skipping = e["__CURSOR"] != (after or at)
            if not skipping and not shown:
                extra_skip = 1
            if skipping or after is not None:
                continue
        if not shown or (since is not None and int(e["__REALTIME_TIMESTAMP"]) / 1e6 < since):
            continue
        if extra_skip:
            extra_skip = 0
            continue
        print(line, flush=True)
    seen = len(lines)
    if not follow:
        break
    time.sleep(0.1)
'''


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class FakeLoki:
    """Accepts pushes (optionally only with the right basic auth); can fail the first N."""

    def __init__(self, user=None, password=None, fail_first=0, tls=None):
        self.pushes, self.auth_seen, self.statuses = [], [], []
        self.fail_left = fail_first
        fake = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                auth = self.headers.get("Authorization")
                fake.auth_seen.append(auth)
                if user is not None:
                    want = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
                    if auth != want:
                        return self.answer(401)
                if fake.fail_left > 0:
                    fake.fail_left -= 1
                    return self.answer(500)
                fake.pushes.append(json.loads(body))
                self.answer(204)

            def answer(self, code):
                fake.statuses.append(code)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        scheme = "http"
        if tls:  # (certificate, key): https, as the proxy in front of Loki serves it
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
            scheme = "https"
        self.url = "%s://127.0.0.1:%d/loki/api/v1/push" % (scheme, self.srv.server_address[1])
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def entries(self):
        out = []
        for p in self.pushes:
            for s in p["streams"]:
                for ts, line in s["values"]:
                    out.append((s["stream"], int(ts), line))
        return out

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def lab(tmp_path):
    fj = tmp_path / "journalctl"
    fj.write_text(FAKE_JOURNALCTL)
    fj.chmod(0o755)
    (tmp_path / "feed").write_text("")
    (tmp_path / "logs").mkdir()
    return tmp_path


def journal_entry(cursor, message, unit="homeops-test.service", age_s=0.0, boot=None):
    e = {"__CURSOR": cursor, "__REALTIME_TIMESTAMP": str(int((time.time() - age_s) * 1e6)),
         "MESSAGE": message, "_SYSTEMD_UNIT": unit, "PRIORITY": "6", "_HOSTNAME": "srv-01"}
    if boot:
        e["_BOOT_ID"] = boot
    return json.dumps(e)


def feed(lab, *entries):
    with open(lab / "feed", "a") as f:
        for e in entries:
            f.write(e + "\n")


class Alloy:
    def __init__(self, lab, config_text, boot=""):
        self.lab = lab
        self.port = free_port()
        (lab / "config.alloy").write_text(config_text)
        env = dict(os.environ, ALLOY_LAB_JOURNALCTL=str(lab / "journalctl"), ALLOY_LAB_VERSION=group_vars()[1]["alloy_version"],
                   FJ_ARGS=str(lab / "fj.args"), FJ_FEED=str(lab / "feed"), FJ_BOOT=boot)
        self.log = open(lab / "alloy.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, alloy_binary(), "run", "--server.http.listen-addr=127.0.0.1:%d" % self.port,
             "--storage.path=%s" % (lab / "data"), str(lab / "config.alloy")],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("alloy stand-in exited %s: %s" % (self.proc.returncode, self.output()))
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("alloy stand-in never ready: " + self.output())

    def output(self):
        self.log.flush()
        return (self.lab / "alloy.log").read_text()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("alloy stand-in ignored SIGTERM")
        return self.proc.returncode


def wait_for(cond, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def config(lab, loki, **overrides):
    """The rendered config pointed at the fake Loki (plain HTTP: the tests below add their own
    basic_auth where they test it; the proxy's TLS is tested in test_https_push_*)."""
    overrides.setdefault("loki_proxy_enabled", False)
    return render("alloy-config.alloy.j2", alloy_loki_push_url=loki.url,
                  alloy_log_paths=[str(lab / "logs" / "*.log")], **overrides)


def test_journal_lines_reach_loki_relabelled_and_a_restart_does_not_resend(lab):
    loki = FakeLoki()
    feed(lab, journal_entry("old-1", "from yesterday", age_s=86400),
         journal_entry("c1", "marker one"))
    a = Alloy(lab, config(lab, loki))
    try:
        a.wait_ready()
        assert wait_for(lambda: any(e[2] == "marker one" for e in loki.entries())), a.output()
        labels = next(e[0] for e in loki.entries() if e[2] == "marker one")
        # relabel __journal__systemd_unit -> unit; labels{job}; external_labels{host}; no __ labels.
        assert labels == {"unit": "homeops-test.service", "job": "systemd-journal", "host": "srv-01"}
        assert not any(e[2] == "from yesterday" for e in loki.entries())
        assert a.stop() == 0
    finally:
        a.stop()
    # A catch-up read from max_age ago, then a follow from where it ended.
    calls = [json.loads(x) for x in (lab / "fj.args").read_text().splitlines()]
    since = [x for x in calls[0] if x.startswith("--since=@")]
    assert since and abs(float(since[0][9:]) - (time.time() - 7 * 3600)) < 120, calls[0]
    assert "--follow" not in calls[0] and "--output=json" in calls[0]
    assert "--follow" in calls[1] and "--after-cursor=c1" in calls[1], calls[1]

    feed(lab, journal_entry("c2", "marker two"))
    sent_before = len(loki.entries())
    b = Alloy(lab, config(lab, loki))
    try:
        b.wait_ready()
        assert wait_for(lambda: any(e[2] == "marker two" for e in loki.entries())), b.output()
        time.sleep(1.5)
        # The entry at the stored cursor again (as Alloy: SeekCursor, then Next; Loki drops the
        # copy, same timestamp and line), then what is new.
        lines = [e[2] for e in loki.entries()[sent_before:]]
        assert lines == ["marker one", "marker two"], lines
        assert loki.entries()[sent_before][1] == next(e[1] for e in loki.entries() if e[2] == "marker one")
    finally:
        assert b.stop() == 0
    restart = json.loads((lab / "fj.args").read_text().splitlines()[2])
    assert "--cursor=c1" in restart and "--follow" not in restart, restart
    loki.close()


def test_after_a_reboot_the_last_lines_of_the_old_boot_are_sent(lab):
    """Alloy stopped at a reboot with its cursor on the line before the last one written: after
    the boot it sends the old boot's remaining lines, then the new boot's, each once. (Followed
    straight from the old cursor, journalctl's implied --boot skipped them: issue 22's lost line.)"""
    loki = FakeLoki()
    feed(lab, journal_entry("a1", "boot A line 1", boot="A"))
    a = Alloy(lab, config(lab, loki), boot="A")
    try:
        a.wait_ready()
        assert wait_for(lambda: any(e[2] == "boot A line 1" for e in loki.entries())), a.output()
    finally:
        assert a.stop() == 0
    feed(lab, journal_entry("a2", "boot A line 2", boot="A"), journal_entry("a3", "boot A line 3", boot="A"),
         journal_entry("b1", "boot B line 1", boot="B"))
    b = Alloy(lab, config(lab, loki), boot="B")
    try:
        b.wait_ready()
        feed(lab, journal_entry("b2", "boot B line 2", boot="B"))
        assert wait_for(lambda: any(e[2] == "boot B line 2" for e in loki.entries())), b.output()
        time.sleep(1.5)
    finally:
        assert b.stop() == 0
    lines = [e[2] for e in loki.entries()]
    # "boot A line 1" twice: once before the reboot, once again from the stored cursor (Loki
    # drops the copy).
    assert lines == ["boot A line 1", "boot A line 1", "boot A line 2", "boot A line 3", "boot B line 1",
                     "boot B line 2"], lines
    loki.close()


def test_files_are_tailed_with_positions(lab):
    loki = FakeLoki()
    log = lab / "logs" / "app.log"
    log.write_text("existing line\n")
    a = Alloy(lab, config(lab, loki))
    try:
        a.wait_ready()
        with open(log, "a") as f:
            f.write("appended line\npartial")
        assert wait_for(lambda: any(e[2] == "appended line" for e in loki.entries())), a.output()
        entry = next(e for e in loki.entries() if e[2] == "appended line")
        assert entry[0] == {"filename": str(log), "job": "varlog", "host": "srv-01"}
        # A line without its newline yet is not sent.
        assert not any(e[2] == "partial" for e in loki.entries())
    finally:
        assert a.stop() == 0
    with open(log, "a") as f:
        f.write(" now whole\n")
    n = len(loki.entries())
    b = Alloy(lab, config(lab, loki))
    try:
        b.wait_ready()
        assert wait_for(lambda: any(e[2] == "partial now whole" for e in loki.entries())), b.output()
        time.sleep(1)
        assert [e[2] for e in loki.entries()[n:]] == ["partial now whole"]
    finally:
        b.stop()
    loki.close()


def endpoint_setting(text, name, value):
    """The rendered config with loki.write's endpoint attribute NAME set to VALUE."""
    new, n = re.subn(r"(?m)^(    %s +=) .*$" % name, lambda m: m.group(1) + " " + value, text)
    assert n == 1, "the rendered config sets %s once" % name
    return new


def test_basic_auth_and_retries(lab):
    loki = FakeLoki(user="agent", password="pa$$ \"w\\d", fail_first=2)
    text = config(lab, loki).replace(
        "    url = %s\n" % json.dumps(loki.url),
        "    url = %s\n    basic_auth {\n      username = \"agent\"\n"
        "      password = %s\n    }\n" % (json.dumps(loki.url), json.dumps("pa$$ \"w\\d")))
    text = endpoint_setting(text, "min_backoff_period", '"100ms"')
    assert "basic_auth" in text
    feed(lab, journal_entry("c1", "needs auth"))
    a = Alloy(lab, text)
    try:
        a.wait_ready()
        assert wait_for(lambda: any(e[2] == "needs auth" for e in loki.entries()), timeout=15), a.output()
        assert loki.statuses[:3] == [500, 500, 204]
        assert "error sending batch, will retry" in a.output()
    finally:
        a.stop()
    loki.close()


def test_https_push_with_the_rendered_credential_and_ca(lab, tmp_path):
    """The rendered loki.write as the deploy writes it (basic_auth with a password of every
    printable character, tls_config's ca_file): the stand-in verifies the server against that
    CA and sends the password exactly; a server of another CA gets nothing."""
    pki = os.path.join(REPO, "roles/common/files/homeops-pki.sh")
    for name in ("good", "other"):
        subprocess.run(["sh", pki, "ca", str(tmp_path / name)], check=True, capture_output=True)
        subprocess.run(["sh", pki, "server", str(tmp_path / name), "obs", "IP:127.0.0.1", "825", "30"],
                       check=True, capture_output=True)
    pw = string.printable[:95]
    cert = lambda n: (str(tmp_path / n / "server-obs.crt"), str(tmp_path / n / "server-obs.key"))
    good = FakeLoki(user="alloy", password=pw, tls=cert("good"))
    bad = FakeLoki(user="alloy", password=pw, tls=cert("other"))
    for loki, want in ((good, True), (bad, False)):
        text = config(lab, loki, loki_proxy_enabled=True, loki_push_password=pw,
                      alloy_loki_ca_file=str(tmp_path / "good" / "ca.crt"))
        feed(lab, journal_entry("t-%s" % want, "over tls %s" % want))
        a = Alloy(lab, text)
        try:
            a.wait_ready()
            got = wait_for(lambda: any(e[2] == "over tls %s" % want for e in loki.entries()), timeout=8 if want else 4)
            assert got == want, a.output()
            if not want:
                assert "CERTIFICATE_VERIFY_FAILED" in a.output()
        finally:
            a.stop()
        loki.close()


def test_a_wrong_password_is_not_retried_forever(lab):
    loki = FakeLoki(user="agent", password="right")
    text = config(lab, loki).replace(
        "    url = %s\n" % json.dumps(loki.url),
        "    url = %s\n    basic_auth {\n      username = \"agent\"\n      password = \"wrong\"\n    }\n" % json.dumps(loki.url))
    feed(lab, journal_entry("c1", "denied"))
    a = Alloy(lab, text)
    try:
        a.wait_ready()
        assert wait_for(lambda: 401 in loki.statuses), a.output()
        time.sleep(1.5)
        assert loki.statuses.count(401) == 1  # a 4xx drops the batch, as Alloy does
        assert "final error sending batch" in a.output()
    finally:
        a.stop()
    loki.close()


@pytest.mark.parametrize("old,new,message", [
    ("target_label", "target_lable", 'unrecognized attribute name "rule.target_lable"'),
    ('loki.source.journal "journal"', 'loki.source.journald "journal"',
     'cannot find the definition of component name "loki.source.journald"'),
    ("  endpoint {", "  endpoints {", 'unrecognized block name "endpoints"'),
])
def test_refuses_to_start_on_an_unknown_name(lab, old, new, message):
    loki = FakeLoki()
    text = config(lab, loki)
    assert old in text
    a = Alloy(lab, text.replace(old, new, 1))
    try:
        assert a.proc.wait(timeout=10) == 1
    finally:
        a.stop()
    out = a.output()
    assert message in out and "could not perform the initial load successfully" in out, out
    loki.close()


def test_sighup_with_a_broken_config_keeps_running(lab):
    loki = FakeLoki()
    a = Alloy(lab, config(lab, loki))
    try:
        a.wait_ready()
        (lab / "config.alloy").write_text(config(lab, loki).replace("forward_to", "forward_too"))
        a.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "failed to reload config" in a.output()), a.output()
        assert a.proc.poll() is None
        a.wait_ready()
    finally:
        assert a.stop() == 0
    loki.close()


def test_postinst_adds_alloy_to_the_log_reading_groups():
    """As Alloy's packaging/deb/control/postinst at v1.10.2: adm and systemd-journal."""
    text = open(os.path.join(REPO, "lab/packages/alloy/DEBIAN/postinst")).read()
    assert "usermod -a -G adm alloy" in text
    assert "usermod -a -G systemd-journal alloy" in text


@pytest.mark.parametrize("retries,sends", [(3, 3), (0, None)])
def test_retry_count_and_drop_follow_dskit(lab, retries, sends):
    """Alloy 1.18.1's sendBatch with dskit's backoff: max_backoff_retries N sends a batch N times
    and drops it after the N-th failure without sleeping again; 0 retries without end (the
    deploy's setting), so the line arrives once Loki answers."""
    loki = FakeLoki(fail_first=6)
    text = config(lab, loki)
    for name, value in (("min_backoff_period", '"20ms"'), ("max_backoff_period", '"50ms"'),
                        ("max_backoff_retries", str(retries))):
        text = endpoint_setting(text, name, value)
    feed(lab, journal_entry("c1", "retried line"))
    a = Alloy(lab, text)
    try:
        a.wait_ready()
        if sends is None:
            assert wait_for(lambda: any(e[2] == "retried line" for e in loki.entries()), timeout=15), a.output()
            assert loki.statuses[:7] == [500] * 6 + [204]
            assert "dropping data" not in a.output()
        else:
            assert wait_for(lambda: "dropping data" in a.output(), timeout=15), a.output()
            time.sleep(0.5)
            assert loki.statuses == [500] * sends
            assert a.output().count("error sending batch, will retry") == sends - 1
            assert not loki.entries()
    finally:
        a.stop()
    loki.close()


def test_clock_offset_shifts_what_the_agent_stamps(lab, monkeypatch):
    """ALLOY_LAB_CLOCK_OFFSET (faults scenario clock_skew): the stand-in ships a journal entry
    stamped that far from the machine's clock, as on a host whose clock is off; an entry older
    than max_age on the skewed clock is still skipped."""
    monkeypatch.setenv("ALLOY_LAB_CLOCK_OFFSET", "-7200")
    loki = FakeLoki()
    feed(lab, journal_entry("c1", "skewed line"), journal_entry("c0", "too old", age_s=8 * 3600))
    a = Alloy(lab, config(lab, loki))
    try:
        a.wait_ready()
        assert wait_for(lambda: any(e[2] == "skewed line" for e in loki.entries()), timeout=15), a.output()
        ts = [e[1] for e in loki.entries() if e[2] == "skewed line"][0]
        assert abs(ts / 1e9 - (time.time() - 7200)) < 60
        assert not any(e[2] == "too old" for e in loki.entries())
    finally:
        a.stop()
    loki.close()


@pytest.mark.parametrize("block", [True, False])
def test_a_full_queue_holds_the_reader_back_or_drops(lab, block):
    """queue_config as Alloy 1.18.1's client: while Loki fails, a queue of capacity/batch_size
    batches fills; with block_on_overflow (the default) the journal reader waits and every line
    arrives, in order, once Loki answers; without it the overflowing lines are dropped."""
    loki = FakeLoki(fail_first=8)
    text = config(lab, loki)
    for name, value in (("min_backoff_period", '"100ms"'), ("max_backoff_period", '"200ms"')):
        text = endpoint_setting(text, name, value)
    text = text.replace("    max_backoff_retries = 0\n",
                        "    max_backoff_retries = 0\n    batch_size = \"20B\"\n    queue_config {\n"
                        "      capacity = \"40B\"\n      block_on_overflow = %s\n    }\n" % str(block).lower())
    assert "queue_config" in text
    lines = ["line %02d of the backlog" % i for i in range(20)]
    feed(lab, *[journal_entry("c%d" % i, m) for i, m in enumerate(lines)])
    a = Alloy(lab, text)
    try:
        a.wait_ready()
        if block:
            assert wait_for(lambda: len(loki.entries()) >= 20, timeout=30), a.output()
            assert [e[2] for e in loki.entries()] == lines
            assert "queue is full" not in a.output()
        else:
            assert wait_for(lambda: "queue is full, dropping entry" in a.output(), timeout=30), a.output()
            assert wait_for(lambda: loki.statuses.count(204) >= 1, timeout=30), a.output()
            time.sleep(1)
            assert 0 < len(loki.entries()) < 20
    finally:
        a.stop()
    loki.close()
