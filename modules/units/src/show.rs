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
