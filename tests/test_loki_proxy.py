"""The proxy in front of Loki, run for real: Debian's own nginx (the package the deploy installs,
from lab/lib/debian-debs.sh's cache) with our rendered site, a CA and server certificate made by
roles/common/files/homeops-pki.sh, password hashes made as roles/loki/tasks/proxy.yml makes them,
and a recording stand-in for Loki behind it, all on 127.0.0.1. Skips, saying why, where Debian's
nginx package cannot be had (no apt lists, no network to the archive)."""
import base64
import http.server
import json
import os
import shutil
import socket
import ssl
import string
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import REPO, lab_cache_dir, render

PKI = os.path.join(REPO, "roles/common/files/homeops-pki.sh")
DEBS = os.path.join(REPO, "lab/lib/debian-debs.sh")
# Every printable ASCII character, ':' and spaces included: basic auth splits at the first ':'.
PUSH_PW = string.printable[:95]
READ_PW = "read ` \\ \" ' #;$x ${y} pw"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def crypt_sha512(password, salt):
    """As roles/loki/tasks/proxy.yml: openssl passwd -6, the password on stdin."""
    r = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password + "\n",
                       capture_output=True, text=True, check=True)
    return r.stdout.strip()


@pytest.fixture(scope="module")
def nginx_bin(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed on this machine")
    cache = os.path.join(lab_cache_dir(tmp_path_factory), "debian-debs")
    r = subprocess.run([DEBS, cache, "nginx", "nginx-common"], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.skip("Debian's nginx package is not at hand: " + r.stderr.strip().splitlines()[-1])
    root = tmp_path_factory.mktemp("nginx-root")
    for deb in r.stdout.split():
        subprocess.run(["dpkg-deb", "-x", deb, str(root)], check=True)
    return str(root / "usr/sbin/nginx")


class Loki(http.server.BaseHTTPRequestHandler):
    """Stands in for Loki on loopback: records what reaches it."""
    seen = []

    def do_GET(self):
        self.seen.append(("GET", self.path, self.headers.get("Authorization")))
        body = json.dumps({"status": "success", "data": {"result": []}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(("POST", self.path, self.headers.get("Authorization")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def proxy(nginx_bin, tmp_path_factory):
    work = tmp_path_factory.mktemp("proxy")
    os.chmod(work, 0o755)
    pki, site = work / "pki", work / "site"
    for d in (site, work / "log", work / "tmp"):
        d.mkdir()
    subprocess.run(["sh", PKI, "ca", str(pki)], check=True, capture_output=True)
    subprocess.run(["sh", PKI, "server", str(pki), "obs-01", "DNS:obs-01,IP:127.0.0.1", "825", "30"],
                   check=True, capture_output=True)
    shutil.copy(pki / "server-obs-01.crt", site / "server.crt")
    shutil.copy(pki / "server-obs-01.key", site / "server.key")
    (site / "users.htpasswd").write_text(
        "alloy:%s\ngrafana:%s\n" % (crypt_sha512(PUSH_PW, "0123456789abcdef"), crypt_sha512(READ_PW, "fedcba9876543210")))
    loki_port, proxy_port = free_port(), free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", loki_port), Loki)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conf = render("loki-proxy-nginx.conf.j2", inventory_hostname="obs-01", loki_http_listen_port=loki_port,
                  loki_proxy_listen_address="127.0.0.1", loki_proxy_port=proxy_port, loki_proxy_dir=str(site),
                  loki_proxy_log_dir=str(work / "log"))
    (work / "homeops-loki.conf").write_text(conf)
    tmp = work / "tmp"
    user = "user root root;\n" if os.geteuid() == 0 else ""
    (work / "nginx.conf").write_text(
        f"{user}pid {work}/nginx.pid;\nerror_log {work}/log/error.log;\ndaemon off;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};\n"
        f"  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};\n  include {work}/homeops-loki.conf;\n}}\n")
    t = subprocess.run([nginx_bin, "-t", "-p", str(work), "-c", str(work / "nginx.conf")], capture_output=True, text=True)
    assert t.returncode == 0, t.stderr
    proc = subprocess.Popen([nginx_bin, "-p", str(work), "-c", str(work / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", proxy_port)) == 0:
                break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("nginx did not listen: " + proc.stderr.read().decode())
    yield {"port": proxy_port, "ca": str(pki / "ca.crt"), "work": work}
    proc.terminate()
    proc.wait(timeout=10)
    server.shutdown()


def call(proxy, method, path, user=None, password=None, ca=None, host="127.0.0.1"):
    """(status, body) of one request through the proxy, TLS verified against the CA."""
    ctx = ssl.create_default_context(cafile=ca or proxy["ca"])
    headers = {"Content-Type": "application/json"}
    if user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    data = b'{"streams": []}' if method == "POST" else None
    req = urllib.request.Request(f"https://{host}:{proxy['port']}{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


PUSH, QUERY = "/loki/api/v1/push", "/loki/api/v1/query_range?query=%7Bjob%3D%22x%22%7D"


def test_without_credentials_push_and_query_are_refused_with_401(proxy):
    assert call(proxy, "POST", PUSH)[0] == 401
    assert call(proxy, "GET", QUERY)[0] == 401
    assert call(proxy, "GET", "/loki/api/v1/labels")[0] == 401


def test_the_agent_credential_pushes_and_cannot_read(proxy):
    Loki.seen.clear()
    assert call(proxy, "POST", PUSH, "alloy", PUSH_PW)[0] == 204
    assert call(proxy, "GET", QUERY, "alloy", PUSH_PW)[0] == 403
    assert call(proxy, "GET", "/loki/api/v1/labels", "alloy", PUSH_PW)[0] == 403
    assert call(proxy, "GET", "/loki/api/v1/tail?query=%7Bjob%3D%22x%22%7D", "alloy", PUSH_PW)[0] == 403
    # Only the push reached Loki, and without the credential.
    assert Loki.seen == [("POST", PUSH, None)]


def test_the_grafana_credential_reads_and_cannot_push(proxy):
    Loki.seen.clear()
    assert call(proxy, "GET", QUERY, "grafana", READ_PW)[0] == 200
    assert call(proxy, "GET", "/loki/api/v1/label/host/values", "grafana", READ_PW)[0] == 200
    assert call(proxy, "POST", PUSH, "grafana", READ_PW)[0] == 403
    assert [s[:2] for s in Loki.seen] == [("GET", QUERY), ("GET", "/loki/api/v1/label/host/values")]
    assert all(s[2] is None for s in Loki.seen)


def test_a_wrong_password_or_user_is_refused_with_401_never_403(proxy):
    assert call(proxy, "POST", PUSH, "alloy", PUSH_PW[:-1])[0] == 401
    assert call(proxy, "POST", PUSH, "alloy", READ_PW)[0] == 401
    assert call(proxy, "GET", QUERY, "grafana", PUSH_PW)[0] == 401
    assert call(proxy, "GET", QUERY, "nobody", READ_PW)[0] == 401


def test_delete_and_everything_but_the_api_are_refused(proxy):
    assert call(proxy, "POST", "/loki/api/v1/delete?query=%7B%7D", "grafana", READ_PW)[0] == 403
    for path in ("/ready", "/metrics", "/config", "/loki/api/v1/../../ready"):
        assert call(proxy, "GET", path, "grafana", READ_PW)[0] in (400, 404), path


def test_tls_is_verified_against_the_ca_and_the_name(proxy, tmp_path):
    other = tmp_path / "other"
    subprocess.run(["sh", PKI, "ca", str(other)], check=True, capture_output=True)
    with pytest.raises(urllib.error.URLError) as e:
        call(proxy, "GET", QUERY, "grafana", READ_PW, ca=str(other / "ca.crt"))
    assert isinstance(e.value.reason, ssl.SSLCertVerificationError)
    # A name the certificate does not carry (SANs: obs-01, 127.0.0.1).
    with pytest.raises(urllib.error.URLError) as e:
        call(proxy, "GET", QUERY, "grafana", READ_PW, host="localhost")
    assert isinstance(e.value.reason, ssl.SSLCertVerificationError)


def test_plain_http_gets_no_answer_from_loki(proxy):
    with socket.create_connection(("127.0.0.1", proxy["port"]), timeout=5) as s:
        s.sendall(b"GET /loki/api/v1/labels HTTP/1.0\r\n\r\n")
        answer = s.recv(4096)
    assert b" 400 " in answer.split(b"\r\n")[0]


def test_the_pki_script_keeps_a_current_certificate_and_renews_on_new_names(tmp_path):
    d = str(tmp_path / "pki")
    run = lambda *a: subprocess.run(["sh", PKI, *a], capture_output=True, text=True, check=True).stdout.strip()
    assert run("ca", d) == "created"
    assert run("ca", d) == "unchanged"
    assert run("server", d, "obs-01", "DNS:obs-01", "825", "30") == "created"
    assert run("server", d, "obs-01", "DNS:obs-01", "825", "30") == "unchanged"
    assert run("server", d, "obs-01", "DNS:obs-01,IP:10.0.0.5", "825", "30") == "created"
    # Expiring within the renewal window: made again.
    assert run("server", d, "obs-01", "DNS:obs-01,IP:10.0.0.5", "10", "30") == "unchanged"
    assert run("server", d, "obs-01", "DNS:obs-02", "10", "30") == "created"
    assert run("server", d, "obs-01", "DNS:obs-02", "10", "30") == "created"
    assert oct(os.stat(os.path.join(d, "ca.key")).st_mode & 0o777) == "0o600"
    assert oct(os.stat(d).st_mode & 0o777) == "0o700"
