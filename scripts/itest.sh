#!/usr/bin/env bash
# The Golden Path end to end (`make itest` runs this after `make setup`):
#   1. lab up (only when no INVENTORY is given)
#   2. deploy          playbooks/deploy-observability-stack.yml, with --diff
#   3. verify          playbooks/tests/verify_observability.yml (checks A-E)
#   Every playbook run must report on exactly the hosts the inventory had at the start.
#   4. idempotence     the deploy again at -vvv: FAILS if any host reports changed>0
#                      (Molecule's rule, read from the PLAY RECAP)
#   5. secrets scan    the secrets of the inventory must appear in no log of this run
#   6. lab down        always (trap), also on failure, unless LAB_KEEP=1; only a lab this run
#                      started (a refused `lab up` leaves another run's lab alone), and
#                      `lab down` acts on this clone's lab (its LAB_ID) only
# Environment: INVENTORY=path (real hosts: the lab is never touched), LAB_KEEP=1,
# ANSIBLE_ARGS (extra ansible-playbook arguments). Logs: logs/itest-<timestamp>/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
# Plain output: it is read by people in CI logs and parsed here.
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0

INVENTORY=${INVENTORY:-}
LAB_KEEP=${LAB_KEEP:-0}
read -r -a EXTRA_ARGS <<<"${ANSIBLE_ARGS:-}"
DEPLOY=playbooks/deploy-observability-stack.yml
VERIFY=playbooks/tests/verify_observability.yml
RUN_ID=$(date +%Y%m%d-%H%M%S)
LOG_DIR=logs/itest-$RUN_ID
mkdir -p "$LOG_DIR"
SECRETS_FILE=""
RUN_NAME=itest
RUN_HINT=docs/runbook.md
run_cleanup() { [[ -z $SECRETS_FILE ]] || rm -f "$SECRETS_FILE"; }
# shellcheck source=scripts/run-lib.sh
source scripts/run-lib.sh

# changed_hosts FILE: "host changed=N" for every PLAY RECAP line with changed > 0.
changed_hosts() { awk -f scripts/recap-changed.awk "$1"; }

# inventory_hosts PATTERN: the hosts of $INV that PATTERN selects, sorted.
inventory_hosts() {
    ANSIBLE_LOG_PATH=/dev/null ansible -i "$INV" "$1" --list-hosts 2>/dev/null \
        | awk 'NR > 1 { print $1 }' | sort -u
}

# same_hosts NAME FILE EXPECTED: the hosts in FILE's PLAY RECAP must be exactly EXPECTED, the
# ones the run started with. An inventory emptied or replaced mid-run (another run's `lab down`) would otherwise
# give "no hosts matched" plays and a green run that verified nothing.
same_hosts() {
    local name=$1 got expected=$3
    got=$(awk -f scripts/recap-hosts.awk "$2" | sort -u)
    if [[ $got != "$expected" ]]; then
        echo "itest: the $name run reported on other hosts than the run started with:" >&2
        echo "    started with: $(echo $expected)" >&2
        echo "    $name reported: $(echo ${got:-nothing})" >&2
        exit 1
    fi
    echo "    $name reported on the $(wc -l <<<"$expected") host(s) the run started with"
}

# ---- 1. inventory / lab ----------------------------------------------------------------------
if [[ -n $INVENTORY ]]; then
    step "inventory: $INVENTORY (real hosts; the lab is not touched)"
    [[ -f $INVENTORY ]] || { echo "itest: INVENTORY=$INVENTORY does not exist" >&2; exit 2; }
    INV=$INVENTORY
else
    step "lab up: make lab-up"
    # This run owns the lab: if it is killed, the next `lab up` on this machine reaps the lab.
    # LAB_STARTED only once `up` succeeded: a refused or failed `up` (it cleans up after itself)
    # must not be followed by a `lab down` here.
    LAB_OWNER_PID=$$ make --no-print-directory lab-up
    LAB_STARTED=1
    INV=$(lab/lab inventory)
    [[ -f $INV ]] || { echo "itest: lab up did not write $INV" >&2; exit 1; }
    make --no-print-directory lab-status || true
fi

# The deploy targets all four groups; verify has no Windows checks yet.
START_HOSTS=$(inventory_hosts 'loki:grafana:alloy_linux:alloy_windows')
VERIFY_HOSTS=$(inventory_hosts 'loki:grafana:alloy_linux')
if [[ -z $START_HOSTS ]]; then
    echo "itest: the inventory $INV has no host in loki, grafana, alloy_linux or alloy_windows: nothing to test" >&2
    exit 1
fi
echo "    hosts: $(echo $START_HOSTS)"

# ---- 2. deploy ----------------------------------------------------------------------------------
# --diff on the first run: every secret-bearing task changes here, so this is where a secret
# would leak into a diff if a task lacked diff: false.
step "deploy: $DEPLOY --diff"
run_playbook deploy "$DEPLOY" --diff
same_hosts deploy "$LOG_DIR/deploy.out" "$START_HOSTS"

# ---- 3. verify ----------------------------------------------------------------------------------
step "verify: $VERIFY"
run_playbook verify "$VERIFY"
same_hosts verify "$LOG_DIR/verify.out" "$VERIFY_HOSTS"

# ---- 4. idempotence -----------------------------------------------------------------------------
# -vvv: the secrets must stay hidden at the highest verbosity too (scanned in step 5).
step "idempotence: $DEPLOY again at -vvv, every host must report changed=0"
QUIET=1 run_playbook idempotence "$DEPLOY" -vvv
changed=$(changed_hosts "$LOG_DIR/idempotence.out")
grep -q '^PLAY RECAP' "$LOG_DIR/idempotence.out" || { echo "itest: no PLAY RECAP in the second deploy" >&2; exit 1; }
same_hosts idempotence "$LOG_DIR/idempotence.out" "$START_HOSTS"
if [[ -n $changed ]]; then
    echo "itest: NOT IDEMPOTENT: the second deploy changed something:" >&2
    sed 's/^/    /' <<<"$changed" >&2
    echo "    the changed tasks:" >&2
    grep -E '^changed: ' "$LOG_DIR/idempotence.out" | sed -E 's/ => .*//; s/^/    /' >&2 || true
    exit 1
fi
echo "    idempotent: changed=0 on every host"

# ---- 5. secrets scan ----------------------------------------------------------------------------
step "secrets scan: no secret of the inventory in any output or log of this run"
SECRETS_FILE=$(mktemp "${TMPDIR:-/tmp}/homeops-secrets.XXXXXX")
chmod 600 "$SECRETS_FILE"
# The values go from ansible-inventory straight into a 0600 file, never to the terminal, and
# not into Ansible's log either (ansible-inventory would log its whole output there).
ANSIBLE_LOG_PATH=/dev/null ansible-inventory -i "$INV" --list 2>/dev/null | python3 -c '
import json, sys
names = ("grafana_admin_password", "loki_datasource_password", "ansible_become_password")
data = json.load(sys.stdin)
found = set()
def walk(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in names and isinstance(v, str) and len(v) >= 6:
                found.add(v)
            else:
                walk(v)
    elif isinstance(node, list):
        for v in node:
            walk(v)
walk(data)
sys.stdout.write("".join(s + "\n" for s in sorted(found)))
print(len(found), file=sys.stderr)
' >"$SECRETS_FILE" 2>"$LOG_DIR/secrets-count"
count=$(tail -n1 "$LOG_DIR/secrets-count"); rm -f "$LOG_DIR/secrets-count"
if [[ ${count:-0} -eq 0 ]]; then
    echo "    no plain secret values found in the inventory (vault without a password?): scan skipped"
else
    if leaks=$(grep -rlF -f "$SECRETS_FILE" "$LOG_DIR" logs/ansible.log 2>/dev/null); then
        echo "itest: SECRET LEAK: a secret value appears in:" >&2
        sed 's/^/    /' <<<"$leaks" >&2
        exit 1
    fi
    echo "    $count secret values, found in none of $(find "$LOG_DIR" -type f | wc -l) files of $LOG_DIR"
fi

CURRENT_STEP="done"
