# shellcheck shell=bash
# lab/lab status: hosts (state, address, ssh, systemd, memory, faults), repo server, bridge.

mib() { [[ -n $1 ]] && echo "$(( $1 / 1048576 ))MiB" || echo "-"; }

# status_all: one line per lab on this machine: id, owner clone, owner process, verdict.
status_all() {
    local id n=0
    printf '%-7s %-6s %-16s %-6s %-22s %s\n' ID HOSTS SUBNET PORT STARTED "OWNER / VERDICT"
    for id in $(lab_ids); do
        n=$((n + 1))
        (
            lab_select "$id"
            state_load || true
            local up=0 h v
            for h in $S_HOSTS; do nspawn_pid "$h" >/dev/null && up=$((up + 1)); done
            v=$(lab_verdict) || v="REAPABLE: $v"
            lab_busy "$id" && v="busy (a lab command runs on it); $v"
            printf '%-7s %-6s %-16s %-6s %-22s %s\n' "$id" "$up/$(wc -w <<<"$S_HOSTS")" "${S_SUBNET:--}" "${S_REPO_PORT:--}" "${S_STARTED:--}" "${S_OWNER:-?}"
            printf '%-7s %s\n' "" "$v"
        )
    done
    echo "$n lab(s); this machine holds LAB_MAX_LABS=$LAB_MAX_LABS; cache $(du -sh "$LAB_CACHE_DIR" 2>/dev/null | cut -f1) in $LAB_CACHE_DIR"
}

cmd_status() {
    need_root
    if [[ ${1:-} == --all ]]; then status_all; return; fi
    select_this_lab
    if ! state_load; then
        echo "lab $LAB_ID: not running (no state in $LAB_STATE_DIR)"
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
    echo "lab $LAB_ID of $S_OWNER, started $S_STARTED; owner: $(lab_verdict || true)"
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
