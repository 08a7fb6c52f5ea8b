#!/usr/bin/env bash
# debian-debs.sh CACHE_DIR PACKAGE...: print the paths of Debian's own .debs of PACKAGE... (the
# versions this machine's apt would install now, amd64), downloaded once into CACHE_DIR with
# `apt-get download` and checked against the archive's SHA256. The lab serves them to its hosts
# from its Debian stand-in repo (lab/lib/packages.sh: nginx for the Loki proxy), and the proxy
# tests run the same nginx binary (tests/test_loki_proxy.py). Real packages, not stand-ins.
set -euo pipefail
(( $# >= 2 )) || { echo "usage: debian-debs.sh CACHE_DIR PACKAGE..." >&2; exit 2; }
cache=$1; shift
mkdir -p "$cache"
uris=$(apt-get download --print-uris "$@" 2>&1) || {
    echo "$uris" | sed 's/^/    /' >&2
    echo "debian-debs: apt cannot find $*: run 'apt-get update' once on this machine" >&2; exit 1; }
while read -r url file _size sum; do
    [[ -n $file ]] || continue
    url=${url//\'/}; sum=${sum#SHA256:}
    if [[ ! -f $cache/$file ]] || [[ $(sha256sum "$cache/$file" | cut -d' ' -f1) != "$sum" ]]; then
        tmp=$(mktemp -d "$cache/.dl.XXXXXX")
        # apt's sandbox user must be able to write where it downloads.
        chmod 0755 "$tmp"
        if ! ( cd "$tmp" && apt-get download -q "${file%%_*}" >/dev/null 2>&1 ); then
            rm -rf "$tmp"; echo "debian-debs: apt-get download of $file failed" >&2; exit 1
        fi
        got=$(find "$tmp" -name '*.deb' | head -n 1)
        if [[ -z $got ]] || [[ $(sha256sum "$got" | cut -d' ' -f1) != "$sum" ]]; then
            rm -rf "$tmp"; echo "debian-debs: $file does not match the archive's SHA256" >&2; exit 1
        fi
        mv -f "$got" "$cache/$file"; rm -rf "$tmp"
    fi
    echo "$cache/$file"
done < <(grep -E "^'" <<<"$uris")
