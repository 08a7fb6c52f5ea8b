# shellcheck shell=bash
# Faults on demand, each verified after it is made:
#   timeout       blackhole route to the controller inside the host's netns (SSH times out)
#   refuse        sshd stopped inside the host (connection refused)
#   dpkg-lock[:N] a process in the host holds an fcntl write lock on lock-frontend N s (60)
#   heal          undo all of them

# The lock holder, run by the host's own systemd as a transient unit.
LAB_LOCK_HOLDER='import fcntl, os, sys, time
fd = os.open("/var/lib/dpkg/lock-frontend", os.O_RDWR | os.O_CREAT, 0o640)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("homeops lab fault: holding /var/lib/dpkg/lock-frontend for %s s" % sys.argv[1], flush=True)
time.sleep(int(sys.argv[1]))'

# lock_holders HOST: PIDs (in the host) holding a lock on the host's lock-frontend.
lock_holders() {
    hexec "$1" sh -c 'i=$(stat -c %i /var/lib/dpkg/lock-frontend 2>/dev/null) || exit 0
        awk -v i="$i" '"'"'{ split($6, a, ":"); if (a[3] == i) print $5 }'"'"' /proc/locks'
}

# ssh_probe HOST: ok | timeout | refused | error (one short ssh attempt).
ssh_probe() {
    local out rc=0
    out=$(LAB_SSH_TIMEOUT=${LAB_PROBE_TIMEOUT:-3} lab_ssh "$1" true 2>&1) || rc=$?
    if (( rc == 0 )); then echo ok
    elif [[ $out == *"timed out"* ]]; then echo timeout
    elif [[ $out == *"refused"* ]]; then echo refused
    else echo "error"
    fi
}

fault_timeout() {
    local h=$1 ns brip
    ns=$(host_netns "$h"); brip=$(bridge_ip "$S_SUBNET")
    run "add blackhole route in $ns" ip -n "$ns" route replace blackhole "$brip/32"
    ip -n "$ns" route show type blackhole | grep -q "$brip" || die "blackhole route not present in $ns"
    echo "timeout" >"$(host_state_dir "$h")/fault.timeout"
    log "fault timeout on $h: packets to the controller ($brip) are blackholed; SSH will time out"
}

fault_refuse() {
    local h=$1 ip i
    ip=$(host_ip "$S_SUBNET" "$h")
    run "stop sshd in $h" hexec "$h" systemctl stop ssh.service ssh.socket
    for (( i = 0; i < 30; i++ )); do
        ip netns exec "$(host_netns "$h")" ss -ltnH 'sport = :22' 2>/dev/null | grep -q . || break
        sleep 0.1
    done
    ip netns exec "$(host_netns "$h")" ss -ltnH 'sport = :22' | grep -q . && die "sshd still listens on $h"
    echo "refuse" >"$(host_state_dir "$h")/fault.refuse"
    log "fault refuse on $h: sshd stopped; connections to $ip:22 are refused"
}

fault_dpkg_lock() {
    local h=$1 secs=$2 i pid holders
    hexec "$h" systemctl stop "$LAB_DPKG_LOCK_UNIT" >/dev/null 2>&1 || true
    run "start the dpkg lock holder in $h" hexec "$h" systemd-run --quiet --collect \
        --unit="$LAB_DPKG_LOCK_UNIT" --description="homeops lab fault: hold the dpkg frontend lock" \
        --property=RuntimeMaxSec=$(( secs + 5 )) /usr/bin/python3 -c "$LAB_LOCK_HOLDER" "$secs"
    for (( i = 0; i < 50; i++ )); do
        holders=$(lock_holders "$h" || true)
        [[ -n $holders ]] && break
        sleep 0.1
    done
    [[ -n $holders ]] || die "no holder of /var/lib/dpkg/lock-frontend appeared in $h"
    pid=$(hexec "$h" systemctl show -p MainPID --value "$LAB_DPKG_LOCK_UNIT")
    echo "$pid" >"$(host_state_dir "$h")/fault.dpkg-lock.pid"
    log "fault dpkg-lock on $h: PID $pid (in the host) holds /var/lib/dpkg/lock-frontend for ${secs}s (unit $LAB_DPKG_LOCK_UNIT)"
}

fault_heal() {
    local h=$1 ns brip sd i
    ns=$(host_netns "$h"); brip=$(bridge_ip "$S_SUBNET"); sd=$(host_state_dir "$h")
    ip -n "$ns" route del blackhole "$brip/32" 2>/dev/null || true
    ip -n "$ns" route show type blackhole | grep -q . && die "a blackhole route is still in $ns"
    run "start sshd in $h" hexec "$h" systemctl start ssh.service
    hexec "$h" systemctl stop "$LAB_DPKG_LOCK_UNIT" >/dev/null 2>&1 || true
    for (( i = 0; i < 30; i++ )); do [[ -z $(lock_holders "$h" || true) ]] && break; sleep 0.1; done
    [[ -z $(lock_holders "$h" || true) ]] || die "the dpkg lock on $h is still held"
    rm -f "$sd"/fault.*
    [[ $(ssh_probe "$h") == ok ]] || die "$h healed but ssh still does not answer"
    log "healed $h: no blackhole route, sshd running, no dpkg lock holder; ssh answers"
}

# host_faults HOST: the faults recorded on a host, comma-separated ("-" for none).
host_faults() {
    local sd f out=()
    sd=$(host_state_dir "$1")
    for f in "$sd"/fault.*; do
        [[ -e $f ]] || continue
        f=${f##*/fault.}; out+=("${f%.pid}")
    done
    (( ${#out[@]} )) && { local IFS=,; echo "${out[*]}"; } || echo "-"
}
