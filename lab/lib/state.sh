# shellcheck shell=bash
# Where the labs keep things, and their recorded state. Several labs live side by side, each
# under its id (see lab_select):
#   /run/homeops-labs/<id>/          state of lab <id> (lab.env, pid files, repo, logs, base link)
#   /run/homeops-labs/<id>.lock      per-lab lock (every command on that lab holds it)
#   /run/homeops-labs/lock           machine lock: held briefly to reap, count and allocate
#   /var/lib/homeops-lab/lab-<id>/   lab <id>'s per-host overlay upper dirs (the hosts' disks)
#   <clone>/.lab/                    the clone's lab key and generated inventory
# (/run/homeops-labs, not the old /run/homeops-lab: the old one-lab code empties that dir.)

LAB_RUN_ROOT=${LAB_RUN_ROOT:-/run/homeops-labs}
LAB_VAR_ROOT=${LAB_VAR_ROOT:-/var/lib/homeops-lab}
LAB_DPKG_LOCK_UNIT=homeops-lab-dpkg-lock.service

# lab_default_id: this clone's id (LAB_ID, else derived from the clone's physical path).
lab_default_id() { lab_id_for_path "$(cd "$LAB_ROOT" && pwd -P)"; }

# lab_select ID: make lab ID the one every function below acts on.
lab_select() {
    LAB_ID=$1
    LAB_STATE_DIR="$LAB_RUN_ROOT/$LAB_ID"
    LAB_HOSTS_DIR="$LAB_VAR_ROOT/lab-$LAB_ID"
    LAB_BRIDGE=$(lab_bridge_name "$LAB_ID")
    LAB_NETNS_PREFIX="hoplab${LAB_ID}-"
    LAB_CG_NAME=$(lab_cgroup_name "$LAB_ID")
    # A regex of the ids the listing functions match: this lab only (ids are [a-z0-9]).
    LAB_ID_PAT=$LAB_ID
}

# lab_select_all: the listing and verification functions match every lab (down --all).
lab_select_all() {
    LAB_ID='' LAB_STATE_DIR='' LAB_HOSTS_DIR='' LAB_BRIDGE='' LAB_NETNS_PREFIX='' LAB_CG_NAME=''
    LAB_ID_PAT='[a-z0-9]{1,6}'
}

lab_clone_dir() { echo "$LAB_ROOT/.lab"; }
lab_key()       { echo "$(lab_clone_dir)/id_ed25519"; }
# The clone's own lab writes .lab/inventory.yml (what the Makefile reads); a lab of another
# LAB_ID from the same clone writes .lab/inventory-<id>.yml, so the two never overwrite.
lab_inventory() {
    if [[ $LAB_ID == "$(lab_default_id)" ]]; then echo "$(lab_clone_dir)/inventory.yml"
    else echo "$(lab_clone_dir)/inventory-$LAB_ID.yml"; fi
}
host_state_dir() { echo "$LAB_STATE_DIR/hosts/$1"; }

# state_set KEY VALUE: record KEY=VALUE in lab.env (values are %q-quoted).
state_set() {
    local f="$LAB_STATE_DIR/lab.env" tmp
    mkdir -p "$LAB_STATE_DIR"
    tmp="$f.tmp.$$"
    { [[ -f $f ]] && grep -v "^$1=" "$f" || true; printf '%s=%q\n' "$1" "$2"; } >"$tmp"
    mv "$tmp" "$f"
}

LAB_STATE_KEYS="ID OWNER OWNER_PID OWNER_START OWNER_CMD INVENTORY SUBNET BRIDGE_IP REPO_PORT HOSTS BASE NETNS_DIR_MADE NETNS_MOUNT_MADE CGROUPS STARTED"

# state_load: read lab.env of the selected lab into S_* variables (only known keys; never
# `source` blindly).
state_load() {
    local f="$LAB_STATE_DIR/lab.env" k v
    for k in $LAB_STATE_KEYS; do printf -v "S_$k" '%s' ''; done
    [[ -n $LAB_STATE_DIR && -f $f ]] || return 1
    while IFS='=' read -r k v; do
        [[ " $LAB_STATE_KEYS " == *" $k "* ]] || continue
        eval "v=$v"   # values were written with printf %q
        printf -v "S_$k" '%s' "$v"
    done <"$f"
}

# lab_lock: serialise commands on the selected lab (fd 9; children get 9>&- so they never
# hold it). Commands on other labs do not wait for it.
lab_lock() {
    mkdir -p "$LAB_RUN_ROOT"
    exec 9>"$LAB_RUN_ROOT/$LAB_ID.lock"
    flock -w 120 9 || die "another lab command on lab $LAB_ID holds $LAB_RUN_ROOT/$LAB_ID.lock"
}

# machine_lock / machine_unlock: the short machine-wide lock (fd 8) around reaping, counting
# and allocating subnets and ports, so two concurrent `up`s never pick the same ones.
machine_lock() {
    mkdir -p "$LAB_RUN_ROOT"
    exec 8>"$LAB_RUN_ROOT/lock"
    flock -w 300 8 || die "another lab command holds the machine lock $LAB_RUN_ROOT/lock for 300 s"
}
machine_unlock() { exec 8>&-; }

# lab_busy ID: another lab command holds lab ID's lock right now (an `up` or `down` runs).
lab_busy() {
    local rc=0
    [[ -f $LAB_RUN_ROOT/$1.lock ]] || return 1
    flock -n "$LAB_RUN_ROOT/$1.lock" true 9>&- 8>&- || rc=1
    (( rc == 1 ))
}

# lab_ids: ids of every lab on this machine: recorded ones and any that left something behind.
lab_ids() {
    local d n r
    {
        for d in "$LAB_RUN_ROOT"/*/; do [[ -d $d ]] && valid_lab_id "$(basename "$d")" && basename "$d"; done
        for d in "$LAB_VAR_ROOT"/lab-*/; do [[ -d $d && $(basename "$d") =~ ^lab-([a-z0-9]{1,6})$ ]] && echo "${BASH_REMATCH[1]}"; done
        for r in $(cgroup_roots); do
            for d in "$r"/homeops-lab-*/; do [[ -d $d && $(basename "$d") =~ ^homeops-lab-([a-z0-9]{1,6})$ ]] && echo "${BASH_REMATCH[1]}"; done
        done
        { ip netns list 2>/dev/null | awk '{ print $1 }'; ip -o link show 2>/dev/null | awk -F': ' '{ print $2 }' | sed 's/@.*//'; } \
            | while read -r n; do [[ $n == hoplab* ]] && lab_id_of_name "$n"; done
    } | sort -u
    return 0
}

# lab_verdict: for the selected, loaded lab (state_load), why it is kept (exit 0) or may be
# reaped (exit 1): its owner process is gone, its clone is gone, or it has no state at all.
lab_verdict() {
    if [[ -z $S_ID && -z $S_OWNER ]]; then
        echo "no recorded state (leftovers of a lab that never finished starting or stopping)"; return 1
    fi
    if [[ -n $S_OWNER_PID ]]; then
        if owner_alive "$S_OWNER_PID" "$S_OWNER_START"; then
            echo "in use: its owner PID $S_OWNER_PID ($S_OWNER_CMD) runs"; return 0
        fi
        echo "its owner PID $S_OWNER_PID ($S_OWNER_CMD) is gone"; return 1
    fi
    if [[ -n $S_OWNER && ! -d $S_OWNER ]]; then
        echo "its clone $S_OWNER is gone"; return 1
    fi
    echo "started by hand (no owner process) from $S_OWNER: kept until lab/lab down there or lab/lab down --all"
    return 0
}

# Cgroup roots the lab makes per-host dirs in: systemd (named v1) + unified (v2) on a hybrid
# host, the v2 root on a pure v2 host, plus the caller's v1 memory cgroup to measure memory.
cgroup_roots() {
    if [[ -d /sys/fs/cgroup/systemd && -d /sys/fs/cgroup/unified ]]; then
        echo /sys/fs/cgroup/systemd
        echo /sys/fs/cgroup/unified
        local mem
        mem=$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
        if [[ -n $mem && -d /sys/fs/cgroup/memory$mem ]]; then echo "/sys/fs/cgroup/memory${mem%/}"; fi
    elif [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
        echo /sys/fs/cgroup
    fi
}

# host_mem_bytes HOST: memory charged to the host's cgroup (v1 usage or v2 current).
host_mem_bytes() {
    local r
    for r in $S_CGROUPS; do
        if [[ -f $r/$LAB_CG_NAME/$1/memory.usage_in_bytes ]]; then cat "$r/$LAB_CG_NAME/$1/memory.usage_in_bytes"; return; fi
        if [[ -f $r/$LAB_CG_NAME/$1/memory.current ]]; then cat "$r/$LAB_CG_NAME/$1/memory.current"; return; fi
    done
    echo ""
}
host_rss_bytes() {
    local r
    for r in $S_CGROUPS; do
        if [[ -f $r/$LAB_CG_NAME/$1/memory.stat ]]; then
            awk '$1 == "total_rss" || $1 == "anon" { print $2; exit }' "$r/$LAB_CG_NAME/$1/memory.stat"; return
        fi
    done
    echo ""
}

nspawn_pid() {
    local f p
    f="$(host_state_dir "$1")/nspawn.pid"
    [[ -f $f ]] || return 1
    p=$(<"$f")
    pid_alive "$p" "--machine=$(host_machine "$1")" || return 1
    echo "$p"
}

# container_pid HOST: the host's PID 1 (systemd) as seen from the controller.
container_pid() {
    local np c
    np=$(nspawn_pid "$1") || return 1
    for c in $(cat /proc/"$np"/task/*/children 2>/dev/null); do
        [[ $(cat "/proc/$c/comm" 2>/dev/null) == systemd ]] && { echo "$c"; return 0; }
    done
    return 1
}

# hexec HOST CMD...: run a command inside the host (all its namespaces) via nsenter.
hexec() {
    local h=$1 p; shift
    p=$(container_pid "$h") || { echo "host $h is not running" >&2; return 1; }
    nsenter --target "$p" --mount --uts --ipc --net --pid -- \
        /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@" 9>&- 8>&-
}

# lab_ssh HOST CMD...: ssh into a host with the lab key (no control master of our own).
lab_ssh() {
    local h=$1 ip; shift
    ip=$(host_ip "$S_SUBNET" "$h")
    ssh -i "$(lab_key)" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o LogLevel=ERROR -o ConnectTimeout="${LAB_SSH_TIMEOUT:-3}" -o ControlMaster=no -o ControlPath=none \
        -o ServerAliveInterval=1 -o ServerAliveCountMax=3 "root@$ip" "$@" 9>&- 8>&-
}
