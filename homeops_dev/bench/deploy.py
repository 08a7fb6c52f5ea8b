"""The deploy series of make bench: the whole deploy against its builtin-only twin
(homeops_dev/bench/twin.py) on fresh hosts and again, its time split by task."""
from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

from homeops_dev.bench.common import DEPLOY_BUILTIN, DEPLOY_OURS, Lab, loadavg, log, median, Runner


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+) p=\d+ .*?\| (.*)$")
TASK_HEAD = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(.*)\] \**$")


def task_times(logfile: Path, start: int, end: int) -> list[tuple[str, float]]:
    """(task name, seconds from its header to the next) from the slice of ansible.log one
    run wrote: what each task cost on the wall clock, all hosts together."""
    with open(logfile, "rb") as f:
        f.seek(start)
        text = f.read(end - start).decode(errors="replace")
    marks = []
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if not m:
            continue
        t = dt.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S").timestamp() + int(m[2]) / 1000
        h = TASK_HEAD.match(m[3].strip())
        marks.append((t, h[1] if h else None, m[3].startswith(("PLAY RECAP", "PLAY ["))))
    out = []
    for i, (t, name, _) in enumerate(marks):
        if name is None:
            continue
        nxt = next((t2 for t2, n2, play in marks[i + 1:] if n2 is not None or play), marks[-1][0])
        out.append((name, nxt - t))
    return out


def our_task_names() -> tuple[set[str], set[str]]:
    """Names of the deploy's tasks (playbook and roles) that use our modules, and of their
    builtin replacements in the twin (from homeops_dev/bench/twin.py, the same code that writes the
    twin)."""
    from homeops_dev.bench import twin as builtin_twin

    return builtin_twin.task_names()


def name_matcher(names: set[str]):
    """A test for task headers of ansible.log against task names: a role's task is logged as
    `<role> : <name>`, and a templated name (`Set the apt lockdown to {{ apt_lockdown_state }}`)
    with its value, so `{{ ... }}` matches anything."""
    pats = [re.compile(".*".join(re.escape(part) for part in re.split(r"\{\{.*?\}\}", n)) + r"\Z")
            for n in names if n]

    def match(header: str) -> bool:
        name = header.split(" : ", 1)[1] if " : " in header else header
        return any(p.match(name) for p in pats)
    return match


def attribute(runner: Runner, res: dict, names: set[str]) -> dict:
    times = task_times(runner.results / "ansible.log", *res["log_slice"])
    ours = name_matcher(names)
    mod = sum(d for n, d in times if ours(n))
    return {"module_tasks_s": mod, "other_tasks_s": sum(d for _, d in times) - mod,
            "slowest": sorted(((round(d, 2), n) for n, d in times), reverse=True)[:6]}


def bench_deploy(runner: Runner, lab: Lab, runs: int, guarded, twin: Path = DEPLOY_BUILTIN) -> dict:
    log(f"deploy: {runs} run(s) per variant; each: lab down + up (fresh hosts), first run, idempotent re-run")
    variants = [("ours", DEPLOY_OURS), ("builtin", twin)]
    names = dict(zip(("ours", "builtin"), our_task_names()))
    data = {v: {"first": [], "again": []} for v, _ in variants}
    for k in range(runs):
        order = variants if k % 2 == 0 else variants[::-1]   # neither variant always goes first
        for v, pb in order:
            def one(v=v, pb=pb):
                t0 = time.perf_counter()
                lab.cycle()
                log(f"deploy run {k + 1}/{runs} {v}: fresh lab in {time.perf_counter() - t0:.1f} s")
                first = runner.play(pb, f"deploy-{v}-first", expect_changed=None)
                first["load1"] = loadavg()[0]
                log(f"deploy run {k + 1}/{runs} {v}: first run {first['wall']:6.2f} s (changed {first['changed']})")
                again = runner.play(pb, f"deploy-{v}-again", expect_changed=False)
                again["load1"] = loadavg()[0]
                log(f"deploy run {k + 1}/{runs} {v}: idempotent re-run {again['wall']:6.2f} s (changed 0)")
                for res in (first, again):
                    res.update(attribute(runner, res, names[v]))
                return first, again
            first, again = guarded(f"deploy run {k + 1} {v}", one)
            data[v]["first"].append(first)
            data[v]["again"].append(again)
    out = {"runs": runs, "raw": data}
    for v, _ in variants:
        out[f"{v}_first_s"] = median([x["wall"] for x in data[v]["first"]])
        out[f"{v}_again_s"] = median([x["wall"] for x in data[v]["again"]])
        out[f"{v}_again_ctrl_cpu_s"] = median([x["ctrl_cpu"] for x in data[v]["again"]])
        for phase in ("first", "again"):
            out[f"{v}_{phase}_module_tasks_s"] = median([x["module_tasks_s"] for x in data[v][phase]])
            out[f"{v}_{phase}_other_tasks_s"] = median([x["other_tasks_s"] for x in data[v][phase]])
    out["first_ratio"] = median([b["wall"] / o["wall"] for b, o in zip(data["builtin"]["first"], data["ours"]["first"])])
    out["again_ratio"] = median([b["wall"] / o["wall"] for b, o in zip(data["builtin"]["again"], data["ours"]["again"])])
    return out
