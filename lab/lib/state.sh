# shellcheck shell=bash
# Where the labs keep things, and their recorded state. Several labs live side by side, each
# under its id (see lab_select):
#   /run/homeops-labs/<id>/          state of lab <id> (lab.env, pid files, repo, logs, base link)
#   /run/homeops-labs/<id>.lock      per-lab lock (every command on that lab holds it; `down`
#                                    and the janitor remove it, see lab_lock)
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
# lab_down_hint: the command that ends the selected (loaded) lab, from its clone.
lab_down_hint() {
    local owner=${S_OWNER:-$LAB_ROOT} def
    def=$(lab_id_for_path "$(cd "$owner" 2>/dev/null && pwd -P || echo "$owner")")
    if [[ $LAB_ID == "$def" ]]; then echo "make lab-down in $owner"
    else echo "LAB_ID=$LAB_ID make lab-down in $owner"; fi
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

LAB_STATE_KEYS="ID OWNER OWNER_PID OWNER_START OWNER_CMD INVENTORY SUBNET BRIDGE_IP REPO_PORT HOSTS BASE NETNS_DIR_MADE NETNS_MOUNT_MADE CGROUPS STARTED KEPT_BY KEPT_AT"

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
# The lock file is removed by whoever ends the lab (`down`, the janitor: lab_unlink_lock) while
# it holds the lock, so empty <id>.lock files do not pile up. A command that opened the file
# before it went and got the lock after would hold a lock on a file nobody else can open any
# more, while a third one locks the new file at the same path: so after flock, the open file
# must still be the one at the path (same device and inode), else it opens the path again.
lab_lock() {
    local f="$LAB_RUN_ROOT/$LAB_ID.lock" i
    mkdir -p "$LAB_RUN_ROOT"
    for (( i = 0; i < 50; i++ )); do
        exec 9>"$f"
        flock -w 120 9 || die "another lab command on lab $LAB_ID holds $f"
        lock_is_current 9 "$f" && return 0
    done
    die "could not take $f: it was removed under this command 50 times"
}

# lock_is_current FD PATH: the file open on FD is the one at PATH now.
lock_is_current() {
    local a b
    a=$(stat -L -c '%d:%i' "/proc/$BASHPID/fd/$1" 2>/dev/null) || return 1
    b=$(stat -c '%d:%i' "$2" 2>/dev/null) || return 1
    [[ $a == "$b" ]]
}

# lab_unlink_lock FD: remove the selected lab's lock file; the caller holds it on FD (checked:
# only the holder of the current file may remove it). Whoever waits on it re-opens the path.
lab_unlink_lock() {
    local f="$LAB_RUN_ROOT/$LAB_ID.lock"
    lock_is_current "$1" "$f" && rm -f "$f"
    return 0
}

# sweep_locks: remove the lock files of labs that do not exist (no state, nothing left; e.g.
# the ones older code left, one per lab id ever used), each only when nobody holds it.
# Under the machine lock (an `up` takes a lab lock before the machine lock, so an id whose
# lock is held is simply skipped, never waited for).
sweep_locks() {
    local f id live n=0
    live=" $(lab_ids | tr '\n' ' ') "
    for f in "$LAB_RUN_ROOT"/*.lock; do
        [[ -f $f ]] || continue
        id=$(basename "$f" .lock)
        valid_lab_id "$id" || continue
        [[ $live == *" $id "* || $id == "${LAB_ID:-}" ]] && continue
        (
            exec 7>>"$f"
            flock -n 7 || exit 1
            lock_is_current 7 "$f" && rm -f "$f"
        ) 2>/dev/null && n=$((n + 1))
    done
    (( n )) && log "removed $n lock file(s) of labs that no longer exist"
    return 0
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
    # A lab kept on purpose (LAB_KEEP=1, LAB_KEEP_ON_FAILURE=1, lab/lab keep) stays, whatever
    # became of the run that kept it, until `down` in its clone (or down --all); only a clone
    # that is gone (nobody can come back to it there) makes it reapable.
    if [[ -n ${S_KEPT_BY:-} ]]; then
        if [[ -n $S_OWNER && ! -d $S_OWNER ]]; then
            echo "kept by $S_KEPT_BY at ${S_KEPT_AT:-?}, but its clone $S_OWNER is gone"; return 1
        fi
        echo "kept by hand: $S_KEPT_BY at ${S_KEPT_AT:-?}; stays until $(lab_down_hint) or lab/lab down --all"
        return 0
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
    echo "started by hand (no owner process) from $S_OWNER: kept until $(lab_down_hint) or lab/lab down --all"
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
