#!/usr/bin/env bash
# Integration test of the lab (needs root): up -> ssh -> systemd + apt timers -> apt from the
# lab repo (ws-01-linux fails until the headers are in) -> stand-ins -> each fault on and off
# -> failure and SIGTERM paths tear down -> a kept lab survives another lab's janitor (and
# LAB_KEEP_ON_FAILURE keeps a failed up) -> down removes the lock files -> down -> no residue.
# Always tears down (trap), the extra labs too.
# Ends with "N passed, N failed".
set -euo pipefail

# shellcheck source=lab/tests/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh" itest
export LAB_HOSTS=${LAB_HOSTS:-3}

TORN_DOWN=0
EXTRA_LABS=()
finish() {
    local rc=$?
    trap - EXIT INT TERM
    local x
    for x in "${EXTRA_LABS[@]}"; do LAB_ID=$x "$LAB" down >/dev/null 2>&1 || { echo "teardown of lab $x FAILED"; FAIL=$((FAIL + 1)); }; done
    if (( ! TORN_DOWN )); then
        echo "== teardown (trap): lab/lab down"
        if "$LAB" down; then echo "teardown: done, verified clean"; else echo "teardown: FAILED, see above"; FAIL=$((FAIL + 1)); fi
    fi
    harness_end "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

(( EUID == 0 )) || { echo "integration test needs root" >&2; exit 1; }

# ---- up -----------------------------------------------------------------------------------
echo "== lab up (LAB_HOSTS=$LAB_HOSTS)"
t0=$(now_ms)
if "$LAB" up >"$LOG/up.out" 2>&1; then ok "lab up ($(fmt_ms $(( $(now_ms) - t0 ))))"; else nok "lab up" "$(cat "$LOG/up.out")"; exit 1; fi
INV=$("$LAB" inventory)
KEY="$LAB_ROOT/.lab/id_ed25519"
mapfile -t HOSTS < <(host_names "$LAB_HOSTS")
read -r LABID _ < <("$LAB" id)
SUBNET=$(grep -o "bridge hoplab${LABID}br [0-9.]*" "$LOG/up.out" | awk '{ print $3 }')
SUBNET="${SUBNET%.*}.0/24"

ip_of() { host_ip "$SUBNET" "$1"; }
hssh() { local h=$1; shift; ssh -i "$KEY" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR -o ConnectTimeout=3 -o ControlPath=none "root@$(ip_of "$h")" "$@"; }

check "inventory is mode 0600" test "$(stat -c %a "$INV")" = 600
# The secrets hold # ; $ quotes backquote backslash space (lab/lib/inventory.sh): read as YAML, grep -F.
mapfile -t SECRETS < <(python3 -c 'import sys, yaml; v = yaml.safe_load(open(sys.argv[1]))["all"]["vars"]; print(v["grafana_admin_password"]); print(v["loki_datasource_password"])' "$INV")
check "inventory has two distinctive secrets" test "$(printf '%s\n' "${SECRETS[@]}" | grep -cE '^hoplab-(grafana|loki)-[A-Za-z0-9]{8}#.*[`].*[\\]')" = 2
check_fails "lab up printed no secret" grep -qF -e "${SECRETS[0]}" -e "${SECRETS[1]}" "$LOG/up.out"
check "inventory groups" grep -q '^    alloy_windows:' "$INV"

# ---- every host -----------------------------------------------------------------------------
for h in "${HOSTS[@]}"; do
    check "$h: ssh as root" hssh "$h" true
    st=$(hssh "$h" systemctl is-system-running 2>&1 || true)
    check "$h: systemd running" test "$st" = running
    check "$h: apt timers active, python3 present" hssh "$h" 'systemctl is-active --quiet apt-daily.timer apt-daily-upgrade.timer && test -x /usr/bin/python3 && test "$(hostname)" = '"$h"
    check "$h: apt sources only the lab repo" hssh "$h" 'test -z "$(grep -rhs "^deb\|^URIs" /etc/apt/sources.list /etc/apt/sources.list.d/ | grep -v "http://'"$(bridge_ip "$SUBNET")"':")"'
done

# ---- the Ansible users and their sudo --------------------------------------------------------
ussh() { local u=$1 h=$2; shift 2; ssh -i "$KEY" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR -o ConnectTimeout=3 -o ControlPath=none "$u@$(ip_of "$h")" "$@"; }
BPW=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["all"]["hosts"]["ws-01-linux"]["ansible_become_password"])' "$INV")
check "inventory: become password on ws-01-linux is a distinctive secret" test "${BPW#hoplab-become-}" != "$BPW"
check "obs-01: admin logs in, passwordless sudo is root" test "$(ussh admin obs-01 sudo -n id -un)" = root
check "ws-01-linux: pi logs in" ussh pi ws-01-linux true
check_fails "ws-01-linux: pi's sudo needs a password" ussh pi ws-01-linux sudo -n true
# ssh joins its arguments into one remote command line: the empty prompt is quoted for it.
check "ws-01-linux: pi's sudo takes the inventory's become password" test "$(printf '%s\n' "$BPW" | ussh pi ws-01-linux "sudo -S -p '' id -un" 2>/dev/null)" = root
wrong=$(printf 'wrong\n' | ussh pi ws-01-linux "sudo -S -p '' id -un" 2>&1 || true)
check "ws-01-linux: pi's sudo refuses a wrong password" test "$(grep -c 'incorrect password attempt\|Sorry, try again' <<<"$wrong")" -ge 1 -a "${wrong#*root}" = "$wrong"

# ---- apt from the lab repo ------------------------------------------------------------------
KREL=$(uname -r)
REPO="http://$(bridge_ip "$SUBNET"):$(awk -F= '$1 == "REPO_PORT" { print $2 }' "/run/homeops-labs/$(lab/lab id | cut -d' ' -f1)/lab.env")/"
# The deploy's way (playbooks/tasks/grafana-apt-repository.yml): key from the key URL, a deb822
# source with Signed-By, suite stable, component main.
add_repo() { hssh "$1" "mkdir -p /etc/apt/keyrings && python3 -c 'import urllib.request, sys; open(\"/etc/apt/keyrings/grafana.asc\", \"wb\").write(urllib.request.urlopen(sys.argv[1]).read())' ${REPO}gpg.key && printf 'Types: deb\nURIs: $REPO\nSuites: stable\nComponents: main\nSigned-By: /etc/apt/keyrings/grafana.asc\n' >/etc/apt/sources.list.d/grafana.sources"; }
check "srv-01: the signed repo added the deploy's way" add_repo srv-01
check "srv-01: apt refuses the repo when Signed-By names another key (NO_PUBKEY)" hssh srv-01 'f=/etc/apt/sources.list.d/grafana.sources; sed -i "s|^Signed-By: .*|Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg|" $f; out=$(apt-get update 2>&1); sed -i "s|^Signed-By: .*|Signed-By: /etc/apt/keyrings/grafana.asc|" $f; printf "%s" "$out" | grep -q NO_PUBKEY'
check "ws-01-linux: the signed repo added the deploy's way" add_repo ws-01-linux
check "obs-01: the signed repo added the deploy's way" add_repo obs-01
check "srv-01: apt-get update + install alloy from the lab repo" hssh srv-01 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq alloy >/dev/null && dpkg -s alloy | grep -q "LAB STAND-IN"'
check "srv-01: alloy ready on 127.0.0.1:12345" hssh srv-01 'systemctl enable --now alloy >/dev/null 2>&1 && for i in $(seq 30); do python3 -c "import urllib.request as u; u.urlopen(\"http://127.0.0.1:12345/-/ready\", timeout=1)" 2>/dev/null && exit 0; sleep 0.2; done; exit 1'
hssh ws-01-linux 'apt-get update -qq' >/dev/null 2>&1 || true
if out=$(hssh ws-01-linux 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq alloy' 2>&1); then
    nok "ws-01-linux: apt fails while kernel headers are missing" "$out"
else
    [[ $out == *"kernel headers for kernel $KREL cannot be found"* ]] && ok "ws-01-linux: apt fails while kernel headers are missing" \
        || nok "ws-01-linux: apt fails while kernel headers are missing" "$out"
fi
check "ws-01-linux: installing linux-headers-$KREL works" hssh ws-01-linux "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-headers-$KREL >/dev/null && test -e /lib/modules/$KREL/build/Makefile"
check "ws-01-linux: apt works again after the headers" hssh ws-01-linux 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall alloy >/dev/null'
check "obs-01: install loki + grafana, user loki in nogroup" hssh obs-01 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq loki grafana >/dev/null && test "$(id -gn loki)" = nogroup && test "$(stat -c %U:%G:%a /etc/grafana/grafana.ini)" = root:grafana:640'
# Real Loki (../shared/real-loki, when there) needs ~17 s to be ready on a busy 2-core machine,
# the stand-in well under 1 s: wait up to 120 s, and say which one was not ready.
check "obs-01: loki /ready and grafana /api/health" hssh obs-01 'systemctl enable --now loki grafana-server >/dev/null 2>&1 && for i in $(seq 600); do python3 -c "
import json, urllib.request as u
u.urlopen(\"http://127.0.0.1:3100/ready\", timeout=1)
assert json.load(u.urlopen(\"http://127.0.0.1:3000/api/health\", timeout=1))[\"database\"] == \"ok\"" 2>/dev/null && exit 0; sleep 0.2; done; for u in 3100/ready 3000/api/health; do python3 -c "import sys, urllib.request as u; print(sys.argv[1], u.urlopen(\"http://127.0.0.1:\" + sys.argv[1], timeout=2).status)" $u 2>&1 | tail -n1; done; systemctl is-active loki grafana-server; exit 1'
# Which reader the Grafana stand-in used (the real go-ini where ../shared/real-parsers exists): as lab up said.
if grep -q "lab: grafana package .*with the real go-ini" "$LOG/up.out"; then want_reader="with the real go-ini"; else want_reader="own parser"; fi
read_line=$(hssh obs-01 'journalctl -u grafana-server --no-pager -o cat | grep -F "read /etc/grafana/grafana.ini with"' || true)
[[ $read_line == *"$want_reader"* ]] && ok "obs-01: grafana read grafana.ini $want_reader, as lab up said" \
    || nok "obs-01: grafana read grafana.ini $want_reader, as lab up said" "$read_line"
check "obs-01: loki refuses a key Loki 3 removed" hssh obs-01 '(cat /etc/loki/config.yml; printf "compactor:\n  shared_store: filesystem\n") >/tmp/bad.yml; ! loki -verify-config -config.file /tmp/bad.yml 2>/tmp/err && grep -q "field shared_store not found" /tmp/err'
# The lab's package ships no provisioning dir (the deploy makes it): made here.
check "obs-01: grafana health 500 on an unreadable datasource file" hssh obs-01 'install -d /etc/grafana/provisioning/datasources && install -m 0600 /dev/null /etc/grafana/provisioning/datasources/x.yaml && python3 -c "
import urllib.request as u, urllib.error as e
try: u.urlopen(\"http://127.0.0.1:3000/api/health\", timeout=2); raise SystemExit(1)
except e.HTTPError as x: raise SystemExit(0 if x.code == 500 else 1)" && rm /etc/grafana/provisioning/datasources/x.yaml'

# ---- faults -------------------------------------------------------------------------------
FH=srv-01
probe() { ssh -i "$KEY" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=3 -o ControlPath=none "root@$(ip_of "$FH")" true 2>&1; }
check "fault timeout on" "$LAB" fault "$FH" timeout
out=$(probe || true); [[ $out == *"timed out"* ]] && ok "timeout: ssh times out" || nok "timeout: ssh times out" "$out"
check "fault heal (timeout)" "$LAB" fault "$FH" heal
check "after heal: ssh works" probe
check "fault refuse on" "$LAB" fault "$FH" refuse
out=$(probe || true); [[ $out == *"refused"* ]] && ok "refuse: connection refused" || nok "refuse: connection refused" "$out"
check "fault heal (refuse)" "$LAB" fault "$FH" heal
check "after heal: ssh works" probe
check "fault dpkg-lock:30 on" "$LAB" fault "$FH" dpkg-lock:30
check "dpkg-lock: /proc/locks in the host shows a WRITE holder" hssh "$FH" 'i=$(stat -c %i /var/lib/dpkg/lock-frontend); grep -E "POSIX +ADVISORY +WRITE +[0-9]+ [0-9a-f:]+:$i " /proc/locks'
out=$(hssh "$FH" 'apt-get install -y -qq alloy' 2>&1 || true); [[ $out == *"dpkg frontend lock"* ]] && ok "dpkg-lock: apt-get fails on the lock" || nok "dpkg-lock: apt-get fails on the lock" "$out"
check "fault heal (dpkg-lock)" "$LAB" fault "$FH" heal
check "after heal: no lock holder, apt works" hssh "$FH" 'i=$(stat -c %i /var/lib/dpkg/lock-frontend); ! grep -qE ":$i " /proc/locks && apt-get install -y -qq --reinstall alloy >/dev/null'
# reboot: a machine restart, on the same disk and address, with a new nspawn that teardown
# (lab down below, verified clean) must find.
SD=$("$LAB" id | cut -d' ' -f2)/hosts/$FH
np0=$(cat "$SD/nspawn.pid")
pid1_start() { hssh "$FH" "cut -d' ' -f22 /proc/1/stat"; }
s0=$(pid1_start)
hssh "$FH" 'echo disk >/var/lib/homeops-lab-reboot-probe && echo ram >/run/homeops-lab-reboot-probe'
check_fails "reboot of an unknown host is refused" "$LAB" reboot nosuch-host
if "$LAB" reboot "$FH" >"$LOG/reboot.out" 2>&1 && grep -qE "reboot: $FH was down [0-9.]+s" "$LOG/reboot.out"; then
    ok "reboot $FH: $(grep -oE 'was down [0-9.]+s' "$LOG/reboot.out")"
else
    nok "reboot $FH" "$(cat "$LOG/reboot.out")"
fi
check "after reboot: ssh at the same address, systemd running" test "$(hssh "$FH" systemctl is-system-running 2>&1)" = running
check "after reboot: a new PID 1 (the host booted again)" test "$(pid1_start)" != "$s0"
np1=$(cat "$SD/nspawn.pid")
check "after reboot: a new nspawn, its PID recorded and running" test "$np1" != "$np0" -a "$(cat "/proc/$np1/comm" 2>/dev/null)" = systemd-nspawn
check "after reboot: the disk kept its file, /run (tmpfs) did not" hssh "$FH" 'test "$(cat /var/lib/homeops-lab-reboot-probe)" = disk && ! test -e /run/homeops-lab-reboot-probe'
# Ansible through the generated inventory, when this clone has its venv (make setup): the
# ControlPersist masters it leaves in .ansible/cp must be closed by `lab down` below.
ANSIBLE_BIN="$LAB_ROOT/.venv/bin/ansible"
if [[ -x $ANSIBLE_BIN ]]; then
    check "ansible ping through the inventory" bash -c "cd '$LAB_ROOT' && ANSIBLE_LOG_PATH='$LOG/ansible.log' ANSIBLE_DEPRECATION_WARNINGS=False '$ANSIBLE_BIN' -i '$INV' all -m ping >'$LOG/ping.out' 2>&1 && test \$(grep -c SUCCESS '$LOG/ping.out') = ${#HOSTS[@]}"
    MASTERS=1
else
    echo "skip ansible ping: no $ANSIBLE_BIN (run make setup)"
    MASTERS=0
fi
check "lab status" bash -c "'$LAB' status | grep -cE '^[a-z0-9-]+ +running ' | grep -qx ${#HOSTS[@]}"

# ---- re-up reaps the previous lab; a failed up and a killed up tear down ------------------
t0=$(now_ms)
check "lab up again reaps the running lab (warm)" "$LAB" up
echo "     warm re-up: $(fmt_ms $(( $(now_ms) - t0 )))"
check "down after re-up" "$LAB" down
out=$(LAB_REPO_PORT=0 "$LAB" up 2>&1) && nok "a failing up exits non-zero" "$out" || {
    [[ $out == *"tearing down"* && $out == *"verified clean"* ]] && ok "a failing up tears down and verifies" || nok "a failing up tears down and verifies" "$out"; }
"$LAB" up >"$LOG/killed.out" 2>&1 &
upid=$!
sleep 1
kill -TERM "$upid" 2>/dev/null || true
wait "$upid" 2>/dev/null && echo "     (up had finished before SIGTERM)" || true
if grep -q "tearing down" "$LOG/killed.out"; then
    grep -q "verified clean" "$LOG/killed.out" && ok "SIGTERM during up tears down" || nok "SIGTERM during up tears down" "$(cat "$LOG/killed.out")"
else
    ok "SIGTERM during up: up had already finished (down below cleans)"
fi

# ---- a kept lab survives the janitor; a lab whose owner is gone does not ---------------------
# Three extra 1-host labs with ids of their own (from this lab's id, so two clones' tests never
# share one): K is owned by a process, kept (what LAB_KEEP=1 make itest does at its end), then
# its owner is SIGKILLed; R is the same but not kept; J's `up` runs the janitor. R must be
# reaped (the janitor did run), K left alone; `status --all` says who kept K and when.
K="k${LABID:0:5}" R="r${LABID:0:5}" J="j${LABID:0:5}" F="f${LABID:0:5}"
EXTRA_LABS=("$K" "$R" "$J" "$F")
sleep 600 & OWNER_K=$!
sleep 600 & OWNER_R=$!
check "lab $K up (1 host, owned by PID $OWNER_K)" env LAB_ID="$K" LAB_HOSTS=1 LAB_OWNER_PID="$OWNER_K" "$LAB" up
check "lab $R up (1 host, owned by PID $OWNER_R)" env LAB_ID="$R" LAB_HOSTS=1 LAB_OWNER_PID="$OWNER_R" "$LAB" up
check "lab keep marks $K kept" env LAB_ID="$K" "$LAB" keep "lab-test: kept on purpose"
kill -KILL "$OWNER_K" "$OWNER_R"; wait "$OWNER_K" "$OWNER_R" 2>/dev/null || true
out=$(LAB_ID="$J" LAB_HOSTS=1 "$LAB" up 2>&1) && ok "lab $J up runs the janitor" || nok "lab $J up runs the janitor" "$out"
[[ $out == *"janitor: reaping lab $R "*"is gone"* ]] && ok "the janitor reaped $R (owner gone, not kept)" || nok "the janitor reaped $R (owner gone, not kept)" "$out"
[[ $out != *"janitor: reaping lab $K "* ]] && ok "the janitor left the kept lab $K alone" || nok "the janitor left the kept lab $K alone" "$out"
all=$("$LAB" status --all 2>&1)
grep -A1 "^$K " <<<"$all" | grep -qE "^$K +1/1 " && ok "$K still runs its host" || nok "$K still runs its host" "$all"
grep -A1 "^$K " <<<"$all" | grep -qE "kept by hand: lab-test: kept on purpose \(from PID [0-9]+.*\), user [a-z]+ at 20[0-9-]+T[0-9:]+Z; stays until LAB_ID=$K make lab-down in " \
    && ok "status --all says who kept $K, when, and how to end it" || nok "status --all says who kept $K, when, and how to end it" "$all"
check_fails "nothing of $R is left" test -e "/run/homeops-labs/$R"
check_fails "the janitor removed $R's lock file" test -e "/run/homeops-labs/$R.lock"
# LAB_KEEP_ON_FAILURE=1: a failed up stays up, kept, until down.
out=$(LAB_ID="$F" LAB_HOSTS=1 LAB_KEEP_ON_FAILURE=1 LAB_REPO_PORT=0 "$LAB" up 2>&1) && nok "LAB_KEEP_ON_FAILURE: the failing up exits non-zero" "$out" || {
    [[ $out == *"LAB_KEEP_ON_FAILURE=1: leaving it up and kept"* && $out != *"tearing down"* ]] \
        && ok "LAB_KEEP_ON_FAILURE: a failed up is left up and kept" || nok "LAB_KEEP_ON_FAILURE: a failed up is left up and kept" "$out"; }
check "LAB_KEEP_ON_FAILURE: $F's state says kept" grep -q '^KEPT_BY=LAB_KEEP_ON_FAILURE' "/run/homeops-labs/$F/lab.env"
for x in "$K" "$J" "$F"; do
    if out=$(LAB_ID=$x "$LAB" down 2>&1) && [[ $out == *"verified clean, lab $x "* ]]; then ok "lab $x down verified clean"; else nok "lab $x down verified clean" "$out"; fi
    check_fails "lab down removed $x's lock file" test -e "/run/homeops-labs/$x.lock"
done
EXTRA_LABS=()

# ---- down -----------------------------------------------------------------------------------
t0=$(now_ms)
if out=$("$LAB" down 2>&1) && [[ $out == *"verified clean"* ]]; then ok "lab down verified clean ($(fmt_ms $(( $(now_ms) - t0 ))))"; else nok "lab down" "$out"; fi
TORN_DOWN=1
if (( MASTERS )); then
    check_fails "no ssh control masters left" bash -c "ps -eo args | grep -q '^ssh: $LAB_ROOT/.ansible/cp/.*\\[mux\\]'"
fi
check "down is idempotent" "$LAB" down
# This lab's names only: labs of other clones may run meanwhile.
check_fails "no lab netns left" bash -c "ip netns list | grep -q '^hoplab${LABID}-'"
check_fails "no lab links left" bash -c "ip -o link | grep -qE 'hoplab${LABID}(br|v[0-9])'"
check_fails "no lab cgroups left" bash -c "find /sys/fs/cgroup -maxdepth 6 -name homeops-lab-${LABID} -type d 2>/dev/null | grep -q ."
check_fails "no lab processes left" bash -c "for p in /proc/[0-9]*; do tr '\\0' ' ' 2>/dev/null <\$p/cmdline; echo; done | grep -E '[s]ystemd-nspawn.*/run/homeops-labs/${LABID}/|[h]ttp.server.*/run/homeops-labs/${LABID}/'"
check_fails "no inventory left" test -e "$INV"
