# shellcheck shell=bash
# Where the lab keeps things, and its recorded state.
#   /run/homeops-lab/            machine-wide state of a running lab (pid files, lab.env, repo)
#   /var/lib/homeops-lab/hosts/  per-host overlay upper dirs (the hosts' disks)
#   <clone>/.lab/                this clone's lab key and generated inventory

LAB_STATE_DIR=${LAB_STATE_DIR:-/run/homeops-lab}
LAB_HOSTS_DIR=${LAB_HOSTS_DIR:-/var/lib/homeops-lab/hosts}
LAB_CG_NAME=homeops-lab
LAB_DPKG_LOCK_UNIT=homeops-lab-dpkg-lock.service

lab_clone_dir() { echo "$LAB_ROOT/.lab"; }
lab_key()       { echo "$(lab_clone_dir)/id_ed25519"; }
lab_inventory() { echo "$(lab_clone_dir)/inventory.yml"; }
host_state_dir() { echo "$LAB_STATE_DIR/hosts/$1"; }

# state_set KEY VALUE: record KEY=VALUE in lab.env (values are %q-quoted).
state_set() {
    local f="$LAB_STATE_DIR/lab.env" tmp
    mkdir -p "$LAB_STATE_DIR"
    tmp="$f.tmp.$$"
    { [[ -f $f ]] && grep -v "^$1=" "$f" || true; printf '%s=%q\n' "$1" "$2"; } >"$tmp"
    mv "$tmp" "$f"
}

# state_load: read lab.env into S_* variables (only known keys; never `source` blindly).
state_load() {
    S_OWNER='' S_SUBNET='' S_BRIDGE_IP='' S_REPO_PORT='' S_HOSTS='' S_BASE='' S_NETNS_DIR_MADE='' S_NETNS_MOUNT_MADE='' S_CGROUPS='' S_STARTED=''
    local f="$LAB_STATE_DIR/lab.env" k v
    [[ -f $f ]] || return 1
    while IFS='=' read -r k v; do
        case $k in
            OWNER|SUBNET|BRIDGE_IP|REPO_PORT|HOSTS|BASE|NETNS_DIR_MADE|NETNS_MOUNT_MADE|CGROUPS|STARTED)
                eval "v=$v"   # values were written with printf %q
                printf -v "S_$k" '%s' "$v" ;;
        esac
    done <"$f"
}

# lab_lock: serialise lab commands machine-wide (fd 9; children get 9>&- so they never hold it).
lab_lock() {
    mkdir -p "$LAB_STATE_DIR"
    exec 9>"$LAB_STATE_DIR/lock"
    flock -w 120 9 || die "another lab command holds $LAB_STATE_DIR/lock"
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
    pid_alive "$p" "--machine=$1" || return 1
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
        /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@" 9>&-
}

# lab_ssh HOST CMD...: ssh into a host with the lab key (no control master of our own).
lab_ssh() {
    local h=$1 ip; shift
    ip=$(host_ip "$S_SUBNET" "$h")
    ssh -i "$(lab_key)" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o LogLevel=ERROR -o ConnectTimeout="${LAB_SSH_TIMEOUT:-3}" -o ControlMaster=no -o ControlPath=none \
        -o ServerAliveInterval=1 -o ServerAliveCountMax=3 "root@$ip" "$@" 9>&-
}
