"""The Grafana datasource and Alloy templates render to what their consumers parse."""
import json

import yaml

from conftest import render

SECRET = 'pw-with "quotes" and: colons # and hashes'


def test_datasource_is_a_loki_datasource_with_the_secret_in_secure_json_data():
    text = render("grafana-datasource-loki.yaml.j2", loki_datasource_password=SECRET)
    doc = yaml.safe_load(text)
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "loki"
    assert ds["url"] == "http://192.0.2.10:3100"
    assert ds["basicAuth"] is True
    # The password survives YAML quoting, and lives only under secureJsonData.
    assert ds["secureJsonData"]["basicAuthPassword"] == SECRET
    assert text.count(json.dumps(SECRET)) == 1


def test_datasource_has_a_plain_type_loki_line_for_safe_grep():
    """Check C1 proves the type with a grep; keep the line greppable."""
    text = render("grafana-datasource-loki.yaml.j2", loki_datasource_password="x" * 12)
    assert any(line.strip() == "type: loki" for line in text.splitlines())


def braces_balanced(text):
    depth = 0
    for ch in text:
        depth += ch == "{"
        depth -= ch == "}"
        if depth < 0:
            return False
    return depth == 0


def test_alloy_linux_config_ships_journal_and_files_to_loki():
    text = render("alloy-config.alloy.j2")
    assert braces_balanced(text)
    assert 'url = "http://192.0.2.10:3100/loki/api/v1/push"' in text
    assert 'loki.source.journal "journal"' in text
    assert '"__path__" = "/var/log/*.log"' in text
    assert "windowsevent" not in text
    assert 'host = "srv-01"' in text


def test_alloy_windows_config_reads_event_logs():
    text = render("alloy-config.alloy.j2", ansible_os_family="Windows", inventory_hostname="win-01")
    assert braces_balanced(text)
    assert "loki.source.windowsevent" in text
    assert "loki.source.journal" not in text
    assert 'host = "win-01"' in text
