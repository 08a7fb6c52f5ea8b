#!/usr/bin/env bash
# Builds the module binaries for `make build`: static, x86_64, at most 1 MiB each.
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
# Crates still come only from vendor/crates and std's own vendored sources: no network.
#
# Usage: scripts/build-modules.sh MODULE...   (binaries land in target/x86_64-unknown-linux-musl/release)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGET=x86_64-unknown-linux-musl
RUST_SRC=/usr/lib/rustlib/src/rust/library   # from rust-web-src, matches /usr/bin/rustc
LIBUNWIND_DIR=/usr/lib/llvm-16/lib           # from libunwind-16-dev
WORK=target/build-std
PACKAGES=$(tr '\n' ' ' < scripts/build-packages.txt)   # also read by .ci/run and the README

(( $# )) || { echo "usage: scripts/build-modules.sh MODULE..." >&2; exit 2; }

missing=()
[[ -x /usr/bin/cargo && -x /usr/bin/rustc ]] || missing+=("rustc-web cargo-web (/usr/bin/rustc, /usr/bin/cargo)")
[[ -f $RUST_SRC/Cargo.lock && -d $RUST_SRC/vendor ]] || missing+=("rust-web-src ($RUST_SRC)")
command -v musl-gcc >/dev/null || missing+=("musl-tools (musl-gcc)")
[[ -f $LIBUNWIND_DIR/libunwind.a ]] || missing+=("libunwind-16-dev ($LIBUNWIND_DIR/libunwind.a)")
if (( ${#missing[@]} )); then
  printf 'error: the module build needs Debian packages that are missing:\n' >&2
  printf '         %s\n' "${missing[@]}" >&2
  printf '       install them with: apt-get install -y --no-install-recommends %s\n' "$PACKAGES" >&2
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
# crates.io, and with -Zbuild-std std's dependencies resolve through it too.
rm -rf "$WORK/vendor.new"
mkdir -p "$WORK/vendor.new" "$WORK/compat"
for dir in vendor/crates/* "$RUST_SRC"/vendor/*; do
  [[ -f $dir/Cargo.toml ]] || continue
  name=$(basename "$dir")
  # vendor/crates names a crate without its version; std's vendor adds it. Same name and
  # version twice is the same crate: keep the first.
  version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$dir/Cargo.toml" | head -1)
  link="$WORK/vendor.new/${name%-"$version"}-$version"
  [[ -e $link ]] || ln -s "$(readlink -f "$dir")" "$link"
done
rm -rf "$WORK/vendor" && mv "$WORK/vendor.new" "$WORK/vendor"

musl-gcc -Os -Wall -Werror -c scripts/musl/fprintf_chk.c -o "$WORK/compat/fprintf_chk.o"
rm -f "$WORK/compat/libmusl_compat.a"
ar rcs "$WORK/compat/libmusl_compat.a" "$WORK/compat/fprintf_chk.o"

packages=()
for m in "$@"; do packages+=(-p "$m"); done

flags=(
  -C target-feature=+crt-static      # fully static (no ld-musl interpreter on the host)
  -C relocation-model=static         # plain static executable: no PIE relocations to carry
  -C link-self-contained=no          # musl's crt and libc.a from musl-tools, via musl-gcc
  -C linker=musl-gcc
  -L "$LIBUNWIND_DIR"
  -L "$PWD/$WORK/compat" -l static=musl_compat
)
echo "==> build: /usr/bin/cargo build --release --target $TARGET -Zbuild-std (Debian's rustc $compiler, musl, std built for size)"
# CARGO_ENCODED_RUSTFLAGS: one flag per 0x1f-separated field, so a path with spaces stays whole.
encoded=$(IFS=$'\x1f'; echo "${flags[*]}")
RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO_ENCODED_RUSTFLAGS="$encoded" \
  /usr/bin/cargo build --release --target "$TARGET" --offline --locked \
    --config "source.vendored-sources.directory=\"$WORK/vendor\"" \
    -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size \
    "${packages[@]}"
