//! What `systemctl show -p ...` prints, read into one struct per unit: the one reader for
//! every module that asks systemd about units (`units`, `apt_lockdown`, `host_facts`); each
//! module keeps its own judgments on top of [`UnitState`].

/// The properties that say where a unit stands: enough for `apt_lockdown` and `host_facts`.
/// `UnitFileState` is what `systemctl is-enabled` says.
pub const STATE_PROPERTIES: &str = "Id,LoadState,ActiveState,SubState,UnitFileState";

/// [`STATE_PROPERTIES`] and why a unit is down or stale: for `units`, which starts, restarts
/// and reloads. Keep it in step with the fields [`parse_show`] reads.
/// `Type`, `RemainAfterExit` and the start stamps say whether a oneshot already ran and when
/// the running process started (`units`' `restart_when_changed`).
pub const ALL_PROPERTIES: &str = "Id,LoadState,ActiveState,SubState,UnitFileState,NeedDaemonReload,Result,ExecMainStatus,Type,RemainAfterExit,ExecMainStartTimestamp,ActiveEnterTimestamp";

/// One unit, as `systemctl show -p Id,LoadState,ActiveState,SubState,UnitFileState,...` prints
/// it; properties not asked for stay empty.
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
    /// The service type (`simple`, `notify`, `oneshot`, ...; empty for other unit types).
    pub unit_type: String,
    /// `RemainAfterExit=yes`: a oneshot that ran stays active (exited).
    pub remain_after_exit: bool,
    /// When the main process last started, as systemctl printed it (empty: never since
    /// systemd loaded the unit). Its format follows `systemctl --timestamp=`.
    pub main_started: String,
    /// When the unit last entered the active state, as systemctl printed it.
    pub active_entered: String,
}

impl UnitState {
    /// systemd knows the unit. A unit without a block (empty `LoadState`) counts as not found.
    pub fn found(&self) -> bool {
        !(self.load.is_empty() || self.load == "not-found")
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
            "Type" => unit.unit_type = value,
            "RemainAfterExit" => unit.remain_after_exit = value == "yes",
            "ExecMainStartTimestamp" => unit.main_started = value,
            "ActiveEnterTimestamp" => unit.active_entered = value,
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

/// The states of `units`, in their order, from the output of one
/// `systemctl show -p PROPERTIES -- UNITS` call.
pub fn show_states(units: &[String], text: &str) -> Vec<UnitState> {
    states_for(units, &parse_show(text))
}

/// Why `name` cannot go to systemctl as a unit name, if it cannot: the checks every module
/// makes before a name from a task reaches a command line (each adds its own, such as a type
/// suffix). The reason reads after "is not a unit name: ".
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("it is empty".into())
    } else if name.starts_with('-') {
        Some("it starts with '-', so systemctl would read it as an option".into())
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || ":_.@-\\".contains(*c)))
            .map(|bad| format!("it contains '{bad}'"))
    }
}

/// The type suffix of a unit name (`service` of `loki.service`): the text after the last dot,
/// when there is text on both sides of it.
pub fn type_suffix(name: &str) -> Option<&str> {
    name.rsplit_once('.')
        .filter(|(stem, suffix)| !stem.is_empty() && !suffix.is_empty())
        .map(|(_, suffix)| suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "Id=grafana-server.service\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\nNeedDaemonReload=no\nResult=success\nExecMainStatus=0\n\nId=nope.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\nNeedDaemonReload=yes\n";

    #[test]
    fn show_output_is_one_block_per_unit() {
        let blocks = parse_show(TWO);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].id, "grafana-server.service");
        assert_eq!(
            (
                blocks[0].load.as_str(),
                blocks[0].active.as_str(),
                blocks[0].sub.as_str()
            ),
            ("loaded", "active", "running")
        );
        assert_eq!(blocks[0].file_state, "enabled");
        assert_eq!(
            (blocks[0].result.as_str(), blocks[0].exit_status.as_str()),
            ("success", "0")
        );
        assert!(!blocks[0].needs_reload && blocks[1].needs_reload);
        assert_eq!(blocks[1].file_state, "");
        let units = vec!["grafana-server.service".to_string(), "nope.service".into()];
        assert_eq!(states_for(&units, &blocks), blocks);
    }

    #[test]
    fn missing_blocks_are_matched_by_id_or_left_empty() {
        let blocks =
            parse_show("Id=b.service\nLoadState=loaded\nActiveState=active\nSubState=running\n");
        let units = vec!["a.service".to_string(), "b.service".into()];
        let states = states_for(&units, &blocks);
        assert_eq!(states[0], UnitState::default());
        assert!(!states[0].found());
        assert_eq!(states[1].load, "loaded");
        assert!(states[1].found());
        assert!(parse_show("").is_empty());
    }

    #[test]
    fn an_alias_keeps_the_block_systemd_printed_for_it() {
        // sshd.service is an alias of ssh.service: the block's Id differs from the name given,
        // and one block for one unit is paired by position.
        let states = show_states(
            &["sshd.service".to_string()],
            "Id=ssh.service\nLoadState=loaded\nActiveState=active\nSubState=running\n",
        );
        assert_eq!(states[0].id, "ssh.service");
        assert!(states[0].found());
    }

    #[test]
    fn blank_runs_noise_and_unknown_properties_are_skipped() {
        let text = "\n\nId=a.timer\nno equals sign\nFragmentPath=/x\nSubState=waiting\n\n\n\nId=b.service\nLoadState=not-found\nUnitFileState=masked-runtime\n";
        let blocks = parse_show(text);
        assert_eq!(blocks.len(), 2);
        assert_eq!(
            (blocks[0].id.as_str(), blocks[0].sub.as_str()),
            ("a.timer", "waiting")
        );
        assert_eq!(blocks[1].file_state, "masked-runtime");
        assert!(!blocks[1].found());
        // Every property asked for is one the parser reads.
        for key in ALL_PROPERTIES.split(',') {
            let mut one = parse_show(&format!("{key}=yes\n"));
            assert_ne!(one.remove(0), UnitState::default(), "{key} is not read");
        }
        assert!(ALL_PROPERTIES.starts_with(STATE_PROPERTIES));
    }

    #[test]
    fn unit_names_that_cannot_reach_systemctl_are_named_with_the_reason() {
        for good in [
            "loki.service",
            "getty@tty1.service",
            "a\\x2db.mount",
            "dev-sda1.swap",
            "x",
        ] {
            assert_eq!(name_problem(good), None, "{good}");
        }
        for (bad, why) in [
            ("", "it is empty"),
            (
                "--now",
                "it starts with '-', so systemctl would read it as an option",
            ),
            ("a b.service", "it contains ' '"),
            ("x.service;reboot", "it contains ';'"),
            ("a/b.service", "it contains '/'"),
        ] {
            assert_eq!(name_problem(bad).as_deref(), Some(why), "{bad:?}");
        }
        assert_eq!(type_suffix("loki.service"), Some("service"));
        assert_eq!(type_suffix("foo.bar.timer"), Some("timer"));
        for none in ["loki", "loki.", ".service", ""] {
            assert_eq!(type_suffix(none), None, "{none:?}");
        }
    }
}
