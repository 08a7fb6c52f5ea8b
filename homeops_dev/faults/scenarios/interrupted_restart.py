"""Fault scenario 17, `interrupted_restart`: a run interrupted between a config change and its
restart (registered in homeops_dev/faults/registry.py)."""
from __future__ import annotations

import calendar
import time

from homeops_dev import labdriver
from homeops_dev.faults.helpers import DEPLOY, deploy, INV, LOG_DIR, Scenario, scenario, sh


# Loki's main-process start (systemd's realtime stamp, microseconds, UTC) and the config's ctime
# (nanoseconds), and which log level the file holds: one fixed script, no value from data.
LOKI_START_VS_CONFIG = ("systemctl show loki -p ExecMainStartTimestamp --timestamp=us+utc --value; "
                        "stat -c %.9Z /etc/loki/config.yml; "
                        "sed -n 's/^ *log_level: *//p' /etc/loki/config.yml")


def loki_start_vs_config(host: str) -> tuple[float, float, str]:
    """(process start, config ctime, log level), both times as Unix seconds."""
    started, ctime, level = (sh(host, LOKI_START_VS_CONFIG).splitlines() + ["", "", ""])[:3]
    when = time.strptime(started.strip().rsplit(".", 1)[0], "%a %Y-%m-%d %H:%M:%S")
    frac = float("0." + started.strip().rsplit(".", 1)[1].split()[0]) if "." in started else 0.0
    return calendar.timegm(when) + frac, float(ctime), level.strip()


@scenario("17", "a run interrupted between a config change and its restart", 1)
def interrupted_restart(s: Scenario):
    """Loki deployed; a deploy with another loki_log_level is SIGKILLed (its whole process group)
    right after it wrote the Loki configuration, before the units task could restart Loki, so
    the new config is on disk and the old process runs. The next deploy, with the same
    variables, knows nothing of the killed run's results (the config is already as wanted): the
    units task finds the config newer than Loki's process and restarts it. A further deploy
    changes nothing."""
    first = deploy("deploy-first")
    s.check(first.rc == 0 and first.clean(), "the first deploy succeeds", f"rc={first.rc}")
    started, ctime, level = loki_start_vs_config("obs-01")
    s.check(started > ctime and level == "info", "Loki runs, started after its config was written, log_level info",
            f"start {started:.6f}, config ctime {ctime:.6f}, level {level}")
    seen = {"config_task": False, "killed": False, "units_task": False}

    def kill_after_config(line: str) -> bool:
        if line.startswith("TASK [") and "Write the Loki configuration]" in line:
            seen["config_task"] = True
        elif line.startswith("TASK [") and "Enable and start Loki" in line:
            seen["units_task"] = True
        elif seen["config_task"] and line.startswith("changed: [obs-01]"):
            seen["killed"] = True
            return True   # the runner SIGKILLs the deploy's whole process group here
        return False
    other = ("-e", "loki_log_level=debug")
    labdriver.Runner(LOG_DIR, INV).play("deploy-killed", DEPLOY, *other, on_line=kill_after_config)
    s.check(seen["killed"] and not seen["units_task"],
            "the deploy was SIGKILLed right after it changed the Loki config, before the units task", str(seen))
    started, ctime, level = loki_start_vs_config("obs-01")
    s.check(level == "debug" and started < ctime,
            "left behind: the new config (log_level debug) on disk, the old Loki process running",
            f"start {started:.6f} < config ctime {ctime:.6f}, level {level}")
    s.measure("left behind", f"config {ctime - started:.1f} s newer than Loki's process")
    again = deploy("redeploy", *other)
    s.check(again.rc == 0 and again.clean(), "the next deploy (same variables) succeeds", f"rc={again.rc}")
    restarted, ctime2, level = loki_start_vs_config("obs-01")
    s.check(ctime2 == ctime, "the next deploy did not rewrite the config (it was already as wanted)",
            f"ctime {ctime:.6f} -> {ctime2:.6f}")
    s.check(restarted > ctime2, "Loki's running process started after the config changed: the restart happened",
            f"start {restarted:.6f}, config ctime {ctime2:.6f}")
    s.check(again.changed().get("obs-01", 0) > 0, "the next deploy reports the restart as a change",
            str(again.changed()))
    third = deploy("idempotence", *other)
    s.check(third.rc == 0 and not third.changed(), "a further run changes nothing", str(third.changed()))
    s.measure("redeploy", f"{again.secs:.0f} s, changed {again.changed()}")
