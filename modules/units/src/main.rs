//! `units`: the state of several systemd units in one task: enabled or not, started or
//! stopped, restarted when the task says so or when a file it names changed after the unit's
//! process started (`restart_when_changed`: the need to restart is read from the host, so a
//! run interrupted between a change and its restart does not lose it), after a daemon-reload
//! when a unit file changed.
//!
//! It replaces `ansible.builtin.systemd_service` tasks and the handlers that restart services:
//! one `systemctl show` for all units, then at most one systemctl call per verb for all units
//! that need it (daemon-reload, disable, enable, stop, start, restart), then one more
//! `systemctl show` to prove the started units are up. A converged host costs one call.

mod plan;
mod show;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use runtime::{Command, Context, Default, Diff, Failure, Outcome, Output, Param, Params};
use serde_json::{json, Value as Json};

use plan::{Plan, Run, Wanted};
use runtime::systemd::show_states;
use show::{format_us_utc, unit_name, Judge, UnitState, PROPERTIES};

/// How `systemctl show` prints timestamps when a task compares them with files:
/// microseconds, in UTC (systemd 248 and later; Debian 12 has 252).
const TIMESTAMPS: &str = "--timestamp=us+utc";

const NAME: &str = "units";

const UNIT_SPEC: &[Param] = &[
    Param::str("name").required(),
    Param::bool("enabled"),
    Param::str("state").choices(&["started", "stopped"]),
    Param::bool("restart").default(Default::Bool(false)),
    Param::list("restart_when_changed"),
];

const SPEC: &[Param] = &[
    Param::entries("units", UNIT_SPEC).required(),
    Param::bool("daemon_reload").default(Default::Bool(false)),
    Param::int("timeout").default(Default::Int(300)).min(1),
];

/// `systemctl show` and `daemon-reload` answer fast; a hung systemd is not worth minutes.
const SHOW_TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    runtime::run(NAME, SPEC, |params, ctx| {
        let task = Task::from_params(params)?;
        runtime::require_root(ctx)?;
        task.converge(ctx, &RealSystemctl)
    })
}

/// Runs systemctl; tests put a fake in its place.
trait Systemctl {
    fn run(&self, args: &[String], changes: bool, timeout: Duration) -> Result<Output, String>;
}

struct RealSystemctl;

impl Systemctl for RealSystemctl {
    fn run(&self, args: &[String], changes: bool, timeout: Duration) -> Result<Output, String> {
        let mut cmd = Command::new("systemctl")
            .args(args.iter().cloned())
            .timeout(timeout);
        if changes {
            cmd = cmd.changes_system();
        }
        cmd.run()
    }
}

#[derive(Debug)]
struct Task {
    wanted: Vec<Wanted>,
    daemon_reload: bool,
    timeout: Duration,
}

/// What a run did so far: for the answer, success or failure.
#[derive(Default)]
struct Done {
    daemon_reloaded: bool,
    plan: Plan,
    calls: usize,
    /// A call that may change the host was made.
    acted: bool,
    /// Per unit (task order): why `restart_when_changed` restarts it, one line per newer path.
    reasons: Vec<Vec<String>>,
    warnings: Vec<String>,
}

impl Task {
    fn from_params(params: &Params) -> Result<Task, Failure> {
        let mut wanted: Vec<Wanted> = Vec::new();
        for (index, entry) in params.entries("units").iter().enumerate() {
            let name = unit_name(index, entry.str("name").unwrap_or_default())?;
            if wanted.iter().any(|w| w.name == name) {
                return Err(Failure::new(format!(
                    "units[{index}]: {name} is listed twice; list each unit once"
                )));
            }
            let run = match entry.str("state") {
                Some("started") => Some(Run::Started),
                Some("stopped") => Some(Run::Stopped),
                _ => None,
            };
            let restart = entry.bool("restart");
            let enabled = entry.opt_bool("enabled");
            let watch = entry.list("restart_when_changed").to_vec();
            for path in &watch {
                if !path.starts_with('/') || path.split('/').any(|part| part == "..") {
                    return Err(Failure::new(format!(
                        "units[{index}]: {name}: restart_when_changed: '{path}' is not an absolute path without '..'; list the unit's files as absolute paths, e.g. /etc/loki/config.yml"
                    )));
                }
            }
            if run.is_none() && enabled.is_none() && !restart && watch.is_empty() {
                return Err(Failure::new(format!(
                    "units[{index}]: {name} has nothing to do: set enabled, state, restart or restart_when_changed"
                )));
            }
            wanted.push(Wanted {
                name,
                enabled,
                run,
                restart,
                watch,
            });
        }
        if wanted.is_empty() {
            return Err(Failure::new(
                "units is empty: list at least one unit, e.g. [{name: grafana-server, enabled: true, state: started}]",
            ));
        }
        Ok(Task {
            wanted,
            daemon_reload: params.bool("daemon_reload"),
            timeout: params.secs("timeout"),
        })
    }

    fn names(&self) -> Vec<String> {
        self.wanted.iter().map(|w| w.name.clone()).collect()
    }

    fn show(&self, sys: &dyn Systemctl, done: &mut Done) -> Result<Vec<UnitState>, Failure> {
        let mut args = vec!["show".to_string(), "-p".into(), PROPERTIES.into()];
        // Only when needed: older systemctl (before 248) does not know the option.
        if self.wanted.iter().any(|w| !w.watch.is_empty()) {
            args.push(TIMESTAMPS.into());
        }
        args.extend(self.names());
        done.calls += 1;
        let out = sys.run(&args, false, SHOW_TIMEOUT)?;
        if !out.success() {
            return Err(Failure::new(format!(
                "systemctl show failed (rc {}): {}; is systemd running on this host?",
                out.rc,
                out.tail(3)
            )));
        }
        Ok(show_states(&self.names(), &out.stdout))
    }

    /// One systemctl call that changes the host; its failure says what it was and what
    /// systemctl said (systemctl's own words: they point at `systemctl status`, never
    /// contain the service's log).
    fn act(
        &self,
        sys: &dyn Systemctl,
        done: &mut Done,
        verb: &str,
        units: &[String],
    ) -> Result<(), String> {
        let mut args = vec![verb.to_string()];
        args.extend(units.iter().cloned());
        let timeout = if verb == "daemon-reload" {
            SHOW_TIMEOUT
        } else {
            self.timeout
        };
        done.calls += 1;
        done.acted = true;
        let out = sys.run(&args, true, timeout)?;
        if out.success() {
            return Ok(());
        }
        Err(format!(
            "systemctl {} failed (rc {}){}: {}",
            args.join(" "),
            out.rc,
            if out.timed_out {
                format!(", timed out after {} s", timeout.as_secs())
            } else {
                String::new()
            },
            out.tail(3)
        ))
    }

    fn converge(&self, ctx: &Context, sys: &dyn Systemctl) -> Result<Outcome, Failure> {
        let mut done = Done::default();
        let mut before = self.show(sys, &mut done)?;

        // Reload whenever systemd says a listed unit's file changed on disk (acting on it
        // otherwise would start or restart it with its old definition), and, with
        // daemon_reload, when a listed unit is not loaded (a unit file just written). Never on
        // every run: that would not be idempotent and costs a full re-read of all unit files.
        let stale: Vec<&String> = self
            .wanted
            .iter()
            .zip(&before)
            .filter(|(_, s)| s.needs_reload || (self.daemon_reload && !s.found()))
            .map(|(w, _)| &w.name)
            .collect();
        let mut unknown_in_check = Vec::new();
        if !stale.is_empty() {
            if ctx.check_mode {
                done.daemon_reloaded = true;
                // Whether a reload would find them cannot be known without doing it.
                unknown_in_check = before
                    .iter()
                    .zip(&self.wanted)
                    .filter(|(s, _)| !s.found())
                    .map(|(_, w)| w.name.clone())
                    .collect();
            } else {
                self.act(sys, &mut done, "daemon-reload", &[])
                    .map_err(|e| self.failure(e, &done, &before, &before))?;
                done.daemon_reloaded = true;
                before = self.show(sys, &mut done)?;
            }
        }

        let (mut wanted, states): (Vec<Wanted>, Vec<UnitState>) = self
            .wanted
            .iter()
            .cloned()
            .zip(before.iter().cloned())
            .filter(|(w, _)| !unknown_in_check.contains(&w.name))
            .unzip();
        let problems = plan::problems(&wanted, &states);
        if !problems.is_empty() {
            let failure = self.failure(problems.join("; "), &done, &before, &before);
            return Err(failure);
        }
        // restart_when_changed: the need to restart, read from the host (check mode too).
        done.reasons = vec![Vec::new(); self.wanted.len()];
        for (want, state) in wanted.iter_mut().zip(&states) {
            let index = self.wanted.iter().position(|w| w.name == want.name);
            let reasons = newer_paths(want, state, &mut done.warnings)
                .map_err(|e| self.failure(e, &done, &before, &before))?;
            if !reasons.is_empty() {
                want.restart = true;
            }
            if let Some(i) = index {
                done.reasons[i] = reasons;
            }
        }
        let restarts: Vec<bool> = self
            .wanted
            .iter()
            .map(|w| {
                wanted
                    .iter()
                    .find(|x| x.name == w.name)
                    .is_some_and(|x| x.restart)
            })
            .collect();
        done.plan = plan::plan(&wanted, &states);
        let predicted: Vec<UnitState> = self
            .wanted
            .iter()
            .zip(&before)
            .map(|(w, s)| done.plan.predict(&w.name, s))
            .collect();

        let mut outcome = if ctx.check_mode {
            let mut outcome = self.outcome(&done, &before, &predicted, true);
            for name in &unknown_in_check {
                outcome.warn(format!(
                    "{name} is not loaded now; check mode cannot tell whether the daemon-reload would find it"
                ));
            }
            for warning in &done.warnings {
                outcome.warn(warning.clone());
            }
            outcome
        } else {
            let plan = done.plan.clone();
            for (verb, units) in plan.calls() {
                if let Err(e) = self.act(sys, &mut done, verb, units) {
                    let after = self.show(sys, &mut done).unwrap_or_else(|_| before.clone());
                    return Err(self.failure(e, &done, &before, &after));
                }
            }
            let after = if done.plan.is_empty() {
                before.clone()
            } else {
                self.show(sys, &mut done)?
            };
            // `systemctl start` of a simple service succeeds before the service had a chance
            // to die: the second look catches one that is already down again.
            let down: Vec<String> = self
                .wanted
                .iter()
                .zip(&after)
                .zip(&restarts)
                .map(|((w, s), restart)| (w, s, *restart))
                .filter(|(w, s, restart)| {
                    (w.run == Some(Run::Started) || (*restart && w.run.is_none())) && !s.started()
                })
                .map(|(w, s, _)| (w, s))
                .map(|(w, s)| format!("{} is {}", w.name, s.down_reason()))
                .collect();
            if !down.is_empty() {
                return Err(self.failure(
                    format!(
                        "{} after systemctl started it; see `systemctl status` and `journalctl -u` for the unit on the host",
                        down.join("; ")
                    ),
                    &done,
                    &before,
                    &after,
                ));
            }
            let mut outcome = self.outcome(&done, &before, &after, false);
            for warning in &done.warnings {
                outcome.warn(warning.clone());
            }
            outcome.with_diff(diff(&self.names(), &before, &after))
        };
        if ctx.check_mode {
            outcome = outcome.with_diff(diff(&self.names(), &before, &predicted));
        }
        Ok(outcome)
    }

    fn fields(
        &self,
        done: &Done,
        before: &[UnitState],
        after: &[UnitState],
    ) -> Vec<(&'static str, Json)> {
        let units: Vec<Json> = self
            .wanted
            .iter()
            .zip(before.iter().zip(after))
            .enumerate()
            .map(|(i, (w, (b, a)))| {
                json!({
                    "name": w.name,
                    "before": b.describe(),
                    "after": a.describe(),
                    "enabled": a.file_state,
                    "active": a.active,
                    "sub": a.sub,
                    "actions": done.plan.actions(&w.name),
                    "changed_since_start": done.reasons.get(i).cloned().unwrap_or_default(),
                })
            })
            .collect();
        vec![
            ("units", Json::from(units)),
            ("daemon_reloaded", json!(done.daemon_reloaded)),
            ("enabled", json!(done.plan.enable)),
            ("disabled", json!(done.plan.disable)),
            ("started", json!(done.plan.start)),
            ("stopped", json!(done.plan.stop)),
            ("restarted", json!(done.plan.restart)),
            ("systemctl_calls", json!(done.calls)),
        ]
    }

    fn outcome(
        &self,
        done: &Done,
        before: &[UnitState],
        after: &[UnitState],
        check: bool,
    ) -> Outcome {
        let changed = done.daemon_reloaded || !done.plan.is_empty();
        let mut parts = Vec::new();
        if done.daemon_reloaded {
            parts.push("reloaded systemd's unit files".to_string());
        }
        for (verb, units) in done.plan.calls() {
            parts.push(format!("{} {}", past(verb), units.join(", ")));
        }
        for (w, reasons) in self.wanted.iter().zip(&done.reasons) {
            if let Some(first) = reasons.first() {
                let more = if reasons.len() > 1 {
                    format!(" (and {} more)", reasons.len() - 1)
                } else {
                    String::new()
                };
                parts.push(format!("{}: {first}{more}", w.name));
            }
        }
        let msg = if !changed {
            format!("{} unit(s) already as wanted", self.wanted.len())
        } else if check {
            format!("would have {}", parts.join("; "))
        } else {
            parts.join("; ")
        };
        let mut outcome = Outcome::new(changed, msg);
        for (key, value) in self.fields(done, before, after) {
            outcome.set(key, value);
        }
        outcome
    }

    fn failure(
        &self,
        msg: String,
        done: &Done,
        before: &[UnitState],
        after: &[UnitState],
    ) -> Failure {
        let mut failure = Failure::new(msg).after_change(done.acted);
        for (key, value) in self.fields(done, before, after) {
            failure = failure.with(key, value);
        }
        failure
    }
}

/// Why `restart_when_changed` restarts a unit: one line per listed path whose ctime (the
/// inode's change time) is later than the start of the unit's main process; empty when none
/// is, or when the unit is not started (a start, if wanted, happens anyway). A path that does
/// not exist is no reason (a warning says so).
///
/// The clocks: both stamps are CLOCK_REALTIME, each recorded at its own event (the kernel sets
/// st_ctime when the inode changes; systemd records ExecMainStartTimestamp when it forks the
/// main process), read here as microseconds in UTC (`--timestamp=us+utc`), so they are compared
/// in one clock domain without a conversion through "now". Not used: the monotonic stamp
/// (ExecMainStartTimestampMonotonic) converted with the current clocks, which is off by any
/// time the host was suspended since (CLOCK_MONOTONIC stops then; a laptop agent) and so would
/// hide a change made before a suspend. What remains: a step of the realtime clock between the
/// start and the change. Forward (a host without an RTC that booted with an old clock, then
/// NTP) costs one extra restart at most; only a backward step larger than the time between the
/// two events could hide a change (timesyncd slews small offsets instead of stepping).
///
/// Why ctime and not mtime: writing a file atomically (rename, as `files` and dpkg do) sets it,
/// and nobody can set it back (`touch -d` sets mtime), so a copied-in old mtime cannot hide a
/// change.
fn newer_paths(
    want: &Wanted,
    state: &UnitState,
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, String> {
    if want.watch.is_empty() || !state.started() || want.run == Some(Run::Stopped) {
        return Ok(Vec::new());
    }
    let Some(started) = state.started_at() else {
        return Err(format!(
            "{}: cannot tell when its process started (ExecMainStartTimestamp={:?}, ActiveEnterTimestamp={:?}), so restart_when_changed cannot compare; does this systemctl know --timestamp=us+utc (systemd 248 or later)?",
            want.name, state.main_started, state.active_entered
        ));
    };
    let mut out = Vec::new();
    for path in &want.watch {
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                warnings.push(format!(
                    "{}: restart_when_changed: {path} does not exist, so it is no reason to restart; fix the path if it should",
                    want.name
                ));
                continue;
            }
            Err(e) => {
                return Err(format!(
                    "{}: restart_when_changed: cannot read the change time of {path}: {e}",
                    want.name
                ))
            }
        };
        let changed_ns = i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec());
        if changed_ns > started * 1000 {
            out.push(format!(
                "{path} changed at {} after its process started at {}",
                format_us_utc(changed_ns.div_euclid(1000)),
                format_us_utc(started)
            ));
        }
    }
    Ok(out)
}

fn past(verb: &str) -> &'static str {
    match verb {
        "disable" => "disabled",
        "enable" => "enabled",
        "stop" => "stopped",
        "start" => "started",
        _ => "restarted",
    }
}

fn diff(names: &[String], before: &[UnitState], after: &[UnitState]) -> Diff {
    let text = |states: &[UnitState]| -> String {
        names
            .iter()
            .zip(states)
            .map(|(n, s)| format!("{n}: {}\n", s.describe()))
            .collect()
    };
    Diff::new(text(before), text(after)).headers("systemd units (before)", "systemd units (after)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::testing::answer_with_diff;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// An in-memory systemd: unit states, the calls made, units whose start fails.
    #[derive(Default)]
    struct Fake {
        units: RefCell<BTreeMap<String, UnitState>>,
        calls: RefCell<Vec<String>>,
        broken: Vec<String>,
    }

    impl Fake {
        fn with(units: &[(&str, &str, &str)]) -> Fake {
            let fake = Fake::default();
            for (name, file, active) in units {
                fake.units.borrow_mut().insert(
                    name.to_string(),
                    UnitState {
                        id: name.to_string(),
                        load: "loaded".into(),
                        active: active.to_string(),
                        sub: if *active == "active" {
                            "running"
                        } else {
                            "dead"
                        }
                        .into(),
                        file_state: file.to_string(),
                        result: "success".into(),
                        ..UnitState::default()
                    },
                );
            }
            fake
        }
        fn calls(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }
    }

    impl Systemctl for Fake {
        fn run(
            &self,
            args: &[String],
            _changes: bool,
            _timeout: Duration,
        ) -> Result<Output, String> {
            self.calls.borrow_mut().push(args.join(" "));
            let mut units = self.units.borrow_mut();
            let ok = |stdout: String| {
                Ok(Output {
                    stdout,
                    ..Output::default()
                })
            };
            match args[0].as_str() {
                "show" => {
                    let blocks: Vec<String> = args[3..]
                        .iter()
                        .filter(|a| !a.starts_with("--"))
                        .map(|u| {
                            let s = units.get(u).cloned().unwrap_or(UnitState {
                                load: "not-found".into(),
                                active: "inactive".into(),
                                sub: "dead".into(),
                                ..UnitState::default()
                            });
                            format!(
                                "Id={u}\nLoadState={}\nActiveState={}\nSubState={}\nUnitFileState={}\nNeedDaemonReload={}\nResult={}\nExecMainStatus={}\nType={}\nRemainAfterExit={}\nExecMainStartTimestamp={}\nActiveEnterTimestamp={}\n",
                                s.load, s.active, s.sub, s.file_state,
                                if s.needs_reload { "yes" } else { "no" }, s.result, s.exit_status,
                                s.unit_type, if s.remain_after_exit { "yes" } else { "no" },
                                s.main_started, s.active_entered
                            )
                        })
                        .collect();
                    ok(blocks.join("\n"))
                }
                "daemon-reload" => {
                    units.values_mut().for_each(|s| s.needs_reload = false);
                    ok(String::new())
                }
                verb => {
                    for u in &args[1..] {
                        let s = units.get_mut(u).expect("fake: acting on an unknown unit");
                        match verb {
                            "enable" => s.file_state = "enabled".into(),
                            "disable" => s.file_state = "disabled".into(),
                            "stop" => (s.active, s.sub) = ("inactive".into(), "dead".into()),
                            _ if self.broken.contains(u) => {
                                (s.active, s.sub) = ("failed".into(), "failed".into());
                                s.result = "exit-code".into();
                                s.exit_status = "1".into();
                                return Ok(Output {
                                    rc: 1,
                                    stderr: format!("Job for {u} failed because the control process exited with error code.\nSee \"systemctl status {u}\" and \"journalctl -xeu {u}\" for details.\n"),
                                    ..Output::default()
                                });
                            }
                            _ => {
                                s.main_started = stamp(now_us());
                                if s.unit_type == "oneshot" && !s.remain_after_exit {
                                    (s.active, s.sub) = ("inactive".into(), "dead".into());
                                } else {
                                    (s.active, s.sub) = ("active".into(), "running".into());
                                }
                            }
                        }
                    }
                    ok(String::new())
                }
            }
        }
    }

    fn now_us() -> i128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i128
    }

    /// A stamp as `systemctl show --timestamp=us+utc` prints it.
    fn stamp(micros: i128) -> String {
        format!("Mon {}", format_us_utc(micros))
    }

    fn ctime_us(path: &std::path::Path) -> i128 {
        let meta = std::fs::metadata(path).unwrap();
        (i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec())) / 1000
    }

    fn task(args: Json) -> Result<Task, String> {
        let (params, _) = runtime::parse(NAME, SPEC, &args)?;
        Task::from_params(&params).map_err(|f| f.msg)
    }

    fn converge(fake: &Fake, args: Json, check: bool) -> Result<Json, Json> {
        let task = task(args).expect("valid args");
        answer_with_diff(NAME, &[], check, |ctx| task.converge(ctx, fake))
    }

    fn grafana(restart: bool) -> Json {
        json!({"units": [{"name": "grafana-server", "enabled": true, "state": "started", "restart": restart}]})
    }

    #[test]
    fn first_deploy_enables_and_starts_with_one_call_each_then_proves_it() {
        let fake = Fake::with(&[("grafana-server.service", "disabled", "inactive")]);
        let json = converge(&fake, grafana(true), false).unwrap();
        assert_eq!(json["changed"], json!(true));
        assert_eq!(
            json["msg"],
            json!("enabled grafana-server.service; started grafana-server.service")
        );
        assert_eq!(
            fake.calls(),
            [
                format!("show -p {PROPERTIES} grafana-server.service"),
                "enable grafana-server.service".into(),
                "start grafana-server.service".into(),
                format!("show -p {PROPERTIES} grafana-server.service"),
            ]
        );
        assert_eq!(json["units"][0]["actions"], json!(["enabled", "started"]));
        assert_eq!(
            json["diff"]["before"],
            json!("grafana-server.service: disabled, inactive (dead)\n")
        );
        assert_eq!(
            json["diff"]["after"],
            json!("grafana-server.service: enabled, active (running)\n")
        );
        assert_eq!(json["systemctl_calls"], json!(4));
    }

    #[test]
    fn a_converged_host_costs_one_show_and_a_config_change_one_restart() {
        let fake = Fake::with(&[("grafana-server.service", "enabled", "active")]);
        let json = converge(&fake, grafana(false), false).unwrap();
        assert_eq!(json["changed"], json!(false));
        assert_eq!(json["msg"], json!("1 unit(s) already as wanted"));
        assert_eq!(fake.calls().len(), 1);
        let json = converge(&fake, grafana(true), false).unwrap();
        assert_eq!(json["changed"], json!(true));
        assert_eq!(json["restarted"], json!(["grafana-server.service"]));
        assert_eq!(fake.calls()[2], "restart grafana-server.service");
    }

    #[test]
    fn several_units_share_each_call() {
        let fake = Fake::with(&[
            ("a.service", "disabled", "inactive"),
            ("b.timer", "disabled", "inactive"),
            ("c.service", "enabled", "active"),
            ("d.service", "enabled", "active"),
        ]);
        let args = json!({"units": [
            {"name": "a", "enabled": true, "state": "started"},
            {"name": "b.timer", "enabled": true, "state": "started"},
            {"name": "c", "restart": true},
            {"name": "d", "enabled": false, "state": "stopped"},
        ]});
        let json = converge(&fake, args, false).unwrap();
        let calls = fake.calls();
        assert_eq!(
            calls[1..calls.len() - 1],
            [
                "disable d.service",
                "enable a.service b.timer",
                "stop d.service",
                "start a.service b.timer",
                "restart c.service",
            ],
            "{json}"
        );
    }

    #[test]
    fn check_mode_says_what_would_change_and_only_reads() {
        let fake = Fake::with(&[("grafana-server.service", "disabled", "inactive")]);
        let json = converge(&fake, grafana(true), true).unwrap();
        assert_eq!(json["changed"], json!(true));
        assert_eq!(
            json["msg"],
            json!("would have enabled grafana-server.service; started grafana-server.service")
        );
        assert_eq!(fake.calls().len(), 1, "{:?}", fake.calls());
        assert!(fake.calls()[0].starts_with("show "));
        assert_eq!(
            json["diff"]["after"],
            json!("grafana-server.service: enabled, active (running)\n")
        );
        assert_eq!(
            fake.units.borrow()["grafana-server.service"].active,
            "inactive"
        );
    }

    #[test]
    fn daemon_reload_runs_only_when_systemd_asks_for_it() {
        let fake = Fake::with(&[("a.service", "enabled", "active")]);
        let args = json!({"daemon_reload": true, "units": [{"name": "a", "state": "started"}]});
        let json = converge(&fake, args.clone(), false).unwrap();
        assert_eq!(
            (json["changed"].clone(), json["daemon_reloaded"].clone()),
            (json!(false), json!(false))
        );
        fake.units
            .borrow_mut()
            .get_mut("a.service")
            .unwrap()
            .needs_reload = true;
        let json = converge(&fake, args.clone(), true).unwrap();
        assert_eq!(
            json["msg"],
            json!("would have reloaded systemd's unit files")
        );
        assert_eq!(fake.calls().len(), 2, "check mode did not reload");
        let json = converge(&fake, args, false).unwrap();
        assert_eq!(json["changed"], json!(true));
        assert_eq!(json["daemon_reloaded"], json!(true));
        assert_eq!(fake.calls()[3], "daemon-reload");
    }

    #[test]
    fn a_missing_unit_fails_naming_it_before_anything_changes() {
        let fake = Fake::with(&[("a.service", "disabled", "inactive")]);
        let args = json!({"units": [{"name": "a", "enabled": true, "state": "started"}, {"name": "nope", "state": "started"}]});
        let json = converge(&fake, args, false).unwrap_err();
        assert_eq!(json["changed"], json!(false));
        let msg = json["msg"].as_str().unwrap();
        assert!(
            msg.starts_with("nope.service does not exist on this host (LoadState=not-found)"),
            "{msg}"
        );
        assert_eq!(fake.calls().len(), 1, "nothing ran after the show");
    }

    #[test]
    fn a_start_that_fails_says_the_units_state_never_its_log() {
        let mut fake = Fake::with(&[("grafana-server.service", "disabled", "inactive")]);
        fake.broken.push("grafana-server.service".into());
        let json = converge(&fake, grafana(false), false).unwrap_err();
        assert_eq!(
            json["changed"],
            json!(true),
            "it was enabled before the start failed"
        );
        let msg = json["msg"].as_str().unwrap();
        assert!(msg.starts_with("systemctl start grafana-server.service failed (rc 1): Job for grafana-server.service failed"), "{msg}");
        assert_eq!(json["units"][0]["after"], json!("enabled, failed (failed)"));
        assert_eq!(json["enabled"], json!(["grafana-server.service"]));
    }

    #[test]
    fn a_service_that_dies_right_after_its_start_is_a_failure() {
        /// A start that "succeeds" (Type=simple) but the service is gone at the second look.
        struct Dying(Fake);
        impl Systemctl for Dying {
            fn run(&self, args: &[String], c: bool, t: Duration) -> Result<Output, String> {
                let out = self.0.run(args, c, t)?;
                if args[0] == "start" {
                    let mut units = self.0.units.borrow_mut();
                    let s = units.get_mut("a.service").unwrap();
                    (s.active, s.sub, s.result, s.exit_status) = (
                        "activating".into(),
                        "auto-restart".into(),
                        "exit-code".into(),
                        "2".into(),
                    );
                }
                Ok(out)
            }
        }
        let fake = Dying(Fake::with(&[("a.service", "enabled", "inactive")]));
        let task = task(json!({"units": [{"name": "a", "state": "started"}]})).unwrap();
        let json = answer_with_diff(NAME, &[], false, |ctx| task.converge(ctx, &fake)).unwrap_err();
        let msg = json["msg"].as_str().unwrap();
        assert!(
            msg.starts_with("a.service is activating (auto-restart), result exit-code, main process exit status 2 after systemctl started it"),
            "{msg}"
        );
        assert_eq!(json["changed"], json!(true));
    }

    #[test]
    fn a_file_changed_after_the_start_restarts_the_unit_on_any_later_run() {
        // A config written (rename, new inode) after loki started, by a run that then died
        // before its restart: the next run, with no registered result, still restarts it.
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        let binary = dir.path().join("loki");
        std::fs::write(&binary, "#!/bin/sh\n").unwrap();
        std::fs::write(&config, "a: 1\n").unwrap();
        let fake = Fake::with(&[("loki.service", "enabled", "active")]);
        fake.units
            .borrow_mut()
            .get_mut("loki.service")
            .unwrap()
            .main_started = stamp(ctime_us(&config) - 10_000_000);
        let args = json!({"units": [{"name": "loki", "enabled": true, "state": "started",
            "restart_when_changed": [config.to_str().unwrap(), binary.to_str().unwrap()]}]});

        let check = converge(&fake, args.clone(), true).unwrap();
        assert_eq!(check["changed"], json!(true), "{check}");
        assert_eq!(check["restarted"], json!(["loki.service"]));
        assert_eq!(fake.calls().len(), 1, "check mode only reads");
        assert_eq!(
            fake.calls()[0],
            format!("show -p {PROPERTIES} --timestamp=us+utc loki.service")
        );

        let json = converge(&fake, args.clone(), false).unwrap();
        assert_eq!(json["changed"], json!(true), "{json}");
        assert_eq!(json["restarted"], json!(["loki.service"]));
        let why = json["units"][0]["changed_since_start"].as_array().unwrap();
        assert_eq!(why.len(), 2, "{json}");
        let first = why[0].as_str().unwrap();
        assert!(
            first.starts_with(&format!("{} changed at ", config.display()))
                && first.contains(" after its process started at "),
            "{first}"
        );
        let msg = json["msg"].as_str().unwrap();
        assert!(
            msg.starts_with("restarted loki.service; loki.service: ")
                && msg.ends_with("(and 1 more)"),
            "{msg}"
        );
        assert_eq!(fake.calls()[2], "restart loki.service");

        // Restarted after the change: converged.
        let json = converge(&fake, args.clone(), false).unwrap();
        assert_eq!(json["changed"], json!(false), "{json}");
        assert_eq!(json["units"][0]["changed_since_start"], json!([]));

        // A stopped unit is not started because of a newer file (state decides that).
        let down = json!({"units": [{"name": "loki", "state": "stopped",
            "restart_when_changed": [config.to_str().unwrap()]}]});
        fake.units
            .borrow_mut()
            .get_mut("loki.service")
            .unwrap()
            .main_started = stamp(ctime_us(&config) - 10_000_000);
        let json = converge(&fake, down, false).unwrap();
        assert_eq!(json["stopped"], json!(["loki.service"]));
        assert_eq!(json["restarted"], json!([]));
    }

    #[test]
    fn a_missing_watched_path_warns_and_an_unreadable_start_fails() {
        let fake = Fake::with(&[("loki.service", "enabled", "active")]);
        fake.units
            .borrow_mut()
            .get_mut("loki.service")
            .unwrap()
            .main_started = stamp(now_us() - 1_000_000);
        let args = json!({"units": [{"name": "loki", "state": "started",
            "restart_when_changed": ["/nonexistent/homeops-test/config.yml"]}]});
        let json = converge(&fake, args.clone(), false).unwrap();
        assert_eq!(json["changed"], json!(false), "{json}");
        let warnings = json["warnings"].to_string();
        assert!(
            warnings.contains("/nonexistent/homeops-test/config.yml does not exist"),
            "{json}"
        );
        // A running unit without a readable start stamp: say so, never guess.
        fake.units
            .borrow_mut()
            .get_mut("loki.service")
            .unwrap()
            .main_started = "Mon 2026-12-07 18:19:55 CET".into();
        let json = converge(&fake, args, false).unwrap_err();
        assert!(
            json["msg"]
                .as_str()
                .unwrap()
                .starts_with("loki.service: cannot tell when its process started"),
            "{json}"
        );
        let e = task(json!({"units": [{"name": "a", "restart_when_changed": ["etc/a.conf"]}]}))
            .unwrap_err();
        assert!(
            e.contains(
                "units[0]: a.service: restart_when_changed: 'etc/a.conf' is not an absolute path"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_stale_unit_file_is_reloaded_before_acting_even_without_daemon_reload() {
        let fake = Fake::with(&[("a.service", "enabled", "active")]);
        fake.units
            .borrow_mut()
            .get_mut("a.service")
            .unwrap()
            .needs_reload = true;
        let args = json!({"units": [{"name": "a", "state": "started", "restart": true}]});
        let json = converge(&fake, args.clone(), false).unwrap();
        assert_eq!(json["daemon_reloaded"], json!(true), "{json}");
        assert_eq!(
            json["msg"],
            json!("reloaded systemd's unit files; restarted a.service")
        );
        let calls = fake.calls();
        assert_eq!(calls[1], "daemon-reload");
        assert_eq!(calls[3], "restart a.service", "the reload came first");
        let args = json!({"units": [{"name": "a", "state": "started"}]});
        let json = converge(&fake, args, false).unwrap();
        assert_eq!(json["changed"], json!(false), "{json}");
    }

    #[test]
    fn a_oneshot_that_ran_counts_as_started_on_every_later_run() {
        let fake = Fake::with(&[("job.service", "enabled", "inactive")]);
        fake.units
            .borrow_mut()
            .get_mut("job.service")
            .unwrap()
            .unit_type = "oneshot".into();
        let args = json!({"units": [{"name": "job", "enabled": true, "state": "started"}]});
        // Never ran: started once; it exits at once (inactive, dead), which is success here.
        let json = converge(&fake, args.clone(), false).unwrap();
        assert_eq!(json["started"], json!(["job.service"]), "{json}");
        assert_eq!(json["units"][0]["after"], json!("enabled, inactive (dead)"));
        for _ in 0..2 {
            let json = converge(&fake, args.clone(), false).unwrap();
            assert_eq!(json["changed"], json!(false), "{json}");
        }
    }

    #[test]
    fn bad_entries_are_refused_naming_the_entry() {
        let e = task(json!({"units": []})).unwrap_err();
        assert!(e.contains("units is empty"), "{e}");
        let e = task(json!({"units": [{"name": "a"}]})).unwrap_err();
        assert!(
            e.contains("units[0]: a.service has nothing to do: set enabled, state, restart or restart_when_changed"),
            "{e}"
        );
        let e = task(json!({"units": [{"name": "a", "restart": true}, {"name": "a.service", "restart": true}]})).unwrap_err();
        assert!(e.contains("units[1]: a.service is listed twice"), "{e}");
        let e = task(json!({"units": [{"name": "a;b", "restart": true}]})).unwrap_err();
        assert!(
            e.contains("units[0]: name 'a;b' is not a systemd unit name"),
            "{e}"
        );
        let e = task(json!({"units": [{"name": "a", "state": "restarted"}]})).unwrap_err();
        assert!(
            e.contains("units[0] (a): value of parameter 'state' must be one of: started, stopped"),
            "{e}"
        );
    }
}
