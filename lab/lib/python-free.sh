#!/bin/sh
# The check that a host is python-free (LAB_NOPYTHON), run inside the host: by `lab up` right
# after the purge (lab/lib/hosts.sh, via nsenter) and by `make itest` over SSH as the inventory
# logs in, before the deploy and after verify (homeops_dev/labdriver/). Prints "python-free" (and,
# where the stand-ins keep one, a line naming their private runtime), or
# "python found: ..." and exits 3, where an interpreter Ansible's discovery could use is there:
# python3.x or python on PATH, /usr/bin/python*, /usr/local/bin/python*, /bin/python*,
# /usr/libexec/platform-python.
found=''
for n in python3 python python3.13 python3.12 python3.11 python3.10 python3.9; do
    p=$(command -v "$n" 2>/dev/null) && found="$found $p"
done
for p in /usr/bin/python* /usr/local/bin/python* /bin/python* /usr/libexec/platform-python; do
    [ -e "$p" ] && found="$found $p"
done
if [ -n "$found" ]; then echo "python found:$found"; exit 3; fi
echo python-free
# The LAB STAND-INs' private interpreter (lab/lib/hosts.sh remove_python), off every path above:
# said on a second line, so a run shows which hosts keep one.
rt=/usr/lib/homeops-lab-runtime
if [ -x "$rt/bin/python3" ]; then echo "private runtime: $rt (LAB STAND-INs only)"; fi
