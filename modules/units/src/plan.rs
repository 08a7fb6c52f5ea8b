//! The decision, as pure functions: from what each unit should be and what `systemctl show`
//! says it is, which units are wrong (not there, masked, broken) and which few systemctl calls
//! bring the rest where they should be.

use crate::show::{Judge, UnitState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    Started,
    Stopped,
}

/// One entry of the task's `units`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The full unit name (`grafana-server.service`).
    pub name: String,
    /// `None`: leave it as it is.
    pub enabled: Option<bool>,
    /// `None`: leave it as it is (unless `restart`).
    pub run: Option<Run>,
    /// Restart it (start it when it is down), e.g. because its configuration changed. A unit
    /// that should be stopped is not restarted.
    pub restart: bool,
    /// `restart_when_changed`: absolute paths; a running unit whose main process started before
    /// one of them last changed (its ctime) is restarted (see `main.rs`, `newer_paths`).
    pub watch: Vec<String>,
}

/// The units each systemctl verb gets, one call per verb.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub disable: Vec<String>,
    pub enable: Vec<String>,
    pub stop: Vec<String>,
    pub start: Vec<String>,
    pub restart: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.calls().is_empty()
    }

    /// The systemctl calls, in order: boot-time state first (so a unit that fails to start is
    /// still enabled as asked, like `systemctl enable` then `start`), then stops (freeing ports
    /// a started unit may need), then starts and restarts.
    pub fn calls(&self) -> Vec<(&'static str, &[String])> {
        [
            ("disable", &self.disable),
            ("enable", &self.enable),
            ("stop", &self.stop),
            ("start", &self.start),
            ("restart", &self.restart),
        ]
        .into_iter()
        .filter(|(_, units)| !units.is_empty())
        .map(|(verb, units)| (verb, units.as_slice()))
        .collect()
    }

    /// What a unit will look like once the plan ran (for check mode and its diff).
    pub fn predict(&self, name: &str, before: &UnitState) -> UnitState {
        let mut after = before.clone();
        let has = |list: &[String]| list.iter().any(|u| u == name);
        if has(&self.disable) {
            after.file_state = "disabled".into();
        }
        if has(&self.enable) {
            after.file_state = "enabled".into();
        }
        if has(&self.stop) {
            after.active = "inactive".into();
            after.sub = "dead".into();
        }
        if has(&self.start) || has(&self.restart) {
            if before.unit_type == "oneshot" && !before.remain_after_exit {
                // It runs its job and goes back to inactive (dead).
                after.active = "inactive".into();
                after.sub = "dead".into();
            } else {
                after.active = "active".into();
                after.sub = "running".into();
            }
        }
        after
    }

    /// What was (or would be) done to one unit, in words: `["enabled", "started"]`.
    pub fn actions(&self, name: &str) -> Vec<&'static str> {
        [
            ("disabled", &self.disable),
            ("enabled", &self.enable),
            ("stopped", &self.stop),
            ("started", &self.start),
            ("restarted", &self.restart),
        ]
        .into_iter()
        .filter(|(_, list)| list.iter().any(|u| u == name))
        .map(|(word, _)| word)
        .collect()
    }
}

/// What makes the wanted state impossible, one message per unit, each naming it and the fix.
pub fn problems(wanted: &[Wanted], states: &[UnitState]) -> Vec<String> {
    let mut out = Vec::new();
    for (want, state) in wanted.iter().zip(states) {
        let name = &want.name;
        let wants_up = want.enabled == Some(true) || want.run == Some(Run::Started) || want.restart;
        if !state.found() {
            out.push(format!(
                "{name} does not exist on this host (LoadState={}): install the package that provides it, or fix the name",
                if state.load.is_empty() { "unknown" } else { &state.load }
            ));
        } else if state.load == "masked" {
            if wants_up {
                out.push(format!(
                    "{name} is masked, so it cannot be enabled or started: unmask it first (systemctl unmask {name}) if that is intended"
                ));
            }
        } else if state.load != "loaded" {
            out.push(format!(
                "{name} cannot be loaded (LoadState={}): its unit file has errors, see `systemctl status {name}` on the host",
                state.load
            ));
        }
    }
    out
}

/// The calls that bring every unit where it should be. Call only when `problems` is empty.
pub fn plan(wanted: &[Wanted], states: &[UnitState]) -> Plan {
    let mut plan = Plan::default();
    for (want, state) in wanted.iter().zip(states) {
        let name = want.name.clone();
        match want.enabled {
            Some(true) if !state.enabled() => plan.enable.push(name.clone()),
            Some(false) if state.disableable() => plan.disable.push(name.clone()),
            _ => {}
        }
        let up = state.running();
        match want.run {
            Some(Run::Stopped) if up => plan.stop.push(name),
            Some(Run::Stopped) => {}
            // Down (and not a oneshot that already did its job) and wanted up: start it.
            Some(Run::Started) if !state.started() => plan.start.push(name),
            Some(Run::Started) | None if want.restart => {
                // Down and restarted (a done oneshot is run again): a start is the restart.
                if up {
                    plan.restart.push(name)
                } else {
                    plan.start.push(name)
                }
            }
            _ => {}
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(file: &str, active: &str, sub: &str) -> UnitState {
        UnitState {
            id: String::new(),
            load: "loaded".into(),
            active: active.into(),
            sub: sub.into(),
            file_state: file.into(),
            ..UnitState::default()
        }
    }

    fn want(name: &str, enabled: Option<bool>, run: Option<Run>, restart: bool) -> Wanted {
        Wanted {
            name: name.into(),
            enabled,
            run,
            restart,
            watch: Vec::new(),
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_fresh_install_is_one_enable_and_one_start_for_all_units() {
        let wanted = [
            want("a.service", Some(true), Some(Run::Started), false),
            want("b.service", Some(true), Some(Run::Started), true),
        ];
        let states = [
            state("disabled", "inactive", "dead"),
            state("disabled", "inactive", "dead"),
        ];
        let plan = plan(&wanted, &states);
        assert_eq!(plan.enable, names(&["a.service", "b.service"]));
        // b is down: its restart is a start, in the same call as a's.
        assert_eq!(plan.start, names(&["a.service", "b.service"]));
        assert!(plan.restart.is_empty());
        let verbs: Vec<&str> = plan.calls().iter().map(|(v, _)| *v).collect();
        assert_eq!(verbs, ["enable", "start"]);
        assert_eq!(plan.actions("b.service"), ["enabled", "started"]);
        assert_eq!(
            plan.predict("a.service", &states[0]).describe(),
            "enabled, active (running)"
        );
    }

    #[test]
    fn a_converged_host_needs_no_call_and_a_config_change_one_restart() {
        let up = [state("enabled", "active", "running")];
        let quiet = [want("a.service", Some(true), Some(Run::Started), false)];
        assert!(plan(&quiet, &up).is_empty());
        let changed = [want("a.service", Some(true), Some(Run::Started), true)];
        let p = plan(&changed, &up);
        assert_eq!(p.restart, names(&["a.service"]));
        assert_eq!(p.calls().len(), 1);
        // restart alone (a handler's job): restart when up, start when down.
        let only = [want("a.service", None, None, true)];
        assert_eq!(plan(&only, &up).restart, names(&["a.service"]));
        let down = [state("enabled", "failed", "failed")];
        assert_eq!(plan(&only, &down).start, names(&["a.service"]));
    }

    #[test]
    fn stop_wins_over_restart_and_disable_only_touches_enabled_units() {
        let up = [state("enabled", "active", "running")];
        let p = plan(
            &[want("a.service", Some(false), Some(Run::Stopped), true)],
            &up,
        );
        assert_eq!(p.stop, names(&["a.service"]));
        assert_eq!(p.disable, names(&["a.service"]));
        assert!(p.restart.is_empty() && p.start.is_empty());
        let verbs: Vec<&str> = p.calls().iter().map(|(v, _)| *v).collect();
        assert_eq!(verbs, ["disable", "stop"]);
        let stat = [state("static", "inactive", "dead")];
        let p = plan(
            &[want("a.service", Some(false), Some(Run::Stopped), false)],
            &stat,
        );
        assert!(p.is_empty(), "a static unit cannot be disabled: {p:?}");
        let p = plan(&[want("a.service", Some(true), None, false)], &stat);
        assert!(p.is_empty(), "a static unit counts as enabled: {p:?}");
        // A service that died and waits for its automatic restart is down: start it.
        let flapping = [state("enabled", "activating", "auto-restart")];
        let p = plan(
            &[want("a.service", None, Some(Run::Started), false)],
            &flapping,
        );
        assert_eq!(p.start, names(&["a.service"]));
    }

    #[test]
    fn a_oneshot_that_ran_is_started_and_is_run_again_only_on_restart() {
        let mut done = state("enabled", "inactive", "dead");
        done.unit_type = "oneshot".into();
        done.result = "success".into();
        done.main_started = "Mon 2026-12-07 18:19:55.876253 UTC".into();
        let started = [want("job.service", Some(true), Some(Run::Started), false)];
        // It ran and exited as a oneshot does: nothing to do, on every later run too.
        assert!(plan(&started, std::slice::from_ref(&done)).is_empty());
        let again = [want("job.service", Some(true), Some(Run::Started), true)];
        let p = plan(&again, std::slice::from_ref(&done));
        assert_eq!(p.start, names(&["job.service"]));
        assert_eq!(
            p.predict("job.service", &done).describe(),
            "enabled, inactive (dead)"
        );
        // Never ran, or failed: start it.
        let mut never = done.clone();
        never.main_started = String::new();
        assert_eq!(plan(&started, &[never]).start, names(&["job.service"]));
        let mut failed = done;
        (failed.active, failed.result) = ("failed".into(), "exit-code".into());
        assert_eq!(plan(&started, &[failed]).start, names(&["job.service"]));
    }

    #[test]
    fn missing_masked_and_broken_units_are_named() {
        let wanted = [
            want("gone.service", Some(true), Some(Run::Started), false),
            want("masked.service", None, Some(Run::Started), false),
            want("masked-down.service", None, Some(Run::Stopped), false),
            want("broken.service", None, Some(Run::Started), false),
            want("fine.service", None, Some(Run::Started), false),
        ];
        let mut gone = state("", "inactive", "dead");
        gone.load = "not-found".into();
        let mut masked = state("masked", "inactive", "dead");
        masked.load = "masked".into();
        let mut broken = state("enabled", "inactive", "dead");
        broken.load = "bad-setting".into();
        let states = [
            gone,
            masked.clone(),
            masked,
            broken,
            state("enabled", "active", "running"),
        ];
        let found = problems(&wanted, &states);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("gone.service does not exist on this host (LoadState=not-found)")
        );
        assert!(found[1].starts_with("masked.service is masked"));
        assert!(found[2].contains("broken.service cannot be loaded (LoadState=bad-setting)"));
    }
}
