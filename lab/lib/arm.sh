# shellcheck shell=bash
# The aarch64 host pi-01 (LAB_ARM=1): an arm64 Debian base booted with systemd-nspawn on this
# x86_64 machine; its programs run under qemu-user-static through binfmt_misc.

LAB_ARM_ARCH=arm64

# ensure_binfmt_aarch64: aarch64 ELF binaries must run here through qemu-aarch64-static with
# the flags F (the interpreter is opened at registration, so it works inside the host's root
# without a copy of qemu in it) and C (credentials from the binary, not from qemu: without it a
# setuid program gets no root, and sudo on pi-01 said "effective uid is not 0"). Debian's
# qemu-user-static registers PF only ("credentials no"); the lab registers POCF, says so, and
# leaves it (binfmt_misc is machine-wide; `update-binfmts --disable qemu-aarch64 && update-binfmts
# --enable qemu-aarch64` puts Debian's back).
ensure_binfmt_aarch64() {
    local bm=/proc/sys/fs/binfmt_misc entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
    local interp=/usr/libexec/qemu-binfmt/aarch64-binfmt-P
    if [[ ! -e $bm/register ]]; then
        log "binfmt_misc is not mounted: mounting it on $bm (machine-wide, stays after lab down)"
        mount -t binfmt_misc binfmt_misc "$bm" || die "cannot mount binfmt_misc on $bm (needed for the aarch64 host pi-01)"
    fi
    if [[ -e $entry ]] && grep -qx enabled "$entry" && grep -q '^flags: .*F' "$entry" && grep -q '^flags: .*C' "$entry"; then
        return 0
    fi
    require_cmds qemu-aarch64-static
    [[ -x $interp ]] || interp=$(command -v qemu-aarch64-static)
    if [[ -e $entry ]]; then
        log "binfmt_misc: qemu-aarch64 is registered with flags '$(sed -n 's/^flags: //p' "$entry")'; pi-01 needs F and C (sudo is setuid): registering it again with POCF (machine-wide, stays after lab down)"
        echo -1 >"$entry" || die "cannot remove the qemu-aarch64 entry $entry to register it with the C flag"
    else
        log "binfmt_misc: registering qemu-aarch64 (flags POCF, interpreter $interp; machine-wide, stays after lab down)"
    fi
    # The magic and mask of Debian's /usr/share/binfmts/qemu-aarch64 (an aarch64 ELF executable).
    printf '%s' ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:$interp:POCF" \
        >"$bm/register" || die "cannot register qemu-aarch64 in $bm/register"
    [[ -e $entry ]] && grep -qx enabled "$entry" && grep -q '^flags: .*F' "$entry" && grep -q '^flags: .*C' "$entry" \
        || die "qemu-aarch64 is not registered with the flags F and C in binfmt_misc after trying (see $entry)"
}

# host_base HOST / host_base_link HOST: the cached base a host stands on, and the lab's link to
# it (the nspawn command line names the link: how teardown and the janitor find its processes).
host_base() { readlink -f "$(host_base_link "$1")"; }
host_base_link() {
    if [[ $(host_arch "$1") == "$LAB_ARM_ARCH" ]]; then echo "$LAB_STATE_DIR/base-$LAB_ARM_ARCH"; else echo "$LAB_STATE_DIR/base"; fi
}
