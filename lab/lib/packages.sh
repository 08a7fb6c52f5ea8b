# shellcheck shell=bash
# Build the lab's packages into a flat apt repo: the LAB STAND-IN packages from lab/packages/,
# and the real Loki binary as the `loki` package where ../shared/real-loki has it.

# build_standin SRC_DIR OUT_DIR VERSION [KREL [PREPARE_FN]]: copy the tree, fill placeholders,
# let PREPARE_FN WORKDIR VERSION adjust it, dpkg-deb it (architecture from DEBIAN/control;
# compression LAB_DEB_Z, default gzip).
build_standin() {
    local src=$1 out=$2 ver=$3 krel=${4:-} prepare=${5:-} work name arch
    work=$(mktemp -d "${TMPDIR:-/tmp}/hoplab-pkg.XXXXXX")
    cp -a "$src/." "$work/"
    # Empty directories the package ships (git keeps no empty directory): one absolute path a
    # line in the source's `dirs` file (like debhelper's debian/<package>.dirs), made here and
    # not packaged itself.
    if [[ -f $work/dirs ]]; then
        local d
        while read -r d; do
            [[ -z $d || $d == \#* ]] && continue
            [[ $d == /* && $d != *..* ]] || { echo "$src/dirs: '$d' is not an absolute path" >&2; rm -rf "$work"; return 1; }
            install -d -m 0755 "$work$d"
        done <"$work/dirs"
        rm -f "$work/dirs"
    fi
    # Placeholders live in DEBIAN/* and in the stand-in programs (text files only).
    grep -rlIZ -e '@VERSION@' -e '@KREL@' "$work" | xargs -0r sed -i -e "s/@VERSION@/$ver/g" -e "s/@KREL@/$krel/g"
    if [[ -n $prepare ]] && ! "$prepare" "$work" "$ver"; then
        rm -rf "$work"; return 1
    fi
    name=$(awk '/^Package:/ { print $2 }' "$work/DEBIAN/control")
    arch=$(awk '/^Architecture:/ { print $2 }' "$work/DEBIAN/control")
    if ! dpkg-deb --root-owner-group "-Z${LAB_DEB_Z:-gzip}" --build "$work" "$out/${name}_${ver}_${arch}.deb" >/dev/null 2>"$work.err"; then
        sed 's/^/    /' "$work.err" >&2; rm -rf "$work" "$work.err"
        echo "dpkg-deb failed for $name" >&2; return 1
    fi
    rm -rf "$work" "$work.err"
}

# ---- loki: the real binary where we have it, else the stand-in ----------------------------

# Where real Loki binaries may be (see its README): beside this clone, or HOMEOPS_REAL_LOKI_DIR.
real_loki_dir() { echo "${HOMEOPS_REAL_LOKI_DIR:-$LAB_ROOT/../shared/real-loki}"; }

# shared_binary DIR STEM NAME CACHE_SUB WHAT: print the path of DIR/STEM-linux-amd64.xz,
# decompressed and checked against DIR/SHA256SUMS (both the .xz and the binary), cached as
# $LAB_CACHE_DIR/CACHE_SUB/<sha256>/NAME, never in the repo. Returns 1 with nothing printed when
# DIR has no such file, 2 (with a message naming WHAT) when it fails its checksum. The one
# unpacker of ../shared binaries: the lab's packages and the tests (tests/conftest.py) use it.
shared_binary() {
    local dir=$1 stem=$2 name=$3 sub=$4 what=$5 xz sums want_xz want_bin cache tmp
    xz="$dir/$stem-linux-amd64.xz"; sums="$dir/SHA256SUMS"
    [[ -f $xz ]] || return 1
    want_xz=$(awk -v f="$stem-linux-amd64.xz" '$2 == f { print $1 }' "$sums" 2>/dev/null)
    want_bin=$(awk -v f="$stem-linux-amd64" '$2 == f { print $1 }' "$sums" 2>/dev/null)
    if [[ -z $want_xz || -z $want_bin ]]; then
        echo "$what: $sums lists no checksum for $stem-linux-amd64(.xz)" >&2; return 2
    fi
    command -v xz >/dev/null 2>&1 || { echo "$what: command xz not found: install package xz-utils" >&2; return 2; }
    cache="${LAB_CACHE_DIR:-/var/cache/homeops-lab}/$sub/$want_bin"
    if [[ -x $cache/$name ]] && [[ $(sha256sum "$cache/$name" | cut -d' ' -f1) == "$want_bin" ]]; then
        echo "$cache/$name"; return 0
    fi
    if [[ $(sha256sum "$xz" | cut -d' ' -f1) != "$want_xz" ]]; then
        echo "$what: $xz does not match its SHA256SUMS entry: a damaged copy, fetch it again" >&2; return 2
    fi
    mkdir -p "$cache" || { echo "$what: cannot create $cache (set LAB_CACHE_DIR)" >&2; return 2; }
    # Decompress beside, check, then rename: a concurrent build never sees half a binary.
    tmp=$(mktemp "$cache/.$name.XXXXXX")
    if ! xz -dc "$xz" >"$tmp" || [[ $(sha256sum "$tmp" | cut -d' ' -f1) != "$want_bin" ]]; then
        rm -f "$tmp"; echo "$what: decompressed $xz does not match its SHA256SUMS entry" >&2; return 2
    fi
    chmod 0755 "$tmp" && mv -f "$tmp" "$cache/$name"
    echo "$cache/$name"
}

# real_loki_binary VERSION: print the path of the verified, decompressed real Loki VERSION
# (cached under $LAB_CACHE_DIR/real-loki/<sha256>/loki). Returns as shared_binary does.
real_loki_binary() {
    shared_binary "$(real_loki_dir)" "loki-$1" loki real-loki "real Loki $1"
}

# ---- grafana: the stand-in, reading its files with the real upstream parsers where we have them

# Where the real upstream parsers may be (see its README): beside this clone, or HOMEOPS_REAL_PARSERS_DIR.
real_parsers_dir() { echo "${HOMEOPS_REAL_PARSERS_DIR:-$LAB_ROOT/../shared/real-parsers}"; }

# real_parser_binary NAME [STEM]: the verified checker NAME (grafana-ini-check, alloy-syntax-check,
# ...) from real_parsers_dir: the file STEM-linux-amd64.xz, by default the newest NAME-<tag> there.
# Returns as shared_binary does (1: not there).
real_parser_binary() {
    local name=$1 stem=${2:-} dir f
    dir=$(real_parsers_dir)
    if [[ -z $stem ]]; then
        for f in "$dir/$name"-*-linux-amd64.xz; do [[ -f $f ]] && stem=$(basename "$f" -linux-amd64.xz); done
        [[ -n $stem ]] || return 1
    fi
    shared_binary "$dir" "$stem" "$name" "real-parsers" "real $name"
}

# ship_grafana_readers WORK VER: the Grafana stand-in reads grafana.ini and its provisioning files
# with the real upstream code (go-ini + Grafana's expanders, Grafana's provisioning values package)
# where real_parsers_dir has it, so the lab sees what Grafana sees (issue 19); else with its own
# reading, and says so (here and in its log). The checkers go to a lab-only path of the package
# (usr/lib/grafana-lab/real/); never into the repo. Sets LAB_GRAFANA_PARSERS=real|standin.
ship_grafana_readers() {
    local work=$1 ver=$2 ini prov rc=0 shown
    shown=$(real_parsers_dir); [[ -z ${HOMEOPS_REAL_PARSERS_DIR:-} ]] && shown=../shared/real-parsers
    ini=$(real_parser_binary grafana-ini-check) || rc=$?
    (( rc == 0 )) && { prov=$(real_parser_binary grafana-provisioning-check) || rc=$?; }
    (( rc <= 1 )) || return 1
    if (( rc == 0 )); then
        install -D -m 0755 "$ini" "$work/usr/lib/grafana-lab/real/grafana-ini-check"
        install -D -m 0755 "$prov" "$work/usr/lib/grafana-lab/real/grafana-provisioning-check"
        echo "lab: grafana package $ver: LAB STAND-IN reading grafana.ini and provisioning with the real go-ini and Grafana's own readers from $shown"
        LAB_GRAFANA_PARSERS=real
    else
        echo "lab: grafana package $ver: LAB STAND-IN reading grafana.ini and provisioning with its own parser (no grafana-ini-check and grafana-provisioning-check in $shown)"
        LAB_GRAFANA_PARSERS=standin
    fi
}

# ship_upstream WORK WHAT SRC DEST HOW: install the upstream-derived file SRC at WORK/DEST, or fail
# naming it and HOW to extract it. A stand-in without the data of its version would accept
# anything: a missing file is a build error.
ship_upstream() {
    local work=$1 what=$2 src=$3 dest=$4 how=$5
    if [[ ! -f $src ]]; then
        echo "no $what: $src is missing; extract it with $how" >&2
        return 1
    fi
    install -D -m 0644 "$src" "$work/$dest"
}

# The Loki stand-in checks its config against the key tree of its version (issue 10): ship the
# checker and that tree with it.
prepare_loki_standin() {
    local work=$1 ver=$2
    ship_upstream "$work" "Loki config key tree for the pinned loki_version $ver" \
        "$LAB_ROOT/upstream/loki/$ver.json" usr/share/loki-standin/config-tree.json \
        "scripts/extract-loki-config.py --git-dir <loki mirror> --tag v$ver --out upstream/loki/$ver.json" || return 1
    install -m 0644 "$LAB_ROOT/upstream/configcheck.py" "$work/usr/share/loki-standin/configcheck.py"
}

# The Alloy stand-in refuses a config as Alloy would, by the component reference of its version.
prepare_alloy_standin() {
    local work=$1 ver=$2
    ship_upstream "$work" "Alloy component reference for the pinned alloy_version $ver" \
        "$LAB_ROOT/upstream/alloy/$ver.json" "usr/share/alloy-lab/reference/$ver.json" \
        "scripts/extract-alloy-reference.py <alloy git dir> v$ver > upstream/alloy/$ver.json"
}

# The Grafana stand-in's program where the version's package has it: Grafana's deb runs
# `/usr/share/grafana/bin/grafana server` from its unit, and Grafana 13 removed the
# `grafana-server` (and `grafana-cli`) commands, so /usr/sbin/grafana-server is only there before
# 13 (docs/upstream.md).
prepare_grafana_standin() {
    local work=$1 ver=$2
    install -d "$work/usr/share/grafana/bin"
    mv "$work/usr/sbin/grafana-server" "$work/usr/share/grafana/bin/grafana"
    if dpkg --compare-versions "$ver" lt 13.0.0; then
        ln -s /usr/share/grafana/bin/grafana "$work/usr/sbin/grafana-server"
    else
        rmdir "$work/usr/sbin"
    fi
    sed -i 's|^ExecStart=/usr/sbin/grafana-server |ExecStart=/usr/share/grafana/bin/grafana server |' \
        "$work/lib/systemd/system/grafana-server.service"
    grep -q '^ExecStart=/usr/share/grafana/bin/grafana server ' "$work/lib/systemd/system/grafana-server.service" \
        || { echo "prepare_grafana_standin: the unit's ExecStart was not rewritten" >&2; return 1; }
    ship_grafana_readers "$work" "$ver"
}

# The real binary with the stand-in's packaging (unit, conffile, postinst user handling, paths:
# those of Grafana's package). Static, so no Depends; amd64 only.
prepare_loki_real() {
    local work=$1 ver=$2
    install -m 0755 "$LAB_LOKI_REAL_BIN" "$work/usr/bin/loki"
    sed -i -e 's/^Architecture: .*/Architecture: amd64/' -e '/^Depends:/d' \
        -e '/^Description:/,$d' "$work/DEBIAN/control"
    cat >>"$work/DEBIAN/control" <<EOC
Description: Grafana Loki $ver (the real upstream binary, packaged by the homeops lab)
 The loki program of upstream tag v$ver (see ../shared/real-loki/README.md), with the
 unit, conffile, user handling and paths of Grafana's loki package. Lab use only.
EOC
    sed -i -e 's/^# LAB STAND-IN unit (homeops lab): mirrors the real loki.service./# homeops lab: the unit of Grafana'"'"'s loki package, for the real binary./' \
        -e 's/^Description=Loki service (LAB STAND-IN)/Description=Loki service/' "$work/lib/systemd/system/loki.service"
    sed -i -e "s/^# LAB STAND-IN default config for the homeops lab's fake loki package./# homeops lab: the default config of Grafana's loki package (real Loki $ver)./" \
        "$work/etc/loki/config.yml"
}

# build_loki_package OUT_DIR VERSION: the real Loki VERSION where its verified binary is at hand,
# else the stand-in. Prints exactly one line saying which; sets LAB_LOKI_KIND=real|standin.
build_loki_package() {
    local out=$1 ver=$2 bin rc=0 shown
    shown=$(real_loki_dir); [[ -z ${HOMEOPS_REAL_LOKI_DIR:-} ]] && shown=../shared/real-loki
    bin=$(real_loki_binary "$ver") || rc=$?
    if (( rc == 0 )); then
        echo "lab: loki package: real Loki $ver from $shown"
        LAB_LOKI_KIND=real
        # Uncompressed: gzip of the 110 MiB binary took 1-3 minutes on a busy 2-core machine, and
        # the deb only travels to the lab's own hosts.
        LAB_DEB_Z=none LAB_LOKI_REAL_BIN=$bin build_standin "$LAB_DIR/packages/loki" "$out" "$ver" "" prepare_loki_real
        return
    fi
    (( rc == 1 )) || return 1
    LAB_LOKI_KIND=standin
    if [[ -d $(real_loki_dir) ]]; then
        echo "lab: loki package: LAB STAND-IN (no Loki $ver binary in $shown)"
    else
        echo "lab: loki package: LAB STAND-IN (no $shown)"
    fi
    build_standin "$LAB_DIR/packages/loki" "$out" "$ver" "" prepare_loki_standin
}

# build_headers_tree DIR KREL: the linux-headers stand-in tree for kernel release KREL.
build_headers_tree() {
    local d=$1 krel=$2
    cp -a "$LAB_DIR/packages/linux-headers/." "$d/"
    mkdir -p "$d/usr/src/linux-headers-$krel" "$d/lib/modules/$krel"
    cat >"$d/usr/src/linux-headers-$krel/Makefile" <<EOM
# LAB STAND-IN placeholder (homeops lab): not real kernel headers for $krel.
all:
	@echo "LAB STAND-IN headers for $krel: nothing to build"
EOM
    ln -s "/usr/src/linux-headers-$krel" "$d/lib/modules/$krel/build"
}

# build_previous_set REPO_DIR VERSIONS_FILE: the packages of the previous release set
# (loki_version_previous & co., the set we support upgrading from: make itest-upgrade) into the
# same repo, so apt can pick loki=<previous> and later loki=<current>. Real Loki where its binary
# is at hand, else the stand-in with that version's key tree. A versions file without the
# previous keys builds nothing. Runs after the current set, so LAB_LOKI_KIND stays the current
# one's; sets LAB_PREVIOUS_VERSIONS for the VERSIONS file.
build_previous_set() {
    local repo=$1 vf=$2 lv gv av kind=$LAB_LOKI_KIND
    LAB_PREVIOUS_VERSIONS=""
    grep -qE '^loki_version_previous[[:space:]]*:' "$vf" || return 0
    lv=$(read_version loki_version_previous "$vf") || return 1
    gv=$(read_version grafana_version_previous "$vf") || return 1
    av=$(read_version alloy_version_previous "$vf") || return 1
    build_loki_package "$repo" "$lv" | sed 's/^lab: loki package:/lab: previous loki package:/' >&2
    (( PIPESTATUS[0] == 0 )) || return 1
    build_standin "$LAB_DIR/packages/grafana" "$repo" "$gv" "" prepare_grafana_standin >&2 || return 1
    build_standin "$LAB_DIR/packages/alloy" "$repo" "$av" "" prepare_alloy_standin || return 1
    LAB_PREVIOUS_VERSIONS="loki=$lv grafana=$gv alloy=$av"
    LAB_LOKI_KIND=$kind
}

# The packages of Debian's archive the lab's hosts install through the deploy (their other
# dependencies are in the base image): copied into the Debian stand-in repo DIR.
LAB_DEBIAN_DEBS="nginx nginx-common"
debian_debs() {
    local dir=$1 paths
    paths=$("$LAB_DIR/lib/debian-debs.sh" "${LAB_CACHE_DIR:-/var/cache/homeops-lab}/debian-debs" $LAB_DEBIAN_DEBS) \
        || { echo "lab: could not get Debian's $LAB_DEBIAN_DEBS packages (see above)" >&2; return 1; }
    # shellcheck disable=SC2086
    cp $paths "$dir/" && echo "lab: Debian packages: $(basename -a $paths | tr '\n' ' ')" >&2
}

# The architectures the lab's repositories index (x86_64 hosts, the aarch64 pi-01).
LAB_REPO_ARCHES="amd64 arm64"

# repo_key_init GNUPGHOME: a fresh signing key for this lab (ed25519, no passphrase), in the
# lab's state: new on every `up`, gone with `down`. gpg's agent is stopped again at once (no
# process of the lab outlives the command that needs it).
repo_key_init() {
    local g=$1
    rm -rf "$g"; install -d -m 0700 "$g"
    gpg --homedir "$g" --batch --quiet --pinentry-mode loopback --passphrase '' \
        --quick-gen-key "homeops lab $LAB_ID apt signing key (LAB ONLY) <lab-$LAB_ID@homeops-lab.invalid>" ed25519 sign never \
        >"$g.log" 2>&1 || { sed 's/^/    /' "$g.log" >&2; echo "gpg could not make the lab's signing key" >&2; return 1; }
    gpgconf --homedir "$g" --kill all >/dev/null 2>&1 || true
}

# repo_sign GNUPGHOME DIR: DIR/Release -> DIR/InRelease (clearsigned) and DIR/Release.gpg, as
# Grafana's (and Debian's) repositories carry both.
repo_sign() {
    local g=$1 d=$2 rc=0
    gpg --homedir "$g" --batch --quiet --yes --pinentry-mode loopback --passphrase '' --digest-algo SHA512 \
        --clearsign -o "$d/InRelease" "$d/Release" 2>>"$g.log" || rc=1
    gpg --homedir "$g" --batch --quiet --yes --pinentry-mode loopback --passphrase '' --digest-algo SHA512 \
        --armor --detach-sign -o "$d/Release.gpg" "$d/Release" 2>>"$g.log" || rc=1
    gpgconf --homedir "$g" --kill all >/dev/null 2>&1 || true
    (( rc == 0 )) || { sed 's/^/    /' "$g.log" >&2; echo "gpg could not sign $d/Release" >&2; }
    return "$rc"
}

# release_file DIR SUITE [ARCHES COMPONENTS]: a Release for the index files under DIR.
release_file() {
    local d=$1 suite=$2 arches=${3:-} comps=${4:-} f
    {
        echo "Origin: homeops-lab"
        echo "Label: homeops-lab LAB STAND-IN packages"
        echo "Suite: $suite"
        echo "Codename: $suite"
        echo "Date: $(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S UTC')"
        [[ -n $arches ]] && echo "Architectures: $arches"
        [[ -n $comps ]] && echo "Components: $comps"
        echo "SHA256:"
        while IFS= read -r f; do
            printf ' %s %s %s\n' "$(sha256sum "$d/$f" | cut -d' ' -f1)" "$(stat -c %s "$d/$f")" "$f"
        done < <(cd "$d" && find . -name 'Packages*' -type f | sed 's|^\./||' | LC_ALL=C sort)
    } >"$d/Release"
}

# build_repo REPO_DIR: the lab's two apt repositories, both signed with the lab's key
# (REPO_DIR/gpg.key is its public half, as https://apt.grafana.com/gpg.key is Grafana's):
#   REPO_DIR/            laid out like apt.grafana.com: dists/stable/main/binary-<arch>/Packages,
#                        pool/main/*.deb: loki, grafana, alloy. The deploy adds it itself
#                        (observability_package_source: grafana, its URL and key URL at the lab).
#   REPO_DIR/debian/     a flat repo standing in for the Debian mirror: the linux-headers
#                        stand-in, which a real host gets from Debian, not from Grafana. The
#                        hosts' only apt source (lab/lib/hosts.sh).
build_repo() {
    local repo=$1 vf="$LAB_ROOT/roles/common/defaults/main/versions.yml" krel lv gv av tmp a pool g
    lv=$(read_version loki_version "$vf") || return 1
    gv=$(read_version grafana_version "$vf") || return 1
    av=$(read_version alloy_version "$vf") || return 1
    krel=$(uname -r)
    rm -rf "$repo"; mkdir -p "$repo"
    pool="$repo/pool/main"; mkdir -p "$pool" "$repo/debian"
    build_loki_package "$pool" "$lv" >&2 || return 1
    build_standin "$LAB_DIR/packages/grafana" "$pool" "$gv" "" prepare_grafana_standin >&2 || return 1
    build_standin "$LAB_DIR/packages/alloy" "$pool" "$av" "" prepare_alloy_standin || return 1
    build_previous_set "$pool" "$vf" || return 1
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/hoplab-hdr.XXXXXX")
    build_headers_tree "$tmp/tree" "$krel" || { rm -rf "$tmp"; return 1; }
    build_standin "$tmp/tree" "$repo/debian" "1.0+lab1" "$krel" || { rm -rf "$tmp"; return 1; }
    rm -rf "$tmp"
    # Real packages from Debian's archive, as a real host gets them: nginx for the proxy in front
    # of Loki (roles/loki/tasks/proxy.yml). Downloaded once into the cache, served from here.
    debian_debs "$repo/debian" || return 1
    for a in $LAB_REPO_ARCHES; do
        mkdir -p "$repo/dists/stable/main/binary-$a"
        ( cd "$repo" && dpkg-scanpackages --multiversion -a "$a" pool /dev/null >"dists/stable/main/binary-$a/Packages" 2>/dev/null \
            && gzip -9nk "dists/stable/main/binary-$a/Packages" ) || { echo "dpkg-scanpackages failed in $repo ($a)" >&2; return 1; }
    done
    ( cd "$repo/debian" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null && gzip -9nk Packages ) \
        || { echo "dpkg-scanpackages failed in $repo/debian" >&2; return 1; }
    release_file "$repo/dists/stable" stable "$LAB_REPO_ARCHES" main
    release_file "$repo/debian" lab-debian
    g="$LAB_STATE_DIR/gnupg"
    repo_key_init "$g" || return 1
    repo_sign "$g" "$repo/dists/stable" && repo_sign "$g" "$repo/debian" || return 1
    gpg --homedir "$g" --batch --quiet --armor --export >"$repo/gpg.key" 2>>"$g.log" && [[ -s $repo/gpg.key ]] \
        || { echo "gpg could not export the lab's public key" >&2; return 1; }
    gpgconf --homedir "$g" --kill all >/dev/null 2>&1 || true
    {
        echo "lab_versions: loki=$lv grafana=$gv alloy=$av headers=linux-headers-$krel"
        echo "lab_loki_package: $LAB_LOKI_KIND"
        echo "lab_grafana_parsers: $LAB_GRAFANA_PARSERS"
        if [[ -n ${LAB_PREVIOUS_VERSIONS:-} ]]; then echo "lab_versions_previous: $LAB_PREVIOUS_VERSIONS"; fi
    } >"$repo/VERSIONS"
}
