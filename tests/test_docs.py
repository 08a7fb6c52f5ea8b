"""The docs keep their promises (issue 24): numbers, ids and paths they quote come from, or are
checked against, their sources.

- README's performance table is generated from the latest runs of docs/benchmarks.md
  (homeops_dev/readme_bench.py), never copied by hand;
- every range of check ids ("checks A-E") in README, AGENTS.md, the Makefile, the runners and
  docs/ ends at the last check section of docs/verification-spec.md;
- every repository path a doc (or a code comment) quotes in backquotes exists in the tree,
  except what runs create (logs/, .lab/, build/, collections/, target/, module binaries, ...);
- docs/reliability.md is generated with a row for every scenario of homeops_dev/faults/.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

ROOT = Path(REPO)
from homeops_dev import readme_bench


def tracked(*suffixes: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, stdout=subprocess.PIPE, check=True).stdout
    files = [ROOT / f for f in out.decode().split("\0") if f and not f.startswith("vendor/")]
    return [f for f in files if f.is_file() and (f.name in suffixes or f.suffix in suffixes)]


# ---- README's performance numbers ----------------------------------------------------------

def test_readme_performance_table_is_the_latest_benchmarks_run():
    text = (ROOT / "README.md").read_text()
    want = readme_bench.replace_block(text, readme_bench.render(readme_bench.BENCH.read_text()))
    assert text == want, ("README.md's performance table is not generated from the latest runs of "
                          "docs/benchmarks.md: run python -m homeops_dev.readme_bench (make bench does)")


def test_a_new_benchmarks_run_makes_the_readme_table_stale():
    """The check can fail: a new run (another ratio) in docs/benchmarks.md changes the block."""
    bench = readme_bench.BENCH.read_text()
    # The first of each is the 3-host section's (whatever its numbers; make bench rewrites them).
    newer = re.sub(r"\| \*\*builtin / ours\*\* \(same run\) \| \*\*[\d.]+x\*\* \| \*\*[\d.]+x\*\* \| \|", "", bench, count=1)
    newer = re.sub(r"(idempotent re-deploy >= \d+x faster than builtin-only \| )[\d.]+x", r"\g<1>9.99x", newer, count=1)
    assert newer != bench, "the fixture lost track of docs/benchmarks.md's 3-host run: update this test"
    assert "| 9.99x |" in readme_bench.render(newer)
    assert readme_bench.render(newer) != readme_bench.render(bench)


def test_readme_quotes_no_ratio_that_the_benchmarks_page_does_not_have():
    """Outside the generated block, the performance section may explain but not quote numbers of
    its own (the first release's 1.23x/1.38x stayed there for weeks)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Performance"):text.index("### Binary size")]
    outside = section[:section.index(readme_bench.BEGIN)] + section[section.index(readme_bench.END):]
    bench = readme_bench.BENCH.read_text()
    ratios = re.findall(r"\b\d+(?:\.\d+)?x\b", outside)
    assert [r for r in ratios if r not in bench] == []


# ---- check ids --------------------------------------------------------------------------------

def spec_sections() -> list[str]:
    return re.findall(r"^## ([A-Z])\. ", (ROOT / "docs" / "verification-spec.md").read_text(), re.M)


RANGE = re.compile(r"(?<![\[\w])([A-Z])-([A-Z])(?![\]\w])")


def check_ranges(files: list[Path]) -> list[str]:
    """"A-X" ranges on lines about checks/verify that do not span the spec's sections."""
    ids = spec_sections()
    bad = []
    for f in files:
        if f.name == "verification-spec.md":
            continue
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            if not re.search(r"check|verif", line, re.I):
                continue
            for a, b in RANGE.findall(line):
                if a == ids[0] and (a, b) != (ids[0], ids[-1]):
                    bad.append(f"{f.relative_to(ROOT)}:{n}: {a}-{b}, the spec has {ids[0]}-{ids[-1]}")
    return bad


def test_check_id_ranges_are_the_specs():
    assert len(spec_sections()) >= 2
    files = tracked(".md", ".py", ".mk", "Makefile", ".sh", ".yml")
    assert check_ranges([f for f in files if "tests" not in f.relative_to(ROOT).parts[:1]]) == []


def test_a_stale_check_range_is_found(tmp_path):
    stale = tmp_path / "AGENTS.md"
    stale.write_text("the verify playbook proves checks A-D (`docs/verification-spec.md`)\n"
                     "a regex [A-Z] and a word A-Za-z are no range\n")
    stale_rel = ROOT / "tests" / "stale-doc.md"
    try:
        stale_rel.write_text(stale.read_text())
        assert check_ranges([stale_rel]) == [f"tests/stale-doc.md:1: A-D, the spec has A-{spec_sections()[-1]}"]
    finally:
        stale_rel.unlink()


# ---- paths quoted in docs and comments -----------------------------------------------------------

# Made by runs, not in git: the build, the venv, the lab's files, logs, results, module binaries.
RUNTIME = ("logs/", ".lab/", "build/", "collections/", "target/", ".venv/", ".ansible/", "bench/results/",
           "bench/twin/", "library/.arch/", ".pytest_cache/", "docs/benchmarks-")
# Paths of other trees that a doc names as such (upstream's source tree, dpkg's).
ELSEWHERE = {"upstream/README.md": ("docs/sources/",), "docs/upstream.md": ("docs/sources/",),
             "docs/runbook.md": ("docs/sources/",), "modules/host_facts/src/version.rs": ("scripts/t/",)}
# Relative to something the sentence names: (file, path) -> what it is relative to.
RELATIVE = {
    ("docs/design.md", "tests/verify_observability.yml"): "playbooks/",
    ("docs/design.md", "meta/main.yml"): "roles/alloy/",
    ("roles/common/README.md", "meta/main.yml"): "roles/loki/",
}
# Named as what must never exist (AGENTS.md: "Never add playbooks/group_vars"): checked absent.
NEVER = {"playbooks/group_vars"}
PATH = re.compile(r"`([^`\s]+)`")


def quoted_paths(f: Path, text: str) -> list[tuple[int, str]]:
    """(line, path) of every backquoted token that starts at a top-level entry of the repository."""
    tops = {p.name for p in ROOT.iterdir()} - {".git"}
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if f.suffix != ".md" and not re.match(r"\s*(#|//)", line):
            continue  # code: its comments only
        for tok in PATH.findall(line):
            tok = re.sub(r":\d+(-\d+)?$", "", tok).rstrip(".,;:)")
            if "/" not in tok or any(c in tok for c in "*<>{}$|=[]()'\"") or tok.startswith(("/", "~", "http")):
                continue
            tok = tok.removeprefix("./")
            if tok.split("/", 1)[0] not in tops and not tok.startswith(("shared/", "../shared/")):
                continue
            out.append((n, tok))
    return out


def missing_paths(files: list[Path]) -> list[str]:
    bad = []
    for f in files:
        rel = str(f.relative_to(ROOT))
        for n, tok in quoted_paths(f, f.read_text(errors="replace")):
            if tok.startswith(RUNTIME) or tok.startswith(ELSEWHERE.get(rel, ("\0",))):
                continue
            if tok.startswith("library/") and not tok.endswith(".yml") and tok.count("/") == 1:
                continue  # a module binary: built by make build
            if tok.startswith(("shared/", "../shared/")):
                # Beside the clone on the dev machines only: optional inputs the code finds there
                # and skips without (real-loki, real-parsers) may be named, nothing else.
                if not tok.startswith(tuple(f"{p}shared/{d}" for p in ("", "../") for d in ("real-loki", "real-parsers"))):
                    bad.append(f"{rel}:{n}: `{tok}` is not in the repository (cite what a reader can open)")
                continue
            if tok in NEVER:
                if (ROOT / tok).exists():
                    bad.append(f"{rel}:{n}: `{tok}` must not exist (the doc says so)")
                continue
            # The path from the root, or from a directory of the file (a crate's tests/...).
            bases = [ROOT / RELATIVE.get((rel, tok), "")] + list(f.parents)
            if not any((b / tok).exists() for b in bases if b == ROOT or ROOT in b.parents):
                bad.append(f"{rel}:{n}: `{tok}` does not exist")
    return bad


def test_paths_in_docs_and_comments_exist():
    files = tracked(".md", ".py", ".rs", ".sh", ".mk", "Makefile", ".yml", ".yaml", ".cfg", ".toml")
    assert missing_paths(files) == []


def test_a_path_that_is_not_in_the_tree_is_found():
    doc = ROOT / "docs" / "stale-path-check.md"
    try:
        doc.write_text("Versions live in `playbooks/group_vars/all/versions.yml` and `roles/common/defaults/main/versions.yml`;\n"
                       "runs write `logs/x.log`, hosts have `/etc/loki/config.yml`, a glob `roles/*/templates/`.\n"
                       "see `shared/reference/ansible-binary-modules.md`; real binaries in `../shared/real-loki`\n")
        assert missing_paths([doc]) == [
            "docs/stale-path-check.md:1: `playbooks/group_vars/all/versions.yml` does not exist",
            "docs/stale-path-check.md:3: `shared/reference/ansible-binary-modules.md` is not in the repository "
            "(cite what a reader can open)"]
    finally:
        doc.unlink()


# ---- docs/reliability.md covers every scenario -----------------------------------------------

def test_reliability_doc_is_generated_for_every_scenario(tmp_path, monkeypatch):
    """write_doc() gets a row and a section per scenario result, in scenario number order (the
    runner passes every scenario of SCENARIOS when it rewrites the doc)."""
    os.environ.setdefault("LAB_ID", "")
    from homeops_dev.faults import run as faults
    doc_path = ROOT / "logs" / f"test-reliability-{os.getpid()}.md"
    monkeypatch.setattr(faults, "DOC", doc_path)
    results = [(num, name, title, True, {"m": 1}, 1.0, [(True, "ok")], fn.__doc__ or "")
               for num, name, title, hosts, fn in faults.SCENARIOS]
    try:
        faults.write_doc(list(reversed(results)))
        doc = doc_path.read_text()
    finally:
        doc_path.unlink(missing_ok=True)
    rows = re.findall(r"^\| (\d+) \| .* \(`(\w+)`\) \| PASS \|", doc, re.M)
    assert [n for n, _ in rows] == sorted((r[0] for r in results), key=int)
    assert {name for _, name in rows} == {r[1] for r in results}
    for num, name, *_ in results:
        assert f"### {num}. " in doc and f"(`{name}`): PASS" in doc
