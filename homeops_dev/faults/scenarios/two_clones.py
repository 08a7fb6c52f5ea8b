"""Fault scenario 12, `two_clones`: two clones' make itest started together both pass; a kept lab
survives them (registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from homeops_dev import ROOT
from homeops_dev.faults.helpers import ENV, lab_ids_running, LOG_DIR, run, say, Scenario, scenario


def mem_available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


@scenario("12", "two clones' make itest started together both pass; a kept lab survives them", 1)
def two_clones(s: Scenario):
    """Two clones of the current HEAD (git clone --shared into temp dirs; .venv and collections/
    are links to this clone's, library/ a copy of its binaries, so `make -o setup itest` skips
    the 2-minute setup) run `make itest` at the same time, clone b with a non-default
    `LAB_ID=fcb` (its inventory `.lab/inventory-fcb.yml`). Both must pass, each on its own lab
    (own id, subnet, repo port), and this run's own lab stays up through both. A lab kept on
    purpose (LAB_ID fkk: owned by a process, `lab/lab keep` as `LAB_KEEP=1` does, then its owner
    SIGKILLed) must survive both clones' `lab up` janitors."""
    import tempfile
    head = subprocess.run(["git", "rev-parse", "HEAD"], stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    top = Path(tempfile.mkdtemp(prefix="homeops-2clones-", dir="/var/tmp"))
    clones = [top / "a", top / "b"]
    kept_owner = subprocess.Popen(["sleep", "900"])
    procs = []
    try:
        p = run(["lab/lab", "up"], env={"LAB_ID": "fkk", "LAB_HOSTS": "1", "LAB_OWNER_PID": str(kept_owner.pid)},
                log="lab-up-fkk", timeout=600)
        s.check(p.returncode == 0, f"lab fkk up (1 host, owned by PID {kept_owner.pid})", p.text[-300:])
        k = run(["lab/lab", "keep", "itest-faults 12: kept on purpose"], env={"LAB_ID": "fkk"}, log="lab-keep-fkk")
        s.check(k.returncode == 0, "lab fkk marked kept (lab/lab keep)", k.text[-300:])
        kept_owner.kill()
        kept_owner.wait()
        before = lab_ids_running()
        mine = [i for i, st in before.items() if st.startswith("1/") and i != "fkk"]
        t = time.monotonic()
        for c in clones:
            run(["git", "clone", "-q", "--shared", str(ROOT), str(c)], check=True, timeout=120)
            run(["git", "-C", str(c), "checkout", "-q", head], check=True, timeout=60)
            for link in (".venv", "collections"):
                (c / link).symlink_to(ROOT / link)
            (c / "library").mkdir(exist_ok=True)
            for b in (ROOT / "library").iterdir():
                if b.is_file() and os.access(b, os.X_OK) and b.suffix != ".yml":
                    subprocess.run(["cp", "-p", str(b), str(c / "library" / b.name)], check=True)
        s.measure("clones", f"2 clones of {head[:8]} in {time.monotonic() - t:.1f} s")
        env = {k: v for k, v in ENV.items() if k not in ("LAB_ID", "LAB_OWNER_PID", "LAB_KEEP", "INVENTORY")}
        low = mem_available_mib()
        t = time.monotonic()
        for c in clones:
            f = open(LOG_DIR / f"two-clones-{c.name}.out", "w")
            procs.append((subprocess.Popen(["make", "--no-print-directory", "-o", "setup", "itest"], cwd=c,
                                           env=dict(env, LAB_ID="fcb") if c.name == "b" else env,
                                           stdout=f, stderr=subprocess.STDOUT, start_new_session=True), f))
        peak_labs = 0
        while any(p.poll() is None for p, _ in procs):
            low = min(low, mem_available_mib())
            try:
                peak_labs = max(peak_labs, sum(1 for st in lab_ids_running().values() if not st.startswith("0/")))
            except Exception:
                pass
            time.sleep(3)
        secs = time.monotonic() - t
        outs = []
        for (p, f), c in zip(procs, clones):
            f.close()
            outs.append((LOG_DIR / f"two-clones-{c.name}.out").read_text(errors="replace"))
        ids = [re.search(r"up: lab ([a-z0-9]+),", o) for o in outs]
        nets = [re.search(r"bridge \S+ ([0-9.]+)/24, apt repo (\S+)", o) for o in outs]
        say(f"  two make itest: rc {[p.returncode for p, _ in procs]} in {secs:.0f} s "
            f"(logs/{LOG_DIR.name}/two-clones-a.out, -b.out)")
        for (p, _), o, c in zip(procs, outs, clones):
            last = [x for x in o.splitlines() if "itest PASSED" in x or "itest FAILED" in x]
            s.check(p.returncode == 0 and bool(last) and "PASSED" in last[-1], f"clone {c.name}: make itest passed",
                    last[-1].strip() if last else o[-300:])
        s.check(all(ids) and ids[0].group(1) != ids[1].group(1), "each clone had its own lab id",
                " / ".join(m.group(1) if m else "?" for m in ids))
        s.check(all(nets) and nets[0].groups() != nets[1].groups() and nets[0].group(1) != nets[1].group(1),
                "each lab had its own subnet and apt repo", " / ".join(" ".join(m.groups()) if m else "?" for m in nets))
        s.check(peak_labs >= 2, "the two labs were up at the same time", f"at most {peak_labs} lab(s) up at once")
        after = lab_ids_running()
        s.check(all(after.get(i, "").startswith("1/1") for i in mine), "this run's own lab stayed up through both",
                f"before {before}, after {after}")
        s.check(not any(m and m.group(1) in after for m in ids), "both clones' labs are gone after their runs", str(after))
        s.check(bool(ids[1]) and ids[1].group(1) == "fcb" and "/.lab/inventory-fcb.yml" in outs[1],
                "clone b ran on LAB_ID=fcb with its own inventory file .lab/inventory-fcb.yml")
        reaped = [x for o in outs for x in o.splitlines() if "janitor: reaping lab fkk " in x]
        s.check(after.get("fkk") == "1/1" and not reaped, "the kept lab fkk (owner gone) survived both clones' lab up",
                f"fkk: {after.get('fkk', 'gone')}; {'; '.join(reaped)}")
        s.measure("two make itest at once", f"{secs:.0f} s wall; MemAvailable low point {low} MiB")
    finally:
        if kept_owner.poll() is None:
            kept_owner.kill()
        kept_owner.wait()
        run(["lab/lab", "down"], env={"LAB_ID": "fkk"}, log="lab-down-fkk", timeout=300)
        for p, f in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=120)
        for c in clones:
            if (c / "lab" / "lab").exists():
                # Only a lab of that clone (its own id), if its run left one.
                subprocess.run(["lab/lab", "down"], cwd=c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", str(top)])
