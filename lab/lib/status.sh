# shellcheck shell=bash
# lab/lab status: hosts (state, address, ssh, systemd, memory, faults), repo server, bridge.

mib() { [[ -n $1 ]] && echo "$(( $1 / 1048576 ))MiB" || echo "-"; }

cmd_status() {
    need_root
    if ! state_load; then
        echo "lab: not running (no state in $LAB_STATE_DIR)"
        local l; l=$(lab_links_list; lab_netns_list)
        [[ -n $l ]] && { echo "leftovers: $(echo $l)  (run lab/lab down)"; return 1; }
        return 0
    fi
    local tmp h; tmp=$(mktemp -d "${TMPDIR:-/tmp}/hoplab-status.XXXXXX")
    for h in $S_HOSTS; do
        (
            state=stopped ssh=- sysd=-
            if container_pid "$h" >/dev/null; then
                state=running
                ssh=$(LAB_PROBE_TIMEOUT=2 ssh_probe "$h")
                sysd=$(hexec "$h" systemctl is-system-running 2>/dev/null || true)
            fi
            printf '%-14s %-8s %-13s %-8s %-10s %8s %8s  %s\n' "$h" "$state" "$(host_ip "$S_SUBNET" "$h")" \
                "$ssh" "${sysd:-?}" "$(mib "$(host_mem_bytes "$h")")" "$(mib "$(host_rss_bytes "$h")")" "$(host_faults "$h")" >"$tmp/$h"
        ) 9>&- &
    done
    wait
    echo "lab of $S_OWNER, started $S_STARTED"
    printf '%-14s %-8s %-13s %-8s %-10s %8s %8s  %s\n' HOST STATE ADDRESS SSH SYSTEMD MEM RSS FAULTS
    for h in $S_HOSTS; do cat "$tmp/$h"; done
    rm -rf "$tmp"
    local rp
    if rp=$(repo_pid); then echo "repo:   running (pid $rp) http://$S_BRIDGE_IP:$S_REPO_PORT/"
    else echo "repo:   NOT running"; fi
    if ip link show "$LAB_BRIDGE" >/dev/null 2>&1; then
        echo "bridge: $LAB_BRIDGE $(ip -o -4 addr show dev "$LAB_BRIDGE" | awk '{ print $4 }') $(ip -o link show "$LAB_BRIDGE" | grep -o 'state [A-Z]*')"
    else echo "bridge: $LAB_BRIDGE missing"; fi
    echo "inventory: $(lab_inventory)"
}
