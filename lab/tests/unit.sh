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
# shellcheck source=/dev/null
source "$LAB_DIR/lib/state.sh"
# shellcheck source=/dev/null
source "$LAB_DIR/lib/base.sh"
# shellcheck source=/dev/null
source "$LAB_DIR/lib/repo.sh"

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
lab_select 1a2b3c
eq "veth name carries the lab id" "hoplab1a2b3cv16" "$(host_veth agent-16)"
eq "netns name carries the lab id" "hoplab1a2b3c-ws-01-linux" "$(host_netns ws-01-linux)"
eq "machine name carries the lab id" "hoplab1a2b3c-obs-01" "$(host_machine obs-01)"

# --- lab identity ------------------------------------------------------------------------
id1=$(lab_id_for_path /work/clone-a); id2=$(lab_id_for_path /work/clone-b)
[[ $id1 =~ ^[0-9a-f]{6}$ ]] && ok "derived id is 6 hex digits" || nok "derived id is 6 hex digits" "$id1"
eq "derived id is stable" "$id1" "$(lab_id_for_path /work/clone-a)"
[[ $id1 != "$id2" ]] && ok "two clones get two ids" || nok "two clones get two ids" "$id1 $id2"
eq "derived id is sha256 of the path" "$(printf %s /work/clone-a | sha256sum | cut -c1-6)" "$id1"
succeeds "LAB_ID ci1 accepted" valid_lab_id ci1
fails "LAB_ID longer than 6 rejected" valid_lab_id abcdefg
fails "LAB_ID with a dash rejected" valid_lab_id a-b
fails "LAB_ID upper case rejected" valid_lab_id ABC
fails "LAB_ID empty rejected" valid_lab_id ""
# Every link name of the longest id and the highest host index fits IFNAMSIZ (15 + NUL).
longest=0
for n in "$(lab_bridge_name zzzzzz)" "$(lab_veth_name zzzzzz "$LAB_MAX_HOSTS")"; do (( ${#n} > longest )) && longest=${#n}; done
(( longest <= 15 )) && ok "link names fit IFNAMSIZ (longest $longest)" || nok "link names fit IFNAMSIZ" "longest $longest > 15"
eq "veth of host 64 of a 6-char id" "hoplabzzzzzzv64" "$(lab_veth_name zzzzzz 64)"
eq "veth index is decimal, not octal" "hoplabav08" "$(lab_veth_name a 08)"
# Names never match the old one-lab names (hoplab0, hoplab-vNN, hoplab-<host>).
fails "old bridge hoplab0 is no lab's" lab_id_of_name hoplab0
fails "old veth hoplab-v01 is no lab's" lab_id_of_name hoplab-v01
fails "old netns hoplab-obs-01 is no lab's" lab_id_of_name hoplab-obs-01
eq "id of a bridge" "1a2b3c" "$(lab_id_of_name hoplab1a2b3cbr)"
eq "id of a veth" "ab" "$(lab_id_of_name hoplababv01)"
eq "id of a netns" "abc" "$(lab_id_of_name hoplababc-ws-01-linux)"
# Two labs' names never collide (ids a and a1 share a prefix).
lab_select a;  na="$(lab_bridge_name a) $(host_veth obs-01) $(host_netns obs-01) $LAB_CG_NAME $LAB_STATE_DIR $LAB_HOSTS_DIR"
lab_select a1; nb="$(lab_bridge_name a1) $(host_veth obs-01) $(host_netns obs-01) $LAB_CG_NAME $LAB_STATE_DIR $LAB_HOSTS_DIR"
eq "labs a and a1 share no name" "" "$(comm -12 <(tr ' ' '\n' <<<"$na" | sort) <(tr ' ' '\n' <<<"$nb" | sort))"
lab_select a
eq "lab a's links are not lab a1's" "" "$(printf '%s\n' hoplaba1br hoplaba1v01 | grep -E "^hoplab${LAB_ID_PAT}(br|v[0-9]{2})$")"
eq "state and host dirs per lab" "/run/homeops-labs/a /var/lib/homeops-lab/lab-a homeops-lab-a" "$LAB_STATE_DIR $LAB_HOSTS_DIR $LAB_CG_NAME"
LAB_ID=zz; eq "inventory of another LAB_ID is its own file" "$LAB_ROOT/.lab/inventory-zz.yml" "$(lab_inventory)"
LAB_ID=$(lab_default_id); eq "inventory of the clone's own lab" "$LAB_ROOT/.lab/inventory.yml" "$(lab_inventory)"
lab_select 1a2b3c

# --- owners (PID + start time) -----------------------------------------------------------
st=$(proc_start_time $$)
[[ $st =~ ^[0-9]+$ ]] && ok "start time of a PID" || nok "start time of a PID" "[$st]"
succeeds "owner alive with its start time" owner_alive $$ "$st"
fails "owner with another start time (a recycled PID) is gone" owner_alive $$ "$((st + 1))"
fails "owner without a start time is gone" owner_alive $$ ""
sleep 30 & sp=$!; sst=$(proc_start_time $sp); kill -KILL $sp; wait $sp 2>/dev/null || true
fails "a killed owner is gone" owner_alive "$sp" "$sst"
# A zombie: the child exited, its parent has not waited for it (as a SIGKILLed owner whose
# parent is busy elsewhere).
python3 -c 'import os, time
pid = os.fork()
if pid == 0:
    os._exit(0)
print(pid, flush=True)
time.sleep(5)' >"$TMP/zpid" & zp=$!
for _ in $(seq 50); do [[ -s $TMP/zpid ]] && break; sleep 0.1; done
zc=$(cat "$TMP/zpid"); sleep 0.2
fails "a zombie owner is gone" owner_alive "$zc" "$(awk '{ print $22 }' "/proc/$zc/stat" 2>/dev/null)"
kill -KILL $zp; wait $zp 2>/dev/null || true
# A comm with spaces and parens must not shift the fields.
cp /bin/sleep "$TMP/a b) c"; "$TMP/a b) c" 30 & sp=$!
eq "start time of a process named 'a b) c'" "$(awk '{ print $22 }' <(sed 's/(.*)/(x)/' /proc/$sp/stat))" "$(proc_start_time $sp)"
kill -KILL $sp; wait $sp 2>/dev/null || true
S_ID=x S_OWNER=/nonexistent/clone S_OWNER_PID='' S_OWNER_START='' S_OWNER_CMD=''
fails "verdict: a hand-started lab of a removed clone is reapable" lab_verdict
S_OWNER=$LAB_ROOT
succeeds "verdict: a hand-started lab of an existing clone is kept" lab_verdict
S_OWNER_PID=$$ S_OWNER_START=$st
succeeds "verdict: a lab with a live owner is kept" lab_verdict
S_OWNER_START=$((st + 1))
fails "verdict: a lab whose owner PID was recycled is reapable" lab_verdict
S_ID='' S_OWNER='' S_OWNER_PID='' S_OWNER_START=''
fails "verdict: leftovers without state are reapable" lab_verdict
# A lab kept on purpose (LAB_KEEP=1 ...): kept whatever its owner became, until down.
S_ID=x S_OWNER=$LAB_ROOT S_OWNER_PID=$$ S_OWNER_START=$((st + 1)) S_KEPT_BY="LAB_KEEP=1 itest" S_KEPT_AT=2026-12-07T18:00:00Z
succeeds "verdict: a kept lab whose owner is gone is kept" lab_verdict
v=$(lab_verdict || true)
[[ $v == "kept by hand: LAB_KEEP=1 itest at 2026-12-07T18:00:00Z; stays until "*"make lab-down in $LAB_ROOT"* ]] \
    && ok "verdict of a kept lab says who kept it, when, and how to end it" || nok "verdict of a kept lab says who kept it, when, and how to end it" "$v"
lab_select "$(lab_default_id)"; eq "down hint of the clone's own lab" "make lab-down in $LAB_ROOT" "$(lab_down_hint)"
lab_select zz; eq "down hint of another LAB_ID names it" "LAB_ID=zz make lab-down in $LAB_ROOT" "$(lab_down_hint)"
S_OWNER=/nonexistent/clone
fails "verdict: a kept lab of a removed clone is reapable" lab_verdict
S_ID='' S_OWNER='' S_OWNER_PID='' S_OWNER_START='' S_KEPT_BY='' S_KEPT_AT=''
lab_select 1a2b3c

# --- lock files: removed only by their holder, waiters re-open ----------------------------
(
    LAB_RUN_ROOT=$TMP/run; mkdir -p "$LAB_RUN_ROOT"
    lab_select lk1
    lab_lock
    succeeds "lab_lock: the held file is the one at the path" lock_is_current 9 "$LAB_RUN_ROOT/lk1.lock"
    lab_unlink_lock 9
    fails "lab_unlink_lock: the holder removed the lock file" test -e "$LAB_RUN_ROOT/lk1.lock"
    fails "lock_is_current: a removed lock file is not current" lock_is_current 9 "$LAB_RUN_ROOT/lk1.lock"
    exec 9>&-
    # A waiter that opened the file before its holder removed it must not keep that lock.
    exec 6>"$LAB_RUN_ROOT/lk2.lock"; flock 6
    ( lab_select lk2; LAB_PROG=waiter; lab_lock; stat -L -c '%i' "/proc/$BASHPID/fd/9" ) >"$TMP/waiter.out" 2>&1 6>&- &
    wp=$!; sleep 0.3
    old=$(stat -c '%i' "$LAB_RUN_ROOT/lk2.lock"); rm -f "$LAB_RUN_ROOT/lk2.lock"; exec 6>&-
    wait $wp || true; got=$(tail -n1 "$TMP/waiter.out")
    [[ -e $LAB_RUN_ROOT/lk2.lock && $got != "$old" && $got == "$(stat -c '%i' "$LAB_RUN_ROOT/lk2.lock")" ]] \
        && ok "lab_lock: a waiter whose file was removed locks the new one at the path" \
        || nok "lab_lock: a waiter whose file was removed locks the new one at the path" "old $old, waiter $(cat "$TMP/waiter.out")"
    # sweep_locks: stale ones of absent labs go; held ones and those of labs with state stay.
    touch "$LAB_RUN_ROOT/lk3.lock" "$LAB_RUN_ROOT/lk4.lock" "$LAB_RUN_ROOT/lk5.lock"; mkdir -p "$LAB_RUN_ROOT/lk5"
    exec 5>"$LAB_RUN_ROOT/lk4.lock"; flock 5
    lab_select lk9
    LAB_PROG=sweep sweep_locks 2>"$TMP/sweep.err"
    fails "sweep_locks: removes the lock file of a lab that does not exist" test -e "$LAB_RUN_ROOT/lk3.lock"
    succeeds "sweep_locks: leaves a held lock file" test -e "$LAB_RUN_ROOT/lk4.lock"
    succeeds "sweep_locks: leaves the lock file of a lab with state" test -e "$LAB_RUN_ROOT/lk5.lock"
    succeeds "sweep_locks: says what it removed" grep -q "removed 2 lock file" "$TMP/sweep.err"
    exec 5>&-
    echo "$PASS $FAIL" >"$TMP/lock-counts"
)
read -r PASS FAIL <"$TMP/lock-counts"

# --- stand-in packages: empty directories from the source's dirs file ---------------------
if command -v dpkg-deb >/dev/null; then
    (
        # shellcheck source=/dev/null
        source "$LAB_DIR/lib/packages.sh"
        mkdir -p "$TMP/debs"
        build_standin "$LAB_DIR/packages/grafana" "$TMP/debs" 9.9.9 >/dev/null 2>&1
    ) && listing=$(dpkg-deb -c "$TMP"/debs/grafana_9.9.9_*.deb) || listing="build failed"
    grep -q ' ./etc/grafana/provisioning/datasources/$' <<<"$listing" \
        && ok "grafana stand-in ships the empty provisioning/datasources directory" \
        || nok "grafana stand-in ships the empty provisioning/datasources directory" "$(tail -n3 <<<"$listing")"
    grep -q ' ./dirs$' <<<"$listing" && nok "the dirs list itself is not packaged" || ok "the dirs list itself is not packaged"
else
    echo "skip stand-in package build: no dpkg-deb (apt-get install dpkg)"
fi

# --- allocation: subnets and ports -------------------------------------------------------
eq "pick_subnet skips another lab's recorded subnet" "10.77.2.0/24" "$(pick_subnet 10.77.0.0/24 10.77.1.0/24)"
eq "pick_port: the base when free" "8642" "$(pick_port 8642)"
eq "pick_port skips other labs' ports" "8644" "$(pick_port 8642 8642 8643 8650)"
subs=$(t=(); for i in 1 2 3 4 5 6; do s_=$(pick_subnet "${t[@]}") || break; t+=("$s_"); done; printf '%s\n' "${t[@]}" | sort -u | wc -l)
eq "6 labs one after another get 6 distinct subnets" "6" "$subs"

# --- the cache policy --------------------------------------------------------------------
h0=$(base_recipe_hash)
[[ $h0 =~ ^[0-9a-f]{16}$ ]] && ok "recipe hash is 16 hex digits" || nok "recipe hash is 16 hex digits" "$h0"
eq "recipe hash is stable" "$h0" "$(base_recipe_hash)"
[[ $(LAB_BASE_INCLUDE="$LAB_BASE_INCLUDE,vim" base_recipe_hash) != "$h0" ]] && ok "recipe hash follows the package list" || nok "recipe hash follows the package list"
[[ $(prepare_base() { :; }; base_recipe_hash) != "$h0" ]] && ok "recipe hash follows prepare_base" || nok "recipe hash follows prepare_base"
[[ $(ensure_base() { :; }; base_recipe_hash) == "$h0" ]] && ok "recipe hash ignores ensure_base (not the recipe)" || nok "recipe hash ignores ensure_base (not the recipe)"
fails "prune: never while a lab runs" prune_decision 95 80 5000 1024 1
succeeds "prune: disk above the threshold" prune_decision 85 80 300 1024 0
succeeds "prune: cache above its cap" prune_decision 20 80 2000 1024 0
fails "prune: below both thresholds" prune_decision 20 80 300 1024 0
eq "prune says why it keeps" "keep: 2 lab(s) running (their bases must stay)" "$(prune_decision 99 80 9999 1 2)"
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
VF="$LAB_ROOT/roles/common/defaults/main/versions.yml"
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
render_inventory 10.77.0.0/24 /k/id_ed25519 hoplab-grafana-SECRET1 hoplab-loki-SECRET2 http://10.77.0.1:8642/ hoplab-become-SECRET3 hoplab-push-SECRET4 "${H[@]}" >"$TMP/inv.yml"
inv=$(cat "$TMP/inv.yml")
group_hosts() { awk -v g="    $1:" '$0 == g { f = 1; next } f && /^    [^ ]/ { f = 0 } f && /^        [^ ]/ { sub(/:.*/, ""); gsub(/ /, ""); printf "%s ", $0 }' "$TMP/inv.yml" | sed 's/ $//'; }
eq "inventory group loki" "obs-01" "$(group_hosts loki)"
eq "inventory group grafana" "obs-01" "$(group_hosts grafana)"
eq "inventory group alloy_linux" "ws-01-linux srv-01 agent-04" "$(group_hosts alloy_linux)"
[[ $inv == *$'    alloy_windows:\n      hosts: {}'* ]] && ok "inventory group alloy_windows empty" || nok "inventory group alloy_windows empty"
[[ $inv != *"observability_package_source"* && $inv == *'observability_grafana_apt_url: "http://10.77.0.1:8642/"'* && $inv == *"observability_grafana_apt_key_url: \"file://$LAB_STATE_DIR/repo/gpg.key\""* ]] \
    && ok "inventory: the deploy's default package source, URLs at the lab (key fetched by the controller from the repo's file)" \
    || nok "inventory: the deploy's default package source, URLs at the lab (key fetched by the controller from the repo's file)"
[[ $inv == *"grafana_admin_password: 'hoplab-grafana-SECRET1'"* && $inv == *"loki_datasource_password: 'hoplab-loki-SECRET2'"* \
   && $inv == *"loki_push_password: 'hoplab-push-SECRET4'"* ]] \
    && ok "inventory secrets in all vars" || nok "inventory secrets in all vars"
eq "inventory ansible_host per host" "4" "$(grep -c '^      ansible_host: 10\.77\.0\.1[1-4]$' "$TMP/inv.yml")"
eq "inventory ssh args per host" "4" "$(grep -cF "ansible_ssh_common_args: \"$LAB_SSH_COMMON_ARGS\"" "$TMP/inv.yml")"
[[ $LAB_SSH_COMMON_ARGS == *"ServerAliveInterval=1"*"ServerAliveCountMax=3"* && $LAB_SSH_COMMON_ARGS == *"StrictHostKeyChecking=no"* ]] \
    && ok "ssh args keep dead hosts from hanging" || nok "ssh args keep dead hosts from hanging"
eq "inventory user and key" "0 3 1 4" "$(grep -c 'ansible_user: root' "$TMP/inv.yml") $(grep -c 'ansible_user: admin$' "$TMP/inv.yml") $(grep -c 'ansible_user: pi$' "$TMP/inv.yml") $(grep -c 'ansible_ssh_private_key_file: "/k/id_ed25519"' "$TMP/inv.yml")"
eq "inventory become sudo on every host" "4 4" "$(grep -c '^      ansible_become: true$' "$TMP/inv.yml") $(grep -c '^      ansible_become_method: sudo$' "$TMP/inv.yml")"
if command -v python3 >/dev/null && python3 -c 'import yaml' 2>/dev/null; then
    eq "inventory become password on ws-01-linux only" "ws-01-linux=hoplab-become-SECRET3" \
        "$(python3 -c 'import sys, yaml; d = yaml.safe_load(open(sys.argv[1]))["all"]["hosts"]; print(",".join(h + "=" + v["ansible_become_password"] for h, v in d.items() if "ansible_become_password" in v))' "$TMP/inv.yml")"
fi
if command -v python3 >/dev/null && python3 -c 'import yaml' 2>/dev/null; then
    eq "inventory is valid YAML" "obs-01,ws-01-linux,srv-01,agent-04" \
        "$(python3 -c 'import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); print(",".join(d["all"]["hosts"]))' "$TMP/inv.yml")"
fi
[[ $inv != *"observability_expect_linux_agents"* ]] && ok "inventory with agents expects them" || nok "inventory with agents expects them"
render_inventory 10.77.0.0/24 /k/id_ed25519 g l http://10.77.0.1:8642/ b p obs-01 >"$TMP/inv1.yml"
grep -q '^    observability_expect_linux_agents: false$' "$TMP/inv1.yml" \
    && ok "a lab of obs-01 alone says it has no Linux agents" || nok "a lab of obs-01 alone says it has no Linux agents"
s1=$(new_secret hoplab-x-); s2=$(new_secret hoplab-x-)
[[ $s1 =~ ^hoplab-x-[A-Za-z0-9]{8}\#[A-Za-z0-9]{4}\;[A-Za-z0-9]{4}\$[A-Za-z0-9]{4}\ [A-Za-z0-9]{4}\"[A-Za-z0-9]{4}\'[A-Za-z0-9]{4}\`[A-Za-z0-9]{4}\\[A-Za-z0-9]{4}$ && $s1 != "$s2" ]] \
    && ok "secrets are distinctive and random, with # ; \$ space quotes backquote backslash" \
    || nok "secrets are distinctive and random, with # ; \$ space quotes backquote backslash"
if command -v python3 >/dev/null && python3 -c 'import yaml' 2>/dev/null; then
    render_inventory 10.77.0.0/24 /k/id_ed25519 "$s1" "$s2" http://10.77.0.1:8642/ "$s1" "$s2" "${H[@]}" >"$TMP/inv2.yml"
    eq "inventory YAML carries the secrets exactly" "ok" \
        "$(python3 -c 'import sys, yaml; v = yaml.safe_load(open(sys.argv[1]))["all"]["vars"]; print("ok" if (v["grafana_admin_password"], v["loki_datasource_password"], v["loki_push_password"]) == (sys.argv[2], sys.argv[3], sys.argv[3]) else "differs")' "$TMP/inv2.yml" "$s1" "$s2")"
fi

# --- LAB_NOPYTHON: which hosts lose python3 --------------------------------------------
mapfile -t H5 < <(host_names 5)
eq "LAB_NOPYTHON unset: no host" "" "$(nopython_hosts "" "${H5[@]}")"
eq "LAB_NOPYTHON one agent" "srv-01" "$(nopython_hosts srv-01 "${H5[@]}")"
eq "LAB_NOPYTHON two agents, comma or space" "srv-01 agent-05" "$(nopython_hosts 'srv-01, agent-05' "${H5[@]}" | tr '\n' ' ' | sed 's/ $//')"
fails "LAB_NOPYTHON refuses a host the lab does not have" nopython_hosts agent-09 "${H5[@]}"
eq "LAB_NOPYTHON takes the Loki/Grafana host" "obs-01" "$(nopython_hosts obs-01 "${H5[@]}")"
eq "LAB_NOPYTHON=all is every host of the lab" "${H5[*]}" "$(nopython_hosts all "${H5[@]}" | tr '\n' ' ' | sed 's/ $//')"
fails "LAB_NOPYTHON refuses all beside host names" nopython_hosts 'all,srv-01' "${H5[@]}"
msg=$(host_groups() { echo alloy_windows; }; nopython_hosts srv-01 "${H5[@]}" 2>&1 >/dev/null || true)
[[ $msg == *"only a host of loki, grafana or alloy_linux"* ]] && ok "LAB_NOPYTHON says why a Windows agent is refused" || nok "LAB_NOPYTHON says why a Windows agent is refused" "$msg"

# --- the CLI's argument checks (exit 2 before anything needs root) ----------------------
cli() { local rc=0; "$LAB_DIR/lab" "$@" >/dev/null 2>&1 || rc=$?; echo "$rc"; }
eq "lab with no args prints help" "0" "$(cli)"
eq "unknown command exits 2" "2" "$(cli frobnicate)"
eq "fault without args exits 2" "2" "$(cli fault)"
eq "fault unknown host exits 2" "2" "$(cli fault web-01 timeout)"
eq "fault unknown kind exits 2" "2" "$(cli fault obs-01 reboot)"
eq "up with LAB_HOSTS=0 exits 2" "2" "$(LAB_HOSTS=0 cli up)"
eq "up with an argument exits 2" "2" "$(cli up now)"
eq "up with a bad LAB_ID exits 2" "2" "$(LAB_ID=Bad-Id cli up)"
eq "down with a bad argument exits 2" "2" "$(cli down --every)"
eq "prune with an argument exits 2" "2" "$(cli prune now)"
eq "up with LAB_NOPYTHON mixing all and a name exits 2" "2" "$(LAB_NOPYTHON=all,obs-01 cli up)"
eq "up with LAB_NOPYTHON naming an unknown host exits 2" "2" "$(LAB_NOPYTHON=web-01 cli up)"

# --- the booting tests' shared harness (tests/harness.sh) ---------------------------------
# One passing and one failing check: the closing line counts both, the exit says failed, the
# failed check shows only the last NOK_TAIL lines of its output, and the logs are dropped.
harness_run() {
    bash -c 'set -euo pipefail; NOK_TAIL=2; source "$1/tests/harness.sh" unit-harness
        echo "log=$LOG"; check "passes" true; check "fails" sh -c "printf \"a\\nb\\nc\\n\"; false"
        check_fails "refused" false; harness_end 0' _ "$LAB_DIR"
}
hout=$(harness_run 2>&1) && hrc=0 || hrc=$?
eq "harness: a failed check fails the script" "1" "$hrc"
eq "harness: the closing line counts" "2 passed, 1 failed" "$(tail -n 1 <<<"$hout")"
eq "harness: a failed check shows its last NOK_TAIL lines" "FAIL fails|     b|     c" \
    "$(grep -A2 '^FAIL' <<<"$hout" | paste -sd'|')"
hlog=$(sed -n 's/^log=//p' <<<"$hout")
[[ -n $hlog && ! -e $hlog ]] && ok "harness: the log directory is removed" || nok "harness: the log directory is removed" "$hlog"

# --- the tooling's .mk does not take the main Makefile's targets ---------------------------
bad=$(grep -E '^(setup|build|test|lint|deploy|verify):' "$LAB_ROOT/homeops_dev/tooling.mk" || true)
eq "homeops_dev/tooling.mk defines no main-Makefile targets" "" "$bad"

# --- lab/lab reboot: argument errors exit 2 before anything is touched (no root needed) -----
# LAB_ID of no lab: a check that wrongly passed parsing ends at "not running" (exit 1), never at a reboot.
exit_of() { if LAB_ID=unit00 "$@" >/dev/null 2>&1; then echo 0; else echo $?; fi; }
eq "reboot without a host: usage, exit 2" 2 "$(exit_of "$LAB_DIR/lab" reboot)"
eq "reboot of an unknown host: exit 2" 2 "$(exit_of "$LAB_DIR/lab" reboot nosuch-host)"
eq "reboot --off above 999 s: exit 2" 2 "$(exit_of "$LAB_DIR/lab" reboot obs-01 --off=1000)"
eq "reboot --off not a number: exit 2" 2 "$(exit_of "$LAB_DIR/lab" reboot obs-01 --off=30s)"
eq "reboot with a stray argument: exit 2" 2 "$(exit_of "$LAB_DIR/lab" reboot obs-01 now)"

echo
echo "$PASS passed, $FAIL failed"
(( FAIL == 0 ))
