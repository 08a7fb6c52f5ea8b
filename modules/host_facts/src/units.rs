//! Unit states from ONE `systemctl show` call for all the units a task names.

use runtime::systemd::UnitState;
use serde_json::{json, Value as Json};

/// The properties asked for.
pub const PROPERTIES: &str = runtime::systemd::STATE_PROPERTIES;

/// The answer for one unit. `state` is what service_facts calls it, so a check written
/// against service_facts (`state == 'running'`) reads the same: `running` when the unit's
/// process runs (SubState running); `not-found` when systemd has no such unit; `failed` when
/// it failed; `stopped` otherwise. The raw systemd states come with it.
pub fn state_json(unit: &UnitState) -> Json {
    let state = if unit.sub == "running" {
        "running"
    } else if !unit.found() {
        "not-found"
    } else if unit.active == "failed" {
        "failed"
    } else {
        "stopped"
    };
    json!({
        "name": unit.id,
        "state": state,
        "load_state": unit.load,
        "active_state": unit.active,
        "sub_state": unit.sub,
        "unit_file_state": unit.file_state,
    })
}

/// Each requested unit's answer, in order, from one `systemctl show -p PROPERTIES -- UNITS`
/// output (read by `runtime::systemd`); a unit without a block is `not-found`.
pub fn states_json(units: &[String], show: &str) -> Vec<Json> {
    runtime::systemd::show_states(units, show)
        .iter()
        .map(state_json)
        .collect()
}

/// Why a unit name from a task cannot be given to systemctl, if it cannot.
pub fn check_name(unit: &str) -> Result<(), String> {
    if let Some(why) = runtime::systemd::name_problem(unit) {
        return Err(why);
    }
    match runtime::systemd::type_suffix(unit) {
        Some(_) => Ok(()),
        None => Err("it has no unit type suffix; give the full name, e.g. loki.service".into()),
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
    fn one_answer_per_unit_in_order() {
        let names = units(&[
            "loki.service",
            "nosuch.service",
            "alloy.service",
            "apt-daily.timer",
        ]);
        let answers = states_json(&names, SHOW);
        let states: Vec<&str> = answers
            .iter()
            .map(|a| a["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["running", "not-found", "failed", "stopped"]);
        assert_eq!(
            answers[0],
            json!({"name": "loki.service", "state": "running", "load_state": "loaded",
                   "active_state": "active", "sub_state": "running", "unit_file_state": "enabled"})
        );
    }

    #[test]
    fn an_alias_keeps_the_name_systemd_gave_and_a_missing_block_is_not_found() {
        // sshd.service is an alias of ssh.service: the block's Id differs from the name given.
        let one = "Id=ssh.service\nLoadState=loaded\nActiveState=active\nSubState=running\n";
        assert_eq!(
            states_json(&units(&["sshd.service"]), one)[0]["name"],
            "ssh.service"
        );
        // Fewer blocks than units: matched by Id, the rest is not found, with an empty name.
        let got = states_json(&units(&["ssh.service", "other.service"]), one);
        assert_eq!(got[0]["state"], "running");
        assert_eq!(
            got[1],
            json!({"name": "", "state": "not-found", "load_state": "", "active_state": "",
                   "sub_state": "", "unit_file_state": ""})
        );
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
