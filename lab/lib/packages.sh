# shellcheck shell=bash
# Build the LAB STAND-IN packages from lab/packages/ into a flat apt repo.

# build_standin SRC_DIR OUT_DIR VERSION [KREL]: copy the tree, fill placeholders, dpkg-deb it.
build_standin() {
    local src=$1 out=$2 ver=$3 krel=${4:-} work name
    work=$(mktemp -d "${TMPDIR:-/tmp}/hoplab-pkg.XXXXXX")
    cp -a "$src/." "$work/"
    # Placeholders live in DEBIAN/* and in the stand-in programs.
    grep -rlZ -e '@VERSION@' -e '@KREL@' "$work" | xargs -0r sed -i -e "s/@VERSION@/$ver/g" -e "s/@KREL@/$krel/g"
    name=$(awk '/^Package:/ { print $2 }' "$work/DEBIAN/control")
    if ! dpkg-deb --root-owner-group -Zgzip --build "$work" "$out/${name}_${ver}_all.deb" >/dev/null 2>"$work.err"; then
        sed 's/^/    /' "$work.err" >&2; rm -rf "$work" "$work.err"
        echo "dpkg-deb failed for $name" >&2; return 1
    fi
    rm -rf "$work" "$work.err"
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

# build_repo REPO_DIR: all stand-ins plus Packages(.gz) and Release for a flat repo.
build_repo() {
    local repo=$1 vf="$LAB_ROOT/playbooks/group_vars/all/versions.yml" krel lv gv av tmp
    lv=$(read_version loki_version "$vf") || return 1
    gv=$(read_version grafana_version "$vf") || return 1
    av=$(read_version alloy_version "$vf") || return 1
    krel=$(uname -r)
    rm -rf "$repo"; mkdir -p "$repo"
    build_standin "$LAB_DIR/packages/loki" "$repo" "$lv" || return 1
    build_standin "$LAB_DIR/packages/grafana" "$repo" "$gv" || return 1
    build_standin "$LAB_DIR/packages/alloy" "$repo" "$av" || return 1
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/hoplab-hdr.XXXXXX")
    build_headers_tree "$tmp/tree" "$krel" || { rm -rf "$tmp"; return 1; }
    build_standin "$tmp/tree" "$repo" "1.0+lab1" "$krel" || { rm -rf "$tmp"; return 1; }
    rm -rf "$tmp"
    ( cd "$repo" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null && gzip -9nk Packages ) \
        || { echo "dpkg-scanpackages failed in $repo" >&2; return 1; }
    {
        echo "Origin: homeops-lab"
        echo "Label: homeops-lab LAB STAND-IN packages"
        echo "Suite: lab"
        echo "Date: $(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S UTC')"
        echo "SHA256:"
        local f
        for f in Packages Packages.gz; do
            printf ' %s %s %s\n' "$(sha256sum "$repo/$f" | cut -d' ' -f1)" "$(stat -c %s "$repo/$f")" "$f"
        done
    } >"$repo/Release"
    echo "lab_versions: loki=$lv grafana=$gv alloy=$av headers=linux-headers-$krel" >"$repo/VERSIONS"
}
