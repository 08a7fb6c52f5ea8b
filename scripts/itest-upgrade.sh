#!/usr/bin/env bash
# An upgrade with data that survives (`make itest-upgrade`, issue 14), on the lab:
#   1. lab up (the repo serves the previous and the current release set; real Loki where
#      ../shared/real-loki or HOMEOPS_REAL_LOKI_DIR has both binaries)
#   2. deploy the PREVIOUS set (versions.yml *_version_previous, given with -e), verify A-E
#   3. write marker lines on every agent, wait until Loki has each, record them
#   4. deploy the CURRENT set (versions.yml as it is), verify A-E again
#   5. every marker written before is found through Loki AND through Grafana's datasource
#      ("N of N markers found after the upgrade"); the Loki config on disk is the new version's
#      (installed loki -verify-config, no key the new version rejects, enable_multi_variant_queries
#      from 3.5 on); every service restarted exactly when its package or config changed
#   6. a second deploy changes nothing (changed=0, no restart)
#   7. a downgrade (the previous set again) is refused before anything changes
#   8. lab down, always (trap), also on failure; LAB_KEEP=1 keeps it
# Logs: logs/itest-upgrade-<timestamp>/. ANSIBLE_ARGS: extra ansible-playbook arguments.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0

LAB_KEEP=${LAB_KEEP:-0}
read -r -a EXTRA_ARGS <<<"${ANSIBLE_ARGS:-}"
DEPLOY=playbooks/deploy-observability-stack.yml
VERIFY=playbooks/tests/verify_observability.yml
MARKERS=playbooks/tests/upgrade_markers.yml
STATE=playbooks/tests/upgrade_state.yml
VERSIONS=roles/common/defaults/main/versions.yml
RUN_ID=$(date +%Y%m%d-%H%M%S)
LOG_DIR=logs/itest-upgrade-$RUN_ID
mkdir -p "$LOG_DIR"
INV=""
RUN_NAME=itest-upgrade
RUN_HINT="docs/runbook.md, Upgrading"
# Every playbook here runs QUIET: recaps, failures and the msg lines of our own checks.
QUIET=1
RUN_PROGRESS='^(PLAY RECAP|fatal:|failed:|\S+ +: ok=)|^ *"?msg"?: '
# shellcheck source=scripts/run-lib.sh
source scripts/run-lib.sh

# snapshot NAME: the package/config/unit state of every host (playbooks/tests/upgrade_state.yml).
snapshot() {
    run_playbook "state-$1" "$STATE" -e "upgrade_state_file=$PWD/$LOG_DIR/state-$1.json" >/dev/null \
        || { tail -n 30 "$LOG_DIR/state-$1.out" >&2; echo "itest-upgrade: the state snapshot '$1' failed" >&2; exit 1; }
}

# recap_failed FILE: the hosts whose PLAY RECAP shows failed or unreachable.
recap_failed() { awk '/^PLAY RECAP/ { r = 1; next } r && / : ok=/ && (/failed=[1-9]/ || /unreachable=[1-9]/) { print $1 }' "$1"; }

# ---- the two release sets ---------------------------------------------------------------------
read_pin() { python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))[sys.argv[2]])' "$VERSIONS" "$1"; }
PREV_ARGS=()
for c in loki grafana alloy; do
    cur=$(read_pin "${c}_version"); prev=$(read_pin "${c}_version_previous")
    [[ $prev != "$cur" ]] || { echo "itest-upgrade: ${c}_version_previous equals ${c}_version ($cur) in $VERSIONS: nothing to upgrade" >&2; exit 2; }
    dpkg --compare-versions "$prev" lt "$cur" \
        || { echo "itest-upgrade: ${c}_version_previous $prev is not older than ${c}_version $cur in $VERSIONS" >&2; exit 2; }
    PREV_ARGS+=(-e "${c}_version=$prev")
    echo "    $c: $prev -> $cur"
done
LOKI_CUR=$(read_pin loki_version)

# ---- 1. lab up ----------------------------------------------------------------------------------
step "lab up: make lab-up"
# As scripts/itest.sh: this run owns the lab (a killed run's lab is reaped by the next lab up), and
# only a lab that came up is taken down here (a refused `up` must not tear down another run's).
LAB_OWNER_PID=$$ make --no-print-directory lab-up
LAB_STARTED=1
INV=$(lab/lab inventory)
[[ -f $INV ]] || { echo "itest-upgrade: lab up did not write $INV" >&2; exit 1; }

# ---- 2. the previous set ------------------------------------------------------------------------
step "deploy the previous set: ${PREV_ARGS[*]}"
run_playbook deploy-previous "$DEPLOY" "${PREV_ARGS[@]}"
step "verify the previous set (A-E)"
run_playbook verify-previous "$VERIFY" "${PREV_ARGS[@]}"

# ---- 3. markers ---------------------------------------------------------------------------------
step "write marker lines on every agent and wait until Loki has each"
run_playbook markers-write "$MARKERS" -e upgrade_markers_mode=write -e "upgrade_markers_file=$PWD/$LOG_DIR/markers.json"
python3 -c 'import json, sys; m = json.load(open(sys.argv[1]))["markers"]; hosts = {x["host"] for x in m}
print("    %d markers in Loki before the upgrade, on %d agent(s)" % (len(m), len(hosts)))' "$LOG_DIR/markers.json"
snapshot before

# ---- 4. upgrade ---------------------------------------------------------------------------------
step "upgrade: deploy the current set (versions.yml)"
run_playbook deploy-upgrade "$DEPLOY"
snapshot after
step "verify the current set (A-E)"
run_playbook verify-current "$VERIFY"

# ---- 5. what survived, what changed ------------------------------------------------------------
step "the markers written before the upgrade, through Loki and through Grafana"
run_playbook markers-check "$MARKERS" -e upgrade_markers_mode=check -e "upgrade_markers_file=$PWD/$LOG_DIR/markers.json" \
    || { grep -h -E 'markers found after the upgrade' "$LOG_DIR/markers-check.out" | sed 's/^ *"*msg"*: *//' >&2 || true; exit 1; }
grep -h -o -E '[0-9]+ of [0-9]+ markers found after the upgrade[^"]*' "$LOG_DIR/markers-check.out" | head -n1 | sed 's/^/    /'

step "the Loki config on disk is Loki $LOKI_CUR's"
python3 scripts/upgrade_check.py loki-config "$LOG_DIR/state-after.json" "$LOKI_CUR"

step "every service restarted exactly when its package or config changed"
python3 scripts/upgrade_check.py restarts "$LOG_DIR/state-before.json" "$LOG_DIR/state-after.json" --pins "$VERSIONS"

# ---- 6. idempotence -----------------------------------------------------------------------------
step "a second deploy changes nothing"
run_playbook deploy-again "$DEPLOY"
changed=$(awk -f scripts/recap-changed.awk "$LOG_DIR/deploy-again.out")
if [[ -n $changed ]]; then
    echo "itest-upgrade: NOT IDEMPOTENT after the upgrade:" >&2; sed 's/^/    /' <<<"$changed" >&2
    grep -E '^changed: ' "$LOG_DIR/deploy-again.out" | sed -E 's/ => .*//; s/^/    /' >&2 || true
    exit 1
fi
snapshot again
python3 scripts/upgrade_check.py unchanged "$LOG_DIR/state-after.json" "$LOG_DIR/state-again.json"

# ---- 7. downgrade -------------------------------------------------------------------------------
step "a downgrade to the previous set is refused before anything changes"
if run_playbook deploy-downgrade "$DEPLOY" "${PREV_ARGS[@]}"; then
    echo "itest-upgrade: the downgrade deploy succeeded; it must be refused (playbooks/upgrade-guard.yml)" >&2
    exit 1
fi
grep -q 'Refusing to downgrade' "$LOG_DIR/deploy-downgrade.out" \
    || { echo "itest-upgrade: the downgrade failed, but not with the guard's refusal: see $LOG_DIR/deploy-downgrade.out" >&2; exit 1; }
# One line per host: the message is wrapped in the YAML output.
python3 -c 'import re, sys
text = " ".join(open(sys.argv[1]).read().replace("\x27", " ").split())
for host, why in sorted(set(re.findall(r"Refusing to downgrade on (\S+): (.*?)\. Nothing was changed", text))):
    print("    refused on %s: %s" % (host, why))' "$LOG_DIR/deploy-downgrade.out"
# The guard's play is the second of the deploy: no later play (the apt lockdown first) ran.
if grep -q '^PLAY \[Lock down background apt activity' "$LOG_DIR/deploy-downgrade.out"; then
    echo "itest-upgrade: the deploy went on past the refusal" >&2; exit 1
fi
snapshot downgrade
python3 scripts/upgrade_check.py unchanged "$LOG_DIR/state-again.json" "$LOG_DIR/state-downgrade.json"

CURRENT_STEP="done"
