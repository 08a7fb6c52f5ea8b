#!/usr/bin/env python3
"""README's performance table, generated from the latest runs in docs/benchmarks.md.

`make bench` rewrites its host count's section of docs/benchmarks.md and then runs this, so the
README never carries numbers of an older run (issue 24: it showed the first release's 1.23x and
1.38x long after the bench said 5.64x). tests/test_docs.py fails when README's block is not what
this prints for the current docs/benchmarks.md.

Usage: python -m homeops_dev.readme_bench          rewrite the block in README.md
       python -m homeops_dev.readme_bench --check  exit 1 (saying so) when README.md's block is stale
Standard library only.
"""
from __future__ import annotations

import re
import sys

from homeops_dev import ROOT  # noqa: E402
BENCH = ROOT / "docs" / "benchmarks.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- readme-bench:begin (homeops_dev/readme_bench.py) -->", "<!-- readme-bench:end -->"


class BenchDocError(Exception):
    pass


def sections(text: str) -> dict[int, str]:
    """{host count: its section} of docs/benchmarks.md (between bench:<N>hosts:begin/end)."""
    found = {int(n): body for n, body in
             re.findall(r"<!-- bench:(\d+)hosts:begin -->\n(.*?)<!-- bench:\1hosts:end -->", text, re.S)}
    if not found:
        raise BenchDocError(f"{BENCH.relative_to(ROOT)} has no bench:<N>hosts section: run make bench")
    return found


def _one(pattern: str, body: str, what: str, hosts: int) -> re.Match:
    m = re.search(pattern, body, re.M)
    if not m:
        raise BenchDocError(f"{BENCH.relative_to(ROOT)}, {hosts}-host section: no {what} "
                            f"(the bench's format changed? adapt homeops_dev/readme_bench.py)")
    return m


def summary(hosts: int, body: str, with_per_task: bool = True) -> dict:
    """What README quotes of one section: run date, commit, per-task rows (the smallest section's
    only: a larger one may hold the deploy series alone), the deploy ratios."""
    run = _one(r"^## \d+ hosts: run of (.+)$", body, "run date", hosts).group(1).strip()
    commit = _one(r"^\| commit \| `([0-9a-f]+)`", body, "commit", hosts).group(1)
    per_task = []
    table = "" if not with_per_task else _one(r"^\| module \| ours, fast path \(ms\) \|.*?\n\|[-|:]+\n((?:\|.*\n)+)", body,
                 "per-task table", hosts).group(1)
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        # module | fast | standard | builtin | builtin equivalent | fast/raw | builtin/fast | standard/fast
        if len(cells) >= 7:
            per_task.append((cells[0], cells[1], cells[3], cells[4], cells[6]))
    deploy = {}
    for key, label in (("first", "first deploy"), ("again", "idempotent re-deploy")):
        m = _one(rf"^\| {label}\b[^|]*>= [^|]*\| ([0-9.]+x) \(([0-9.]+) vs ([0-9.]+) s\) \|", body,
                 f"'{label}' target row", hosts)
        deploy[key] = m.groups()
    return {"hosts": hosts, "run": run, "commit": commit, "per_task": per_task, "deploy": deploy}


def render(text: str) -> str:
    """The README block for the docs/benchmarks.md text given."""
    secs = sections(text)
    small = min(secs)
    s = summary(small, secs[small])
    out = [BEGIN,
           f"Latest {small}-host run in `docs/benchmarks.md` (run of {s['run']}, commit `{s['commit']}`; "
           "medians; the lab's hosts share the controller's 2 cores):",
           "",
           "| | ours (fast path) | builtin equivalent | builtin / ours |",
           "|---|---:|---:|---:|"]
    for module, fast, builtin, equivalent, ratio in s["per_task"]:
        out.append(f"| {module} no-op task | {fast} ms | {builtin} ms ({equivalent}) | {ratio} |")
    f_ratio, f_ours, f_twin = s["deploy"]["first"]
    a_ratio, a_ours, a_twin = s["deploy"]["again"]
    out.append(f"| whole deploy, fresh hosts | {f_ours} s | {f_twin} s (builtin-only twin) | {f_ratio} |")
    out.append(f"| whole deploy, idempotent re-run | {a_ours} s | {a_twin} s | {a_ratio} |")
    for n in sorted(secs):
        if n == small:
            continue
        o = summary(n, secs[n], with_per_task=False)
        out += ["", f"At {n} hosts (run of {o['run']}, commit `{o['commit']}`): whole deploy "
                    f"{o['deploy']['first'][0]} on fresh hosts, {o['deploy']['again'][0]} on the idempotent re-run."]
    out.append(END)
    return "\n".join(out)


def replace_block(readme: str, block: str) -> str:
    if readme.count(BEGIN) != 1 or readme.count(END) != 1:
        raise BenchDocError(f"README.md must hold the block markers once each: {BEGIN} ... {END}")
    a, b = readme.index(BEGIN), readme.index(END) + len(END)
    return readme[:a] + block + readme[b:]


def main(argv: list[str]) -> int:
    try:
        block = render(BENCH.read_text())
        old = README.read_text()
        new = replace_block(old, block)
    except BenchDocError as e:
        print(f"readme_bench: {e}", file=sys.stderr)
        return 1
    if argv[1:] == ["--check"]:
        if new != old:
            print("readme_bench: README.md's performance table is not the latest run of docs/benchmarks.md: "
                  "run python -m homeops_dev.readme_bench", file=sys.stderr)
            return 1
        return 0
    if new != old:
        README.write_text(new)
        print("readme_bench: README.md's performance table rewritten from docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
