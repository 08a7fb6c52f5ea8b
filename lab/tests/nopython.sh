#!/usr/bin/env bash
# The python-free agent (LAB_NOPYTHON, issue 15). Boots a lab in which one Linux agent has no
# python3 at all, and proves what that means for Ansible:
#   - python3 is gone from that host (no interpreter, dpkg says not installed), it is still on
#     the others, and systemd runs normally;
#   - ansible.builtin.ping (a Python module) FAILS there, naming python, and passes elsewhere;
#   - our binary modules homeops.observability.host_facts and homeops.observability.safe_grep
#     SUCCEED there, with become, on the fast path and on ansible-core's standard path.
# Always tears down (trap). Ends with "N passed, N failed". Needs root and `make setup` (the
# venv and the installed collection). Environment: NOPYTHON_HOST (default ws-01-linux, the
# agent whose sudo asks for a password), NOPYTHON_LAB_HOSTS (default 2).
set -euo pipefail

NOK_TAIL=12
# shellcheck source=lab/tests/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh" nopython
# Two hosts are enough (obs-01 keeps python3, the agent loses it); homeops_dev/tooling.mk exports LAB_HOSTS=3
# for every lab target, so this script has its own knob.
export LAB_HOSTS=${NOPYTHON_LAB_HOSTS:-2}
NP=${NOPYTHON_HOST:-ws-01-linux}
export LAB_NOPYTHON=$NP

finish() {
    local rc=$?
    trap - EXIT INT TERM
    echo "== teardown (trap): lab/lab down"
    "$LAB" down >"$LOG/down.out" 2>&1 || { FAIL=$((FAIL + 1)); cat "$LOG/down.out"; }
    harness_end "$rc"
}

(( EUID == 0 )) || { echo "needs root" >&2; exit 1; }
ANSIBLE="$LAB_ROOT/.venv/bin/ansible"
[[ -x $ANSIBLE && -d $LAB_ROOT/collections/ansible_collections/homeops/observability ]] \
    || { echo "no $ANSIBLE or no installed collection: run make setup first" >&2; exit 1; }
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== lab up (LAB_HOSTS=$LAB_HOSTS LAB_NOPYTHON=$NP)"
t0=$(now_ms)
if "$LAB" up >"$LOG/up.out" 2>&1; then ok "lab up ($(fmt_ms $(( $(now_ms) - t0 ))))"; else nok "lab up" "$(cat "$LOG/up.out")"; exit 1; fi
grep -h "LAB_NOPYTHON" "$LOG/up.out" | sed 's/^/     /'
INV=$("$LAB" inventory)
KEY="$LAB_ROOT/.lab/id_ed25519"
ip_of() { sed -n "/^    $1:\$/,/ansible_host:/ s/^      ansible_host: //p" "$INV"; }
hssh() { local h=$1; shift; ssh -i "$KEY" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR -o ConnectTimeout=3 -o ControlPath=none "root@$(ip_of "$h")" "$@"; }

# ---- the host itself ------------------------------------------------------------------------
check "$NP: no python interpreter at all" hssh "$NP" '! command -v python3 python python3.11 && ! ls /usr/bin/python* /usr/lib/python3*/os.py 2>/dev/null'
check "$NP: dpkg says python3 is not installed" hssh "$NP" '[ "$(dpkg-query -W -f "\${db:Status-Status}" python3 2>/dev/null)" != installed ]'
check "$NP: systemd running without it" test "$(hssh "$NP" systemctl is-system-running 2>&1)" = running
check "obs-01: python3 is still there" hssh obs-01 'test -x /usr/bin/python3'

# ---- Ansible against it ---------------------------------------------------------------------
# Results as JSON (ansible.cfg shows YAML), so the checks below match exact key/value pairs.
an() { (cd "$LAB_ROOT" && ANSIBLE_CONFIG="$LAB_ROOT/ansible.cfg" ANSIBLE_LOG_PATH="$LOG/ansible.log" \
    ANSIBLE_CALLBACK_RESULT_FORMAT=json ANSIBLE_DEPRECATION_WARNINGS=False "$ANSIBLE" -i "$INV" "$@"); }
out=$(an "$NP" -m ansible.builtin.ping 2>&1) && rc=0 || rc=$?
if (( rc != 0 )) && grep -qi python <<<"$out" && ! grep -q "$NP | SUCCESS" <<<"$out"; then ok "$NP: ansible.builtin.ping fails, naming python"
else nok "$NP: ansible.builtin.ping fails, naming python" "rc $rc: $out"; fi
out=$(an obs-01 -m ansible.builtin.ping 2>&1) && grep -q "obs-01 | SUCCESS" <<<"$out" && ok "obs-01: ansible.builtin.ping passes" || nok "obs-01: ansible.builtin.ping passes" "$out"

facts_args='{"kernel": true, "architecture": true, "units": ["ssh.service", "homeops-none.service"], "paths": ["/etc/shadow"], "users": ["root"], "groups": ["root"], "packages": ["dpkg=1.0", "python3"]}'
for path in fast standard; do
    # HOMEOPS_FASTPATH=0: ansible-core's own transfer of a binary module (tmp dir, args file).
    fp=1; [[ $path == standard ]] && fp=0
    out=$(HOMEOPS_FASTPATH=$fp an "$NP" -b -m homeops.observability.host_facts -a "$facts_args" 2>&1) && rc=0 || rc=$?
    if (( rc == 0 )) && grep -q "$NP | SUCCESS" <<<"$out" \
        && grep -q '"architecture": "x86_64"' <<<"$out" \
        && grep -q '"state": "running"' <<<"$out" && grep -q '"state": "not-found"' <<<"$out" \
        && grep -q '"mode": "0640"' <<<"$out" && grep -q '"newer_than_pin": true' <<<"$out" \
        && grep -q '"status": "not-installed"' <<<"$out"; then
        ok "$NP: homeops.observability.host_facts succeeds ($path path, become)"
    else
        nok "$NP: homeops.observability.host_facts succeeds ($path path, become)" "rc $rc: $out"
    fi
    out=$(HOMEOPS_FASTPATH=$fp an "$NP" -b -m homeops.observability.safe_grep -a '{"path": "/etc/shadow", "pattern": "^root:", "owner": "root"}' 2>&1) && rc=0 || rc=$?
    if (( rc == 0 )) && grep -q "$NP | SUCCESS" <<<"$out" && grep -q '"count": 1' <<<"$out"; then
        ok "$NP: homeops.observability.safe_grep succeeds ($path path, become)"
    else
        nok "$NP: homeops.observability.safe_grep succeeds ($path path, become)" "rc $rc: $out"
    fi
done
