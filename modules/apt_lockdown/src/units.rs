//! The decisions, as pure functions: what `systemctl show` says about each unit, what a lock
//! must mask and stop, what the host record holds, and what a release puts back.

use serde_json::{json, Value as Json};

pub use runtime::systemd::UnitState;

/// The properties a lock reads, in the one `systemctl show` call per look.
pub const PROPERTIES: &str = runtime::systemd::STATE_PROPERTIES;

/// The judgments a lock and a release make from a unit's state.
pub trait Lockable {
    /// Not on this host at all.
    fn absent(&self) -> bool;
    fn masked(&self) -> bool;
    /// Doing something that stopping would end.
    fn running(&self) -> bool;
}

impl Lockable for UnitState {
    fn absent(&self) -> bool {
        !self.found()
    }

    fn masked(&self) -> bool {
        self.load == "masked" || self.file_state.starts_with("masked")
    }

    /// A oneshot that finished but "remains after exit" (dkms.service: `active`/`exited`) has
    /// no process: there is nothing to stop, and starting it again on release would rerun it.
    fn running(&self) -> bool {
        matches!(
            self.active.as_str(),
            "active" | "activating" | "reloading" | "deactivating"
        ) && self.sub != "exited"
    }
}

/// Each requested unit with its state, from one `systemctl show -p PROPERTIES -- UNITS`
/// output (read by `runtime::systemd`). A unit with no block counts as absent.
pub fn states_for(units: &[String], show: &str) -> Vec<(String, UnitState)> {
    units
        .iter()
        .cloned()
        .zip(runtime::systemd::show_states(units, show))
        .collect()
}

/// The kinds of unit that start others (timers, sockets, paths): masked and stopped first.
pub fn is_trigger(unit: &str) -> bool {
    unit.ends_with(".timer") || unit.ends_with(".socket") || unit.ends_with(".path")
}

/// The apt jobs a lock waits for instead of stopping: `apt-daily.service` (update) and
/// `apt-daily-upgrade.service` (unattended-upgrade) while they run.
pub fn is_apt_job(unit: &str) -> bool {
    unit.starts_with("apt-daily") && unit.ends_with(".service")
}

/// Checks a unit name from a task.
pub fn check_unit(unit: &str) -> Result<(), String> {
    let why = runtime::systemd::name_problem(unit).or_else(|| {
        runtime::systemd::type_suffix(unit)
            .is_none()
            .then(|| "it has no unit type suffix".to_string())
    });
    match why {
        Some(why) => Err(format!(
            "units: '{unit}' is not a systemd unit name: {why}; write full names such as 'apt-daily.timer' or 'packagekit.service'"
        )),
        None => Ok(()),
    }
}

/// What a lock did (or must do) to one unit, as kept in the host record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub unit: String,
    /// We runtime-masked it (it was not masked before): release unmasks it.
    pub masked: bool,
    /// We stopped it while it ran: release starts it again.
    pub stopped: bool,
    /// Its state before the first lock, for people reading the record.
    pub active_state: String,
    pub unit_file_state: String,
}

/// The host record (`state_file`): what the *first* lock changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Seconds since the epoch when the first lock wrote it.
    pub created: u64,
    pub entries: Vec<Entry>,
}

impl Record {
    pub fn entry(&self, unit: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.unit == unit)
    }

    fn entry_mut(&mut self, unit: &str) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.unit == unit)
    }

    pub fn to_json(&self) -> Json {
        json!({
            "version": 1,
            "module": "apt_lockdown",
            "created": self.created,
            "units": self.entries.iter().map(|e| json!({
                "unit": e.unit,
                "masked": e.masked,
                "stopped": e.stopped,
                "active_state": e.active_state,
                "unit_file_state": e.unit_file_state,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn from_json(json: &Json) -> Result<Record, String> {
        if json.get("version").and_then(Json::as_u64) != Some(1) {
            return Err("it is not a version 1 apt_lockdown record".into());
        }
        let units = json
            .get("units")
            .and_then(Json::as_array)
            .ok_or("it has no 'units' list")?;
        let mut entries = Vec::new();
        for u in units {
            let text = |key: &str| u.get(key).and_then(Json::as_str).unwrap_or("").to_string();
            let flag = |key: &str| u.get(key).and_then(Json::as_bool).unwrap_or(false);
            let unit = text("unit");
            check_unit(&unit).map_err(|e| format!("it holds a bad unit ({e})"))?;
            entries.push(Entry {
                unit,
                masked: flag("masked"),
                stopped: flag("stopped"),
                active_state: text("active_state"),
                unit_file_state: text("unit_file_state"),
            });
        }
        Ok(Record {
            created: json.get("created").and_then(Json::as_u64).unwrap_or(0),
            entries,
        })
    }
}

/// What a lock does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockPlan {
    /// Not on this host.
    pub absent: Vec<String>,
    /// Masked by someone else: left alone, and never unmasked by a release.
    pub already_masked: Vec<String>,
    /// To runtime-mask, so nothing starts them (in this order: triggers first).
    pub mask: Vec<String>,
    /// Running triggers (timers, sockets, paths) to stop before waiting.
    pub stop_triggers: Vec<String>,
    /// Running apt jobs to wait for, never to stop.
    pub wait_for: Vec<String>,
    /// Running services to stop after the wait (if they still run then).
    pub stop_services: Vec<String>,
    /// The record to keep: the existing one with only new actions added.
    pub record: Record,
}

impl LockPlan {
    pub fn changes(&self) -> bool {
        !self.mask.is_empty() || !self.stop_triggers.is_empty() || !self.stop_services.is_empty()
    }
}

/// Plans a lock. With an existing record (a second lock), its entries are kept as they are:
/// the units are masked and stopped *because of* the first lock, and reading their state now
/// would lose what release must put back.
pub fn plan_lock(states: &[(String, UnitState)], existing: Option<&Record>, now: u64) -> LockPlan {
    let mut plan = LockPlan {
        record: existing.cloned().unwrap_or(Record {
            created: now,
            entries: Vec::new(),
        }),
        ..LockPlan::default()
    };
    let ours = |unit: &str| {
        existing
            .and_then(|r| r.entry(unit))
            .is_some_and(|e| e.masked)
    };
    // Absent units in the order the task gave them.
    plan.absent = states
        .iter()
        .filter(|(_, s)| s.absent())
        .map(|(u, _)| u.clone())
        .collect();
    let mut ordered: Vec<&(String, UnitState)> = states.iter().collect();
    // Triggers first, so no timer fires a job while we work through the services.
    ordered.sort_by_key(|(unit, _)| !is_trigger(unit));
    for (unit, state) in ordered {
        if state.absent() {
            continue;
        }
        let mask = if state.masked() {
            if !ours(unit) {
                plan.already_masked.push(unit.clone());
            }
            false
        } else {
            plan.mask.push(unit.clone());
            true
        };
        let running = state.running();
        if running {
            if is_trigger(unit) {
                plan.stop_triggers.push(unit.clone());
            } else if is_apt_job(unit) {
                plan.wait_for.push(unit.clone());
            } else {
                plan.stop_services.push(unit.clone());
            }
        }
        // Apt jobs are waited for, never stopped; a service that finishes during the wait is
        // taken off again by `mark_finished`.
        let stopped = running && !is_apt_job(unit);
        match plan.record.entry_mut(unit) {
            Some(entry) => {
                entry.masked |= mask;
                entry.stopped |= stopped;
            }
            None if mask || stopped => plan.record.entries.push(Entry {
                unit: unit.clone(),
                masked: mask,
                stopped,
                active_state: state.active.clone(),
                unit_file_state: state.file_state.clone(),
            }),
            None => {}
        }
    }
    plan
}

/// After the wait: services that finished on their own were not stopped by us, so a release
/// must not start them. `existing` is the record before this lock (its flags stay).
pub fn mark_finished(record: &mut Record, finished: &[String], existing: Option<&Record>) {
    for unit in finished {
        let was_stopped = existing
            .and_then(|r| r.entry(unit))
            .is_some_and(|e| e.stopped);
        if let Some(entry) = record.entry_mut(unit) {
            entry.stopped = was_stopped;
        }
    }
}

/// What a release does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleasePlan {
    pub unmask: Vec<String>,
    /// In this order: services and sockets first, timers last (so no timer fires a job into a
    /// half-restored system).
    pub start: Vec<String>,
}

/// Plans a release from the record and the units' current states. A unit masked in the record
/// but no longer masked now (someone unmasked it) needs no unmask; a stopped unit that runs
/// again needs no start.
pub fn plan_release(record: &Record, states: &[(String, UnitState)]) -> ReleasePlan {
    let state_of = |unit: &str| states.iter().find(|(u, _)| u == unit).map(|(_, s)| s);
    let mut plan = ReleasePlan::default();
    for entry in &record.entries {
        let state = state_of(&entry.unit);
        if state.is_some_and(UnitState::absent) {
            continue;
        }
        if entry.masked && state.is_none_or(UnitState::masked) {
            plan.unmask.push(entry.unit.clone());
        }
        if entry.stopped && !state.is_some_and(UnitState::running) {
            plan.start.push(entry.unit.clone());
        }
    }
    plan.start.sort_by_key(|u| u.ends_with(".timer"));
    plan
}

/// A release's starts as the `systemctl start` calls that run them: one for the services (and
/// sockets, paths), then one for the timers, so no timer fires a job before the services are
/// back. Empty batches are left out; the order within a batch is the plan's.
pub fn start_batches(start: &[String]) -> Vec<Vec<String>> {
    let (timers, others): (Vec<String>, Vec<String>) =
        start.iter().cloned().partition(|u| u.ends_with(".timer"));
    [others, timers]
        .into_iter()
        .filter(|batch| !batch.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: &str, load: &str, active: &str, sub: &str, file: &str) -> (String, UnitState) {
        (
            id.to_string(),
            UnitState {
                id: id.into(),
                load: load.into(),
                active: active.into(),
                sub: sub.into(),
                file_state: file.into(),
                ..UnitState::default()
            },
        )
    }

    /// A typical Debian host while apt-daily-upgrade runs.
    fn host() -> Vec<(String, UnitState)> {
        vec![
            state("apt-daily.timer", "loaded", "active", "waiting", "enabled"),
            state("apt-daily.service", "loaded", "inactive", "dead", "static"),
            state(
                "apt-daily-upgrade.timer",
                "loaded",
                "active",
                "running",
                "enabled",
            ),
            state(
                "apt-daily-upgrade.service",
                "loaded",
                "activating",
                "start",
                "static",
            ),
            state(
                "unattended-upgrades.service",
                "loaded",
                "active",
                "running",
                "enabled",
            ),
            state("packagekit.service", "loaded", "inactive", "dead", "static"),
            state("snapd.service", "not-found", "inactive", "dead", ""),
            state("snapd.socket", "not-found", "inactive", "dead", ""),
            state("dkms.service", "loaded", "active", "exited", "enabled"),
            state(
                "packagekit-offline-update.service",
                "masked",
                "inactive",
                "dead",
                "masked",
            ),
        ]
    }

    #[test]
    fn show_output_is_judged_per_unit() {
        let text = "Id=apt-daily.timer\nLoadState=loaded\nActiveState=active\nSubState=waiting\nUnitFileState=enabled\n\nId=snapd.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\n\nId=x.service\nLoadState=masked\nActiveState=inactive\nSubState=dead\nUnitFileState=masked-runtime\n";
        let names: Vec<String> = ["apt-daily.timer", "snapd.service", "x.service"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let paired = states_for(&names, text);
        assert_eq!(paired[0].0, "apt-daily.timer");
        assert!(paired[0].1.running() && !paired[0].1.absent());
        assert!(paired[1].1.absent());
        assert!(paired[2].1.masked() && !paired[2].1.absent());
        // A unit without a block is absent.
        let paired = states_for(&names, &text[..text.find("\n\nId=x").unwrap()]);
        assert_eq!(paired[2].0, "x.service");
        assert!(paired[2].1.absent());
    }

    #[test]
    fn running_means_a_process_not_a_remembered_success() {
        let (_, dkms) = state("dkms.service", "loaded", "active", "exited", "enabled");
        assert!(!dkms.running());
        let (_, job) = state(
            "apt-daily.service",
            "loaded",
            "activating",
            "start",
            "static",
        );
        assert!(job.running());
        let (_, timer) = state("apt-daily.timer", "loaded", "active", "waiting", "enabled");
        assert!(timer.running());
    }

    #[test]
    fn a_lock_masks_triggers_first_waits_for_apt_jobs_and_stops_the_rest() {
        let plan = plan_lock(&host(), None, 1000);
        assert_eq!(plan.absent, ["snapd.service", "snapd.socket"]);
        assert_eq!(plan.already_masked, ["packagekit-offline-update.service"]);
        assert_eq!(
            plan.mask,
            [
                "apt-daily.timer",
                "apt-daily-upgrade.timer",
                "apt-daily.service",
                "apt-daily-upgrade.service",
                "unattended-upgrades.service",
                "packagekit.service",
                "dkms.service"
            ]
        );
        assert_eq!(
            plan.stop_triggers,
            ["apt-daily.timer", "apt-daily-upgrade.timer"]
        );
        assert_eq!(plan.wait_for, ["apt-daily-upgrade.service"]);
        assert_eq!(plan.stop_services, ["unattended-upgrades.service"]);
        assert!(plan.changes());
        // Recorded: every unit we mask or stop; the masked-by-someone-else one is not.
        let r = &plan.record;
        assert_eq!(r.created, 1000);
        assert!(r.entry("packagekit-offline-update.service").is_none());
        let timer = r.entry("apt-daily.timer").unwrap();
        assert!(timer.masked && timer.stopped);
        assert_eq!(timer.unit_file_state, "enabled");
        let dkms = r.entry("dkms.service").unwrap();
        assert!(dkms.masked && !dkms.stopped);
    }

    #[test]
    fn a_second_lock_keeps_the_first_record() {
        let first = plan_lock(&host(), None, 1000);
        // After the first lock: everything ours is masked (runtime) and stopped.
        let locked: Vec<(String, UnitState)> = host()
            .into_iter()
            .map(|(u, s)| {
                if first.mask.contains(&u) {
                    state(&u, "masked", "inactive", "dead", "masked-runtime")
                } else {
                    (u, s)
                }
            })
            .collect();
        let second = plan_lock(&locked, Some(&first.record), 2000);
        assert!(!second.changes(), "{second:?}");
        assert_eq!(second.record, first.record);
        assert_eq!(second.record.created, 1000);
        // Our own masks are not "someone else's".
        assert_eq!(second.already_masked, ["packagekit-offline-update.service"]);

        // A unit started again behind our back is stopped again, and the flag added.
        let mut again = locked.clone();
        again[4] = state(
            "unattended-upgrades.service",
            "masked",
            "active",
            "running",
            "masked-runtime",
        );
        let third = plan_lock(&again, Some(&first.record), 3000);
        assert_eq!(third.stop_services, ["unattended-upgrades.service"]);
        assert_eq!(third.record.created, 1000);
    }

    #[test]
    fn services_that_finish_during_the_wait_are_not_restarted() {
        let plan = plan_lock(&host(), None, 1000);
        // Apt jobs are never recorded as stopped: we wait for them.
        let job = plan.record.entry("apt-daily-upgrade.service").unwrap();
        assert!(job.masked && !job.stopped);
        let mut record = plan.record.clone();
        assert!(record.entry("unattended-upgrades.service").unwrap().stopped);
        mark_finished(
            &mut record,
            &["unattended-upgrades.service".to_string()],
            None,
        );
        assert!(!record.entry("unattended-upgrades.service").unwrap().stopped);
        assert!(record.entry("unattended-upgrades.service").unwrap().masked);
        // A flag from an earlier lock stays.
        let first = plan.record.clone();
        let mut again = plan.record.clone();
        mark_finished(
            &mut again,
            &["unattended-upgrades.service".to_string()],
            Some(&first),
        );
        assert!(again.entry("unattended-upgrades.service").unwrap().stopped);
    }

    #[test]
    fn a_release_unmasks_what_we_masked_and_starts_what_we_stopped() {
        let record = plan_lock(&host(), None, 1000).record;
        let now: Vec<(String, UnitState)> = host()
            .into_iter()
            .map(|(u, s)| {
                if record.entry(&u).is_some_and(|e| e.masked) {
                    state(&u, "masked", "inactive", "dead", "masked-runtime")
                } else {
                    (u, s)
                }
            })
            .collect();
        let plan = plan_release(&record, &now);
        assert_eq!(plan.unmask.len(), 7);
        assert!(!plan
            .unmask
            .contains(&"packagekit-offline-update.service".to_string()));
        // Services first, timers last; not the finished job, not dkms (it never ran).
        assert_eq!(
            plan.start,
            [
                "unattended-upgrades.service",
                "apt-daily.timer",
                "apt-daily-upgrade.timer"
            ]
        );

        // Already restored by hand: nothing left to do.
        let plan = plan_release(&record, &host());
        assert!(plan.unmask.is_empty());
        assert_eq!(plan.start, Vec::<String>::new());
    }

    #[test]
    fn starts_run_in_two_batches_services_then_timers() {
        let units = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            start_batches(&units(&[
                "unattended-upgrades.service",
                "snapd.socket",
                "apt-daily.timer",
                "apt-daily-upgrade.timer"
            ])),
            [
                units(&["unattended-upgrades.service", "snapd.socket"]),
                units(&["apt-daily.timer", "apt-daily-upgrade.timer"])
            ]
        );
        // Only timers, or nothing: no empty call.
        assert_eq!(
            start_batches(&units(&["apt-daily.timer"])),
            [units(&["apt-daily.timer"])]
        );
        assert!(start_batches(&[]).is_empty());
    }

    #[test]
    fn records_round_trip_through_json() {
        let record = plan_lock(&host(), None, 1234).record;
        let back = Record::from_json(&record.to_json()).unwrap();
        assert_eq!(back, record);
        assert!(Record::from_json(&json!({"version": 2})).is_err());
        assert!(Record::from_json(&json!({"version": 1})).is_err());
        let e = Record::from_json(&json!({"version": 1, "units": [{"unit": "-x"}]})).unwrap_err();
        assert!(e.contains("bad unit"), "{e}");
    }

    #[test]
    fn unit_names_are_checked() {
        for good in [
            "apt-daily.timer",
            "getty@tty1.service",
            "snapd.socket",
            "a\\x2db.mount",
        ] {
            assert!(check_unit(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("-H", "option"),
            ("apt daily.timer", "' '"),
            ("apt-daily", "suffix"),
            ("x;y.service", "';'"),
        ] {
            let e = check_unit(bad).unwrap_err();
            assert!(e.contains(why) && e.starts_with("units: "), "{bad}: {e}");
        }
    }
}
