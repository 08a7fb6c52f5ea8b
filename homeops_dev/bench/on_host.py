"""The on-host and sizes series of make bench: each module binary run directly on one lab host,
timed inside the host, and the binaries' sizes against the budget."""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from homeops_dev import labdriver
from homeops_dev.bench import common as bench_common  # its LIBRARY: main() may replace it
from homeops_dev.bench.common import Lab, log, MIB, MODULES


def bench_sizes() -> dict:
    out = {}
    for m in MODULES:
        p = bench_common.LIBRARY / m
        if p.is_file():
            size = p.stat().st_size
            out[m] = {"bytes": size, "ok": size <= MIB}
    return out


def bench_on_host(specs: list[dict], hosts: dict, host: str, loops: int, results: Path, lab: Lab) -> dict:
    """Each binary run directly on one host, `loops` times, timed inside the host."""
    from action_plugins import homeops_fastpath as fp  # the plugin's own remote script, so we time exactly that

    log(f"on-host: each module {loops}x in a loop on {host}, timed inside the host")
    hv = hosts[host]

    def on_host(script: str, data: bytes, **kw) -> subprocess.CompletedProcess:
        """script as root on the host, logged in as the inventory's user (through sudo)."""
        cmd, stdin = labdriver.ssh_command(hv, script, data)
        return subprocess.run(cmd, input=stdin, **kw)
    remote = "/tmp/homeops-bench"
    stage = results / "onhost"
    stage.mkdir(exist_ok=True)
    common = {"_ansible_check_mode": False, "_ansible_diff": False, "_ansible_no_log": False,
              "_ansible_verbosity": 0, "_ansible_version": "2.19.14"}
    names = []
    for s in specs:
        m = s["module"]
        (stage / f"{m}.args").write_text(json.dumps(dict(s["onhost_args"], _ansible_module_name=m, **common)))
        names.append(m)
    if "apt_lockdown" not in names:
        (stage / "apt_lockdown.args").write_text(json.dumps(dict(state="released", _ansible_module_name="apt_lockdown", **common)))
        names.append("apt_lockdown")
    shas = {m: hashlib.sha256((bench_common.LIBRARY / m).read_bytes()).hexdigest() for m in names}
    # The fast path's hot script (cached binary, args on stdin): what each fast task runs remotely.
    # The binaries staged above are the x86_64 builds (library/<name>), so the script selects that
    # build; without `shas` its `case` knows no architecture and exits ARCH_RC (96).
    script = fp.render(fp._RUN, shas={fp.ARCHES[0]: shas["system_account"]})
    (stage / "fastpath.sh").write_text(script)
    # One tar over one ssh: binaries, args, script.
    tar = subprocess.run(["tar", "-C", str(bench_common.LIBRARY), "-cf", "-", *names], stdout=subprocess.PIPE, check=True).stdout
    tar2 = subprocess.run(["tar", "-C", str(stage), "-cf", "-", *[f"{m}.args" for m in names], "fastpath.sh"],
                          stdout=subprocess.PIPE, check=True).stdout
    on_host(f"rm -rf {remote} && mkdir -p {remote} && tar -C {remote} -xf -", tar, check=True)
    on_host(f"tar -C {remote} -xf -", tar2, check=True)

    body = f"""
set -u
cd {remote}
L={loops}
t() {{ s=$(date +%s%N); i=0; while [ $i -lt $L ]; do "$@" >/dev/null 2>&1 </dev/null; i=$((i+1)); done; e=$(date +%s%N); echo "$((e-s))"; }}
echo "floor_true $(t /bin/true)"
echo "floor_python3 $(t python3 -c pass)"
"""
    for m in names:
        body += f'./{m} {m}.args > {m}.json 2>&1 </dev/null; echo "rc_{m} $?"\n'
        body += f'echo "run_{m} $(t ./{m} {m}.args)"\n'
    # The fast path's remote script for system_account, args on stdin, as the plugin sends it.
    body += f"""
s=$(date +%s%N); i=0; while [ $i -lt $L ]; do /bin/sh -c "$(cat fastpath.sh)" < system_account.args >/dev/null 2>&1; i=$((i+1)); done; e=$(date +%s%N)
echo "fastpath_script_system_account $((e-s))"
/bin/sh -c "$(cat fastpath.sh)" < system_account.args > fastpath.json 2>&1; echo "rc_fastpath $?"
"""
    # printf, not echo: dash's echo would turn the JSON's backslash escapes into other text.
    for m in names:
        body += f'printf "json_{m} %s\\n" "$(tr -d "\\n" < {m}.json)"\n'
    body += 'printf "json_fastpath %s\\n" "$(tr -d "\\n" < fastpath.json)"\n'
    body += f"cd / && rm -rf {remote}\n"
    lab.check()
    p = on_host("/bin/sh -s", body.encode(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    lab.check()
    text = p.stdout.decode(errors="replace")
    (results / "onhost.out").write_text(text)
    vals, js, rcs = {}, {}, {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k.startswith("json_"):
            js[k[5:]] = v
        elif k.startswith("rc_"):
            rcs[k[3:]] = v.strip()
        elif v.strip().isdigit():
            vals[k] = int(v) / loops / 1e6   # ms per run
    out = {"host": host, "loops": loops, "floor_true_ms": vals.get("floor_true"),
           "floor_python3_ms": vals.get("floor_python3"),
           "fastpath_script_ms": vals.get("fastpath_script_system_account"), "modules": {}}
    for m in names + ["fastpath"]:
        try:
            j = json.loads(js.get(m, ""))
        except ValueError:
            j = {"failed": True, "msg": "not JSON: " + js.get(m, "")[:200]}
        entry = {"rc": rcs.get(m), "changed": j.get("changed"), "failed": bool(j.get("failed")),
                 "msg": (j.get("msg") or "")[:160]}
        if m != "fastpath":
            entry["ms"] = vals.get(f"run_{m}")
            out["modules"][m] = entry
        else:
            out["fastpath_result"] = entry
        log(f"on-host {m:<16} {entry.get('ms', out['fastpath_script_ms']) or float('nan'):7.2f} ms  "
            f"changed={entry['changed']} failed={entry['failed']} {entry['msg'][:60]}")
    return out
