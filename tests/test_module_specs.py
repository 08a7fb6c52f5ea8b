"""Each module's sidecar docs (library/<name>.yml, with its doc fragments) and its argument spec
agree on every option: name, type, required, default, choices, aliases, list elements,
suboptions. The spec is declared once, in Rust (the SPEC table of modules/<name>/src/main.rs);
the built binary prints it (`library/<name> --argument-spec`, crates/runtime/src/spec.rs), so
nothing here reads Rust source. `make test` builds library/ (make build) before pytest runs.
And the action group `apt` lists only modules that accept every option the group's defaults
may carry."""
import importlib
import json
import os
import subprocess

import pytest
import yaml

from conftest import REPO, load_yaml, module_names

NS = "homeops.observability."


def fragment_options(name):
    assert name.startswith(NS), f"doc fragment {name} is not one of ours"
    # plugins/ is a namespace package from the repository root (pytest.ini: pythonpath).
    mod = importlib.import_module("plugins.doc_fragments." + name[len(NS):])
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


def argument_spec(module, library=os.path.join(REPO, "library")):
    """The options the built binary declares (`MODULE --argument-spec`)."""
    path = os.path.join(library, module)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run make build (make test does it first)")
    proc = subprocess.run([path, "--argument-spec"], capture_output=True, timeout=30,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"{path} --argument-spec printed no JSON (rc {proc.returncode}): "
                    f"{proc.stdout[:200]!r} {proc.stderr[:200]!r}; is it built from this tree (make build)?")
    assert proc.returncode == 0 and not answer.get("failed"), f"{module}: {answer.get('msg', answer)}"
    assert answer["module"] == module, f"library/{module} says it is {answer['module']}"
    return answer["options"]


def as_doc(param):
    """The declared parameter in the words of a DOCUMENTATION option (suboptions included)."""
    doc = {"type": param["type"], "required": param["required"], "default": param["default"],
           "choices": param["choices"], "aliases": sorted(param["aliases"])}
    if param["type"] == "list":
        doc["elements"] = param["elements"]
    if param["suboptions"] is not None:
        doc["suboptions"] = {name: as_doc(sub) for name, sub in param["suboptions"].items()}
    return doc


def normalised(option):
    doc = {"type": option.get("type", "str"), "required": bool(option.get("required", False)),
           "default": option.get("default"), "choices": option.get("choices", []),
           "aliases": sorted(option.get("aliases", []))}
    if doc["type"] == "list":
        doc["elements"] = option.get("elements")
    if "suboptions" in option:
        doc["suboptions"] = {name: normalised(sub) for name, sub in option["suboptions"].items()}
    return doc


@pytest.mark.parametrize("module", module_names())
def test_sidecar_docs_match_the_argument_spec(module):
    spec = argument_spec(module)
    docs = documented_options(module)
    assert sorted(docs) == sorted(spec), (
        f"{module}: documented {sorted(set(docs) - set(spec))} not in the argument spec "
        f"(modules/{module}/src/main.rs); declared but undocumented in library/{module}.yml: "
        f"{sorted(set(spec) - set(docs))}")
    for name, param in spec.items():
        assert normalised(docs[name]) == as_doc(param), (
            f"{module}.{name}: library/{module}.yml documents {normalised(docs[name])}, "
            f"the binary declares {as_doc(param)}: fix the one that is wrong")


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
    # The members are exactly the modules whose docs pull in the shared apt options: derived
    # from the sidecars, never a second list to keep in step.
    sharing = [m for m in module_names()
               if NS + "apt" in load_yaml(os.path.join("library", m + ".yml"))["DOCUMENTATION"].get(
                   "extends_documentation_fragment", [])]
    assert sorted(members) == sharing, (
        f"meta/runtime.yml's group apt lists {sorted(members)}; the modules documented with the "
        f"{NS}apt fragment are {sharing}")
    assert "apt_lockdown" not in members
    for module in members:
        spec = argument_spec(module)
        for name, option in shared.items():
            assert name in spec, f"{module} in group apt lacks the shared option {name}"
            assert as_doc(spec[name])["type"] == option["type"] and spec[name]["default"] == option["default"]
    assert "lock_timeout" not in argument_spec("apt_lockdown")
