"""Fault scenario 0, `bad_input`: Bad input through Ansible, every module (registered in
homeops_dev/faults/registry.py)."""
from __future__ import annotations

import json

import yaml

from homeops_dev.faults.helpers import HERE, LOG_DIR, playbook, Scenario, scenario, snapshot, snapshot_diff


@scenario("0", "Bad input through Ansible, every module", 1)
def bad_input(s: Scenario):
    """Each module's refused inputs as Ansible tasks on obs-01, those derived from its argument spec
    (python -m homeops_dev.modules --bad-inputs) and the semantic extras of bad-input.json: every
    case must fail with its named error and changed=false, and the host must be unchanged."""
    from homeops_dev import modules

    cases = modules.bad_inputs() + json.loads((HERE / "bad-input.json").read_text())
    before = snapshot("obs-01")
    book = LOG_DIR / "bad-input.yml"
    tasks = []
    for i, c in enumerate(cases):
        tasks.append({
            "name": f"Case {i:02d}: {c['module']} {c['why']}",
            c["module"]: c["args"],
            "register": f"faults_case_{i:02d}",
            "ignore_errors": True,
        })
    results = "{" + ", ".join(f"'{i:02d}': faults_case_{i:02d}" for i in range(len(cases))) + "}"
    tasks.append({"name": "Write the results for the runner", "delegate_to": "localhost",
                  "ansible.builtin.copy": {"content": "{{ " + results + " | to_nice_json }}",
                                           "dest": str(LOG_DIR / "bad-input-results.json"), "mode": "0600"}})
    book.write_text(yaml.safe_dump([{"name": "Bad input, one task per case", "hosts": "obs-01",
                                     "gather_facts": False, "tasks": tasks}], sort_keys=False, width=200))
    play = playbook("bad-input", str(book))
    got = json.loads((LOG_DIR / "bad-input-results.json").read_text())
    s.check(play.rc == 0 and play.recap.get("obs-01", {}).get("ignored") == len(cases),
            f"{len(cases)} bad-input tasks ran, each failed (ignored={play.recap.get('obs-01', {}).get('ignored')})")
    wrong = []
    for i, c in enumerate(cases):
        r = got[f"{i:02d}"]
        msg = r.get("msg", "")
        if not (r.get("failed") is True and r.get("changed") is False and c["needle"] in msg):
            wrong.append(f"{c['module']} {c['args']}: failed={r.get('failed')} changed={r.get('changed')} msg={msg!r}")
    s.check(not wrong, "every case: failed, changed=false, its named error in msg", "; ".join(wrong[:3]))
    after = snapshot("obs-01")
    diff = snapshot_diff(before, after)
    s.check(not diff, "obs-01 unchanged (accounts, dpkg status, masked units, files)", "; ".join(diff[:4]))
    per = {}
    for c in cases:
        per[c["module"]] = per.get(c["module"], 0) + 1
    s.measure("cases", f"{len(cases)} ({', '.join(f'{k} {v}' for k, v in per.items())}), all refused, host unchanged")
