# shellcheck shell=bash
# Common helpers: logging, errors, checked steps, root and command checks.

LAB_PROG=${LAB_PROG:-lab}

log()  { printf '%s: %s\n' "$LAB_PROG" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$LAB_PROG" "$*" >&2; }
die()  { printf '%s: error: %s\n' "$LAB_PROG" "$*" >&2; exit 1; }
# usage errors exit 2, like most CLI tools.
usage_die() { printf '%s: %s\n' "$LAB_PROG" "$*" >&2; printf 'try: %s help\n' "$LAB_PROG" >&2; exit 2; }

# run DESCRIPTION CMD...: run a step, and on failure say which step and show its output.
run() {
    local what=$1; shift
    local out rc=0
    out=$("$@" 2>&1) || rc=$?
    if (( rc != 0 )); then
        printf '%s: error: %s failed (exit %d): %s\n' "$LAB_PROG" "$what" "$rc" "$*" >&2
        [[ -n $out ]] && printf '%s\n' "$out" | tail -n 20 | sed 's/^/    /' >&2
        return "$rc"
    fi
    return 0
}

need_root() {
    (( EUID == 0 )) || die "this command needs root (it creates namespaces, a bridge and cgroups); run it as root"
}

# Monotonic-ish seconds with milliseconds, for timings.
now_ms() { local t; t=$(cat /proc/uptime); t=${t%% *}; echo $(( ${t%.*} * 1000 + 10#${t#*.} * 10 )); }
fmt_ms() { printf '%d.%01ds' $(( $1 / 1000 )) $(( ($1 % 1000) / 100 )); }

# command -> Debian package that provides it on the controller (see lab/host-packages.txt).
declare -gA LAB_CMD_PKG=(
    [gpg]=gnupg
    [gpgconf]=gpgconf
    [update-binfmts]=binfmt-support
    [qemu-aarch64-static]=qemu-user-static
    [debootstrap]=debootstrap
    [systemd-nspawn]=systemd-container
    [ssh]=openssh-client
    [ssh-keygen]=openssh-client
    [ip]=iproute2
    [ss]=iproute2
    [bridge]=iproute2
    [dpkg-deb]=dpkg
    [dpkg-scanpackages]=dpkg-dev
    [nsenter]=util-linux
    [setsid]=util-linux
    [flock]=util-linux
    [mountpoint]=util-linux
    [python3]=python3
    [sha256sum]=coreutils
    [timeout]=coreutils
    [gzip]=gzip
)

# require_cmds CMD...: fail with the package to install for every missing command.
require_cmds() {
    local c missing=() pkgs=()
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 && continue
        missing+=("$c"); pkgs+=("${LAB_CMD_PKG[$c]:-?}")
    done
    if (( ${#missing[@]} )); then
        local i
        for i in "${!missing[@]}"; do
            printf '%s: error: command %s not found: install package %s\n' "$LAB_PROG" "${missing[$i]}" "${pkgs[$i]}" >&2
        done
        die "missing host tools; install them with: apt-get install -y $(printf '%s\n' "${pkgs[@]}" | sort -u | tr '\n' ' ')(all are listed in lab/host-packages.txt)"
    fi
}

# pid_alive PID [PATTERN]: PID exists and, if given, its command line contains PATTERN
# (guards against a recycled PID ever being signalled).
pid_alive() {
    local pid=$1 pat=${2:-} cmd
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -d /proc/$pid ]] || return 1
    [[ -z $pat ]] && return 0
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    [[ $cmd == *"$pat"* ]]
}

# wait_exec PID COMM: a just-forked child runs our shell code (and setsid) before it execs
# the real program; wait (up to 10 s) until /proc/PID/comm is COMM. Fails if it died first.
# (Its command line is not a safe test meanwhile: it reads empty during an execve.)
wait_exec() {
    local i c
    for (( i = 0; i < 200; i++ )); do
        c=$(cat 2>/dev/null <"/proc/$1/comm") || return 1
        [[ $c == "$2" ]] && return 0
        sleep 0.05
    done
    return 1
}

# ensure_inotify_instances: every host's systemd (and its .path units) takes inotify instances,
# and all of them count against root's fs.inotify.max_user_instances (128 on Debian). Two labs
# side by side, or pi-01 beside a lab, used them up and hosts came up degraded
# (systemd-ask-password-*.path failed). Raise it machine-wide to LAB_INOTIFY_INSTANCES (1024),
# never lower it, and say so: like binfmt_misc, this stays after `lab down`.
ensure_inotify_instances() {
    local f=/proc/sys/fs/inotify/max_user_instances want=${LAB_INOTIFY_INSTANCES:-1024} cur
    [[ -r $f ]] || return 0
    cur=$(<"$f")
    (( cur >= want )) && return 0
    if echo "$want" >"$f" 2>/dev/null; then
        log "raised fs.inotify.max_user_instances from $cur to $want (machine-wide, stays after lab down): each lab host's systemd needs some"
    else
        warn "fs.inotify.max_user_instances is $cur and cannot be raised: several labs at once may boot hosts degraded"
    fi
}
