"""The report of make bench: its section of docs/benchmarks.md (the series a run did not measure
carried over from the run before) and the chart."""
from __future__ import annotations

import json
import re
from pathlib import Path

from homeops_dev import ROOT
from homeops_dev.bench.common import BENCH, DOC, MIB


def fmt(x, d=1):
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    return f"{x:.{d}f}"


def mark(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def render_section(r: dict, prev: dict | None) -> str:
    m, pt, dep, oh, sz, ops = r["machine"], r.get("per_task"), r.get("deploy"), r.get("on_host"), r["sizes"], r.get("ssh_ops")
    h = r["hosts"]
    L = []
    L.append(f"## {h} hosts: run of {r['date']}")
    L.append("")
    L.append("| | |")
    L.append("|---|---|")
    L.append(f"| machine | {m['cpu']}, {m['cores']} cores, {m['mem_mib'] // 1024} GiB; {m['os']}, kernel {m['kernel']} |")
    L.append(f"| versions | {m['ansible_core']}, Python {m['python']}, {m['rustc']}, {m['openssh']} |")
    L.append(f"| commit | `{m['commit']}`{' (with uncommitted changes)' if m['dirty'] else ''} |")
    if r.get("sha256"):
        L.append("| module binaries | " + ", ".join(f"`{k}` {v}" for k, v in r["sha256"].items())
                 + " (sha256 prefixes; the run used one snapshot of `library/`) |")
    if r.get("library") != str(ROOT / "library"):
        L.append(f"| module binaries | **{r['library']}** (BENCH_LIBRARY: not the built modules) |")
    L.append(f"| lab | {h} hosts (systemd-nspawn on this machine, sharing its {m['cores']} cores), forks 10, pipelining on, ControlPersist 60 s |")
    L.append(f"| load (1/5/15 min) | start {' '.join(fmt(x, 2) for x in r['load_start'])}, end {' '.join(fmt(x, 2) for x in r['load_end'])}; "
             f"other sessions share this machine |")
    L.append(f"| took | {fmt(r['duration_s'] / 60, 1)} min, {r['lab_cycles']} lab up(s) |")
    if r.get("merged"):
        L.append(f"| merged | {'; '.join(r['merged'])} |")
    if r.get("interference"):
        L.append(f"| interruptions | {len(r['interference'])}: somebody else restarted the lab; the series was run again on a fresh lab |")
    L.append("")
    if pt:
        L.append(f"### Per task: {pt['n']} identical no-op tasks per play, median of {pt['rounds']} rounds")
        L.append("")
        L.append(f"Per-task time = (play wall time - empty play) / {pt['n']}, one task on all {h} hosts at once. "
                 f"Empty play: {fmt(pt['empty_s'], 2)} s. Floor `raw: /bin/true`: **{fmt(pt['raw_ms'])} ms**/task. "
                 "Ratios are per round (same round), then the median.")
        L.append("")
        L.append("| module | ours, fast path (ms) | ours, standard transfer (ms) | builtin (ms) | builtin equivalent | fast / raw floor | builtin / fast | standard / fast |")
        L.append("|---|---:|---:|---:|---|---:|---:|---:|")
        for name, x in pt["modules"].items():
            L.append(f"| `{name}` | {fmt(x['fast_ms'])} | {fmt(x['standard_ms'])} | {fmt(x['builtin_ms'])} | "
                     f"{x['builtin_label']}{' (' + str(x['builtin_tasks']) + ' tasks)' if x['builtin_tasks'] > 1 else ''} | "
                     f"{fmt(x['fast_over_raw'], 2)}x | {fmt(x['builtin_over_fast'], 2)}x | {fmt(x['standard_over_fast'], 2)}x |")
        L.append("")
    if dep:
        L.append(f"### Whole deploy: median of {dep['runs']} run(s), fresh lab (down + up) before each first run")
        L.append("")
        L.append("| playbook | first run, fresh hosts (s) | idempotent re-run (s) | re-run controller CPU (s) |")
        L.append("|---|---:|---:|---:|")
        L.append(f"| `playbooks/deploy-observability-stack.yml` (ours) | {fmt(dep['ours_first_s'], 2)} | {fmt(dep['ours_again_s'], 2)} | {fmt(dep['ours_again_ctrl_cpu_s'], 2)} |")
        L.append(f"| `bench/twin/deploy-builtin.yml` (builtin-only twin, generated) | {fmt(dep['builtin_first_s'], 2)} | {fmt(dep['builtin_again_s'], 2)} | {fmt(dep['builtin_again_ctrl_cpu_s'], 2)} |")
        L.append(f"| **builtin / ours** (same run) | **{fmt(dep['first_ratio'], 2)}x** | **{fmt(dep['again_ratio'], 2)}x** | |")
        L.append("")
        if "ours_again_module_tasks_s" in dep:
            L.append("Where the time goes (task wall time from `ansible.log`, all hosts together, medians): the tasks of our "
                     "modules in the real deploy, their builtin replacements in the twin, and every other task (the same in both).")
            L.append("")
            L.append("| run | our module tasks (s) | their builtin replacements (s) | other tasks, ours / twin (s) | best ratio if ours took 0 s |")
            L.append("|---|---:|---:|---:|---:|")
            for ph, lbl in (("first", "first run"), ("again", "idempotent re-run")):
                om, bm = dep[f"ours_{ph}_module_tasks_s"], dep[f"builtin_{ph}_module_tasks_s"]
                oo, bo = dep[f"ours_{ph}_other_tasks_s"], dep[f"builtin_{ph}_other_tasks_s"]
                L.append(f"| {lbl} | {fmt(om, 2)} | {fmt(bm, 2)} | {fmt(oo, 2)} / {fmt(bo, 2)} | "
                         f"{fmt((bm + bo) / oo if oo else None, 2)}x |")
            L.append("")
    if oh:
        L.append(f"### On the host: each binary run directly on `{oh['host']}`, {oh['loops']}x in a loop, timed inside the host")
        L.append("")
        L.append(f"Floors: `/bin/true` {fmt(oh['floor_true_ms'], 2)} ms, `python3 -c pass` {fmt(oh['floor_python3_ms'], 2)} ms (the interpreter start every builtin task pays before its module code). "
                 f"The fast path's whole remote script (find the cache, check sha256, exec `system_account` with args on stdin): **{fmt(oh['fastpath_script_ms'], 2)} ms**.")
        L.append("")
        L.append("| module | run time (ms) | result |")
        L.append("|---|---:|---|")
        for name, x in oh["modules"].items():
            res = "failed: " + x["msg"] if x["failed"] else ("changed" if x["changed"] else "no change")
            if x["msg"].startswith("harness"):
                res += " (" + x["msg"] + ")"
            L.append(f"| `{name}` | {fmt(x['ms'], 2)} | {res} |")
        L.append("")
    if ops:
        L.append("### SSH commands per task (one host, `SSH: EXEC` lines at -vvv: a play with the task twice minus once)")
        L.append("")
        L.append("| task | per task | once per play |")
        L.append("|---|---:|---:|")
        for k, v in ops.items():
            progs = ", ".join(f"{p} {c}" for p, c in v["per_task_by_program"].items() if c)
            L.append(f"| {k} | {v['per_task']}{' (' + progs + ')' if progs else ''} | {v['once_per_play']} |")
        L.append("")
    L.append("### Binary sizes")
    L.append("")
    L.append("| module | bytes | MiB | <= 1 MiB |")
    L.append("|---|---:|---:|---|")
    for name, x in sz.items():
        L.append(f"| `{name}` | {x['bytes']} | {fmt(x['bytes'] / MIB, 2)} | {'yes' if x['ok'] else '**no**'} |")
    L.append("")
    L.append(f"![{h} hosts](benchmarks-{h}hosts.png)")
    L.append("")
    L.extend(render_targets(r, prev))
    L.append("")
    L.append("<!-- bench-data " + json.dumps(summary_for_doc(r), separators=(",", ":")) + " -->")
    return "\n".join(L)


def summary_for_doc(r: dict) -> dict:
    """The numbers a later run (other host count) compares against, kept in the doc itself."""
    pt = r.get("per_task") or {}
    return {
        "hosts": r["hosts"], "date": r["date"],
        "raw_ms": pt.get("raw_ms"), "ctrl_cpu_raw_ms": pt.get("ctrl_cpu_raw_ms"),
        "modules": {k: {kk: v[kk] for kk in ("fast_ms", "standard_ms", "builtin_ms", "ctrl_cpu_fast_ms",
                                             "ctrl_cpu_builtin_ms")} for k, v in pt.get("modules", {}).items()},
        "deploy": {k: v for k, v in (r.get("deploy") or {}).items() if k.endswith("_s") or k.endswith("_ratio")},
    }


def render_targets(r: dict, prev: dict | None) -> list[str]:
    pt, dep, oh, ops = r.get("per_task"), r.get("deploy"), r.get("on_host"), r.get("ssh_ops")
    L = ["### Against the targets (measured in this run)", ""]
    L.append("| target | measured | |")
    L.append("|---|---|---|")
    if pt:
        for name, x in pt["modules"].items():
            L.append(f"| `{name}` task <= 1.3x the raw floor | {fmt(x['fast_over_raw'], 2)}x ({fmt(x['fast_ms'])} vs {fmt(pt['raw_ms'])} ms) | {mark(x['fast_over_raw'] <= 1.3)} |")
        for name, x in pt["modules"].items():
            L.append(f"| `{name}` >= 4x faster than {x['builtin_label']} | {fmt(x['builtin_over_fast'], 2)}x | {mark(x['builtin_over_fast'] >= 4)} |")
    if dep:
        L.append(f"| first deploy (fresh hosts) >= 2x faster than builtin-only | {fmt(dep['first_ratio'], 2)}x ({fmt(dep['ours_first_s'], 2)} vs {fmt(dep['builtin_first_s'], 2)} s) | {mark(dep['first_ratio'] >= 2)} |")
        L.append(f"| idempotent re-deploy >= 3x faster than builtin-only | {fmt(dep['again_ratio'], 2)}x ({fmt(dep['ours_again_s'], 2)} vs {fmt(dep['builtin_again_s'], 2)} s) | {mark(dep['again_ratio'] >= 3)} |")
    sz = r["sizes"]
    L.append(f"| every binary <= 1 MiB | largest {max(x['bytes'] for x in sz.values())} bytes | {mark(all(x['ok'] for x in sz.values()))} |")
    L.append("")
    # What bounds a missed target, from this run's own measurements.
    if pt:
        L.append("What bounds the per-task numbers (this run):")
        L.append("")
        cpu = pt.get("ctrl_cpu_raw_ms")
        L.append(f"- Controller CPU per task (ansible-playbook and its ssh children, all {r['hosts']} hosts): "
                 f"raw {fmt(cpu)} ms; " + "; ".join(
                     f"`{k}` fast {fmt(v['ctrl_cpu_fast_ms'])} ms, builtin {fmt(v['ctrl_cpu_builtin_ms'])} ms"
                     for k, v in pt["modules"].items()) + f". The machine has {r['machine']['cores']} cores, shared with the lab hosts; "
                 f"median machine CPU busy during the per-task plays: {fmt(pt['machine_busy_cores'], 2)} cores.")
        if oh:
            L.append(f"- Remote side of a fast task: the whole fast-path script takes {fmt(oh['fastpath_script_ms'], 2)} ms on the host, the module binaries "
                     + ", ".join(f"`{k}` {fmt(v['ms'], 2)} ms" for k, v in oh["modules"].items())
                     + f"; a builtin task first starts Python on the host ({fmt(oh['floor_python3_ms'], 1)} ms for an empty `python3 -c pass`) and then runs its module.")
        if ops:
            def n(key):
                return ops.get(key, {}).get("per_task")
            L.append(f"- SSH commands per task: raw {n('raw')}; " + "; ".join(
                f"`{k[:-5]}` fast {n(k)}, standard {n(k[:-5] + '.standard')}, builtin {n(k[:-5] + '.builtin')}"
                for k in ops if k.endswith(".fast")) + ".")
        L.append("")
    if prev and pt and prev.get("raw_ms") and prev.get("hosts") != r["hosts"]:
        a, b = prev, r
        L.append(f"Scale, {a['hosts']} -> {b['hosts']} hosts (from the {a['date']} {a['hosts']}-host run above):")
        L.append("")
        L.append("| per task | wall @" + str(a["hosts"]) + " (ms) | wall @" + str(b["hosts"]) + " (ms) | wall growth | controller CPU @"
                 + str(a["hosts"]) + " (ms) | controller CPU @" + str(b["hosts"]) + " (ms) | CPU / 2 cores @" + str(b["hosts"]) + " (ms) |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        cores = r["machine"]["cores"]
        rows = [("raw", a["raw_ms"], pt["raw_ms"], a.get("ctrl_cpu_raw_ms"), pt.get("ctrl_cpu_raw_ms"))]
        for k, v in pt["modules"].items():
            pa = a["modules"].get(k)
            if pa:
                rows.append((f"`{k}` fast", pa["fast_ms"], v["fast_ms"], pa["ctrl_cpu_fast_ms"], v["ctrl_cpu_fast_ms"]))
                rows.append((f"`{k}` builtin", pa["builtin_ms"], v["builtin_ms"], pa["ctrl_cpu_builtin_ms"], v["ctrl_cpu_builtin_ms"]))
        for name, wa, wb, ca, cb in rows:
            L.append(f"| {name} | {fmt(wa)} | {fmt(wb)} | {fmt(wb / wa if wa else None, 2)}x | {fmt(ca)} | {fmt(cb)} | {fmt(cb / cores if cb else None)} |")
        L.append("")
        L.append(f"Host count grew {b['hosts'] / a['hosts']:.2f}x. Where wall time per task is close to controller CPU / {cores} cores, "
                 f"the {cores} cores (controller and {b['hosts']} lab hosts on the same CPUs) are what bounds it, not the hosts or the network.")
        L.append("")
    return L


# The subsection of a host-count section that each series writes.
SERIES_HEADINGS = {"per_task": "### Per task:", "deploy": "### Whole deploy:", "on_host": "### On the host:",
                   "ssh_ops": "### SSH commands per task"}


def carry_over(old: str, r: dict, section: str) -> str:
    """A run of some series only (BENCH_ONLY) keeps the other series' tables of the section it
    replaces, marked with the run they come from, and their numbers in the bench-data summary
    (a later run of another host count compares against them)."""
    missing = [k for k in SERIES_HEADINGS if not r.get(k)]
    m = re.search(r"^## \d+ hosts: run of (.+)$", old, re.M)
    if not missing or not m:
        return section
    when = m.group(1).strip()
    chunks = re.split(r"(?m)^(?=### |!\[|<!-- bench-data )", old)
    kept = []
    for key in missing:
        chunk = next((c for c in chunks if c.startswith(SERIES_HEADINGS[key])), None)
        if chunk:
            head, _, body = chunk.partition("\n")
            note = "_Kept from the run of " + when + " (this run did not measure this series)._\n"
            kept.append(head + "\n" + (body if body.lstrip().startswith("_Kept from") else "\n" + note + body))
    if kept:
        at = section.index("### Binary sizes")
        section = section[:at] + "".join(c.rstrip("\n") + "\n\n" for c in kept) + section[at:]
    old_data = re.search(r"<!-- bench-data (\{.*?\}) -->", old)
    new_data = re.search(r"<!-- bench-data (\{.*?\}) -->", section)
    if old_data and new_data:
        o, n = json.loads(old_data.group(1)), json.loads(new_data.group(1))
        for k, v in o.items():
            if n.get(k) in (None, {}, []):
                n[k] = v
        section = (section[:new_data.start()] + "<!-- bench-data " + json.dumps(n, separators=(",", ":")) + " -->"
                   + section[new_data.end():])
    return section


def update_doc(r: dict) -> None:
    h = r["hosts"]
    begin, end = f"<!-- bench:{h}hosts:begin -->", f"<!-- bench:{h}hosts:end -->"
    text = DOC.read_text() if DOC.exists() else (BENCH / "benchmarks-header.md").read_text()
    prev = None
    for mm in re.finditer(r"<!-- bench-data (\{.*?\}) -->", text):
        d = json.loads(mm.group(1))
        if d.get("hosts") != h and (prev is None or d["hosts"] < prev["hosts"]):
            prev = d
    section = render_section(r, prev)
    if begin in text and end in text:
        section = carry_over(text[text.index(begin) + len(begin):text.index(end)], r, section)
    section = begin + "\n" + section + "\n" + end
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        anchor = "<!-- bench:analysis -->"
        # Sections in host-count order, before the hand-written analysis.
        others = [(int(x), mm.start()) for mm in re.finditer(r"<!-- bench:(\d+)hosts:begin -->", text)
                  for x in [mm.group(1)]]
        later = [pos for n, pos in others if n > h]
        if later:
            pos = min(later)
        elif anchor in text:
            pos = text.index(anchor)
        else:
            pos = len(text)
        text = text[:pos] + section + "\n\n" + text[pos:]
    DOC.write_text(text.rstrip() + "\n")


def draw_chart(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pt, dep, oh = r.get("per_task"), r.get("deploy"), r.get("on_host")
    panels = [p for p in (pt, dep, oh) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8), squeeze=False)
    axes = list(axes[0])
    colors = {"fast": "#2b8a3e", "standard": "#f08c00", "builtin": "#c92a2a"}
    if pt:
        ax = axes.pop(0)
        names = list(pt["modules"])
        w = 0.26
        for i, (k, lbl) in enumerate([("fast", "ours, fast path"), ("standard", "ours, standard transfer"),
                                      ("builtin", "builtin equivalent")]):
            vals = [pt["modules"][n][f"{k}_ms"] for n in names]
            ax.bar([j + (i - 1) * w for j in range(len(names))], vals, w, label=lbl, color=colors[k])
        ax.axhline(pt["raw_ms"], color="black", ls="--", lw=1, label=f"raw /bin/true floor ({pt['raw_ms']:.0f} ms)")
        ax.axhline(pt["raw_ms"] * 1.3, color="grey", ls=":", lw=1, label="1.3x floor target")
        ax.set_xticks(range(len(names)), names, rotation=15)
        ax.set_ylabel(f"ms per task ({r['hosts']} hosts at once)")
        ax.set_title(f"Per no-op task, median of {pt['rounds']} rounds")
        ax.legend(fontsize=8)
    if dep:
        ax = axes.pop(0)
        xs = ["first run\n(fresh hosts)", "idempotent\nre-run"]
        ours = [dep["ours_first_s"], dep["ours_again_s"]]
        blt = [dep["builtin_first_s"], dep["builtin_again_s"]]
        ax.bar([0 - 0.2, 1 - 0.2], ours, 0.4, label="ours (deploy-observability-stack.yml)", color=colors["fast"])
        ax.bar([0 + 0.2, 1 + 0.2], blt, 0.4, label="builtin-only twin (bench/twin)", color=colors["builtin"])
        # The same ratios as the table: per run (same run), then the median.
        for x, o, b, ratio in zip((0, 1), ours, blt, (dep["first_ratio"], dep["again_ratio"])):
            ax.text(x, max(o, b) * 1.02, f"builtin / ours {ratio:.2f}x", ha="center")
        ax.set_xticks([0, 1], xs)
        ax.set_ylabel("seconds (wall)")
        ax.set_title(f"Whole deploy, {r['hosts']} hosts, median of {dep['runs']}")
        ax.legend(fontsize=8)
    if oh:
        ax = axes.pop(0)
        names = list(oh["modules"]) + ["fast-path script", "python3 -c pass", "/bin/true"]
        vals = [oh["modules"][n]["ms"] or 0 for n in oh["modules"]] + [
            oh["fastpath_script_ms"] or 0, oh["floor_python3_ms"] or 0, oh["floor_true_ms"] or 0]
        ax.barh(range(len(names)), vals, color=["#1971c2"] * len(oh["modules"]) + ["#2b8a3e", "#868e96", "#868e96"])
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        ax.set_xlabel("ms per run, timed on the host")
        ax.set_title(f"No-op run on {oh['host']} ({oh['loops']}x)")
    fig.suptitle(f"HomeOps modules vs ansible.builtin, {r['hosts']} lab hosts, {r['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
