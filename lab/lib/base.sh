# shellcheck shell=bash
# The base image: debootstrap once, prepare, cache under /var/cache/homeops-lab/base-<hash>.
# The hash covers the recipe (prepare_base, suite, packages): a change to it builds a new base.

LAB_CACHE_DIR=${LAB_CACHE_DIR:-/var/cache/homeops-lab}
LAB_SUITE=bookworm
LAB_BASE_INCLUDE=systemd,systemd-sysv,openssh-server,python3,python3-yaml,dbus,iproute2,unattended-upgrades,procps,sudo
# The SSH users Ansible logs in as (a real fleet's, not root), with their sudo rules below.
# Most hosts: `admin` with passwordless sudo; ws-01-linux: `pi`, whose sudo asks for a password
# (set per lab at boot, given to Ansible as ansible_become_password). Root keeps the lab key for
# the lab's own tooling (lab/lab, tests/faults).
LAB_ADMIN_USER=admin
LAB_PW_USER=pi

# host_debian_mirror: the Debian mirror this machine's own apt sources use (never hard-coded).
host_debian_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        # deb822: stanzas separated by blank lines; take a stanza whose Suites has the bare suite.
        uri=$(awk -v suite="$LAB_SUITE" '
            BEGIN { RS = ""; FS = "\n" }
            {
                u = ""; ok = 0; deb = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/)   { split(substr($i, 6), a, " "); u = a[1] }
                    if ($i ~ /^Types:/ && $i ~ /(^|[ :])deb( |$)/) deb = 1
                    if ($i ~ /^Suites:/) { n = split(substr($i, 8), s, " "); for (j = 1; j <= n; j++) if (s[j] == suite) ok = 1 }
                }
                if (ok && deb && u != "") { print u; exit }
            }' "$f")
        [[ -n $uri ]] && { echo "$uri"; return 0; }
    done
    if [[ -r /etc/apt/sources.list ]]; then
        uri=$(awk -v suite="$LAB_SUITE" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1) == suite) { print $i; exit } }' /etc/apt/sources.list)
        [[ -n $uri ]] && { echo "$uri"; return 0; }
    fi
    return 1
}

# The recipe only (how the tree is made and prepared), not this whole file: editing the cache
# handling or a comment must not cost every clone a new ~220 MB base.
# base_recipe_hash [ARCH]: ARCH is a Debian architecture (default: this machine's, amd64 here);
# a foreign one (arm64 for pi-01) is part of the recipe and of the base's name.
base_recipe_hash() {
    local arch=${1:-} extra=""
    [[ -n $arch && $arch != "$(dpkg --print-architecture)" ]] && extra=" --arch=$arch"
    { declare -f prepare_base; echo "debootstrap --variant=minbase$extra $LAB_SUITE $LAB_BASE_INCLUDE users $LAB_ADMIN_USER $LAB_PW_USER"; } | sha256sum | cut -c1-16
}

# base_dir [ARCH]: the native base is base-<hash> (as before); a foreign one base-<arch>-<hash>.
base_dir() {
    local arch=${1:-}
    if [[ -n $arch && $arch != "$(dpkg --print-architecture)" ]]; then
        echo "$LAB_CACHE_DIR/base-$arch-$(base_recipe_hash "$arch")"
    else
        echo "$LAB_CACHE_DIR/base-$(base_recipe_hash)"
    fi
}

# prepare_base DIR: make a fresh debootstrap tree into the lab's read-only lower layer.
prepare_base() {
    local d=$1
    # sshd: key-only root login, one ed25519 host key (given per host in its upper layer).
    mkdir -p "$d/etc/ssh/sshd_config.d"
    cat >"$d/etc/ssh/sshd_config.d/10-homeops-lab.conf" <<'EOC'
# homeops lab: key-only root login; the host key is written per host at boot.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
EOC
    rm -f "$d"/etc/ssh/ssh_host_*
    # identity comes per host: empty machine-id (not "uninitialized": no first-boot units).
    : >"$d/etc/machine-id"
    echo "lab-base" >"$d/etc/hostname"
    # apt: only the lab repo (the per-host upper layer writes the source with the bridge address).
    : >"$d/etc/apt/sources.list"
    rm -f "$d"/etc/apt/sources.list.d/*
    cat >"$d/etc/apt/apt.conf.d/90homeops-lab" <<'EOC'
// homeops lab: the only apt source is the lab repo on the lab bridge.
Acquire::Languages "none";
EOC
    rm -rf "$d"/var/lib/apt/lists/* "$d"/var/cache/apt/archives/*.deb "$d"/var/cache/apt/*.bin
    mkdir -p "$d/var/lib/apt/lists/partial"
    install -d -m 0700 "$d/root/.ssh"
    # The non-root SSH users and their sudo rules. useradd --root edits the tree's passwd/shadow
    # with this machine's useradd (nothing runs inside: works for a foreign-arch tree too).
    # Password '*': no password login, but not locked ('!'), so key login works whatever UsePAM says.
    local u
    for u in "$LAB_ADMIN_USER" "$LAB_PW_USER"; do
        useradd --root "$d" -m -U -s /bin/bash -p '*' "$u" || { echo "useradd $u failed in the base" >&2; return 1; }
        install -d -m 0700 "$d/home/$u/.ssh"
        chown --reference="$d/home/$u" "$d/home/$u/.ssh"
    done
    cat >"$d/etc/sudoers.d/homeops-lab" <<EOC
# homeops lab: as on a real fleet. $LAB_ADMIN_USER: passwordless sudo; $LAB_PW_USER: sudo asks for
# the user's password (set per lab at boot; Ansible's ansible_become_password).
$LAB_ADMIN_USER ALL=(ALL:ALL) NOPASSWD: ALL
$LAB_PW_USER ALL=(ALL:ALL) ALL
EOC
    chmod 0440 "$d/etc/sudoers.d/homeops-lab"
    # The timers must be enabled in the image (apt ships them enabled; check, don't assume).
    local t
    for t in apt-daily.timer apt-daily-upgrade.timer; do
        [[ -e $d/etc/systemd/system/timers.target.wants/$t ]] \
            || ln -s "/lib/systemd/system/$t" "$d/etc/systemd/system/timers.target.wants/$t"
    done
    [[ -x $d/usr/bin/python3 && -x $d/usr/sbin/sshd && -e $d/usr/bin/unattended-upgrade && -x $d/usr/bin/sudo ]] \
        || { echo "base is missing python3, sshd, unattended-upgrades or sudo" >&2; return 1; }
}

# ensure_base: print the path of the prepared base, building it when the cache has none.
# The build runs under a lock on the cache (fd 6): two cold `up`s build it once, the second
# waits and then finds it. Other recipes' bases are left alone (another clone's running lab may
# stand on one): `lab/lab prune` removes them under its own rules.
ensure_base() {
    local arch=${1:-} dir tmp mirror t0 archopt=() what="$LAB_SUITE"
    dir=$(base_dir "$arch")
    if [[ -n $arch && $arch != "$(dpkg --print-architecture)" ]]; then
        archopt=(--arch="$arch"); what="$LAB_SUITE $arch"
    fi
    if [[ -f $dir/.homeops-lab-base ]]; then
        echo "$dir"; return 0
    fi
    mkdir -p "$LAB_CACHE_DIR"
    exec 6>"$LAB_CACHE_DIR/.build.lock"
    if ! flock -n 6; then
        log "another lab up builds the base image; waiting for it (up to 15 min)"
        flock -w 900 6 || die "the base image build of another lab up did not finish in 15 min ($LAB_CACHE_DIR/.build.lock)"
    fi
    if [[ -f $dir/.homeops-lab-base ]]; then
        exec 6>&-
        echo "$dir"; return 0
    fi
    require_cmds debootstrap
    mirror=$(host_debian_mirror) || die "no Debian $LAB_SUITE mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
    if (( ${#archopt[@]} )); then
        log "building the $arch base image (debootstrap $what from $mirror, second stage under qemu-user: about 8 minutes, once per recipe)"
    else
        log "building the base image (debootstrap $what from $mirror; about a minute, once per recipe)"
    fi
    tmp="$dir.tmp.$$"
    rm -rf "$tmp"
    t0=$(now_ms)
    if ! debootstrap "${archopt[@]}" --variant=minbase --include="$LAB_BASE_INCLUDE" "$LAB_SUITE" "$tmp" "$mirror" >"$LAB_CACHE_DIR/debootstrap${arch:+-$arch}.log" 2>&1 6>&-; then
        tail -n 15 "$LAB_CACHE_DIR/debootstrap${arch:+-$arch}.log" | sed 's/^/    /' >&2
        rm -rf "$tmp"
        die "debootstrap failed (full log: $LAB_CACHE_DIR/debootstrap${arch:+-$arch}.log)"
    fi
    prepare_base "$tmp" || { rm -rf "$tmp"; die "preparing the base image failed"; }
    echo "recipe=$(base_recipe_hash "$arch") arch=${arch:-$(dpkg --print-architecture)} built=$(date -u +%FT%TZ) mirror=$mirror" >"$tmp/.homeops-lab-base"
    mv "$tmp" "$dir" || die "cannot move the base into $dir"
    exec 6>&-
    log "base image ready in $(fmt_ms $(( $(now_ms) - t0 ))): $dir"
    echo "$dir"
}
