# shellcheck shell=bash
# Pure parts of the lab (no root, no side effects): names, addresses, groups, argument
# checks, fault parsing, versions. Unit-tested by lab/tests/unit.sh.

LAB_MAX_HOSTS=${LAB_MAX_HOSTS:-64}
# Labs side by side (one per clone, or per LAB_ID): see lab/README.md "Several labs".
LAB_MAX_LABS=${LAB_MAX_LABS:-4}
LAB_REPO_PORT_BASE=8642
LAB_HOST_OFFSET=10            # host i (1-based) gets .(10+i); the bridge is .1
LAB_SSH_COMMON_ARGS='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 -o ServerAliveInterval=1 -o ServerAliveCountMax=3'

# validate_host_count N: 1..LAB_MAX_HOSTS, digits only.
validate_host_count() {
    local n=${1:-}
    [[ $n =~ ^[0-9]+$ ]] || { echo "LAB_HOSTS must be a whole number, got '${n}'" >&2; return 1; }
    n=$((10#$n))
    (( n >= 1 && n <= LAB_MAX_HOSTS )) || { echo "LAB_HOSTS must be between 1 and ${LAB_MAX_HOSTS}, got ${n}" >&2; return 1; }
}

# host_names N: the lab's host names, one a line.
host_names() {
    local n=$((10#$1)) i
    local fixed=(obs-01 ws-01-linux srv-01)
    for (( i = 1; i <= n; i++ )); do
        if (( i <= 3 )); then echo "${fixed[i-1]}"; else printf 'agent-%02d\n' "$i"; fi
    done
    # LAB_ARM=1: plus the aarch64 agent pi-01 (lab/lib/arm.sh).
    [[ ${LAB_ARM:-0} == 1 ]] && echo pi-01
    return 0
}

# host_arch NAME: the Debian architecture of a host's base (pi-01 is the one arm64 host).
host_arch() { if [[ $1 == pi-01 ]]; then echo arm64; else dpkg --print-architecture; fi; }

# host_groups NAME: inventory groups of a host, space-separated.
host_groups() {
    case $1 in
        obs-01) echo "loki grafana" ;;
        ws-01-linux|srv-01|agent-[0-9]*|pi-01) echo "alloy_linux" ;;
        *) echo "" ;;
    esac
}

# host_ssh_user NAME: the non-root user Ansible logs in as (then sudo). ws-01-linux is the
# workstation whose sudo asks for a password (ansible_become_password); the rest: passwordless.
host_ssh_user() {
    case $1 in
        ws-01-linux) echo "${LAB_PW_USER:-pi}" ;;
        *) echo "${LAB_ADMIN_USER:-admin}" ;;
    esac
}

# valid_host_name NAME: a name host_names could produce (used to check `fault HOST`).
valid_host_name() {
    [[ $1 =~ ^(obs-01|ws-01-linux|srv-01|agent-[0-9]{2,}|pi-01)$ ]]
}

# host_index NAME: the 1-based index of a host (obs-01=1 ... agent-07=7).
host_index() {
    case $1 in
        obs-01) echo 1 ;; ws-01-linux) echo 2 ;; srv-01) echo 3 ;;
        agent-*) echo $((10#${1#agent-})) ;;
        # Beyond LAB_MAX_HOSTS (64) and still two digits (veth names): address .109.
        pi-01) echo 99 ;;
        *) return 1 ;;
    esac
}

# ---- lab identity --------------------------------------------------------------------------
# Every name a lab makes carries its id, so labs of several clones live side by side and each
# command finds exactly its own. An id is 1-6 of [a-z0-9]; by default the first 6 hex digits of
# sha256(the clone's physical path): short (link names), stable across runs of one clone.
valid_lab_id() { [[ ${1:-} =~ ^[a-z0-9]{1,6}$ ]]; }
lab_id_for_path() { printf '%s' "$1" | sha256sum | cut -c1-6; }

# Names of lab ID. IFNAMSIZ is 16 with the NUL: a link name has at most 15 characters.
# "hoplab" + id + "br" / "v" + 2 digits: at most 14 / 15. The old one-lab names (hoplab0,
# hoplab-vNN, netns hoplab-<host>) have no id, so no pattern here ever matches them.
lab_bridge_name()  { echo "hoplab${1}br"; }
lab_veth_name()    { printf 'hoplab%sv%02d\n' "$1" "$((10#$2))"; }
lab_netns_name()   { echo "hoplab${1}-$2"; }
lab_cgroup_name()  { echo "homeops-lab-$1"; }
lab_machine_name() { echo "hoplab${1}-$2"; }

# netns / host-side veth / nspawn machine names of a host of the selected lab (LAB_ID).
host_netns()   { lab_netns_name "$LAB_ID" "$1"; }
host_veth()    { lab_veth_name "$LAB_ID" "$(host_index "$1")"; }
host_machine() { lab_machine_name "$LAB_ID" "$1"; }

# lab_id_of_name NAME: the lab id in a netns or link name the lab made, or fail.
lab_id_of_name() {
    [[ $1 =~ ^hoplab([a-z0-9]{1,6})(-.+|br|v[0-9]{2})$ ]] || return 1
    echo "${BASH_REMATCH[1]}"
}

# subnet helpers: a /24 given as A.B.C.0/24
subnet_prefix() { local s=${1%/*}; echo "${s%.*}"; }          # 10.77.3
bridge_ip()     { echo "$(subnet_prefix "$1").1"; }
host_ip()       { echo "$(subnet_prefix "$1").$((LAB_HOST_OFFSET + $(host_index "$2")))"; }

ip_to_int() {
    local IFS=. a b c d
    read -r a b c d <<<"$1"
    echo $(( (a << 24) | (b << 16) | (c << 8) | d ))
}

# cidr_overlaps A/len B/len: true if the two prefixes share any address.
cidr_overlaps() {
    local a=${1%/*} al=${1#*/} b=${2%/*} bl=${2#*/}
    [[ $1 == */* ]] || al=32
    [[ $2 == */* ]] || bl=32
    local l=$(( al < bl ? al : bl ))
    local mask=$(( l == 0 ? 0 : (0xFFFFFFFF << (32 - l)) & 0xFFFFFFFF ))
    (( ($(ip_to_int "$a") & mask) == ($(ip_to_int "$b") & mask) ))
}

# valid_subnet S: an A.B.C.0/24 inside 10.0.0.0/8.
valid_subnet() {
    [[ $1 =~ ^10\.([0-9]{1,3})\.([0-9]{1,3})\.0/24$ ]] || return 1
    (( BASH_REMATCH[1] <= 255 && BASH_REMATCH[2] <= 255 ))
}

# pick_subnet ROUTES...: the first candidate /24 in 10.0.0.0/8 that overlaps none of the
# given route prefixes ("default" is ignored: it is not a routed subnet).
pick_subnet() {
    local cand r ok b c
    for b in 77 78 79 88 99 123 200 211; do
        for c in 0 1 2 3 4 5 6 7; do
            cand="10.$b.$c.0/24"; ok=1
            for r in "$@"; do
                [[ $r == default || -z $r ]] && continue
                if cidr_overlaps "$cand" "$r"; then ok=0; break; fi
            done
            (( ok )) && { echo "$cand"; return 0; }
        done
    done
    return 1
}

# pick_port BASE TAKEN...: the first TCP port from BASE up that is not in TAKEN.
pick_port() {
    local p t; local base=$(( $1 )); shift
    for (( p = base; p < 65536; p++ )); do
        for t in "$@"; do [[ $t == "$p" ]] && continue 2; done
        echo "$p"; return 0
    done
    return 1
}

# ---- owners ---------------------------------------------------------------------------------
# A lab records the process that owns it (LAB_OWNER_PID) with that process's start time
# (field 22 of /proc/PID/stat, clock ticks since boot): a recycled PID has another start time.

# proc_start_time PID: field 22 of /proc/PID/stat (the comm field may hold spaces and parens).
proc_start_time() {
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st##*) }
    # After the comm: field 3 is the 1st here, so field 22 is the 20th.
    awk '{ print $20 }' <<<"$st"
}

# owner_alive PID START: the process PID runs and started at START. A zombie (killed, not yet
# waited for by its parent: a SIGKILLed owner whose parent is busy) is gone too.
owner_alive() {
    [[ $1 =~ ^[0-9]+$ && -n ${2:-} ]] || return 1
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st##*) }
    [[ ${st%% *} != Z ]] || return 1
    [[ $(proc_start_time "$1") == "$2" ]]
}

# prune_decision USE_PCT MAX_PCT CACHE_MB MAX_MB LABS_RUNNING: prints "prune: WHY" or
# "keep: WHY" (exit 0 / 1). Never while a lab runs; else only above a threshold.
prune_decision() {
    local use=$1 maxpct=$2 cache=$3 maxmb=$4 running=$5
    if (( running > 0 )); then echo "keep: $running lab(s) running (their bases must stay)"; return 1; fi
    if (( use >= maxpct )); then echo "prune: the cache's filesystem is ${use}% full (threshold LAB_PRUNE_DISK_PCT=${maxpct}%)"; return 0; fi
    if (( cache > maxmb )); then echo "prune: the cache holds ${cache} MiB (cap LAB_PRUNE_CACHE_MB=${maxmb})"; return 0; fi
    echo "keep: disk ${use}% < ${maxpct}% and cache ${cache} MiB <= ${maxmb} MiB (LAB_PRUNE_DISK_PCT, LAB_PRUNE_CACHE_MB)"
    return 1
}

# nopython_hosts SPEC HOST...: the hosts of LAB_NOPYTHON (names separated by commas or spaces,
# or `all` for every host of the lab), one a line, each checked: a host of this lab (HOST... are
# its hosts) that runs a Linux group (loki, grafana, alloy_linux): the stand-ins of all three keep
# a private runtime (lab/lib/hosts.sh remove_python). Empty SPEC: none. Fails with the reason.
nopython_hosts() {
    local spec=${1:-} h; shift
    local IFS=$' ,\t'
    if [[ $spec == all ]]; then spec="$*"; fi
    for h in $spec; do
        [[ $h == all ]] && { echo "LAB_NOPYTHON=all stands alone: name hosts or say all, not both" >&2; return 1; }
        [[ " $* " == *" $h "* ]] || { echo "LAB_NOPYTHON names '$h', which is not a host of this lab (hosts: $*)" >&2; return 1; }
        [[ " $(host_groups "$h") " =~ \ (loki|grafana|alloy_linux)\  ]] \
            || { echo "LAB_NOPYTHON names '$h', which runs '$(host_groups "$h")'; only a host of loki, grafana or alloy_linux can be python-free" >&2; return 1; }
        echo "$h"
    done
    return 0
}

# parse_fault SPEC: prints "KIND SECONDS" (SECONDS only for dpkg-lock), or fails.
parse_fault() {
    local spec=${1:-}
    case $spec in
        timeout|refuse|heal) echo "$spec" ;;
        dpkg-lock) echo "dpkg-lock 60" ;;
        dpkg-lock:*)
            local s=${spec#dpkg-lock:}
            [[ $s =~ ^[0-9]+$ ]] && (( 10#$s >= 1 && 10#$s <= 86400 )) \
                || { echo "dpkg-lock seconds must be 1..86400, got '${s}'" >&2; return 1; }
            echo "dpkg-lock $((10#$s))" ;;
        *) echo "unknown fault '${spec}': use timeout, refuse, dpkg-lock[:SECONDS] or heal" >&2; return 1 ;;
    esac
}

# read_version KEY FILE: the value of a top-level `KEY: "x"` in a YAML vars file.
read_version() {
    local key=$1 file=$2 line val
    [[ -r $file ]] || { echo "cannot read $file" >&2; return 1; }
    line=$(grep -E "^${key}[[:space:]]*:" "$file" | head -n1) || true
    [[ -n $line ]] || { echo "$key not found in $file" >&2; return 1; }
    val=${line#*:}
    val=${val%%#*}                                   # trailing comment
    val=$(echo "$val" | sed -E 's/^[[:space:]]+//; s/[[:space:]]+$//; s/^"(.*)"$/\1/; s/^'"'"'(.*)'"'"'$/\1/')
    [[ $val =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || { echo "$key in $file is not a Debian version: '${val}'" >&2; return 1; }
    echo "$val"
}
