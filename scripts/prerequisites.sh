#!/usr/bin/env bash
# Installs the Debian packages this repository needs, or names the one command that does.
#
# One list in three files: scripts/base-packages.txt (make, git, gcc, Python),
# scripts/build-packages.txt (the module build) and lab/host-packages.txt (the lab's controller
# tools). `make setup` runs this first, so on a fresh Debian 12 machine `make itest` and
# `make test` need nothing before them; .ci/run's step 1 runs it too. Where `make` itself is
# missing (Debian ships it only with build-essential), run this script directly once.
#
# Usage: scripts/prerequisites.sh [--check | --list]
#   as root     installs what is missing, saying what; `apt-get update` runs first, and only
#               when something is missing (a machine that has everything fetches nothing)
#   not root    exits 1 naming the one command that installs what is missing
#   --check     only reports; exits 1 when something is missing, whoever runs it
#   --list      prints the packages, one a line (for an image recipe, or a test)
# PREREQUISITES_PACKAGES="a b ..." replaces the three lists (to test this script).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

LISTS=(scripts/base-packages.txt scripts/build-packages.txt lab/host-packages.txt)
# Waits for a dpkg or apt lock held by someone else (unattended-upgrades on a fresh machine)
# instead of failing at once; the playbooks use the same 600 s.
APT_LOCK=(-o DPkg::Lock::Timeout=600)

mode=install
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  --list) mode=list ;;
  *) echo "usage: scripts/prerequisites.sh [--check | --list]" >&2; exit 2 ;;
esac

packages=()
if [[ -n ${PREREQUISITES_PACKAGES:-} ]]; then
  read -r -a packages <<< "$PREREQUISITES_PACKAGES"
else
  for list in "${LISTS[@]}"; do
    [[ -f $list ]] || { echo "error: package list $list is missing from this clone" >&2; exit 1; }
    # One package per line; '#' starts a comment; a package in two lists counts once.
    while read -r name _; do
      [[ -z $name || $name == \#* || " ${packages[*]} " == *" $name "* ]] || packages+=("$name")
    done < "$list"
  done
fi

if [[ $mode == list ]]; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi

if ! command -v dpkg-query >/dev/null; then
  echo "error: dpkg-query not found: this repository's tooling expects Debian 12 (bookworm);" >&2
  echo "       elsewhere install the equivalents of: ${packages[*]}" >&2
  exit 1
fi

# The packages that are not fully installed ("ii"), in list order. One dpkg-query for all: a
# name dpkg has never heard of is absent from its output (and makes it exit 1, hence `|| true`).
missing_packages() {
  local status installed
  # Both NAME and NAME:ARCH count: the lists name foreign-architecture packages (musl-dev:arm64
  # for the aarch64 module build) with their architecture.
  status=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Package}:${Architecture}\n' "${packages[@]}" 2>/dev/null || true)
  installed=" $(awk '$1 == "ii" { printf "%s %s ", $2, $3 }' <<< "$status") "
  local p
  for p in "${packages[@]}"; do
    [[ $installed == *" $p "* ]] || printf '%s\n' "$p"
  done
}
mapfile -t missing < <(missing_packages)

if (( ${#missing[@]} == 0 )); then
  echo "==> prerequisites: all ${#packages[@]} Debian packages present"
  exit 0
fi

install_cmd="apt-get install -y --no-install-recommends ${missing[*]}"
# A package named NAME:ARCH (musl-dev:arm64) is installable only once dpkg knows ARCH.
foreign=()
for p in "${missing[@]}"; do
  [[ $p == *:* ]] || continue
  arch=${p##*:}
  [[ $arch == "$(dpkg --print-architecture)" || " $(dpkg --print-foreign-architectures | tr '\n' ' ') " == *" $arch "* \
     || " ${foreign[*]} " == *" $arch "* ]] || foreign+=("$arch")
done
if [[ $mode == check ]]; then
  echo "==> prerequisites: ${#missing[@]} Debian package(s) missing: ${missing[*]}" >&2
  exit 1
fi
if (( EUID != 0 )); then
  # On a machine where apt never fetched its package lists, install alone finds nothing.
  if (( ${#foreign[@]} )); then
    cmd=""
    for arch in "${foreign[@]}"; do cmd+="sudo dpkg --add-architecture $arch && "; done
    cmd+="sudo apt-get update && sudo $install_cmd"
  elif compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    cmd="sudo $install_cmd"
  else
    cmd="sudo apt-get update && sudo $install_cmd"
  fi
  {
    echo "error: ${#missing[@]} Debian package(s) missing: ${missing[*]}"
    echo "       Installing them needs root (make setup does it itself when run as root). Run:"
    echo "         $cmd"
    echo "       then the make command again."
  } >&2
  exit 1
fi

echo "==> prerequisites: installing ${#missing[@]} missing Debian package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
for arch in "${foreign[@]}"; do
  echo "    dpkg --add-architecture $arch (for ${missing[*]})"
  dpkg --add-architecture "$arch"
done
apt-get "${APT_LOCK[@]}" update -qq || {
  echo "error: apt-get update failed (above): check /etc/apt/sources.list and the network" >&2; exit 1; }
apt-get "${APT_LOCK[@]}" install -y -qq --no-install-recommends "${missing[@]}" || {
  echo "error: apt-get install failed (above) for: ${missing[*]}" >&2
  echo "       a package apt cannot locate needs Debian 12 (bookworm) with bookworm-security" >&2
  echo "       (rustc-web 1.96 comes from there): see /etc/apt/sources.list" >&2
  exit 1; }
mapfile -t still < <(missing_packages)
if (( ${#still[@]} )); then
  echo "error: apt-get reported success but these are still not installed: ${still[*]}" >&2
  echo "       see 'dpkg -l ${still[*]}'" >&2
  exit 1
fi
echo "==> prerequisites: installed ${missing[*]}"
