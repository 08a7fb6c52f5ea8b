"""The fault scenarios of make itest-faults, in today's order: one module per scenario under
homeops_dev/faults/scenarios/, each marked with its number, title and host count (helpers.scenario).
`FAULTS="1 4 storm"` and `FAULTS="loki_outage agent_reboot"` select from this list by number or
name; a run of all of them goes in this order (the doc sorts its rows by number: 14 runs before
12). A new scenario is a new module plus its line here (and its row in docs/reliability.md)."""
from __future__ import annotations

from homeops_dev.faults.scenarios import (
    bad_input, lock_wait, lock_timeout, dpkg_interrupted, unreachable, apt_daily_running,
    loki_precreated, storm, stale, killed, check_mode, secrets, interrupted_restart, log_flow_hops,
    grafana_password_chars, loki_access, two_clones, killed_owner, upgrade_interrupted,
    planted_symlink, loki_outage, loki_crash, agent_reboot, loki_host_reboot, clock_skew, disk_full,
)

# Import order is not run order: this tuple is.
MODULES = (
    bad_input, lock_wait, lock_timeout, dpkg_interrupted, unreachable, apt_daily_running,
    loki_precreated, storm, stale, killed, check_mode, secrets, interrupted_restart, log_flow_hops,
    grafana_password_chars, loki_access, two_clones, killed_owner, upgrade_interrupted,
    planted_symlink, loki_outage, loki_crash, agent_reboot, loki_host_reboot, clock_skew, disk_full,
)

# (num, name, title, hosts, fn) per scenario; name is the module's and the function's name.
SCENARIOS: list = [getattr(m, m.__name__.rsplit(".", 1)[1]).scenario for m in MODULES]
