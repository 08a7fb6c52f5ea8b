#!/usr/bin/env bash
# Unit tests of the lab's pure parts (lib/config.sh, lib/inventory.sh, argument checks).
# No root, nothing booted. Ends with "N passed, N failed"; non-zero exit on any failure.
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB_ROOT=$(cd "$LAB_DIR/.." && pwd)
# shellcheck source=/dev/null
source "$LAB_DIR/lib/common.sh"
# shellcheck source=/dev/null
source "$LAB_DIR/lib/config.sh"
# shellcheck source=/dev/null
source "$LAB_DIR/lib/inventory.sh"

PASS=0 FAIL=0
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lab-unit.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

ok()   { PASS=$((PASS + 1)); printf 'ok   %s\n' "$1"; }
nok()  { FAIL=$((FAIL + 1)); printf 'FAIL %s\n' "$1"; [[ -n ${2:-} ]] && printf '     %s\n' "$2"; return 0; }
# eq NAME EXPECTED ACTUAL
eq() { if [[ $2 == "$3" ]]; then ok "$1"; else nok "$1" "expected [$2] got [$3]"; fi; }
# fails NAME CMD...: the command must fail
fails() { local n=$1; shift; if "$@" >/dev/null 2>&1; then nok "$n" "expected failure: $*"; else ok "$n"; fi; }
succeeds() { local n=$1; shift; if "$@" >/dev/null 2>&1; then ok "$n"; else nok "$n" "expected success: $*"; fi; }

# --- host naming -------------------------------------------------------------------------
eq "3 hosts by default names" "obs-01 ws-01-linux srv-01" "$(host_names 3 | tr '\n' ' ' | sed 's/ $//')"
eq "1 host is obs-01" "obs-01" "$(host_names 1)"
eq "5 hosts add agent-04 agent-05" "obs-01 ws-01-linux srv-01 agent-04 agent-05" "$(host_names 5 | tr '\n' ' ' | sed 's/ $//')"
eq "16 hosts end with agent-16" "16 agent-16" "$(host_names 16 | wc -l | tr -d ' ') $(host_names 16 | tail -n1)"
eq "host names are unique for 64" "64" "$(host_names 64 | sort -u | wc -l | tr -d ' ')"
eq "index of agent-12" "12" "$(host_index agent-12)"
eq "groups of obs-01" "loki grafana" "$(host_groups obs-01)"
eq "groups of agent-07" "alloy_linux" "$(host_groups agent-07)"
eq "veth name fits IFNAMSIZ" "hoplab-v16" "$(host_veth agent-16)"
eq "netns name" "hoplab-ws-01-linux" "$(host_netns ws-01-linux)"
succeeds "valid host name agent-04" valid_host_name agent-04
fails "invalid host name web-01" valid_host_name web-01

# --- LAB_HOSTS checks --------------------------------------------------------------------
succeeds "LAB_HOSTS=16 accepted" validate_host_count 16
fails "LAB_HOSTS=0 rejected" validate_host_count 0
fails "LAB_HOSTS=abc rejected" validate_host_count abc
fails "LAB_HOSTS=65 rejected" validate_host_count 65
fails "LAB_HOSTS empty rejected" validate_host_count ""
eq "LAB_HOSTS=08 is 8 (not octal)" "8" "$(host_names 08 | wc -l | tr -d ' ')"

# --- addresses and subnet choice ---------------------------------------------------------
eq "bridge ip" "10.77.0.1" "$(bridge_ip 10.77.0.0/24)"
eq "ws-01-linux ip" "10.77.0.12" "$(host_ip 10.77.0.0/24 ws-01-linux)"
eq "agent-16 ip" "10.77.0.26" "$(host_ip 10.77.0.0/24 agent-16)"
succeeds "overlap: /16 contains /24" cidr_overlaps 10.77.0.0/24 10.77.0.0/16
fails "no overlap: neighbour /24" cidr_overlaps 10.77.0.0/24 10.77.1.0/24
eq "pick_subnet ignores default" "10.77.0.0/24" "$(pick_subnet default 192.0.2.0/24)"
eq "pick_subnet skips a taken /24" "10.77.1.0/24" "$(pick_subnet 10.77.0.0/24)"
eq "pick_subnet skips a taken /16" "10.78.0.0/24" "$(pick_subnet 10.77.0.0/16)"
eq "pick_subnet skips a host route" "10.77.1.0/24" "$(pick_subnet 10.77.0.5)"
fails "pick_subnet fails when 10/8 is routed" pick_subnet 10.0.0.0/8
succeeds "valid LAB_SUBNET" valid_subnet 10.99.3.0/24
fails "LAB_SUBNET outside 10/8 rejected" valid_subnet 192.168.1.0/24
fails "LAB_SUBNET not a /24 rejected" valid_subnet 10.99.0.0/16

# --- fault parsing -----------------------------------------------------------------------
eq "fault timeout" "timeout" "$(parse_fault timeout)"
eq "fault refuse" "refuse" "$(parse_fault refuse)"
eq "fault heal" "heal" "$(parse_fault heal)"
eq "fault dpkg-lock defaults to 60 s" "dpkg-lock 60" "$(parse_fault dpkg-lock)"
eq "fault dpkg-lock:15" "dpkg-lock 15" "$(parse_fault dpkg-lock:15)"
fails "fault dpkg-lock:abc rejected" parse_fault dpkg-lock:abc
fails "fault dpkg-lock:0 rejected" parse_fault dpkg-lock:0
fails "fault dpkg-lock: rejected" parse_fault dpkg-lock:
fails "unknown fault rejected" parse_fault reboot
fails "empty fault rejected" parse_fault ""

# --- versions ----------------------------------------------------------------------------
VF="$LAB_ROOT/playbooks/group_vars/all/versions.yml"
eq "loki_version from versions.yml" "$(sed -n 's/^loki_version: *"\(.*\)".*/\1/p' "$VF")" "$(read_version loki_version "$VF")"
cat >"$TMP/v.yml" <<'EOV'
---
# comment
grafana_version: 12.1.1   # trailing comment
alloy_version: '1.10.2'
loki_version_note: "not this"
loki_version: "3.5.7"
bad_version: "latest"
EOV
eq "unquoted version with comment" "12.1.1" "$(read_version grafana_version "$TMP/v.yml")"
eq "single-quoted version" "1.10.2" "$(read_version alloy_version "$TMP/v.yml")"
eq "exact key, not a prefix" "3.5.7" "$(read_version loki_version "$TMP/v.yml")"
fails "non-version value rejected" read_version bad_version "$TMP/v.yml"
fails "missing key rejected" read_version nope_version "$TMP/v.yml"
fails "missing file rejected" read_version loki_version "$TMP/none.yml"

# --- inventory ---------------------------------------------------------------------------
mapfile -t H < <(host_names 4)
render_inventory 10.77.0.0/24 /k/id_ed25519 hoplab-grafana-SECRET1 hoplab-loki-SECRET2 http://10.77.0.1:8642/ "${H[@]}" >"$TMP/inv.yml"
inv=$(cat "$TMP/inv.yml")
group_hosts() { awk -v g="    $1:" '$0 == g { f = 1; next } f && /^    [^ ]/ { f = 0 } f && /^        [^ ]/ { sub(/:.*/, ""); gsub(/ /, ""); printf "%s ", $0 }' "$TMP/inv.yml" | sed 's/ $//'; }
eq "inventory group loki" "obs-01" "$(group_hosts loki)"
eq "inventory group grafana" "obs-01" "$(group_hosts grafana)"
eq "inventory group alloy_linux" "ws-01-linux srv-01 agent-04" "$(group_hosts alloy_linux)"
[[ $inv == *$'    alloy_windows:\n      hosts: {}'* ]] && ok "inventory group alloy_windows empty" || nok "inventory group alloy_windows empty"
[[ $inv == *"observability_package_source: lab"* ]] && ok "inventory package source lab" || nok "inventory package source lab"
[[ $inv == *'grafana_admin_password: "hoplab-grafana-SECRET1"'* && $inv == *'loki_datasource_password: "hoplab-loki-SECRET2"'* ]] \
    && ok "inventory secrets in all vars" || nok "inventory secrets in all vars"
eq "inventory ansible_host per host" "4" "$(grep -c '^      ansible_host: 10\.77\.0\.1[1-4]$' "$TMP/inv.yml")"
eq "inventory ssh args per host" "4" "$(grep -cF "ansible_ssh_common_args: \"$LAB_SSH_COMMON_ARGS\"" "$TMP/inv.yml")"
[[ $LAB_SSH_COMMON_ARGS == *"ServerAliveInterval=1"*"ServerAliveCountMax=3"* && $LAB_SSH_COMMON_ARGS == *"StrictHostKeyChecking=no"* ]] \
    && ok "ssh args keep dead hosts from hanging" || nok "ssh args keep dead hosts from hanging"
eq "inventory user and key" "4 4" "$(grep -c 'ansible_user: root' "$TMP/inv.yml") $(grep -c 'ansible_ssh_private_key_file: "/k/id_ed25519"' "$TMP/inv.yml")"
if command -v python3 >/dev/null && python3 -c 'import yaml' 2>/dev/null; then
    eq "inventory is valid YAML" "obs-01,ws-01-linux,srv-01,agent-04" \
        "$(python3 -c 'import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); print(",".join(d["all"]["hosts"]))' "$TMP/inv.yml")"
fi
s1=$(new_secret hoplab-x-); s2=$(new_secret hoplab-x-)
[[ $s1 =~ ^hoplab-x-[A-Za-z0-9]{32}$ && $s1 != "$s2" ]] && ok "secrets are distinctive and random" || nok "secrets are distinctive and random"

# --- the CLI's argument checks (exit 2 before anything needs root) ----------------------
cli() { local rc=0; "$LAB_DIR/lab" "$@" >/dev/null 2>&1 || rc=$?; echo "$rc"; }
eq "lab with no args prints help" "0" "$(cli)"
eq "unknown command exits 2" "2" "$(cli frobnicate)"
eq "fault without args exits 2" "2" "$(cli fault)"
eq "fault unknown host exits 2" "2" "$(cli fault web-01 timeout)"
eq "fault unknown kind exits 2" "2" "$(cli fault obs-01 reboot)"
eq "up with LAB_HOSTS=0 exits 2" "2" "$(LAB_HOSTS=0 cli up)"
eq "up with an argument exits 2" "2" "$(cli up now)"

# --- lab.mk does not take the main Makefile's targets ------------------------------------
bad=$(grep -E '^(setup|build|test|lint|itest|deploy|verify):' "$LAB_DIR/lab.mk" || true)
eq "lab.mk defines no main-Makefile targets" "" "$bad"

echo
echo "$PASS passed, $FAIL failed"
(( FAIL == 0 ))
