//! What `systemctl show -p ...` prints, read into one struct per unit: for the modules that
//! drive systemd (`units`; `apt_lockdown` has its own copy until it moves here).

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
        assert_eq!(states[1].load, "loaded");
    }
}
