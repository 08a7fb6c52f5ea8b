# shellcheck shell=bash
# Teardown in the recipe's order, idempotent, then a verification of what is left.
# It only ever acts on what the selected lab (lab_select ID) made: PIDs from its pid files
# (checked against their command lines), netns hoplab<id>-*, links hoplab<id>br and
# hoplab<id>vNN, cgroup dirs homeops-lab-<id>, its own dirs. Other labs are not touched.

# close_control_masters: `ssh -O exit` every ControlPersist master in the owner clone's
# .ansible/cp (Ansible's control_path_dir) and .lab/cp whose TCP peer is in the lab subnet.
close_control_masters() {
    local owner=$1 subnet=$2 dir s out mpid n=0
    [[ -n $subnet ]] || return 0
    for dir in "$owner/.ansible/cp" "$owner/.lab/cp" ${LAB_CONTROL_DIRS:-}; do
        [[ -d $dir ]] || continue
        for s in "$dir"/*; do
            [[ -S $s ]] || continue
            out=$(timeout 3 ssh -o ControlPath="$s" -O check lab-master 2>&1 9>&- 8>&-) || continue
            [[ $out =~ pid=([0-9]+) ]] || continue
            mpid=${BASH_REMATCH[1]}
            ss -tnpH "dst $subnet" 2>/dev/null | grep -q "pid=$mpid," || continue
            timeout 3 ssh -o ControlPath="$s" -O exit lab-master >/dev/null 2>&1 9>&- 8>&- || true
            n=$((n + 1))
        done
    done
    (( n )) && log "closed $n SSH control master(s) to lab hosts"
    return 0
}

# lab_masters_left SUBNET: ssh masters (mux processes) still connected into the lab subnet.
lab_masters_left() {
    [[ -n ${1:-} ]] || return 0
    ss -tnpH "dst $1" 2>/dev/null | grep -o 'pid=[0-9]*' | sort -u | while read -r p; do
        p=${p#pid=}
        [[ $(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null) == *"[mux]"* ]] && echo "$p"
    done
    return 0
}

stop_nspawns() {
    local d h p pids=() names=() i
    for d in "$LAB_STATE_DIR"/hosts/*/; do
        [[ -d $d ]] || continue
        h=$(basename "$d")
        [[ -f $d/nspawn.pid ]] || continue
        p=$(<"$d/nspawn.pid")
        # A launch interrupted between fork and exec still becomes nspawn: wait for it.
        wait_exec "$p" systemd-nspawn || continue
        pid_alive "$p" "--machine=$(host_machine "$h")" || continue
        pids+=("$p"); names+=("$(host_machine "$h")")
        kill -TERM "$p" 2>/dev/null || true
    done
    (( ${#pids[@]} )) || return 0
    # Clean poweroff first; a second SIGTERM forces it after 5 s; SIGKILL after 10 s.
    for (( i = 0; i < 100; i++ )); do
        local alive=0 j
        for j in "${!pids[@]}"; do pid_alive "${pids[$j]}" "--machine=${names[$j]}" && alive=1; done
        (( alive )) || break
        if (( i == 50 )); then for j in "${!pids[@]}"; do kill -TERM "${pids[$j]}" 2>/dev/null || true; done; fi
        sleep 0.1
    done
    for j in "${!pids[@]}"; do
        if pid_alive "${pids[$j]}" "--machine=${names[$j]}"; then
            warn "host ${names[$j]} did not stop on SIGTERM: SIGKILL"
            kill -KILL "${pids[$j]}" 2>/dev/null || true
        fi
    done
    sleep 0.2
}

# The selected lab's (or, after lab_select_all, every lab's) netns, links and cgroup trees.
lab_netns_list() { ip netns list 2>/dev/null | awk '{ print $1 }' | grep -E "^hoplab${LAB_ID_PAT}-" || true; }
lab_links_list() { ip -o link show 2>/dev/null | awk -F': ' '{ print $2 }' | sed 's/@.*//' | grep -E "^hoplab${LAB_ID_PAT}(br|v[0-9]{2})$" || true; }

# lab_cgroup_dirs: the lab's cgroup trees in every root it used and every root it could use.
lab_cgroup_dirs() {
    local r d
    { echo "${S_CGROUPS:-}" | tr ' ' '\n'; cgroup_roots; } | sort -u | while read -r r; do
        [[ -n $r ]] || continue
        for d in "$r"/homeops-lab-*/; do
            [[ -d $d && $(basename "$d") =~ ^homeops-lab-${LAB_ID_PAT}$ ]] && echo "${d%/}"
        done
    done
    return 0
}

remove_cgroups() {
    local top d
    while read -r top; do
        [[ -n $top ]] || continue
        # Deepest first: the hosts' systemd made its own sub-cgroups under ours.
        find "$top" -depth -mindepth 0 -type d -print 2>/dev/null | while read -r d; do
            rmdir "$d" 2>/dev/null || true
        done
    done < <(lab_cgroup_dirs)
}

stop_repo_server() {
    local p i
    [[ -f $LAB_STATE_DIR/repo.pid ]] || return 0
    p=$(<"$LAB_STATE_DIR/repo.pid")
    { wait_exec "$p" "$(basename "$(repo_python)")" && pid_alive "$p" http.server; } || { rm -f "$LAB_STATE_DIR/repo.pid"; return 0; }
    kill -TERM "$p" 2>/dev/null || true
    for (( i = 0; i < 30; i++ )); do pid_alive "$p" http.server || break; sleep 0.1; done
    pid_alive "$p" http.server && kill -KILL "$p" 2>/dev/null
    rm -f "$LAB_STATE_DIR/repo.pid"
}

# lab_teardown: everything of the selected lab, in order. Safe to call any number of times,
# with or without state.
lab_teardown() {
    state_load || true
    local owner=${S_OWNER:-$LAB_ROOT} ns l
    close_control_masters "$owner" "${S_SUBNET:-}"
    stop_nspawns
    for ns in $(lab_netns_list); do ip netns del "$ns" 2>/dev/null || warn "cannot delete netns $ns"; done
    remove_cgroups
    stop_repo_server
    for l in $(lab_links_list); do ip link del "$l" 2>/dev/null || true; done
    if [[ -z $(ip netns list 2>/dev/null) ]]; then
        if [[ ${S_NETNS_MOUNT_MADE:-} == 1 ]] && mountpoint -q /run/netns; then umount /run/netns 2>/dev/null || warn "cannot umount /run/netns"; fi
        if [[ ${S_NETNS_DIR_MADE:-} == 1 && -d /run/netns ]] && ! mountpoint -q /run/netns; then rmdir /run/netns 2>/dev/null || true; fi
    fi
    rm -rf "$LAB_HOSTS_DIR"
    rmdir "$(dirname "$LAB_HOSTS_DIR")" 2>/dev/null || true
    # The inventory this lab wrote (recorded; a lab without state: the default place).
    if [[ -n $S_INVENTORY ]]; then rm -f "$S_INVENTORY"
    elif [[ $owner == "$LAB_ROOT" ]]; then rm -f "$(lab_inventory)"; fi
    # The state of a lab that no longer exists goes. Its lock file goes too, but only in the
    # callers that hold it (down, the janitor: lab_unlink_lock), after the verification.
    rm -rf "$LAB_STATE_DIR"
}

# lab_reap ID WHY: tear down lab ID (not the selected one) and say so. Its own lock must be
# free (no command runs on it). In a subshell: the selection and S_* stay as they were.
lab_reap() {
    local id=$1 why=$2
    (
        lab_select "$id"
        exec 7>>"$LAB_RUN_ROOT/$id.lock"
        { flock -n 7 && lock_is_current 7 "$LAB_RUN_ROOT/$id.lock"; } || { log "janitor: lab $id became busy; left alone"; exit 0; }
        state_load || true
        log "janitor: reaping lab $id${S_OWNER:+ of $S_OWNER}${S_STARTED:+ (started $S_STARTED)}: $why"
        lab_teardown
        lab_verify_clean >/dev/null || exit 1
        lab_unlink_lock 7
    )
}

# lab_verify_clean: print what of the selected lab (after lab_select_all: of any lab)
# remains; return non-zero if anything does.
lab_verify_clean() {
    local left=() p d c
    for d in "$LAB_RUN_ROOT"/*/hosts/*/; do
        [[ -d $d && $d =~ ^$LAB_RUN_ROOT/${LAB_ID_PAT}/hosts/ ]] && left+=("state dir $d")
    done
    while read -r p; do [[ -n $p ]] && left+=("nspawn process $p"); done < <(
        for p in /proc/[0-9]*; do
            c=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
            [[ $c =~ systemd-nspawn.*--overlay=$LAB_RUN_ROOT/${LAB_ID_PAT}/base(-arm64)?: ]] && echo "${p#/proc/}"
        done)
    while read -r p; do [[ -n $p ]] && left+=("repo server process $p"); done < <(
        for p in /proc/[0-9]*; do
            c=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
            [[ $c =~ http\.server.*--directory\ $LAB_RUN_ROOT/${LAB_ID_PAT}/repo ]] && echo "${p#/proc/}"
        done)
    for p in $(lab_netns_list); do left+=("netns $p"); done
    for p in $(lab_links_list); do left+=("link $p"); done
    while read -r p; do [[ -n $p ]] && left+=("mount $p"); done < <(
        awk '{ print $5 }' /proc/self/mountinfo | grep -E "^/run/netns/hoplab${LAB_ID_PAT}-|^$LAB_VAR_ROOT/lab-${LAB_ID_PAT}(/|$)" || true)
    if [[ ${S_NETNS_MOUNT_MADE:-} == 1 ]] && mountpoint -q /run/netns 2>/dev/null && [[ -z $(ip netns list 2>/dev/null) ]]; then
        left+=("mount /run/netns")
    fi
    while read -r p; do [[ -n $p ]] && left+=("cgroup $p"); done < <(lab_cgroup_dirs)
    for p in $(lab_masters_left "${S_SUBNET:-}"); do
        warn "ssh control master $p (not in a control dir the lab knows) is still connected to the lab subnet; close it with ssh -O exit"
    done
    for d in "$LAB_VAR_ROOT"/lab-*/; do
        [[ -d $d && $(basename "$d") =~ ^lab-${LAB_ID_PAT}$ ]] && left+=("host dirs ${d%/}")
    done
    local what=${LAB_ID:+lab $LAB_ID}; what=${what:-all labs}
    if (( ${#left[@]} )); then
        printf '%s: error: teardown of %s left:\n' "$LAB_PROG" "$what" >&2
        printf '    %s\n' "${left[@]}" >&2
        return 1
    fi
    echo "lab down: verified clean, $what (no lab processes, namespaces, links, mounts, cgroups or servers remain)"
}
