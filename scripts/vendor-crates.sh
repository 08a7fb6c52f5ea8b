#!/usr/bin/env bash
# Re-vendors the workspace's crates into vendor/crates for offline builds (see vendor/README.md).
# Needs crates.io, so it temporarily lifts the offline source replacement of .cargo/config.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-vendor-filterer >/dev/null || {
  echo "error: cargo-vendor-filterer is missing: cargo install cargo-vendor-filterer --locked" >&2; exit 1; }

excludes=(--exclude-crate-path '*#tests' --exclude-crate-path '*#benches')
# Only x86_64 Linux is built: other architectures' kernel headers and other systems' libc parts go.
for arch in aarch64 arm csky hexagon loongarch64 m68k mips mips32r6 mips64 mips64r6 powerpc \
            powerpc64 riscv32 riscv64 s390x sparc sparc64 x32 x86; do
  excludes+=(--exclude-crate-path "linux-raw-sys#src/$arch")
done
for dir in fuchsia vxworks windows solid wasi hermit xous teeos trusty sgx switch.rs psp.rs; do
  excludes+=(--exclude-crate-path "libc#src/$dir")
done
for dir in bsd haiku solarish aix hurd newlib nto redox cygwin nuttx espidf horizon vita; do
  excludes+=(--exclude-crate-path "libc#src/unix/$dir")
done

echo "==> vendoring crates for x86_64 Linux (gnu: tests; musl: release modules) into vendor/crates"
rm -rf vendor/crates.new
CARGO_NET_OFFLINE=false cargo --config 'source.crates-io.replace-with="crates-io"' \
  vendor-filterer --platform=x86_64-unknown-linux-gnu --platform=x86_64-unknown-linux-musl "${excludes[@]}" vendor/crates.new >/dev/null
rm -rf vendor/crates && mv vendor/crates.new vendor/crates
du -sh vendor/crates
