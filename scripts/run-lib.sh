# shellcheck shell=bash
# What scripts/itest.sh and scripts/itest-upgrade.sh share: numbered steps, the exit trap that
# tears down a lab the run started (unless LAB_KEEP=1) and says PASSED/FAILED with the step, and
# run_playbook. Source it after setting RUN_NAME (itest, itest-upgrade), RUN_HINT (where to look
# on failure), LOG_DIR, INV and EXTRA_ARGS; define run_cleanup to add to the exit path.

T0=$SECONDS
LAB_STARTED=0
CURRENT_STEP="start"

step() {
    CURRENT_STEP=$1
    printf '\n==> %s [%4ds] %s\n' "$RUN_NAME" "$((SECONDS - T0))" "$*"
}

finish() {
    local rc=$? failed_step=$CURRENT_STEP
    trap - EXIT INT TERM
    if declare -F run_cleanup >/dev/null; then run_cleanup; fi
    if (( LAB_STARTED )); then
        if [[ ${LAB_KEEP:-0} == 1 ]]; then
            printf '\n==> %s: LAB_KEEP=1: the lab stays up (make lab-status; make lab-down when done)\n' "$RUN_NAME"
        else
            step "lab down: make lab-down"
            if ! make --no-print-directory lab-down; then
                echo "$RUN_NAME: ERROR: make lab-down failed; see above and run it again" >&2
                (( rc == 0 )) && rc=1
            fi
        fi
    fi
    echo
    if (( rc == 0 )); then
        echo "==> $RUN_NAME PASSED in $((SECONDS - T0)) s (logs: $LOG_DIR/)"
    else
        echo "==> $RUN_NAME FAILED at step '$failed_step' (exit $rc) after $((SECONDS - T0)) s (logs: $LOG_DIR/)" >&2
        echo "    where to look: $RUN_HINT" >&2
    fi
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Progress lines of a QUIET run: task headers and per-host outcomes, without -vvv payloads.
RUN_PROGRESS=${RUN_PROGRESS:-'^(PLAY|TASK|RUNNING HANDLER|ok:|changed:|fatal:|failed:|skipping:|unreachable:|\S+ +: ok=)'}

# run_playbook NAME [ansible-playbook args...]: full output to $LOG_DIR/NAME.out (and Ansible's
# own log to NAME.log); the terminal gets everything, or with QUIET=1 the RUN_PROGRESS lines.
run_playbook() {
    local name=$1; shift
    local out="$LOG_DIR/$name.out" rc=0
    echo "    ansible-playbook -i $INV $* ${EXTRA_ARGS[*]} (output: $out)"
    if [[ ${QUIET:-0} == 1 ]]; then
        ANSIBLE_LOG_PATH="$LOG_DIR/$name.log" \
            ansible-playbook -i "$INV" "$@" "${EXTRA_ARGS[@]}" >"$out" 2>&1 &
        local pid=$!
        tail -n +1 -F --pid="$pid" "$out" 2>/dev/null \
            | grep --line-buffered -E "$RUN_PROGRESS" \
            | sed -u -E 's/ => .*//; s/ \*+$//' || true
        wait "$pid" || rc=$?
    else
        ANSIBLE_LOG_PATH="$LOG_DIR/$name.log" \
            ansible-playbook -i "$INV" "$@" "${EXTRA_ARGS[@]}" 2>&1 | tee "$out" || rc=${PIPESTATUS[0]}
    fi
    return "$rc"
}
