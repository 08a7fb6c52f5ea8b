# The hosts a playbook run reported on, read from its PLAY RECAP: one name a line, sorted by
# the caller. scripts/itest.sh compares them with the inventory's hosts, so a run that
# "passed" against hosts other than the ones it started with (an inventory replaced or
# emptied mid-run) fails. localhost (the summary plays) is not a managed host.
# Usage: awk -f scripts/recap-hosts.awk ansible-output.txt
/^PLAY RECAP/ { recap = 1; next }
recap && / : ok=/ && $1 != "localhost" { print $1 }
