"""The lab's loki package: how it is built (lab/lib/packages.sh), and the LAB STAND-IN Loki run
as a process on 127.0.0.1 with a temp config and data dir: strict config, push (JSON and
protobuf+snappy), query_range, labels, persistence across a restart."""
import gzip
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml

from conftest import REPO, render
from homeops_dev import labcode

PINNED = yaml.safe_load(open(os.path.join(REPO, "roles/common/defaults/main/versions.yml")))["loki_version"]


def lab_sh(script, env=None, check=True):
    """Run bash with the lab's package functions loaded (as lab/lab does), offline."""
    prelude = (
        f'LAB_DIR="{REPO}/lab"; LAB_ROOT="{REPO}"; export LAB_DIR LAB_ROOT; '
        'source "$LAB_DIR/lib/common.sh"; source "$LAB_DIR/lib/config.sh"; source "$LAB_DIR/lib/packages.sh"; '
    )
    run = subprocess.run(["bash", "-c", "set -euo pipefail; " + prelude + script],
                         capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)
    if check:
        assert run.returncode == 0, run.stderr
    return run


def deb_field(deb, field):
    return subprocess.run(["dpkg-deb", "-f", deb, field], capture_output=True, text=True, check=True).stdout.strip()


def deb_files(deb):
    out = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1].lstrip(".") for line in out.splitlines()}


def standin_build(tmp_path_factory):
    """The stand-in package of the pinned version, built as the lab builds it and unpacked."""
    out = tmp_path_factory.mktemp("repo")
    run = lab_sh(f'build_loki_package "{out}" "{PINNED}"', env={"HOMEOPS_REAL_LOKI_DIR": str(out / "none")})
    assert run.stdout == f"lab: loki package: LAB STAND-IN (no {out / 'none'})\n"
    deb = out / f"loki_{PINNED}_all.deb"
    root = tmp_path_factory.mktemp("root")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return deb, root


@pytest.fixture(scope="module")
def standin_root(tmp_path_factory):
    return standin_build(tmp_path_factory)


# ---- the package ------------------------------------------------------------------------------

def test_standin_package_is_arch_all_and_ships_its_versions_tree(standin_root):
    deb, root = standin_root
    assert deb_field(str(deb), "Architecture") == "all"
    assert "LAB STAND-IN" in deb_field(str(deb), "Description")
    files = deb_files(str(deb))
    assert {"/usr/bin/loki", "/etc/loki/config.yml", "/lib/systemd/system/loki.service",
            "/usr/share/loki-standin/configcheck.py", "/usr/share/loki-standin/config-tree.json"} <= files
    tree = json.loads((root / "usr/share/loki-standin/config-tree.json").read_text())
    assert tree["version"] == PINNED
    assert "User=loki" in (root / "lib/systemd/system/loki.service").read_text()


def test_a_pinned_version_without_a_tree_fails_the_build(tmp_path):
    run = lab_sh(f'build_loki_package "{tmp_path}" 9.9.9', env={"HOMEOPS_REAL_LOKI_DIR": str(tmp_path / "none")},
                 check=False)
    assert run.returncode != 0
    assert "no Loki config key tree for the pinned loki_version 9.9.9" in run.stderr
    assert not list(tmp_path.glob("*.deb"))


def test_a_real_binary_with_a_wrong_checksum_fails_the_build(tmp_path):
    """A damaged ../shared/real-loki copy is an error, not a silent fall-back to the stand-in."""
    real = tmp_path / "real-loki"
    real.mkdir()
    subprocess.run(["bash", "-c", f'printf "not loki" | xz > "{real}/loki-{PINNED}-linux-amd64.xz"'], check=True)
    (real / "SHA256SUMS").write_text(f"{'0' * 64}  loki-{PINNED}-linux-amd64.xz\n{'1' * 64}  loki-{PINNED}-linux-amd64\n")
    out = tmp_path / "out"
    out.mkdir()
    run = lab_sh(f'build_loki_package "{out}" "{PINNED}"',
                 env={"HOMEOPS_REAL_LOKI_DIR": str(real), "LAB_CACHE_DIR": str(tmp_path / "cache")}, check=False)
    assert run.returncode != 0
    assert "does not match its SHA256SUMS entry" in run.stderr
    assert not list(out.glob("*.deb"))


# ---- the stand-in as a process ----------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Loki:
    """One stand-in process with our rendered template, paths and port moved to a temp dir."""

    def __init__(self, root, tmp, binary=None, version=PINNED, ready_timeout=20):
        self.bin = binary or str(root / "usr/bin/loki")
        self.tmp = tmp
        self.port = free_port()
        self.ready_timeout = ready_timeout
        self.data = tmp / "var-lib-loki"
        text = render("loki-config.yaml.j2", loki_version=version, loki_data_dir=str(self.data),
                      loki_http_listen_port=self.port, loki_grpc_listen_port=free_port())
        self.config = tmp / "config.yml"
        # Loopback only, as the template renders it (the TLS proxy is the way in).
        assert "http_listen_address: 127.0.0.1" in text and "grpc_listen_address: 127.0.0.1" in text
        self.config.write_text(text)
        self.proc = None

    def start(self):
        self.log = open(self.tmp / "loki.log", "a")
        self.proc = subprocess.Popen([self.bin, f"-config.file={self.config}"], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.tmp / "loki.log").read_text()
            try:
                if self.get("/ready")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"{self.bin} was not ready in {self.ready_timeout} s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()

    def request(self, method, path, body=None, headers=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def get(self, path, **params):
        return self.request("GET", path + ("?" + urllib.parse.urlencode(params) if params else ""))

    def query(self, q, **params):
        status, body = self.get("/loki/api/v1/query_range", query=q, **params)
        assert status == 200, body
        doc = json.loads(body)
        assert doc["status"] == "success" and doc["data"]["resultType"] == "streams"
        return doc["data"]["result"]


@pytest.fixture
def loki(standin_root, tmp_path):
    inst = Loki(standin_root[1], tmp_path)
    inst.start()
    yield inst
    inst.stop()


# Our own encoders for the test payloads, written from the formats' specs: protobuf wire format
# and snappy's block format (a literal-only stream is valid snappy).
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb(field, value):
    if isinstance(value, int):
        return varint(field << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(field << 3 | 2) + varint(len(value)) + value


def push_request(streams):
    """logproto.PushRequest: streams[labels, entries[timestamp{seconds, nanos}, line]]."""
    body = b""
    for labels, entries in streams:
        s = pb(1, labels)
        for ts, line in entries:
            s += pb(2, pb(1, pb(1, ts // 10**9) + pb(2, ts % 10**9)) + pb(2, line))
        body += pb(1, s)
    return body


def snappy_literals(data):
    out = bytearray(varint(len(data)))
    for i in range(0, len(data), 65536):
        chunk = data[i:i + 65536]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        else:
            out += bytes([61 << 2]) + n.to_bytes(2, "little")  # 2-byte length follows
        out += chunk
    return bytes(out)


def push_json(loki, streams, **headers):
    body = json.dumps({"streams": [{"stream": labels, "values": [[str(ts), line] for ts, line in entries]}
                                   for labels, entries in streams]}).encode()
    if headers.get("Content-Encoding") == "gzip":
        body = gzip.compress(body)
    return loki.request("POST", "/loki/api/v1/push", body, {"Content-Type": "application/json", **headers})


def test_push_json_and_protobuf_query_restart_query(loki):
    now = time.time_ns()
    status, _ = push_json(loki, [({"host": "srv-01", "job": "journal"},
                                  [(now, "hello marker-json-1"), (now + 1, "other line")])])
    assert status == 204
    payload = snappy_literals(push_request([('{host="ws-01-linux", job="journal"}',
                                             [(now + 2, "hello marker-proto-1 \u00e9"), (now + 3, "x" * 70000)])]))
    status, body = loki.request("POST", "/loki/api/v1/push", payload, {"Content-Type": "application/x-protobuf"})
    assert status == 204, body

    def check():
        res = loki.query('{host="srv-01"} |= "marker-json-1"')
        assert [(r["stream"]["host"], r["values"]) for r in res] == [("srv-01", [[str(now), "hello marker-json-1"]])]
        # The service_name Loki 3 derives from `job` (discover_service_name's default list).
        # detected_level: structured metadata Loki 3 adds, shown among the stream's labels.
        assert res[0]["stream"] == {"host": "srv-01", "job": "journal", "service_name": "journal",
                                    "detected_level": "unknown"}
        res = loki.query('{host=~"ws-.*"} |= "marker-proto"')
        assert res[0]["values"] == [[str(now + 2), "hello marker-proto-1 \u00e9"]]
        assert len(loki.query('{job="journal"} |= "xxxx"')[0]["values"][0][1]) == 70000
        all_lines = loki.query('{job="journal"}', limit=10, direction="forward")
        assert sorted(v[0] for r in all_lines for v in r["values"]) == [str(now + i) for i in range(4)]
        assert loki.query('{job="journal", host!="srv-01"} != "marker"')[0]["values"] == [[str(now + 3), "x" * 70000]]
        status, body = loki.get("/loki/api/v1/label/host/values")
        assert status == 200 and json.loads(body) == {"status": "success", "data": ["srv-01", "ws-01-linux"]}
        status, body = loki.get("/loki/api/v1/labels")
        assert json.loads(body)["data"] == ["host", "job", "service_name"]

    check()
    loki.stop()
    files = list((loki.data / "chunks").rglob("*.jsonl"))
    assert len(files) == 2 and all(f.stat().st_uid == os.getuid() for f in files)
    loki.start()
    check()


def test_query_times_limit_and_direction(loki):
    base = (time.time_ns() // 10**9 - 600) * 10**9
    status, _ = push_json(loki, [({"host": "a"}, [(base + i * 10**9, f"line {i}") for i in range(5)])],
                          **{"Content-Encoding": "gzip"})
    assert status == 204
    # start/end as nanoseconds, unix seconds and RFC3339; end is exclusive.
    rfc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((base + 3 * 10**9) // 10**9))
    for start, end in [(base + 10**9, base + 3 * 10**9), (str((base + 10**9) // 10**9), rfc)]:
        res = loki.query('{host="a"}', start=start, end=end, direction="forward")
        assert [v[1] for v in res[0]["values"]] == ["line 1", "line 2"]
    res = loki.query('{host="a"}', limit=2)  # backward by default: the newest two
    assert [v[1] for v in res[0]["values"]] == ["line 4", "line 3"]
    assert loki.query('{host="a"}', since="1s") == []
    # A resent batch (Alloy retries) is not stored twice.
    push_json(loki, [({"host": "a"}, [(base, "line 0")])])
    assert len(loki.query('{host="a"}', limit=100)[0]["values"]) == 5


@pytest.mark.parametrize("query, message", [
    ('{host="a"} | json', "parse error at line 1, col 12: syntax error: unexpected |"),
    ('count_over_time({host="a"}[5m])', "parse error at line 1, col 1: syntax error: unexpected IDENTIFIER"),
    ('{host=~".*"}', "queries require at least one regexp or equality matcher"),
    ('{host="a"', "parse error at line 1, col 10: syntax error: unexpected $end, expecting } or ,"),
    ('{host=~"("}', "parse error : error parsing regexp: "),
])
def test_a_bad_query_is_a_400_with_a_parse_error(loki, query, message):
    status, body = loki.get("/loki/api/v1/query_range", query=query)
    assert status == 400
    assert message in body


def test_bad_pushes_are_400(loki):
    status, body = loki.request("POST", "/loki/api/v1/push", b"garbage", {"Content-Type": "application/x-protobuf"})
    assert (status, body) == (400, "snappy: corrupt input\n")
    assert push_json(loki, [({"bad-name": "x"}, [(time.time_ns(), "bad label name")])])[0] == 400
    status, body = push_json(loki, [({"host": "a"}, [(time.time_ns() - 30 * 86400 * 10**9, "a month old")])])
    assert status == 400 and "has timestamp too old" in body


def test_service_name_detected_level_and_structured_metadata_as_loki_3(loki):
    now = time.time_ns()
    lines = [(now, "level=error msg=boom"), (now + 1, '{"level":"WARN","msg":"x"}'), (now + 2, "INFO: started"),
             (now + 3, "plain line")]
    assert push_json(loki, [({"host": "lv"}, lines)])[0] == 204
    body = json.dumps({"streams": [{"stream": {"host": "lv", "level": "debug", "app": "web"},
                                    "values": [[str(now + 4), "with metadata", {"trace_id": "abc"}]]}]}).encode()
    assert loki.request("POST", "/loki/api/v1/push", body, {"Content-Type": "application/json"})[0] == 204
    # A stream without labels gets service_name="unknown_service", as Loki 3 does (then it has one).
    assert push_json(loki, [({}, [(now + 5, "no labels")])])[0] == 204
    got = {v[1]: r["stream"] for r in loki.query('{host="lv"}', limit=10) for v in r["values"]}
    assert {line: st["detected_level"] for line, st in got.items() if "level" not in st} == {
        "level=error msg=boom": "error", '{"level":"WARN","msg":"x"}': "warn", "INFO: started": "info",
        "plain line": "unknown"}
    assert got["with metadata"] == {"host": "lv", "level": "debug", "app": "web", "service_name": "web",
                                    "trace_id": "abc", "detected_level": "debug"}
    assert loki.query('{service_name="unknown_service"}')[0]["values"] == [[str(now + 5), "no labels"]]
    # Metadata is not a label: the label APIs do not list it.
    assert json.loads(loki.get("/loki/api/v1/labels")[1])["data"] == ["app", "host", "level", "service_name"]


def test_bad_config_exits_1_with_the_line(standin_root, tmp_path):
    _, root = standin_root
    text = render("loki-config.yaml.j2", loki_version=PINNED).replace(
        "  retention_period:", "  retention_periods:", 1)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "retention_periods:" in t)
    cfg = tmp_path / "bad.yml"
    cfg.write_text(text)
    for extra in ([], ["-verify-config"]):
        run = subprocess.run([str(root / "usr/bin/loki"), *extra, f"-config.file={cfg}"], capture_output=True, text=True)
        assert run.returncode == 1
        assert run.stderr.startswith(f"failed parsing config: {cfg}: yaml: unmarshal errors:\n"
                                     f"  line {line}: field retention_periods not found in type limits_config")


def test_verify_config_and_version_like_loki(standin_root, tmp_path):
    _, root = standin_root
    cfg = tmp_path / "good.yml"
    cfg.write_text(render("loki-config.yaml.j2", loki_version=PINNED))
    run = subprocess.run([str(root / "usr/bin/loki"), "-verify-config", f"-config.file={cfg}"], capture_output=True, text=True)
    assert run.returncode == 0 and 'msg="config is valid"' in run.stderr
    run = subprocess.run([str(root / "usr/bin/loki"), "-version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith(f"loki, version {PINNED} (branch: LAB STAND-IN")


def standin_module(root):
    return labcode.load_file("loki_standin", str(root / "usr/bin/loki"))


def test_snappy_decoder_handles_copies_and_refuses_corrupt_input(standin_root):
    mod = standin_module(standin_root[1])
    data = b"abcabcabcabcXYZ"
    # literal "abc", 1-byte-offset copy (len 4+5=9, offset 3), literal "XYZ"
    block = varint(len(data)) + bytes([2 << 2]) + b"abc" + bytes([(5 << 2) | 1, 3]) + bytes([2 << 2]) + b"XYZ"
    assert mod.snappy_decode(block) == data
    # 2-byte-offset copy: len 3, offset 3
    block2 = varint(6) + bytes([2 << 2]) + b"xyz" + bytes([(2 << 2) | 2, 3, 0])
    assert mod.snappy_decode(block2) == b"xyzxyz"
    big = os.urandom(100000)
    assert mod.snappy_decode(snappy_literals(big)) == big
    for bad in (varint(10) + bytes([2 << 2]) + b"abc", varint(3) + bytes([(5 << 2) | 1, 9])):
        with pytest.raises(mod.BadRequest):
            mod.snappy_decode(bad)


def test_data_survives_sigkill_after_204(standin_root, tmp_path):
    """fsync before the 204: an acknowledged push is on disk even if Loki is killed."""
    inst = Loki(standin_root[1], tmp_path)
    inst.start()
    now = time.time_ns()
    assert push_json(inst, [({"host": "k"}, [(now, "killed-after")])])[0] == 204
    inst.proc.kill()
    inst.proc.wait()
    inst.log.close()
    inst.start()
    try:
        assert inst.query('{host="k"}')[0]["values"] == [[str(now), "killed-after"]]
    finally:
        inst.stop()


def test_a_data_dir_its_user_cannot_write_fails_start(standin_root):
    """As real Loki run as user loki: data dirs it cannot create stop it (the deploy creates them)."""
    if os.getuid() != 0 and not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the stand-in as another user")
    top = tempfile.mkdtemp(prefix="loki-standin-")
    try:
        os.chmod(top, 0o755)
        shutil.copytree(standin_root[1] / "usr", os.path.join(top, "usr"), symlinks=True)
        data = os.path.join(top, "var-lib-loki")
        os.mkdir(data, 0o755)  # root's, as before the deploy's "create the data dirs" task
        cfg = os.path.join(top, "config.yml")
        with open(cfg, "w") as f:
            f.write(render("loki-config.yaml.j2", loki_version=PINNED, loki_data_dir=data, loki_http_listen_port=free_port()))
        os.chmod(cfg, 0o644)
        cmd = [os.path.join(top, "usr/bin/loki"), f"-config.file={cfg}"]
        if os.getuid() == 0:
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        else:
            os.chmod(data, 0o555)
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        assert run.returncode == 1
        assert f"error initialising module: store: mkdir {data}" in run.stderr and "permission denied" in run.stderr
    finally:
        os.chmod(top, 0o755)
        shutil.rmtree(top, ignore_errors=True)


def test_expand_env_only_with_the_flag(standin_root, tmp_path):
    _, root = standin_root
    cfg = tmp_path / "env.yml"
    cfg.write_text(render("loki-config.yaml.j2", loki_version=PINNED).replace(
        "http_listen_port: 3100", "http_listen_port: ${LOKI_TEST_PORT:-3100}", 1))
    base = [str(root / "usr/bin/loki"), "-verify-config", f"-config.file={cfg}"]
    run = subprocess.run(base, capture_output=True, text=True)
    assert run.returncode == 1 and "cannot unmarshal !!str `${LOKI_...` into int" in run.stderr
    run = subprocess.run(base + ["-config.expand-env=true"], capture_output=True, text=True,
                         env={**os.environ, "LOKI_TEST_PORT": "3101"})
    assert run.returncode == 0, run.stderr


def test_concurrent_pushes_and_queries_lose_nothing(loki):
    import threading

    now = time.time_ns()
    errors = []

    def worker(n):
        try:
            for i in range(15):
                # Two workers per stream: pushes to one stream race unless the store locks.
                labels = {"host": f"h{n % 3}"}
                assert push_json(loki, [(labels, [(now + n * 1000 + i, f"w{n} line {i}")])])[0] == 204
                loki.query(f'{{host="h{n % 3}"}} |= "w{n} "')
        except Exception as e:  # reported below, with the worker
            errors.append(f"worker {n}: {e!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    res = loki.query('{host=~"h[0-2]"}', limit=1000)
    assert sum(len(r["values"]) for r in res) == 6 * 15
    loki.stop()
    loki.start()
    assert sum(len(r["values"]) for r in loki.query('{host=~"h[0-2]"}', limit=1000)) == 6 * 15


def test_the_packaged_default_config_is_valid_and_sends_no_usage_reports():
    """The conffile both packages ship: real Loki started with it must not phone home."""
    from upstream import configcheck

    text = open(os.path.join(REPO, "lab/packages/loki/etc/loki/config.yml")).read()
    assert yaml.safe_load(text)["analytics"]["reporting_enabled"] is False
    assert configcheck.loki_errors(text, configcheck.load_tree(configcheck.tree_path(PINNED))) == []
