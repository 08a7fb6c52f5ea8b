"""Each module's sidecar docs (library/<name>.yml, with its doc fragments) and its argument spec
in Rust (the SPEC table in modules/<name>/src/main.rs) agree on every option: name, type,
required, default, choices, aliases, list elements. And the action group `apt` lists only
modules that accept every option the group's defaults may carry."""
import importlib.util
import os

import pytest
import yaml

from conftest import REPO, load_yaml, module_names
from rust_spec import SpecError, parse_spec

NS = "homeops.observability."


def fragment_options(name):
    assert name.startswith(NS), f"doc fragment {name} is not one of ours"
    path = os.path.join(REPO, "plugins", "doc_fragments", name[len(NS):] + ".py")
    spec = importlib.util.spec_from_file_location("fragment_" + name[len(NS):], path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return yaml.safe_load(mod.ModuleDocFragment.DOCUMENTATION)["options"]


def documented_options(module):
    doc = load_yaml(os.path.join("library", module + ".yml"))["DOCUMENTATION"]
    options = {}
    for fragment in doc.get("extends_documentation_fragment", []):
        options.update(fragment_options(fragment))
    for name, option in (doc.get("options") or {}).items():
        assert name not in options, f"{module}: option {name} is documented in the sidecar and in a fragment"
        options[name] = option
    return options


def rust_spec(module):
    with open(os.path.join(REPO, "modules", module, "src", "main.rs"), encoding="utf-8") as f:
        return parse_spec(f.read())


def as_doc(param):
    """The Rust parameter in the words of a DOCUMENTATION option."""
    doc = {"type": param["type"], "required": param["required"], "default": param["default"],
           "choices": param["choices"], "aliases": sorted(param["aliases"])}
    if param["type"] == "list":
        doc["elements"] = "dict" if "options" in param else "str"
    if "options" in param:
        doc["suboptions"] = {name: as_doc(sub) for name, sub in param["options"].items()}
    return doc


def normalised(option):
    doc = {"type": option.get("type", "str"), "required": bool(option.get("required", False)),
           "default": option.get("default"), "choices": option.get("choices", []),
           "aliases": sorted(option.get("aliases", []))}
    if doc["type"] == "list":
        doc["elements"] = option.get("elements")
    if doc["type"] == "list" and doc["elements"] == "dict":
        doc["suboptions"] = {name: normalised(sub) for name, sub in (option.get("suboptions") or {}).items()}
    return doc


@pytest.mark.parametrize("module", module_names())
def test_sidecar_docs_match_the_rust_spec(module):
    spec = rust_spec(module)
    docs = documented_options(module)
    assert sorted(docs) == sorted(spec), (
        f"{module}: documented {sorted(set(docs) - set(spec))} not in the Rust spec; "
        f"in the Rust spec but undocumented: {sorted(set(spec) - set(docs))}")
    for name, param in spec.items():
        assert normalised(docs[name]) == as_doc(param), f"{module}.{name}: docs {docs[name]} vs Rust {param}"


def test_every_module_has_sidecar_docs_and_every_sidecar_a_module():
    sidecars = {f[:-4] for f in os.listdir(os.path.join(REPO, "library")) if f.endswith(".yml")}
    assert sidecars == set(module_names())


def test_the_apt_action_group_lists_only_modules_that_take_every_shared_option():
    """ansible-core hands a group's module_defaults to every member as task arguments, and our
    modules reject options they lack ("Unsupported parameters"): apt_lockdown has none of the
    shared apt options, so it must stay out of the group."""
    groups = load_yaml("meta/runtime.yml")["action_groups"]
    shared = fragment_options(NS + "apt")
    members = groups["apt"]
    assert set(members) == {"apt_packages", "kernel_headers"}
    for module in members:
        spec = rust_spec(module)
        for name, option in shared.items():
            assert name in spec, f"{module} in group apt lacks the shared option {name}"
            assert as_doc(spec[name])["type"] == option["type"] and spec[name]["default"] == option["default"]
    assert "lock_timeout" not in rust_spec("apt_lockdown")


# The parser itself, on small sources, including the ways a spec can be misread.
SRC = '''
const DEFAULT_UNITS: &[&str] = &[
    "a.timer", // the first
    "b.service",
];
pub const FILE: &str = "/var/x.json";
const SPEC: &[Param] = &[
    Param::str("state")
        .default(Default::Str("locked"))
        .choices(&["locked", "released"]),
    // a comment with Param::int("ghost")
    Param::list("units").default(Default::List(DEFAULT_UNITS)).aliases(&["unit"]),
    Param::int("wait").default(Default::Int(600)).min(0),
    Param::str("file").default(Default::Str(FILE)),
    Param::str("secret").no_log().required(),
    Param::list("empty").default(Default::List(&[])),
];
'''


def test_parser_reads_every_builder_call():
    spec = parse_spec(SRC)
    assert list(spec) == ["state", "units", "wait", "file", "secret", "empty"]
    assert spec["state"]["default"] == "locked" and spec["state"]["choices"] == ["locked", "released"]
    assert spec["units"]["default"] == ["a.timer", "b.service"] and spec["units"]["aliases"] == ["unit"]
    assert spec["wait"] == {"type": "int", "required": False, "default": 600, "choices": [], "aliases": [],
                            "no_log": False, "min": 0}
    assert spec["file"]["default"] == "/var/x.json"
    assert spec["secret"]["required"] and spec["secret"]["no_log"] and spec["secret"]["default"] is None
    assert spec["empty"]["default"] == []


def test_parser_reads_a_list_of_dicts_and_its_options_table():
    src = '''
pub(crate) const ENTRY: &[Param] = &[
    Param::str("path").required(),
    Param::str("state").default(Default::Str("file")).choices(&["file", "absent"]),
    Param::bool("secret"),
];
const SPEC: &[Param] = &[
    Param::dicts("files", ENTRY).required(),
    Param::bool("secret").default(Default::Bool(false)),
];
'''
    spec = parse_spec(src)
    assert list(spec) == ["files", "secret"]
    files = spec["files"]
    assert files["type"] == "list" and files["required"]
    assert list(files["options"]) == ["path", "state", "secret"]
    assert files["options"]["state"]["choices"] == ["file", "absent"]
    assert as_doc(files)["elements"] == "dict"
    assert as_doc(files)["suboptions"]["path"]["required"] is True
    # A documented suboption that differs is a mismatch.
    docs = {"type": "list", "elements": "dict", "required": True, "suboptions": {
        "path": {"type": "str", "required": True},
        "state": {"type": "str", "default": "file", "choices": ["file", "absent"]},
        "secret": {"type": "bool"}}}
    assert normalised(docs) == as_doc(files)
    docs["suboptions"]["state"]["default"] = "absent"
    assert normalised(docs) != as_doc(files)
    with pytest.raises(SpecError, match="no `const MISSING"):
        parse_spec('const SPEC: &[Param] = &[Param::dicts("f", MISSING)];')


@pytest.mark.parametrize("bad, message", [
    ('const SPEC: &[Param] = &[Param::str("a").deprecated("x")];', "unknown Param method"),
    ('const SPEC: &[Param] = &[Param::float("a")];', "unknown parameter kind"),
    ('const SPEC: &[Param] = &[Param::int("a").default(Default::Str("x"))];', "Default::Str"),
    ('const SPEC: &[Param] = &[Param::str("a").default(Default::Str(MISSING))];', "cannot read the value"),
    ('const SPEC: &[Param] = &[Param::str("a"), Param::str("a")];', "declared twice"),
    ('const OTHER: &[Param] = &[Param::str("a")];', "no `const SPEC"),
])
def test_parser_refuses_what_it_does_not_understand(bad, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(bad)
