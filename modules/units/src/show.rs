//! What this module makes of `systemctl show` (read by `runtime::systemd`), and unit names
//! from a task.

pub use runtime::systemd::UnitState;

/// The properties asked for, in the one `systemctl show` call per look: the states and why a
/// unit is down or stale.
pub const PROPERTIES: &str = runtime::systemd::ALL_PROPERTIES;

/// The unit types systemd knows; a name without one of these suffixes is a `.service`, as
/// systemctl itself reads it.
const TYPES: &[&str] = &[
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

/// The judgments `units` makes from a unit's state.
pub trait Judge {
    fn running(&self) -> bool;
    fn oneshot_done(&self) -> bool;
    fn started(&self) -> bool;
    fn started_at(&self) -> Option<i128>;
    fn enabled(&self) -> bool;
    fn disableable(&self) -> bool;
    fn describe(&self) -> String;
    fn down_reason(&self) -> String;
}

impl Judge for UnitState {
    /// Up, or on its way up. `auto-restart` is a service that died and waits to be started
    /// again: down, whatever ActiveState (`activating`) says.
    fn running(&self) -> bool {
        matches!(self.active.as_str(), "active" | "activating" | "reloading")
            && self.sub != "auto-restart"
    }

    /// A oneshot service without `RemainAfterExit` that ran and exited successfully: it went
    /// back to inactive (dead) by design, and `state: started` has nothing left to do (starting
    /// it again on every run would run its job on every run and never report `changed=false`).
    /// One that never ran since systemd loaded it (no start stamp), or failed, is not done.
    fn oneshot_done(&self) -> bool {
        self.unit_type == "oneshot"
            && !self.remain_after_exit
            && self.active == "inactive"
            && self.result == "success"
            && !self.main_started.is_empty()
            && self.main_started != "n/a"
    }

    /// What `state: started` asks for: running, or a oneshot that is done (see above).
    fn started(&self) -> bool {
        self.running() || self.oneshot_done()
    }

    /// When the unit's current (or, for a done oneshot, last) main process started, in
    /// microseconds since the Unix epoch: `ExecMainStartTimestamp`, or for a unit without a
    /// main process (a timer, a socket) `ActiveEnterTimestamp`. Needs the stamps printed with
    /// `systemctl show --timestamp=us+utc`; `None` when there is none or it cannot be read.
    fn started_at(&self) -> Option<i128> {
        let stamp = if self.main_started.is_empty() || self.main_started == "n/a" {
            &self.active_entered
        } else {
            &self.main_started
        };
        parse_us_utc(stamp)
    }

    /// Started at boot in some way `systemctl enable` would not change: enabled, or a unit
    /// that cannot be enabled at all (`static`, `generated`, ...).
    fn enabled(&self) -> bool {
        matches!(
            self.file_state.as_str(),
            "enabled"
                | "enabled-runtime"
                | "static"
                | "alias"
                | "indirect"
                | "generated"
                | "transient"
        )
    }

    /// `systemctl disable` would change something.
    fn disableable(&self) -> bool {
        matches!(self.file_state.as_str(), "enabled" | "enabled-runtime")
    }

    /// One line for diffs and messages: `enabled, active (running)`.
    fn describe(&self) -> String {
        let file = if self.file_state.is_empty() {
            "unit file state unknown"
        } else {
            &self.file_state
        };
        format!("{file}, {} ({})", self.active, self.sub)
    }

    /// Why a unit that should run does not, from systemd's own state words (never log lines:
    /// our services' logs are not ours to copy into Ansible's output).
    fn down_reason(&self) -> String {
        let mut out = format!("{} ({})", self.active, self.sub);
        if !self.result.is_empty() && self.result != "success" {
            out.push_str(&format!(", result {}", self.result));
        }
        if !self.exit_status.is_empty() && self.exit_status != "0" {
            out.push_str(&format!(", main process exit status {}", self.exit_status));
        }
        out
    }
}

/// A timestamp as `systemctl show --timestamp=us+utc` prints it (`Mon 2026-12-07 18:19:55.876253
/// UTC`), in microseconds since the Unix epoch. The weekday is not needed; anything but UTC is
/// refused (`None`), so a stamp is never read in the wrong zone.
pub fn parse_us_utc(text: &str) -> Option<i128> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, date, time, "UTC"] = parts.as_slice() else {
        return None;
    };
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let mut ymd = date.split('-');
    let (y, m, d) = (num(ymd.next()?)?, num(ymd.next()?)?, num(ymd.next()?)?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = hms.split(':');
    let (hh, mm, ss) = (num(hms.next()?)?, num(hms.next()?)?, num(hms.next()?)?);
    if ymd.next().is_some()
        || hms.next().is_some()
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || hh > 23
        || mm > 59
        || ss > 60
        || frac.len() > 6
    {
        return None;
    }
    let micros = num(frac)? * 10i64.pow(6 - frac.len() as u32);
    let days = days_from_civil(y, m, d);
    Some(
        (i128::from(days) * 86_400 + i128::from(hh * 3600 + mm * 60 + ss)) * 1_000_000
            + i128::from(micros),
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Microseconds since the epoch as a UTC date for messages: `2026-12-07 18:19:55.876253 UTC`.
pub fn format_us_utc(micros: i128) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400) as i64;
    let rem = secs.rem_euclid(86_400) as i64;
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{frac:06} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A unit name from a task, checked and completed: `grafana-server` is
/// `grafana-server.service`, as systemctl reads it. The error names the entry and the fix.
pub fn unit_name(index: usize, name: &str) -> Result<String, String> {
    let why = runtime::systemd::name_problem(name)
        .or_else(|| (name.len() > 255).then(|| "it is longer than 255 characters".to_string()));
    if let Some(why) = why {
        return Err(format!(
            "units[{index}]: name '{name}' is not a systemd unit name: {why}; write names such as 'grafana-server' or 'alloy.service'"
        ));
    }
    let typed = runtime::systemd::type_suffix(name).is_some_and(|suffix| TYPES.contains(&suffix));
    Ok(if typed {
        name.to_string()
    } else {
        format!("{name}.service")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::systemd::show_states;

    const TWO: &str = "Id=grafana-server.service\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\nNeedDaemonReload=no\nResult=success\nExecMainStatus=0\n\nId=nope.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\nNeedDaemonReload=no\nResult=success\n";

    #[test]
    fn judgments_on_what_systemctl_show_printed() {
        let names = vec!["grafana-server.service".to_string(), "nope.service".into()];
        let states = show_states(&names, TWO);
        assert!(states[0].found() && states[0].running() && states[0].enabled());
        assert_eq!(states[0].describe(), "enabled, active (running)");
        assert!(!states[1].found() && !states[1].running() && !states[1].enabled());
        assert_eq!(
            states[1].describe(),
            "unit file state unknown, inactive (dead)"
        );
    }

    #[test]
    fn running_enabled_and_reasons() {
        let s = |active: &str, sub: &str, file: &str| UnitState {
            load: "loaded".into(),
            active: active.into(),
            sub: sub.into(),
            file_state: file.into(),
            ..UnitState::default()
        };
        assert!(s("activating", "start", "").running());
        assert!(!s("activating", "auto-restart", "").running());
        assert!(!s("failed", "failed", "").running());
        assert!(!s("inactive", "dead", "").running());
        assert!(s("x", "y", "static").enabled() && !s("x", "y", "static").disableable());
        assert!(!s("x", "y", "disabled").enabled());
        assert!(s("x", "y", "enabled-runtime").disableable());
        let mut failed = s("failed", "failed", "enabled");
        failed.result = "exit-code".into();
        failed.exit_status = "1".into();
        assert_eq!(
            failed.down_reason(),
            "failed (failed), result exit-code, main process exit status 1"
        );
    }

    #[test]
    fn timestamps_are_read_as_systemctl_prints_them_in_utc() {
        // date -u -d '2026-12-07 18:19:55' +%s = 1796667595
        assert_eq!(
            parse_us_utc("Mon 2026-12-07 18:19:55.876253 UTC"),
            Some(1_796_667_595_876_253)
        );
        assert_eq!(
            parse_us_utc("Mon 2026-12-07 18:19:55 UTC"),
            Some(1_796_667_595_000_000)
        );
        assert_eq!(parse_us_utc("Thu 1970-01-01 00:00:00.000001 UTC"), Some(1));
        assert_eq!(
            parse_us_utc("Tue 2024-02-29 12:00:00.5 UTC"),
            Some(1_709_208_000_500_000)
        );
        for bad in [
            "",
            "n/a",
            "Mon 2026-12-07 18:19:55.876253 CET",
            "Mon 2026-12-07 18:19:55.876253",
            "Mon 2026-13-07 18:19:55 UTC",
            "Mon 2026-12-07 18:19 UTC",
            "Mon 2026-12-07 18:19:55.1234567 UTC",
            "Mon 2026-12-x7 18:19:55 UTC",
        ] {
            assert_eq!(parse_us_utc(bad), None, "{bad:?}");
        }
        for micros in [
            0,
            1_796_667_595_876_253,
            1_709_208_000_500_000,
            951_782_400_000_000,
        ] {
            let text = format!("Xxx {}", format_us_utc(micros));
            assert_eq!(parse_us_utc(&text), Some(micros), "{text}");
        }
        assert_eq!(
            format_us_utc(1_796_667_595_876_253),
            "2026-12-07 18:19:55.876253 UTC"
        );
    }

    #[test]
    fn a_oneshot_that_ran_is_started_and_its_start_is_when_it_last_ran() {
        let oneshot = UnitState {
            load: "loaded".into(),
            active: "inactive".into(),
            sub: "dead".into(),
            result: "success".into(),
            unit_type: "oneshot".into(),
            main_started: "Mon 2026-12-07 18:19:55.876253 UTC".into(),
            ..UnitState::default()
        };
        assert!(oneshot.started() && !oneshot.running());
        assert_eq!(oneshot.started_at(), Some(1_796_667_595_876_253));
        let never = UnitState {
            main_started: String::new(),
            ..oneshot.clone()
        };
        assert!(!never.started(), "never ran: start it");
        let failed = UnitState {
            active: "failed".into(),
            result: "exit-code".into(),
            ..oneshot.clone()
        };
        assert!(!failed.started());
        let kept = UnitState {
            remain_after_exit: true,
            ..oneshot.clone()
        };
        assert!(
            !kept.started(),
            "RemainAfterExit: only active (exited) is started"
        );
        let simple = UnitState {
            unit_type: "simple".into(),
            ..oneshot
        };
        assert!(!simple.started(), "a simple service that exited is down");
    }

    #[test]
    fn unit_names_are_checked_and_completed_like_systemctl_does() {
        assert_eq!(
            unit_name(0, "grafana-server").unwrap(),
            "grafana-server.service"
        );
        assert_eq!(unit_name(0, "alloy.service").unwrap(), "alloy.service");
        assert_eq!(unit_name(0, "apt-daily.timer").unwrap(), "apt-daily.timer");
        assert_eq!(unit_name(0, "getty@tty1").unwrap(), "getty@tty1.service");
        // A dot that is not a type suffix is part of the name.
        assert_eq!(unit_name(0, "foo.bar").unwrap(), "foo.bar.service");
        for (bad, why) in [
            ("", "it is empty"),
            ("--now", "starts with '-'"),
            ("a b", "contains ' '"),
            ("x;reboot", "contains ';'"),
        ] {
            let e = unit_name(3, bad).unwrap_err();
            assert!(e.starts_with("units[3]: name") && e.contains(why), "{e}");
        }
    }
}
