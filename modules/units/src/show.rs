//! What `systemctl show` says about units, and unit names from a task.

/// The properties asked for, in the one `systemctl show` call per look.
pub const PROPERTIES: &str =
    "Id,LoadState,ActiveState,SubState,UnitFileState,NeedDaemonReload,Result,ExecMainStatus";

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

/// One unit, as `systemctl show -p PROPERTIES` prints it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitState {
    pub id: String,
    /// `loaded`, `not-found`, `masked`, `bad-setting`, `error`.
    pub load: String,
    /// `active`, `inactive`, `activating`, `deactivating`, `reloading`, `failed`.
    pub active: String,
    /// `running`, `exited`, `dead`, `failed`, `auto-restart`, ...
    pub sub: String,
    /// `enabled`, `disabled`, `static`, `masked`, `enabled-runtime`, ... (empty when unknown).
    pub file_state: String,
    /// The unit file changed on disk since systemd loaded it.
    pub needs_reload: bool,
    /// How the last run ended (`success`, `exit-code`, `signal`, `timeout`, ...).
    pub result: String,
    /// The main process's exit status (services only).
    pub exit_status: String,
}

impl UnitState {
    pub fn found(&self) -> bool {
        !(self.load.is_empty() || self.load == "not-found")
    }

    /// Up, or on its way up. `auto-restart` is a service that died and waits to be started
    /// again: down, whatever ActiveState (`activating`) says.
    pub fn running(&self) -> bool {
        matches!(self.active.as_str(), "active" | "activating" | "reloading")
            && self.sub != "auto-restart"
    }

    /// Started at boot in some way `systemctl enable` would not change: enabled, or a unit
    /// that cannot be enabled at all (`static`, `generated`, ...).
    pub fn enabled(&self) -> bool {
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
    pub fn disableable(&self) -> bool {
        matches!(self.file_state.as_str(), "enabled" | "enabled-runtime")
    }

    /// One line for diffs and messages: `enabled, active (running)`.
    pub fn describe(&self) -> String {
        let file = if self.file_state.is_empty() {
            "unit file state unknown"
        } else {
            &self.file_state
        };
        format!("{file}, {} ({})", self.active, self.sub)
    }

    /// Why a unit that should run does not, from systemd's own state words (never log lines:
    /// our services' logs are not ours to copy into Ansible's output).
    pub fn down_reason(&self) -> String {
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

/// Parses `systemctl show` output for several units: one block of `Key=value` lines per unit,
/// blocks separated by an empty line, in the order the units were given.
pub fn parse_show(text: &str) -> Vec<UnitState> {
    let mut out = Vec::new();
    let mut current: Option<UnitState> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if let Some(unit) = current.take() {
                out.push(unit);
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let unit = current.get_or_insert_with(UnitState::default);
        let value = value.trim().to_string();
        match key.trim() {
            "Id" => unit.id = value,
            "LoadState" => unit.load = value,
            "ActiveState" => unit.active = value,
            "SubState" => unit.sub = value,
            "UnitFileState" => unit.file_state = value,
            "NeedDaemonReload" => unit.needs_reload = value == "yes",
            "Result" => unit.result = value,
            "ExecMainStatus" => unit.exit_status = value,
            _ => {}
        }
    }
    if let Some(unit) = current {
        out.push(unit);
    }
    out
}

/// Pairs each unit with its block: by position when systemctl printed one block per unit (it
/// does), else by `Id`. A unit with no block counts as not found.
pub fn states_for(units: &[String], blocks: &[UnitState]) -> Vec<UnitState> {
    units
        .iter()
        .enumerate()
        .map(|(i, unit)| {
            if blocks.len() == units.len() {
                blocks[i].clone()
            } else {
                blocks
                    .iter()
                    .find(|b| &b.id == unit)
                    .cloned()
                    .unwrap_or_default()
            }
        })
        .collect()
}

/// A unit name from a task, checked and completed: `grafana-server` is
/// `grafana-server.service`, as systemctl reads it. The error names the entry and the fix.
pub fn unit_name(index: usize, name: &str) -> Result<String, String> {
    let why = if name.is_empty() {
        Some("it is empty".to_string())
    } else if name.starts_with('-') {
        Some("it starts with '-', so systemctl would read it as an option".to_string())
    } else if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":_.@-\\".contains(*c)))
    {
        Some(format!("it contains '{bad}'"))
    } else if name.len() > 255 {
        Some("it is longer than 255 characters".to_string())
    } else {
        None
    };
    if let Some(why) = why {
        return Err(format!(
            "units[{index}]: name '{name}' is not a systemd unit name: {why}; write names such as 'grafana-server' or 'alloy.service'"
        ));
    }
    let typed = name
        .rsplit_once('.')
        .is_some_and(|(stem, suffix)| !stem.is_empty() && TYPES.contains(&suffix));
    Ok(if typed {
        name.to_string()
    } else {
        format!("{name}.service")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "Id=grafana-server.service\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\nNeedDaemonReload=no\nResult=success\nExecMainStatus=0\n\nId=nope.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\nNeedDaemonReload=no\nResult=success\n";

    #[test]
    fn show_output_is_one_block_per_unit() {
        let blocks = parse_show(TWO);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].id, "grafana-server.service");
        assert!(blocks[0].found() && blocks[0].running() && blocks[0].enabled());
        assert_eq!(blocks[0].describe(), "enabled, active (running)");
        assert!(!blocks[1].found());
        assert_eq!(blocks[1].file_state, "");
        assert_eq!(
            blocks[1].describe(),
            "unit file state unknown, inactive (dead)"
        );
        let units = vec!["grafana-server.service".to_string(), "nope.service".into()];
        assert_eq!(states_for(&units, &blocks), blocks);
    }

    #[test]
    fn missing_blocks_are_matched_by_id_or_count_as_not_found() {
        let blocks =
            parse_show("Id=b.service\nLoadState=loaded\nActiveState=active\nSubState=running\n");
        let units = vec!["a.service".to_string(), "b.service".into()];
        let states = states_for(&units, &blocks);
        assert!(!states[0].found());
        assert!(states[1].found());
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
        let mut needs = parse_show("Id=a.service\nNeedDaemonReload=yes\n");
        assert!(needs.remove(0).needs_reload);
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
