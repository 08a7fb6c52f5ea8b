"""Fault scenario 13, `killed_owner`: a lab whose owner was SIGKILLed is reaped by the next lab up; a
live one is not (registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from homeops_dev.faults.helpers import lab_ids_running, run, Scenario, scenario


@scenario("13", "a lab whose owner was SIGKILLed is reaped by the next lab up; a live one is not", 1)
def killed_owner(s: Scenario):
    """Two extra labs (LAB_ID fk1, fk2; one host each), each owned by its own process. fk1's owner
    is SIGKILLed (and not waited for: a zombie, as when a CI job's shell dies). Another `lab up`
    (LAB_ID fk3) must say that it reaped fk1 and why, leave fk2 (owner alive) and this run's own
    lab untouched, and leave nothing of fk1."""
    owners = {i: subprocess.Popen(["sleep", "900"]) for i in ("fk1", "fk2")}
    ids = []
    try:
        for i, o in owners.items():
            p = run(["lab/lab", "up"], env={"LAB_ID": i, "LAB_HOSTS": "1", "LAB_OWNER_PID": str(o.pid)},
                    log=f"lab-up-{i}", timeout=600)
            s.check(p.returncode == 0, f"lab {i} up, owned by PID {o.pid}", p.text[-300:])
            ids.append(i)
        before = lab_ids_running()
        own = [i for i in before if i not in ("fk1", "fk2")]
        os.kill(owners["fk1"].pid, signal.SIGKILL)
        t = time.monotonic()
        p = run(["lab/lab", "up"], env={"LAB_ID": "fk3", "LAB_HOSTS": "1"}, log="lab-up-fk3", timeout=600)
        secs = time.monotonic() - t
        ids.append("fk3")
        s.check(p.returncode == 0, "another lab up (fk3) succeeds", p.text[-300:])
        reaped = [x for x in p.text.splitlines() if "janitor: reaping lab" in x]
        s.check(any("lab fk1 " in x and f"owner PID {owners['fk1'].pid}" in x and "is gone" in x for x in reaped),
                "it says it reaped fk1 because its owner is gone", "; ".join(reaped) or "nothing reaped")
        s.check(not any("lab fk2 " in x for x in reaped), "it did not reap fk2 (owner alive)")
        after = lab_ids_running()
        s.check("fk1" not in after, "nothing of fk1 is left", str(after))
        s.check(after.get("fk2") == "1/1", "fk2 still runs its host", str(after))
        s.check(all(after.get(i) == before[i] for i in own), "this run's own lab is untouched", f"{before} -> {after}")
        netns = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, text=True).stdout
        s.check("hoplabfk1-" not in netns and not Path("/run/homeops-labs/fk1").exists(),
                "no netns or state of fk1 remains")
        s.measure("janitor", f"lab up with one reap: {secs:.1f} s; " + (reaped[0].split(": ", 1)[1] if reaped else ""))
    finally:
        for o in owners.values():
            if o.poll() is None:
                o.kill()
            o.wait()
        for i in ids:
            run(["lab/lab", "down"], env={"LAB_ID": i}, log=f"lab-down-{i}", timeout=300)
