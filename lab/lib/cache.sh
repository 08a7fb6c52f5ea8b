# shellcheck shell=bash
# The cache policy (lab/lab prune): cached base images of other recipes go, gated.

# running_lab_count: labs whose hosts run (any lab id), plus nspawns of the old one-lab code
# over a cached base (it is blind to ours; we are not blind to it).
running_lab_count() {
    local p c n=0 ids=()
    for p in /proc/[0-9]*; do
        c=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
        if [[ $c =~ systemd-nspawn.*--overlay=$LAB_RUN_ROOT/([a-z0-9]{1,6})/base(-arm64)?: ]]; then ids+=("${BASH_REMATCH[1]}")
        elif [[ $c == *systemd-nspawn*--overlay=*"$LAB_CACHE_DIR"/base-* ]]; then ids+=(legacy)
        fi
    done
    (( ${#ids[@]} )) && n=$(printf '%s\n' "${ids[@]}" | sort -u | wc -l)
    echo "$n"
}

# cmd_prune: remove cached bases of other recipes, only when no lab runs and only above the
# thresholds (LAB_PRUNE_DISK_PCT of the cache's filesystem, default 80; LAB_PRUNE_CACHE_MB,
# default 1024, counted over the bases only); never the current recipe's. Says what it did or
# why it did nothing.
cmd_prune() {
    need_root
    local current use cache running verdict old n=0 freed=0 mb
    current=$(base_dir)
    mkdir -p "$LAB_CACHE_DIR"
    # The cache lock: no base is being built meanwhile.
    exec 6>"$LAB_CACHE_DIR/.build.lock"
    flock -w 60 6 || die "a base image build holds $LAB_CACHE_DIR/.build.lock; try again later"
    use=$(df --output=pcent "$LAB_CACHE_DIR" | tail -n1 | tr -dc '0-9')
    # The bases only: others may keep their own things under the cache dir.
    cache=$(du -smc "$LAB_CACHE_DIR"/base-* 2>/dev/null | awk 'END { print $1 + 0 }')
    running=$(running_lab_count)
    local others=()
    for old in "$LAB_CACHE_DIR"/base-*; do
        [[ -d $old && $old != "$current" && $old != "$(base_dir "$LAB_ARM_ARCH")" ]] && others+=("$old")
    done
    if (( ${#others[@]} == 0 )); then
        log "prune: nothing to do: the cache holds no base but the current recipe's ($current; bases ${cache} MiB)"; return 0
    fi
    if ! verdict=$(prune_decision "$use" "${LAB_PRUNE_DISK_PCT:-80}" "$cache" "${LAB_PRUNE_CACHE_MB:-1024}" "$running"); then
        log "prune: nothing removed, ${#others[@]} base(s) of other recipes kept: ${verdict#keep: }"
        return 0
    fi
    log "$verdict"
    for old in "${others[@]}"; do
        mb=$(du -sm "$old" 2>/dev/null | awk '{ print $1 }')
        rm -rf "$old" && { n=$((n + 1)); freed=$((freed + mb)); log "prune: removed $old (${mb} MiB)"; }
    done
    log "prune: removed $n base(s) of other recipes, ${freed} MiB freed; kept the current one ($current)"
}
