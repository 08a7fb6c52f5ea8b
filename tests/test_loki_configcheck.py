"""upstream/loki/*.json (Loki's key trees), their extractor and upstream/configcheck.py."""
import glob
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

from upstream import configcheck

EXTRACT = os.path.join(REPO, "scripts", "extract-loki-config.py")
TREES = sorted(glob.glob(os.path.join(REPO, "upstream/loki/*.json")))
# A clone of github.com/grafana/loki to re-extract from (the search tool's fetch puts one here).
MIRROR = os.environ.get("HOMEOPS_LOKI_MIRROR", "/work/.mirror/grafana+loki/repo")


def tree(version):
    return configcheck.load_tree(configcheck.tree_path(version))


# A reference in the upstream format, small, with every construct the extractor must resolve.
REFERENCE = """
## Configuration file reference

### Supported contents and default values of `loki.yaml`

```yaml
# The target.
# CLI flag: -target
[target: <string> | default = "all"]

[server: <server>]

ruler_storage:
  [<thanos_object_store_config>]

  local:
    # Directory to scan for rules
    [directory: <string> | default = ""]

[schema_config: <schema_config>]

[named: <map of string to server>]
```

### server

```yaml
[http_listen_port: <int> | default = 3100]

[log_level: <string> | default = "info"]

[flag: <boolean> | default = false]

client:
  proxy_url:
    [url: <url>]

  http_headers:
    [: <map of string to Header>]
```

### schema_config

Example first, as some sections have:
```yaml
schema_config:
  configs:
    - from: 2020-01-01
```

```yaml
[configs: <list of period_configs>]
```

### period_config

```yaml
[from: <daytime>]

index:
  [period: <duration>]
```

### thanos_object_store_config

```yaml
[backend: <string> | default = "filesystem"]
```

## Runtime Configuration file

```yaml
[file: <string>: default = empty]
```
"""


def extract(tmp_path, text):
    src = tmp_path / "ref.md"
    src.write_text(text)
    out = tmp_path / "tree.json"
    run = subprocess.run([sys.executable, EXTRACT, "--markdown", str(src), "--out", str(out)],
                         capture_output=True, text=True)
    return run, (json.loads(out.read_text()) if run.returncode == 0 else None)


def test_extractor_resolves_blocks_embeds_lists_and_maps(tmp_path):
    run, t = extract(tmp_path, REFERENCE)
    assert run.returncode == 0, run.stderr
    root, blocks = t["root"], t["blocks"]
    assert root["target"] == {"type": "string", "default": '"all"'}
    assert root["server"] == {"block": "server"}
    assert root["named"] == {"map_of": "server"}
    # [<thanos_object_store_config>] embeds that block's fields in the parent.
    assert set(root["ruler_storage"]["fields"]) == {"backend", "local"}
    assert blocks["schema_config"] == {"configs": {"list_of": "period_config"}}  # not the example
    assert blocks["period_config"]["index"] == {"fields": {"period": {"type": "duration"}}}
    client = blocks["server"]["client"]["fields"]
    assert client["proxy_url"] == {"type": "url"}  # a string in YAML, not a block
    assert client["http_headers"] == {"type": "map of string to Header"}
    assert "file" not in root  # the runtime-config section is not the config file


def test_extractor_refuses_an_unresolved_block(tmp_path):
    run, _ = extract(tmp_path, REFERENCE.replace("[server: <server>]", "[server: <server_config>]"))
    assert run.returncode != 0
    assert "type <server_config> is neither a placeholder nor a block" in run.stderr


def test_extractor_refuses_syntax_it_does_not_know(tmp_path):
    run, _ = extract(tmp_path, REFERENCE.replace("[from: <daytime>]", "from = daytime"))
    assert run.returncode != 0
    assert "not schema syntax" in run.stderr


@pytest.mark.parametrize("path", TREES, ids=os.path.basename)
def test_each_tree_names_its_upstream_source(path):
    t = configcheck.load_tree(path)
    version = os.path.basename(path)[: -len(".json")]
    assert t["version"] == version
    src = t["source"]
    assert src["repo"] == "github.com/grafana/loki"
    assert src["tag"] == f"v{version}"
    assert len(src["commit"]) == 40
    assert src["file"].startswith("docs/sources/")
    assert t["extracted_by"] == "scripts/extract-loki-config.py"
    # A real reference: dozens of blocks, the ones our config uses among them.
    assert len(t["blocks"]) > 40
    assert {"server", "common", "limits_config", "period_config", "compactor", "ruler"} <= set(t["blocks"])


@pytest.mark.skipif(not os.path.isdir(MIRROR), reason=f"no Loki git mirror at {MIRROR} (set HOMEOPS_LOKI_MIRROR)")
@pytest.mark.parametrize("path", TREES, ids=os.path.basename)
def test_committed_tree_is_what_the_extractor_makes(path, tmp_path):
    t = configcheck.load_tree(path)
    out = tmp_path / "t.json"
    subprocess.run([sys.executable, EXTRACT, "--git-dir", MIRROR, "--tag", t["source"]["tag"], "--out", str(out)],
                   check=True, capture_output=True)
    assert json.loads(out.read_text()) == t


def test_multi_variant_queries_exist_from_3_5_only():
    assert "enable_multi_variant_queries" not in tree("3.4.3")["blocks"]["limits_config"]
    assert tree("3.5.7")["blocks"]["limits_config"]["enable_multi_variant_queries"]["type"] == "boolean"
    # The seed's name never existed.
    for path in TREES:
        assert "enable_multi_variant_querier" not in json.dumps(configcheck.load_tree(path))


def test_keys_loki_3_removed_are_in_no_tree():
    for path in TREES:
        t = configcheck.load_tree(path)
        assert "shared_store" not in t["blocks"]["compactor"]
        assert "max_look_back_period" not in t["blocks"]["chunk_store_config"]
        assert "split_queries_by_interval" not in t["blocks"]["query_range"]


CONFIG = """\
auth_enabled: false
server:
  http_listen_port: 3100
common:
  path_prefix: /var/lib/loki
  storage:
    filesystem:
      chunks_directory: /var/lib/loki/chunks
schema_config:
  configs:
    - from: "2024-04-01"
      store: tsdb
      object_store: filesystem
      schema: v13
      index:
        prefix: index_
        period: 24h
limits_config:
  retention_period: 744h
"""


def test_a_valid_config_has_no_errors():
    assert configcheck.loki_errors(CONFIG, tree("3.5.7")) == []
    assert configcheck.loki_errors("", tree("3.5.7")) == []


# (text to replace, its replacement, the line to point at, the error there)
EDITS = [
    ("limits_config:\n", "limits_config:\n  enable_multi_variant_querier: true\n",
     "enable_multi_variant_querier", "field enable_multi_variant_querier not found in type limits_config"),
    ("      index:\n", "      shared_store: x\n      index:\n",
     "shared_store", "field shared_store not found in type period_config"),
    ("limits_config:\n", "compactor:\n  shared_store_key_prefix: x\nlimits_config:\n",
     "shared_store_key_prefix", "field shared_store_key_prefix not found in type compactor"),
    ("      chunks_directory:", "      chunks_dir:",
     "chunks_dir", "field chunks_dir not found in type common.storage.filesystem"),
    ("auth_enabled: false\n", "auth_enabled: false\nbogus: 1\n",
     "bogus", "field bogus not found in type loki.ConfigWrapper"),
    ("auth_enabled: false", "auth_enabled: maybe", "auth_enabled", "cannot unmarshal !!str `maybe` into bool"),
    ("http_listen_port: 3100", "http_listen_port: high", "http_listen_port", "cannot unmarshal !!str `high` into int"),
    ("server:\n  http_listen_port: 3100\n", "server: 3100\n", "server", "cannot unmarshal !!int `3100` into server"),
    ("  configs:\n    - from", "  configs: 1\n  old:\n    - from",
     "configs", "cannot unmarshal !!int `1` into []period_config"),
    ("server:\n", "server:\n  http_listen_port: 1\n",
     "http_listen_port: 3100", "field http_listen_port already set in type server"),
]


@pytest.mark.parametrize("old, new, at, error", EDITS, ids=[e[3] for e in EDITS])
def test_unknown_removed_or_mistyped_keys_are_caught(old, new, at, error):
    assert old in CONFIG
    text = CONFIG.replace(old, new, 1)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if at in t)
    errors = configcheck.loki_errors(text, tree("3.5.7"))
    assert f"line {line}: {error}" in errors
    # Nothing else is reported, but what the edit broke (a key the edit orphaned).
    assert all(e == f"line {line}: {error}" or "field old not found" in e for e in errors), errors


def test_not_yaml_is_one_yaml_error():
    errors = configcheck.loki_errors("server: [\n", tree("3.5.7"))
    assert len(errors) == 1 and errors[0].startswith("yaml: line ")


def test_failure_text_is_lokis():
    text = configcheck.format_failure("/etc/loki/config.yml", ["line 2: field x not found in type y", "line 3: z"])
    assert text == (
        "failed parsing config: /etc/loki/config.yml: yaml: unmarshal errors:\n"
        "  line 2: field x not found in type y\n  line 3: z. Use `-config.expand-env=true` flag if you "
        "want to expand environment variables in your config file"
    )
