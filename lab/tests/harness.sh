# shellcheck shell=bash
# What the lab's booting tests (integration.sh, nopython.sh) share: where the lab is, its
# libraries, a log directory, the pass/fail counters with their check helpers, and the closing
# line "N passed, N failed". Sourced, never run: `source "$(dirname "${BASH_SOURCE[0]}")/harness.sh" NAME`
# (NAME names the log directory, lab-NAME.XXXXXX). NOK_TAIL: how many lines of a failed
# check's output to show (default 8).

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB_ROOT=$(cd "$LAB_DIR/.." && pwd)
LAB="$LAB_DIR/lab"
# shellcheck source=/dev/null
source "$LAB_DIR/lib/common.sh"
# shellcheck source=/dev/null
source "$LAB_DIR/lib/config.sh"

PASS=0 FAIL=0
LOG=$(mktemp -d "${TMPDIR:-/tmp}/lab-${1:?harness.sh needs a name}.XXXXXX")
ok()  { PASS=$((PASS + 1)); printf 'ok   %s\n' "$1"; }
nok() { FAIL=$((FAIL + 1)); printf 'FAIL %s\n' "$1"; [[ -n ${2:-} ]] && printf '%s\n' "$2" | tail -n "${NOK_TAIL:-8}" | sed 's/^/     /'; return 0; }
# check NAME CMD...: passes if CMD succeeds (its output is shown only on failure).
check() { local n=$1 out; shift; if out=$("$@" 2>&1); then ok "$n"; else nok "$n" "$out"; fi; }
# check_fails NAME CMD...: passes if CMD fails.
check_fails() { local n=$1 out; shift; if out=$("$@" 2>&1); then nok "$n" "unexpected success: $out"; else ok "$n"; fi; }

# harness_end RC: drops the logs, prints the closing line and exits 1 on any failure (or a
# non-zero RC, the script's own exit status), else 0. The last step of a script's EXIT trap.
harness_end() {
    rm -rf "$LOG"
    echo
    echo "$PASS passed, $FAIL failed"
    (( FAIL == 0 && $1 == 0 )) || exit 1
    exit 0
}
