# Molecule's idempotence rule, read from ansible-playbook output: print "HOST changed=N" for
# every PLAY RECAP line whose changed count is not 0. No output means idempotent.
# Usage: awk -f scripts/recap-changed.awk ansible-output.txt
/^PLAY RECAP/ { recap = 1; next }
recap && / : ok=/ {
    for (i = 1; i <= NF; i++) {
        if ($i ~ /^changed=/) {
            split($i, kv, "=")
            if (kv[2] + 0 > 0) print $1 " " $i
        }
    }
}
