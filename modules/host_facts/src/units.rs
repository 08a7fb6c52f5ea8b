//! Unit states from ONE `systemctl show` call for all the units a task names.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

/// The properties asked for; `UnitFileState` is what `systemctl is-enabled` says.
pub const PROPERTIES: &str = "Id,LoadState,ActiveState,SubState,UnitFileState";

/// `systemctl show` output for several units: one block of `Key=value` lines per unit,
/// blocks separated by an empty line, in the order the units were given.
pub fn parse_blocks(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut blocks = Vec::new();
    let mut block = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !block.is_empty() {
                blocks.push(std::mem::take(&mut block));
            }
        } else if let Some((key, value)) = line.split_once('=') {
            block.insert(key.trim().to_string(), value.trim().to_string());
        }
    }
    if !block.is_empty() {
        blocks.push(block);
    }
    blocks
}

/// The answer for one unit. `state` is what service_facts calls it, so a check written
/// against service_facts (`state == 'running'`) reads the same: `running` when the unit's
/// process runs (SubState running); `not-found` when systemd has no such unit; `failed` when
/// it failed; `stopped` otherwise. The raw systemd states come with it.
pub fn state_json(block: &BTreeMap<String, String>) -> Json {
    let get = |k: &str| block.get(k).map(String::as_str).unwrap_or("");
    let (load, active, sub) = (get("LoadState"), get("ActiveState"), get("SubState"));
    let state = if sub == "running" {
        "running"
    } else if load.is_empty() || load == "not-found" {
        "not-found"
    } else if active == "failed" {
        "failed"
    } else {
        "stopped"
    };
    json!({
        "name": get("Id"),
        "state": state,
        "load_state": load,
        "active_state": active,
        "sub_state": sub,
        "unit_file_state": get("UnitFileState"),
    })
}

/// Pairs each requested unit with its block: by position when systemctl printed one block per
/// unit (it does), else by `Id`. `None` for a unit without a block.
pub fn blocks_for<'a>(
    units: &[String],
    blocks: &'a [BTreeMap<String, String>],
) -> Vec<Option<&'a BTreeMap<String, String>>> {
    units
        .iter()
        .enumerate()
        .map(|(i, unit)| {
            if blocks.len() == units.len() {
                blocks.get(i)
            } else {
                blocks
                    .iter()
                    .find(|b| b.get("Id").map(String::as_str) == Some(unit.as_str()))
            }
        })
        .collect()
}

/// Why a unit name from a task cannot be given to systemctl, if it cannot.
pub fn check_name(unit: &str) -> Result<(), String> {
    if unit.is_empty() {
        return Err("the unit name is empty".into());
    }
    if unit.starts_with('-') {
        return Err("it starts with '-', so systemctl would read it as an option".into());
    }
    if let Some(c) = unit
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":_.@-\\".contains(*c)))
    {
        return Err(format!("'{c}' is not allowed in a unit name"));
    }
    match unit.rsplit_once('.') {
        Some((stem, suffix)) if !stem.is_empty() && !suffix.is_empty() => Ok(()),
        _ => Err("it has no unit type suffix; give the full name, e.g. loki.service".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "\
Id=loki.service
LoadState=loaded
ActiveState=active
SubState=running
UnitFileState=enabled

Id=nosuch.service
LoadState=not-found
ActiveState=inactive
SubState=dead
UnitFileState=

Id=alloy.service
LoadState=loaded
ActiveState=failed
SubState=failed
UnitFileState=disabled

Id=apt-daily.timer
LoadState=loaded
ActiveState=active
SubState=waiting
UnitFileState=enabled
";

    fn units(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_block_per_unit_in_order() {
        let blocks = parse_blocks(SHOW);
        let names = units(&[
            "loki.service",
            "nosuch.service",
            "alloy.service",
            "apt-daily.timer",
        ]);
        let states: Vec<String> = blocks_for(&names, &blocks)
            .into_iter()
            .map(|b| {
                state_json(b.unwrap())["state"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(states, ["running", "not-found", "failed", "stopped"]);
        assert_eq!(
            state_json(&blocks[0]),
            json!({"name": "loki.service", "state": "running", "load_state": "loaded",
                   "active_state": "active", "sub_state": "running", "unit_file_state": "enabled"})
        );
    }

    #[test]
    fn an_alias_keeps_the_name_asked_for_and_a_missing_block_is_none() {
        // sshd.service is an alias of ssh.service: the block's Id differs from the name given.
        let blocks = parse_blocks(
            "Id=ssh.service\nLoadState=loaded\nActiveState=active\nSubState=running\n",
        );
        let got = blocks_for(&units(&["sshd.service"]), &blocks);
        assert_eq!(got[0].unwrap()["Id"], "ssh.service");
        // Fewer blocks than units: matched by Id, the rest has none.
        let got = blocks_for(&units(&["ssh.service", "other.service"]), &blocks);
        assert!(got[0].is_some() && got[1].is_none());
        let empty = BTreeMap::new();
        assert_eq!(state_json(&empty)["state"], "not-found");
    }

    #[test]
    fn unit_names_are_checked() {
        for good in [
            "loki.service",
            "getty@tty1.service",
            "apt-daily.timer",
            "dev-sda1.swap",
            "a\\x2db.mount",
        ] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("--all", "option"),
            ("loki", "suffix"),
            ("loki.", "suffix"),
            ("loki service", "' '"),
            ("x.service;reboot", "';'"),
        ] {
            let err = check_name(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
