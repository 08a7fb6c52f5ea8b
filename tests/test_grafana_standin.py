"""The lab's Grafana stand-in (LAB STAND-IN) authenticates the admin, serves the provisioned
Loki datasource through its proxy with the provisioned credentials after Grafana's
environment expansion, so a `$` in the password works only when escaped as the template does.
Run on 127.0.0.1 with a temp grafana.ini and provisioning dir, against a fake Loki that
checks basic auth."""
import base64
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import REPO, render

GRAFANA = os.path.join(REPO, "lab/packages/grafana/usr/sbin/grafana-server")
ADMIN_PW = "adm1n-test-pw"
LOKI_USER = "grafana"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class FakeLoki:
    """query_range and labels, only with the right basic auth (401 otherwise, as a proxy in front of Loki)."""

    def __init__(self, password):
        self.requests = []
        want = "Basic " + base64.b64encode(("%s:%s" % (LOKI_USER, password)).encode()).decode()
        fake = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                fake.requests.append(self.path)
                if self.headers.get("Authorization") != want:
                    return self.answer(401, b"Unauthorized\n", "text/plain")
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/loki/api/v1/labels":
                    return self.answer(200, json.dumps({"status": "success", "data": ["host", "job"]}).encode())
                if url.path == "/loki/api/v1/query_range":
                    q = urllib.parse.parse_qs(url.query)
                    body = {"status": "success", "data": {"resultType": "streams", "result": [
                        {"stream": {"host": "srv-01"}, "values": [[q["end"][0], "marker for " + q["query"][0]]]}]}}
                    return self.answer(200, json.dumps(body).encode())
                self.answer(404, b"404 page not found\n", "text/plain")

            def answer(self, code, body, ctype="application/json"):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


class Grafana:
    def __init__(self, tmp, datasource_yaml, env=None):
        self.port = free_port()
        prov = tmp / "provisioning"
        (prov / "datasources").mkdir(parents=True)
        (prov / "datasources" / "loki.yaml").write_text(datasource_yaml)
        ini = tmp / "grafana.ini"
        ini.write_text("[paths]\nprovisioning = %s\n\n[server]\nhttp_addr = 127.0.0.1\nhttp_port = %d\n\n"
                       "[security]\nadmin_user = admin\nadmin_password = %s\n" % (prov, self.port, ADMIN_PW))
        self.out = tmp / "grafana.log"
        self.proc = subprocess.Popen([sys.executable, GRAFANA, "--config=%s" % ini], stdout=open(self.out, "wb"),
                                     stderr=subprocess.STDOUT, env=dict(os.environ, **(env or {})))
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                self.get("/api/health", auth=None)
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise AssertionError("grafana stand-in did not start: " + self.out.read_text())

    def get(self, path, auth=("admin", ADMIN_PW), data=None):
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode()
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), headers=headers,
                                     data=json.dumps(data).encode() if data is not None else None)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def datasource(loki, password, **overrides):
    return render("grafana-datasource-loki.yaml.j2", grafana_loki_datasource_url=loki.url,
                  loki_datasource_password=password, **overrides)


@pytest.fixture
def running(tmp_path):
    started = []

    def start(yaml_text, loki, env=None):
        g = Grafana(tmp_path, yaml_text, env)
        started.append((g, loki))
        return g

    yield start
    for g, loki in started:
        g.stop()
        loki.close()


def test_health_is_anonymous_and_the_api_needs_the_admin_password(running):
    loki = FakeLoki("x")
    g = running(datasource(loki, "x"), loki)
    assert g.get("/api/health", auth=None)[0] == 200
    status, body = g.get("/api/datasources/uid/homeops-loki", auth=("admin", "wrong-password"))
    assert status == 401 and json.loads(body)["message"] == "Invalid username or password"
    status, body = g.get("/api/datasources/uid/homeops-loki", auth=None)
    assert status == 401 and json.loads(body)["message"] == "Unauthorized"
    status, body = g.get("/api/datasources/uid/homeops-loki")
    assert status == 200
    ds = json.loads(body)
    assert ds["type"] == "loki" and ds["url"] == loki.url and ds["basicAuthUser"] == LOKI_USER
    assert ds["secureJsonFields"] == {"basicAuthPassword": True, "tlsCACert": True}
    assert b"secureJsonData" not in body and b'"x"' not in body
    assert g.get("/api/datasources/uid/nope")[0] == 404


@pytest.mark.parametrize("password", ["plain-pw", "pa$word", "pa$$word", "${HOME}x", 'q"uo\\te$'])
def test_proxy_reaches_loki_with_a_dollar_password_as_the_template_escapes_it(running, password):
    loki = FakeLoki(password)
    g = running(datasource(loki, password), loki)
    status, body = g.get("/api/datasources/proxy/uid/homeops-loki/loki/api/v1/labels")
    assert status == 200, body
    assert json.loads(body)["data"] == ["host", "job"]


@pytest.mark.parametrize("password", ["pa$word", "${HOME}x", "$$"])
def test_unescaped_dollar_password_breaks_auth_as_in_grafana(running, password):
    """The old template (to_json only): Grafana expands the value, Loki answers 401."""
    loki = FakeLoki(password)
    text = datasource(loki, "PLACEHOLDER").replace('"PLACEHOLDER"', json.dumps(password))
    g = running(text, loki, env={"HOME": "/home/test"})
    status, body = g.get("/api/datasources/proxy/uid/homeops-loki/loki/api/v1/labels")
    assert status == 401, body


def test_ds_query_returns_loki_lines_as_frames(running):
    loki = FakeLoki("pw$1")
    g = running(datasource(loki, "pw$1"), loki)
    now = int(time.time() * 1000)
    status, body = g.get("/api/ds/query", data={
        "from": str(now - 60000), "to": str(now),
        "queries": [{"refId": "A", "datasource": {"uid": "homeops-loki", "type": "loki"},
                     "expr": '{host="srv-01"} |= "m"', "queryType": "range"}]})
    assert status == 200, body
    frame = json.loads(body)["results"]["A"]["frames"][0]
    names = [f["name"] for f in frame["schema"]["fields"]]
    values = frame["data"]["values"]
    assert values[names.index("Line")] == ['marker for {host="srv-01"} |= "m"']
    assert values[names.index("labels")] == [{"host": "srv-01"}]
    assert any(p.startswith("/loki/api/v1/query_range?") for p in loki.requests)


def test_proxy_passes_upstream_errors_through(running):
    loki = FakeLoki("pw")
    g = running(datasource(loki, "pw"), loki)
    status, body = g.get("/api/datasources/proxy/uid/homeops-loki/loki/api/v1/nothing")
    assert status == 404 and b"404 page not found" in body
