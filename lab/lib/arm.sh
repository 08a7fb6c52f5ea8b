# shellcheck shell=bash
# The aarch64 host pi-01 (LAB_ARM=1): an arm64 Debian base booted with systemd-nspawn on this
# x86_64 machine; its programs run under qemu-user-static through binfmt_misc.

LAB_ARM_ARCH=arm64

# ensure_binfmt_aarch64: aarch64 ELF binaries must run here through qemu-aarch64-static with
# the F flag (the interpreter is opened at registration, so it works inside the host's root
# without a copy of qemu in it). Registers it when it is not, and says so: binfmt_misc is
# machine-wide (a registration the lab makes stays after `lab down`, like the packages).
ensure_binfmt_aarch64() {
    local bm=/proc/sys/fs/binfmt_misc entry
    if [[ ! -e $bm/register ]]; then
        log "binfmt_misc is not mounted: mounting it on $bm (machine-wide, stays after lab down)"
        mount -t binfmt_misc binfmt_misc "$bm" || die "cannot mount binfmt_misc on $bm (needed for the aarch64 host pi-01)"
    fi
    entry="$bm/qemu-aarch64"
    if [[ -e $entry ]] && grep -qx enabled "$entry"; then
        grep -q '^flags: .*F' "$entry" || die "qemu-aarch64 is registered in binfmt_misc without the F flag: pi-01 needs it (update-binfmts --disable qemu-aarch64, then lab up again)"
        return 0
    fi
    require_cmds qemu-aarch64-static
    if command -v update-binfmts >/dev/null 2>&1 && [[ -e /usr/share/binfmts/qemu-aarch64 ]]; then
        log "registering qemu-aarch64 in binfmt_misc (update-binfmts --enable qemu-aarch64; machine-wide, stays after lab down)"
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    fi
    if ! [[ -e $entry ]]; then
        # The registration Debian's qemu-user-static ships (magic/mask of an aarch64 ELF), flags PF.
        log "registering qemu-aarch64 in binfmt_misc by hand (flags PF; machine-wide, stays after lab down)"
        printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:PF' \
            >"$bm/register" || die "cannot register qemu-aarch64 in $bm/register"
    fi
    [[ -e $entry ]] && grep -qx enabled "$entry" && grep -q '^flags: .*F' "$entry" \
        || die "qemu-aarch64 is not registered with the F flag in binfmt_misc after trying (see $entry)"
}

# host_base HOST / host_base_link HOST: the cached base a host stands on, and the lab's link to
# it (the nspawn command line names the link: how teardown and the janitor find its processes).
host_base() { readlink -f "$(host_base_link "$1")"; }
host_base_link() {
    if [[ $(host_arch "$1") == "$LAB_ARM_ARCH" ]]; then echo "$LAB_STATE_DIR/base-$LAB_ARM_ARCH"; else echo "$LAB_STATE_DIR/base"; fi
}
