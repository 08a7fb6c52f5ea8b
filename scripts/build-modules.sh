#!/usr/bin/env bash
# Builds the module binaries for `make build`: static, one CPU architecture per call, at most
# 1 MiB each.
#
# Why this is not a plain `cargo build --release`: a static glibc executable costs about 1.1 MB
# before our code starts (glibc ~0.7 MB, Rust's std with its backtrace symbolizer ~0.4 MB), so
# no module fit the 1 MiB budget that way (they were 1.40-1.73 MB). These builds instead
#   - target x86_64-unknown-linux-musl and link Debian's musl (musl-tools) statically: a static
#     musl libc is tens of kilobytes and runs on any x86_64 Linux kernel, whatever its libc;
#   - rebuild std itself for size (-Zbuild-std with std's optimize_for_size feature), which
#     needs std's source: rustup cannot fetch components here, so the compiler, cargo and
#     std's source all come from Debian's matched 1.96 packages (rustc-web, cargo-web,
#     rust-web-src). RUSTC_BOOTSTRAP=1 lets that stable compiler accept -Zbuild-std, the one
#     unstable flag used. Tests, clippy and rustfmt stay on the rustup toolchain.
#   - take std's unwinder from LLVM's libunwind (libunwind-16-dev), plus one compatibility
#     function for it (scripts/musl/fprintf_chk.c).
# aarch64 (Raspberry Pi OS 64-bit, other arm64 boards) uses the same compiler and std source with
#   - musl-dev:arm64 (Debian's musl for arm64, installable once the host has
#     `dpkg --add-architecture arm64`) and the cross gcc (gcc-aarch64-linux-gnu) wrapped as a
#     musl-gcc (scripts/musl/aarch64-linux-musl-gcc);
#   - the cross gcc's own unwinder, libgcc_eh.a, instead of LLVM's: libunwind-16-dev:arm64
#     cannot be installed beside the amd64 one (same paths). std asks the linker for
#     `-lunwind` (and rustc links with -nodefaultlibs), so a copy of libgcc_eh.a is offered
#     under that name, with the one glibc function it needs (scripts/musl/dl_find_object.c).
# Crates still come only from vendor/crates and std's own vendored sources: no network.
#
# Usage: scripts/build-modules.sh ARCH MODULE...
#   ARCH: x86_64 or aarch64 (`uname -m` names). Binaries land in
#   target/x86_64-unknown-linux-musl/release and target/aarch64/aarch64-unknown-linux-musl/release;
#   `make build` installs them into library/ (docs/design.md, "Architectures").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUST_SRC=/usr/lib/rustlib/src/rust/library   # from rust-web-src, matches /usr/bin/rustc
WORK=target/build-std
PACKAGES=$(grep -vE '^\s*(#|$)' scripts/build-packages.txt | tr '\n' ' ')   # also read by .ci/run and the README

(( $# >= 2 )) || { echo "usage: scripts/build-modules.sh ARCH MODULE...   (ARCH: x86_64 or aarch64)" >&2; exit 2; }
ARCH=$1; shift

# Two builds in one clone (make lint and make itest started together) share target/build-std:
# one waits for the other instead of both relinking its vendor tree at once.
mkdir -p target
exec 9>target/.build-modules.lock
if ! flock -n 9; then
    echo "==> build $ARCH: another build in this clone holds target/.build-modules.lock; waiting for it"
    flock -w 1800 9 || { echo "build: the other build did not finish in 30 min" >&2; exit 1; }
fi

missing=()
[[ -x /usr/bin/cargo && -x /usr/bin/rustc ]] || missing+=("rustc-web cargo-web (/usr/bin/rustc, /usr/bin/cargo)")
[[ -f $RUST_SRC/Cargo.lock && -d $RUST_SRC/vendor ]] || missing+=("rust-web-src ($RUST_SRC)")
case $ARCH in
  x86_64)
    TARGET=x86_64-unknown-linux-musl
    TARGET_DIR=target
    CC=musl-gcc
    UNWIND_DIR=/usr/lib/llvm-16/lib           # from libunwind-16-dev
    command -v musl-gcc >/dev/null || missing+=("musl-tools (musl-gcc)")
    [[ -f $UNWIND_DIR/libunwind.a ]] || missing+=("libunwind-16-dev ($UNWIND_DIR/libunwind.a)")
    ;;
  aarch64)
    TARGET=aarch64-unknown-linux-musl
    # Its own target directory: the build scripts both builds compile for this machine land in
    # <target-dir>/release/build with the same names but other flags, so one shared directory
    # made each build throw away the other's and rebuild everything (std too) every time.
    TARGET_DIR=target/aarch64
    CC=$PWD/scripts/musl/aarch64-linux-musl-gcc
    UNWIND_DIR=$PWD/$WORK/$ARCH/unwind
    command -v aarch64-linux-gnu-gcc >/dev/null || missing+=("gcc-aarch64-linux-gnu (aarch64-linux-gnu-gcc)")
    [[ -f /usr/lib/aarch64-linux-musl/musl-gcc.specs ]] \
      || missing+=("musl-dev:arm64 (/usr/lib/aarch64-linux-musl/musl-gcc.specs; first: dpkg --add-architecture arm64 && apt-get update)")
    ;;
  *)
    echo "error: no module build for architecture '$ARCH': the builds are x86_64 and aarch64" >&2
    exit 2
    ;;
esac
if (( ${#missing[@]} )); then
  printf 'error: the %s module build needs Debian packages that are missing:\n' "$ARCH" >&2
  printf '         %s\n' "${missing[@]}" >&2
  printf '       install them with (as root):\n' >&2
  printf '         dpkg --add-architecture arm64 && apt-get update\n' >&2
  printf '         apt-get install -y --no-install-recommends %s\n' "$PACKAGES" >&2
  exit 1
fi
# -Zbuild-std compiles std from source with this compiler: the two must be one release.
compiler=$(/usr/bin/rustc -V | awk '{print $2}')
source=$(basename "$(readlink -f "$RUST_SRC/..")")
if [[ $source != "rustc-$compiler" ]]; then
  echo "error: /usr/bin/rustc is $compiler but std's source is $source: upgrade rustc-web, cargo-web" >&2
  echo "       and rust-web-src together (apt-get install -y $PACKAGES)" >&2
  exit 1
fi

# One directory source for both our crates and std's: cargo allows one replacement for
# crates.io, and with -Zbuild-std std's dependencies resolve through it too. Each build makes
# its own copy, so the two architectures can be built at once.
VENDOR=$WORK/$ARCH/vendor
rm -rf "$VENDOR.new"
mkdir -p "$VENDOR.new" "$WORK/$ARCH/compat"
for dir in vendor/crates/* "$RUST_SRC"/vendor/*; do
  [[ -f $dir/Cargo.toml ]] || continue
  name=$(basename "$dir")
  # vendor/crates names a crate without its version; std's vendor adds it. Same name and
  # version twice is the same crate: keep the first.
  version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$dir/Cargo.toml" | head -1)
  link="$VENDOR.new/${name%-"$version"}-$version"
  [[ -e $link ]] || ln -s "$(readlink -f "$dir")" "$link"
done
rm -rf "$VENDOR" && mv "$VENDOR.new" "$VENDOR"

compat=()
case $ARCH in
  x86_64)
    musl-gcc -Os -Wall -Werror -c scripts/musl/fprintf_chk.c -o "$WORK/$ARCH/compat/fprintf_chk.o"
    rm -f "$WORK/$ARCH/compat/libmusl_compat.a"
    ar rcs "$WORK/$ARCH/compat/libmusl_compat.a" "$WORK/$ARCH/compat/fprintf_chk.o"
    compat=(-L "$PWD/$WORK/$ARCH/compat" -l static=musl_compat)
    ;;
  aarch64)
    # std's unwind crate links `-lunwind` on musl; the _Unwind_* functions (backtraces only:
    # panics abort) come from the cross gcc's libgcc_eh.a, offered under that name together
    # with the _dl_find_object it calls (one archive, so the linker resolves it in place).
    eh=$(aarch64-linux-gnu-gcc -print-file-name=libgcc_eh.a)
    [[ -f $eh ]] || { echo "error: aarch64-linux-gnu-gcc has no libgcc_eh.a ($eh): reinstall gcc-aarch64-linux-gnu" >&2; exit 1; }
    mkdir -p "$UNWIND_DIR"
    "$CC" -Os -Wall -Werror -c scripts/musl/dl_find_object.c -o "$WORK/$ARCH/compat/dl_find_object.o"
    cp "$eh" "$UNWIND_DIR/libunwind.a.new"
    chmod u+w "$UNWIND_DIR/libunwind.a.new"
    ar rs "$UNWIND_DIR/libunwind.a.new" "$WORK/$ARCH/compat/dl_find_object.o"
    mv -f "$UNWIND_DIR/libunwind.a.new" "$UNWIND_DIR/libunwind.a"
    ;;
esac

packages=()
for m in "$@"; do packages+=(-p "$m"); done

flags=(
  -C target-feature=+crt-static      # fully static (no ld-musl interpreter on the host)
  -C relocation-model=static         # plain static executable: no PIE relocations to carry
  -C link-self-contained=no          # musl's crt and libc.a from Debian's musl, via musl-gcc
  -C "linker=$CC"
  -L "$UNWIND_DIR"
  "${compat[@]}"
)
echo "==> build $ARCH: /usr/bin/cargo build --release --target $TARGET -Zbuild-std (Debian's rustc $compiler, musl, std built for size)"
# CARGO_ENCODED_RUSTFLAGS: one flag per 0x1f-separated field, so a path with spaces stays whole.
encoded=$(IFS=$'\x1f'; echo "${flags[*]}")
RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO_ENCODED_RUSTFLAGS="$encoded" \
  /usr/bin/cargo build --release --target "$TARGET" --target-dir "$TARGET_DIR" --offline --locked \
    --config "source.vendored-sources.directory=\"$VENDOR\"" \
    -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size \
    "${packages[@]}"
