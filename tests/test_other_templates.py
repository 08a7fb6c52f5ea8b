"""The Grafana datasource and Alloy templates render to what their consumers parse."""
import json

import yaml

from conftest import render

SECRET = 'pw-with "quotes" and: colons # and hashes'


CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
PUSH = 'push pw `"\\ #;${x} $__env{HOME} end '


def test_datasource_is_a_loki_datasource_with_the_secret_in_secure_json_data():
    text = render("grafana-datasource-loki.yaml.j2", loki_datasource_password=SECRET, observability_tls_ca_pem=CA)
    doc = yaml.safe_load(text)
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "loki"
    # Through the TLS proxy, trusting the deploy's CA only.
    assert ds["url"] == "https://192.0.2.10:3443"
    assert ds["jsonData"]["tlsAuthWithCACert"] is True
    assert ds["secureJsonData"]["tlsCACert"] == CA
    assert ds["basicAuthUser"] == "grafana"
    assert ds["basicAuth"] is True
    # The password survives YAML quoting, and lives only under secureJsonData.
    assert ds["secureJsonData"]["basicAuthPassword"] == SECRET
    assert text.count(json.dumps(SECRET)) == 1


def test_datasource_has_a_plain_type_loki_line_for_safe_grep():
    """Check C1 proves the type with a grep; keep the line greppable."""
    text = render("grafana-datasource-loki.yaml.j2", loki_datasource_password="x" * 12, observability_tls_ca_pem=CA)
    assert any(line.strip() == "type: loki" for line in text.splitlines())


def braces_balanced(text):
    depth = 0
    for ch in text:
        depth += ch == "{"
        depth -= ch == "}"
        if depth < 0:
            return False
    return depth == 0


def test_datasource_without_our_proxy_is_plain_http_to_loki():
    text = render("grafana-datasource-loki.yaml.j2", loki_datasource_password="x" * 12, loki_proxy_enabled=False)
    (ds,) = yaml.safe_load(text)["datasources"]
    assert ds["url"] == "http://192.0.2.10:3100"
    assert "tlsCACert" not in ds["secureJsonData"] and "tlsAuthWithCACert" not in ds["jsonData"]


def alloy_endpoint(text):
    """The loki.write endpoint block, parsed by the Alloy LAB STAND-IN's parser (Alloy's grammar)."""
    from homeops_dev import labcode

    alloysyntax = labcode.load("alloysyntax", "lab/packages/alloy/usr/lib/alloy-lab/alloysyntax.py")

    def as_dict(block):
        out = {"args": {}, "blocks": {}}
        for st in block.body:
            if isinstance(st, alloysyntax.Attr):
                out["args"][st.name] = alloysyntax.value(st.expr, lambda ref: None)
            else:
                out["blocks"].setdefault(st.name, []).append(as_dict(st))
        return out

    (write,) = [b for b in alloysyntax.parse(text) if isinstance(b, alloysyntax.Block) and b.name == "loki.write"]
    (endpoint,) = as_dict(write)["blocks"]["endpoint"]
    return endpoint


def test_alloy_pushes_through_the_proxy_with_the_exact_password_and_the_ca():
    text = render("alloy-config.alloy.j2", loki_push_password=PUSH)
    ep = alloy_endpoint(text)
    assert ep["args"]["url"] == "https://192.0.2.10:3443/loki/api/v1/push"
    (auth,) = ep["blocks"]["basic_auth"]
    assert auth["args"] == {"username": "alloy", "password": PUSH}
    (tls,) = ep["blocks"]["tls_config"]
    assert tls["args"] == {"ca_file": "/etc/alloy/loki-ca.crt"}


def test_alloy_without_our_proxy_pushes_plain_http_without_credentials():
    ep = alloy_endpoint(render("alloy-config.alloy.j2", loki_proxy_enabled=False))
    assert ep["args"]["url"] == "http://192.0.2.10:3100/loki/api/v1/push"
    assert ep["blocks"] == {}


def test_alloy_linux_config_ships_journal_and_files_to_loki():
    text = render("alloy-config.alloy.j2", loki_push_password=PUSH)
    assert braces_balanced(text.replace(PUSH, ""))
    assert 'url = "https://192.0.2.10:3443/loki/api/v1/push"' in text
    assert 'loki.source.journal "journal"' in text
    assert '"__path__" = "/var/log/*.log"' in text
    assert "windowsevent" not in text
    assert 'host = "srv-01"' in text


def test_alloy_windows_config_reads_event_logs():
    text = render("alloy-config.alloy.j2", ansible_os_family="Windows", inventory_hostname="win-01",
                  loki_push_password="x" * 12, alloy_platform="windows")
    assert braces_balanced(text)
    assert 'ca_file = "C:\\\\Program Files\\\\GrafanaLabs\\\\Alloy\\\\loki-ca.crt"' in text
    assert "loki.source.windowsevent" in text
    assert "loki.source.journal" not in text
    assert 'host = "win-01"' in text
