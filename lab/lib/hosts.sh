# shellcheck shell=bash
# Hosts: identity in each host's overlay upper dir, then systemd-nspawn boots over the shared
# read-only base, each in its own netns and its own cgroups.

# mkdir_like BASE UPPER REL: create UPPER/REL with each component's mode and owner taken from
# BASE/REL (an upper dir's attributes win in the overlay: /root must stay 0700 and so on).
mkdir_like() {
    local base=$1 upper=$2 rel=${3#/} path="" part
    local IFS=/
    for part in $rel; do
        path="$path/$part"
        [[ -d $upper$path ]] && continue
        if [[ -d $base$path ]]; then
            install -d -m "$(stat -c %a "$base$path")" -o "$(stat -c %u "$base$path")" -g "$(stat -c %g "$base$path")" "$upper$path"
        else
            install -d -m 0755 "$upper$path"
        fi
    done
}

# The DKMS-style hook on ws-01-linux: every dpkg run through apt fails while the running
# kernel has no headers (/lib/modules/$(uname -r)/build), as a real DKMS module would.
write_dkms_hook() {
    local base=$1 u=$2
    mkdir_like "$base" "$u" usr/local/sbin
    mkdir_like "$base" "$u" etc/apt/apt.conf.d
    cat >"$u/usr/local/sbin/homeops-lab-dkms-hook" <<'EOH'
#!/bin/sh
# homeops LAB fault: a DKMS-style apt hook (like a DKMS module needing headers for the
# running kernel). It fails every apt transaction until the headers package is installed.
rel=$(uname -r)
if [ ! -e "/lib/modules/$rel/build" ]; then
    echo "Error! Your kernel headers for kernel $rel cannot be found at /lib/modules/$rel/build or /lib/modules/$rel/source." >&2
    echo "Please install the linux-headers-$rel package (homeops lab DKMS-style hook)." >&2
    exit 1
fi
exit 0
EOH
    chmod 0755 "$u/usr/local/sbin/homeops-lab-dkms-hook"
    cat >"$u/etc/apt/apt.conf.d/95homeops-lab-dkms" <<'EOH'
// homeops lab: DKMS-style hook, see /usr/local/sbin/homeops-lab-dkms-hook
DPkg::Post-Invoke { "/usr/local/sbin/homeops-lab-dkms-hook"; };
EOH
}

# write_emulated_dropins BASE UPPER: a host whose systemd runs under qemu-user (pi-01): every
# unit with LoadCredential= failed there with "Failed to set up credentials: Invalid argument"
# (status 243/CREDENTIALS: systemd-sysusers, systemd-tmpfiles-setup(-dev), ...), leaving the
# host `degraded`. An empty LoadCredential= drops the credentials, which the lab never passes.
write_emulated_dropins() {
    local base=$1 u=$2 f unit
    for f in "$base"/lib/systemd/system/*.service; do
        grep -q '^LoadCredential=' "$f" || continue
        unit=$(basename "$f")
        mkdir_like "$base" "$u" "etc/systemd/system/$unit.d"
        cat >"$u/etc/systemd/system/$unit.d/10-homeops-lab-qemu.conf" <<'EOD'
# homeops lab (emulated aarch64 host): systemd cannot set up credentials under qemu-user.
[Service]
LoadCredential=
EOD
    done
}

# prepare_upper HOST BASE SUBNET REPO_URL ALL_HOSTS...
prepare_upper() {
    local h=$1 base=$2 subnet=$3 repo=$4; shift 4
    local d u other
    d="$LAB_HOSTS_DIR/$h"; u="$d/upper"
    rm -rf "$d"
    mkdir -p "$u"
    mkdir_like "$base" "$u" etc/ssh
    mkdir_like "$base" "$u" etc/apt/sources.list.d
    mkdir_like "$base" "$u" root/.ssh
    echo "$h" >"$u/etc/hostname"
    {
        echo "127.0.0.1 localhost"
        echo "::1 localhost ip6-localhost ip6-loopback"
        echo "# homeops lab hosts"
        echo "$(bridge_ip "$subnet") lab-controller"
        for other in "$@"; do echo "$(host_ip "$subnet" "$other") $other"; done
    } >"$u/etc/hosts"
    tr -d '-' </proc/sys/kernel/random/uuid >"$u/etc/machine-id"
    ssh-keygen -q -t ed25519 -N '' -C "root@$h" -f "$u/etc/ssh/ssh_host_ed25519_key" \
        || { echo "ssh-keygen failed for $h" >&2; return 1; }
    install -m 0600 "$(lab_key).pub" "$u/root/.ssh/authorized_keys"
    # The host's Ansible user (host_ssh_user) gets the same key; the dirs keep the base's owner.
    local su; su=$(host_ssh_user "$h")
    mkdir_like "$base" "$u" "home/$su/.ssh"
    install -m 0600 -o "$(stat -c %u "$base/home/$su")" -g "$(stat -c %g "$base/home/$su")" \
        "$(lab_key).pub" "$u/home/$su/.ssh/authorized_keys"
    # The host's own apt source: the lab's stand-in for the Debian mirror (signed with the lab's
    # key). Grafana's repository (loki, grafana, alloy) is the deploy's to add, as on a real host.
    mkdir_like "$base" "$u" usr/share/keyrings
    install -m 0644 "$(repo_dir)/gpg.key" "$u/usr/share/keyrings/homeops-lab-debian.asc"
    cat >"$u/etc/apt/sources.list.d/homeops-lab-debian.sources" <<EOS
# homeops lab: stands in for the Debian mirror (the linux-headers stand-in). LAB ONLY.
Types: deb
URIs: ${repo}debian/
Suites: ./
Signed-By: /usr/share/keyrings/homeops-lab-debian.asc
EOS
    [[ $h == ws-01-linux ]] && write_dkms_hook "$base" "$u"
    [[ $(host_arch "$h") == "$(dpkg --print-architecture)" ]] || write_emulated_dropins "$base" "$u"
    return 0
}

# remove_python HOST: purges every python3 package from a running host (LAB_NOPYTHON), with
# the packages that need them (unattended-upgrades, python3-yaml, ...), as on a minimal Debian
# install without Python; prints how many packages went. dpkg directly, not apt-get: apt's
# DPkg::Post-Invoke hooks (the DKMS stand-in of ws-01-linux) would fail the removal, and nothing
# needs downloading. The set is what apt would purge for all of them (reverse dependencies
# included), from a dry run. The shared base image is untouched: only this host's overlay upper
# dir changes.
#
# The LAB STAND-INs of Alloy and Grafana (and of Loki, where ../shared/real-loki is absent) are
# Python programs (the real ones are Go binaries carrying their own runtime). So that the host can
# still run them, the interpreter, its standard library and Debian's dist-packages (python3-yaml:
# the Grafana and Loki stand-ins read YAML) are first copied to $LAB_STANDIN_RUNTIME, the
# stand-ins' private runtime: not on PATH and at none of the places Ansible's interpreter
# discovery looks (python3.x on PATH, /usr/bin/python3, /usr/libexec/platform-python), which the
# proof below (lab/lib/python-free.sh) checks. Only the stand-ins' launchers use it
# (lab/packages/alloy/usr/bin/alloy, lab/packages/grafana/usr/sbin/grafana-server,
# lab/packages/loki/usr/bin/loki); their packages depend on no python3 package.
LAB_STANDIN_RUNTIME=/usr/lib/homeops-lab-runtime
remove_python() {
    local h=$1 log; log="$(host_state_dir "$h")/nopython.log"
    hexec "$h" env LAB_STANDIN_RUNTIME="$LAB_STANDIN_RUNTIME" sh -s >"$log.out" 2>"$log" <<'EOS' || { tail -n 8 "$log" >&2; echo "removing python3 from $h failed (log: $log)" >&2; return 1; }
set -e
installed=$(dpkg-query -W -f '${db:Status-Status} ${Package}\n' 'python3*' 'libpython3*' | awk '$1 == "installed" { print $2 }')
[ -n "$installed" ] || { echo "no python3 package is installed" >&2; exit 1; }
# The Alloy stand-in's private runtime (see above): python3.X and its standard library.
py=$(readlink -f /usr/bin/python3); ver=${py##*/}
rt=$LAB_STANDIN_RUNTIME
mkdir -p "$rt/bin" "$rt/lib"
cp -a "$py" "$rt/bin/$ver" && ln -sfn "$ver" "$rt/bin/python3"
cp -a "/usr/lib/$ver" "$rt/lib/"
# Debian's site.py adds <prefix>/lib/python3/dist-packages: the runtime's prefix is $rt.
mkdir -p "$rt/lib/python3" && cp -a /usr/lib/python3/dist-packages "$rt/lib/python3/"
"$rt/bin/python3" -c 'import json, http.server, urllib.request, subprocess, threading, ssl, yaml' \
    || { echo "the stand-in runtime in $rt does not start" >&2; exit 1; }
# shellcheck disable=SC2086
pkgs=$(apt-get -s purge $installed | awk '/^Purg / { print $2 }')
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive dpkg --purge $pkgs >&2
# The stand-in runtime survives the purge (dpkg does not own the copy).
"$rt/bin/python3" -c 'import json, yaml' || { echo "the stand-in runtime in $rt broke with the purge" >&2; exit 1; }
echo $pkgs | wc -w
EOS
    # Proof, not hope: no interpreter left that Ansible's discovery could find (the same check
    # make itest runs over SSH).
    local found; found=$(hexec "$h" sh -s <"$LAB_DIR/lib/python-free.sh") \
        || { echo "$h after the purge: $found" >&2; return 1; }
    local st; st=$(hexec "$h" systemctl is-system-running 2>/dev/null || true)
    if [[ $st != running ]]; then
        echo "$h is '$st' after removing python3" >&2
        hexec "$h" systemctl --failed --no-legend --plain >&2 || true
        return 1
    fi
    cat "$log.out"
}

# set_become_password HOST PASSWORD: set the password-sudo user's password in a running host
# (via nsenter + chpasswd: the password travels on stdin, never on a command line or in a log).
set_become_password() {
    local h=$1 pw=$2
    printf '%s:%s\n' "$LAB_PW_USER" "$pw" | hexec "$h" chpasswd
}

# host_cgroups HOST: the per-host cgroup dirs (one per root in S_CGROUPS).
host_cgroups() { local r; for r in $S_CGROUPS; do echo "$r/$LAB_CG_NAME/$1"; done; }

# launch_host HOST BASE: start systemd-nspawn detached, in its own cgroups; records its PID.
# BASE is the lab's link to the cached base ($LAB_STATE_DIR/base): the command line then names
# this lab (how teardown and the janitor find its processes), and the old one-lab code, which
# looks for nspawns over /var/cache/homeops-lab/base-*, never takes them for its own.
# The machine name carries the lab id (nspawn keeps /run/systemd/nspawn/propagate/<machine>);
# the hostname inside is the plain host name.
launch_host() {
    local h=$1 base=$2 sd cgs cg pid
    sd=$(host_state_dir "$h"); mkdir -p "$sd"
    mapfile -t cgs < <(host_cgroups "$h")
    for cg in "${cgs[@]}"; do mkdir -p "$cg" || { echo "cannot create cgroup $cg" >&2; return 1; }; done
    (
        for cg in "${cgs[@]}"; do echo "$BASHPID" >"$cg/cgroup.procs"; done
        exec setsid systemd-nspawn --quiet -D "$base" --overlay="$base:$LAB_HOSTS_DIR/$h/upper:/" \
            --register=no --keep-unit --boot --machine="$(host_machine "$h")" --hostname="$h" --console=passive \
            --network-namespace-path="/run/netns/$(host_netns "$h")" \
            --link-journal=no --resolv-conf=off --timezone=off
    ) </dev/null >"$sd/nspawn.log" 2>&1 9>&- 8>&- 7>&- 6>&- &
    pid=$!
    echo "$pid" >"$sd/nspawn.pid"
    wait_exec "$pid" systemd-nspawn || { tail -n 5 "$sd/nspawn.log" >&2; echo "systemd-nspawn for $h exited at start" >&2; return 1; }
}

# wait_hosts DEADLINE_S HOST...: wait (in parallel) for sshd and for systemd to settle.
wait_hosts() {
    local deadline=$1; shift
    local h pids=() rc=0 i
    local tmp; tmp=$(mktemp -d "${TMPDIR:-/tmp}/hoplab-wait.XXXXXX")
    for h in "$@"; do
        (
            end=$(( SECONDS + deadline ))
            while (( SECONDS < end )); do
                nspawn_pid "$h" >/dev/null || { echo "nspawn exited" >"$tmp/$h"; exit 1; }
                if LAB_SSH_TIMEOUT=2 lab_ssh "$h" true 2>/dev/null; then
                    st=$(LAB_SSH_TIMEOUT=2 lab_ssh "$h" "timeout $(( end - SECONDS > 1 ? end - SECONDS : 1 )) systemctl is-system-running --wait" 2>/dev/null || true)
                    echo "${st:-unknown}" >"$tmp/$h"
                    [[ $st == running ]] && exit 0
                    exit 3
                fi
                sleep 0.2
            done
            echo "no ssh after ${deadline}s" >"$tmp/$h"; exit 1
        ) 9>&- 8>&- &
        pids+=($!)
    done
    i=0
    for h in "$@"; do
        if ! wait "${pids[$i]}"; then
            rc=1
            local why; why=$(cat "$tmp/$h" 2>/dev/null || echo "?")
            printf '%s: error: host %s is not ready: %s\n' "$LAB_PROG" "$h" "$why" >&2
            [[ $why == degraded ]] && hexec "$h" systemctl --failed --no-legend --plain 2>/dev/null | sed 's/^/    failed unit: /' >&2
            [[ $why == "nspawn exited" ]] && tail -n 5 "$(host_state_dir "$h")/nspawn.log" | sed 's/^/    /' >&2
        fi
        i=$((i + 1))
    done
    rm -rf "$tmp"
    return "$rc"
}

# reboot_host HOST [OFF_S]: a machine restart of a running host. Its own systemd is told to reboot
# (`systemctl reboot` inside it: units stop in order, journald and the filesystems sync, as on
# a real machine). With --keep-unit, systemd-nspawn leaves the restart to whoever started it and
# exits (status 133, what systemd-nspawn@.service's RestartForceExitStatus= restarts); the lab
# then boots the host again as launch_host did: the same overlay upper dir (its disk survives),
# the same network namespace and address, a new nspawn whose PID replaces the recorded one (so
# teardown stops the new one). An nspawn that restarts the container itself (kept running, a new
# PID 1) is waited for instead. OFF_S (default 0): seconds the host stays off between its
# shutdown and its boot, as a real machine spends in firmware, bootloader and kernel (a lab host
# boots in ~2 s). Waits for sshd and systemd, as `up` does.
# reboot_host HOST [OFF_S]: prints "DOWN_MS SHUTDOWN_MS BOOT_MS": request to ready again (all
# of it), request to the old container gone, boot (after the time off) to ready again.
reboot_host() {
    local h=$1 off=${2:-0} timeout=${LAB_BOOT_TIMEOUT:-120} np oldc sd t0 t_gone t_boot t1 i newc=""
    np=$(nspawn_pid "$h") || { echo "host $h is not running" >&2; return 1; }
    oldc=$(container_pid "$h") || { echo "host $h has no systemd running" >&2; return 1; }
    sd=$(host_state_dir "$h")
    t0=$(now_ms)
    hexec "$h" systemctl reboot >/dev/null 2>&1 \
        || { echo "systemctl reboot was refused inside $h" >&2; return 1; }
    # The old container goes: its nspawn exits, or (looping nspawn) its PID 1 is replaced.
    for (( i = 0; i < timeout * 10; i++ )); do
        nspawn_pid "$h" >/dev/null || break
        newc=$(container_pid "$h" 2>/dev/null || true)
        [[ -n $newc && $newc != "$oldc" ]] && break
        sleep 0.1
    done
    t_gone=$(now_ms); t_boot=$t_gone
    if nspawn_pid "$h" >/dev/null; then
        [[ -n $newc && $newc != "$oldc" ]] \
            || { echo "$h did not go down within ${timeout}s of systemctl reboot (PID 1 $oldc still there)" >&2; return 1; }
    else
        # Keep the log of the boot that ended; launch_host writes a new one.
        { echo "== $(date -u +%FT%TZ): nspawn PID $np exited after systemctl reboot"; cat "$sd/nspawn.log"; } \
            >>"$sd/nspawn-previous.log" 2>/dev/null || true
        sleep "$off"
        t_boot=$(now_ms)
        launch_host "$h" "$(host_base_link "$h")" || return 1
    fi
    wait_hosts "$timeout" "$h" >&2 || return 1
    t1=$(now_ms)
    echo "$(( t1 - t0 )) $(( t_gone - t0 )) $(( t1 - t_boot ))"
}
