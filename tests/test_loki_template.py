"""roles/loki/templates/loki-config.yaml.j2 renders to a config every supported Loki accepts."""
import glob
import os

import pytest
import yaml

from conftest import REPO, load_yaml, render

from upstream import configcheck  # upstream/configcheck.py, also shipped in the lab's stand-in

# The supported versions are the ones we have Loki's key tree for (upstream/loki/<v>.json):
# one list, and a version cannot be "supported" without its upstream check.
SUPPORTED_VERSIONS = sorted(
    (os.path.basename(p)[: -len(".json")] for p in glob.glob(os.path.join(REPO, "upstream/loki/*.json"))),
    key=lambda v: tuple(int(x) for x in v.split(".")),
)
PINNED = load_yaml("roles/common/defaults/main/versions.yml")["loki_version"]
PREVIOUS_PIN = "3.4.3"

# Keys Loki 3.0 removed: a config that has them does not start ("field X not found").
REMOVED_ANYWHERE = {
    "shared_store",
    "shared_store_key_prefix",
    "max_transfer_retries",
    "enforce_metric_name",
    "max_look_back_period",
    "use_boltdb_shipper_as_backup",
    # Never existed under this name (the real key is limits_config.enable_multi_variant_queries).
    "enable_multi_variant_querier",
}
REMOVED_AT = {
    ("query_range", "split_queries_by_interval"),
    ("frontend_worker", "parallelism"),
}


def walk(node, path=()):
    """Yield the key path of every mapping key in the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path + (key,)
            yield from walk(value, path + (key,))
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, path)


def vtuple(version):
    return tuple(int(p) for p in version.split("."))


@pytest.fixture(params=SUPPORTED_VERSIONS)
def rendered(request):
    text = render("loki-config.yaml.j2", loki_version=request.param)
    return request.param, text, yaml.safe_load(text)


def test_the_pins_have_key_trees():
    assert PINNED in SUPPORTED_VERSIONS, f"upstream/loki/{PINNED}.json is missing (upstream/README.md says how to add it)"
    assert PREVIOUS_PIN in SUPPORTED_VERSIONS


def test_rendered_config_has_only_keys_of_its_loki_version(rendered):
    """Loki parses strictly: the render of each version against that version's upstream key tree."""
    version, text, _ = rendered
    tree = configcheck.load_tree(configcheck.tree_path(version))
    assert tree["version"] == version
    assert configcheck.loki_errors(text, tree) == []


def test_the_3_5_render_is_refused_by_the_3_4_tree():
    """The version gate matters: without it, Loki 3.4 would not start."""
    text = render("loki-config.yaml.j2", loki_version="3.5.7")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "enable_multi_variant_queries:" in t)
    errors = configcheck.loki_errors(text, configcheck.load_tree(configcheck.tree_path(PREVIOUS_PIN)))
    assert errors == [f"line {line}: field enable_multi_variant_queries not found in type limits_config"]


def test_renders_to_a_yaml_mapping(rendered):
    _, _, config = rendered
    assert isinstance(config, dict)


def test_has_no_key_loki_3_removed(rendered):
    version, _, config = rendered
    for key_path in walk(config):
        assert key_path[-1] not in REMOVED_ANYWHERE, f"{version}: removed key {'.'.join(key_path)}"
        if len(key_path) >= 2:
            assert tuple(key_path[-2:]) not in REMOVED_AT, f"{version}: removed key {'.'.join(key_path)}"


def test_multi_variant_queries_only_from_3_5(rendered):
    version, text, config = rendered
    assert "enable_multi_variant_querier" not in text
    limits = config["limits_config"]
    if vtuple(version) >= (3, 5, 0):
        assert limits.get("enable_multi_variant_queries") is True
    else:
        assert "enable_multi_variant_queries" not in limits
    # Only ever under limits_config.
    paths = [p for p in walk(config) if p[-1] == "enable_multi_variant_queries"]
    assert all(p == ("limits_config", "enable_multi_variant_queries") for p in paths)


def test_is_a_sensible_single_node_config(rendered):
    _, _, config = rendered
    assert config["auth_enabled"] is False
    assert config["server"]["http_listen_port"] == 3100
    assert config["server"]["grpc_listen_port"] == 9096
    common = config["common"]
    assert common["path_prefix"] == "/var/lib/loki"
    assert common["replication_factor"] == 1
    assert common["ring"]["kvstore"]["store"] == "inmemory"
    assert "filesystem" in common["storage"]
    schemas = config["schema_config"]["configs"]
    assert schemas and all(s["store"] == "tsdb" and s["schema"] == "v13" for s in schemas)
    assert all(s["object_store"] == "filesystem" for s in schemas)


def test_every_path_is_under_the_data_dir(rendered):
    """The deploy creates loki_data_dir and its subdirs loki:loki 0750: the config must not
    point Loki anywhere else, or it fails to start as user loki."""
    _, _, config = rendered

    def strings(node):
        if isinstance(node, dict):
            for value in node.values():
                yield from strings(value)
        elif isinstance(node, list):
            for item in node:
                yield from strings(item)
        elif isinstance(node, str):
            yield node

    paths = [s for s in strings(config) if s.startswith("/")]
    assert paths
    assert all(p == "/var/lib/loki" or p.startswith("/var/lib/loki/") for p in paths), paths


def test_data_subdirs_cover_the_config_paths():
    from conftest import group_vars

    _, variables = group_vars()
    subdirs = {f"/var/lib/loki/{d}" for d in variables["loki_data_subdirs"]}
    config = yaml.safe_load(render("loki-config.yaml.j2", loki_version="3.5.7"))
    used = {
        config["common"]["storage"]["filesystem"]["chunks_directory"],
        config["common"]["storage"]["filesystem"]["rules_directory"],
        config["storage_config"]["tsdb_shipper"]["active_index_directory"],
        config["storage_config"]["tsdb_shipper"]["cache_location"],
        config["compactor"]["working_directory"],
        config["ingester"]["wal"]["dir"],
        config["ruler"]["rule_path"],
    }
    assert used <= subdirs, used - subdirs


def test_pinned_version_is_supported():
    versions = load_yaml("roles/common/defaults/main/versions.yml")
    assert vtuple(versions["loki_version"]) >= (3, 0, 0)
