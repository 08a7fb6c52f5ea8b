//! `apt_lockdown`: quiet the background apt users for the length of a deploy, and put them
//! back exactly as they were.
//!
//! `state: locked`
//! 1. Reads the units' states (`systemctl show`). Units not on the host are reported under
//!    `absent`; so is everything when systemd is not running.
//! 2. Writes the host record (`state_file`) *before* changing anything, so a crash half-way
//!    still leaves what a release needs. A record from an earlier lock is kept, never
//!    overwritten: by now those units are masked and stopped *because of* that lock.
//! 3. Runtime-masks the units (timers first), so nothing new starts; a reboot clears the masks.
//! 4. Stops running timers and sockets.
//! 5. Waits (up to `wait_timeout`) for apt work already running to finish: an active
//!    apt-daily*.service, an unattended-upgrade process, a holder of the dpkg frontend lock.
//!    Stopping those mid-dpkg would leave an interrupted dpkg, which is worse than waiting.
//! 6. Stops the services that still run.
//!
//! `state: released` unmasks what the record says we masked, starts what we stopped (timers
//! last), and removes the record. Without a record it does nothing.
//!
//! Each step is one `systemctl` process for all its units (one `show`, one `mask --runtime`,
//! one `stop`, ...), not one per unit: every (un)mask is a daemon-reload, and one per unit made
//! the bracket cost ~2 s per host on every deploy (issue 15). A batch that fails is tried again
//! unit by unit, so errors and the reporting fields name units as before.

mod units;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use apt::locks::{command_of, FRONTEND_LOCK};
use apt::{Host, System};
use runtime::{Command, Context, Default, Diff, Failure, Outcome, Param, Params};
use serde_json::{json, Value as Json};

use units::{
    check_unit, is_apt_job, mark_finished, plan_lock, plan_release, start_batches, states_for,
    Lockable, Record, UnitState, PROPERTIES,
};

const NAME: &str = "apt_lockdown";

/// The background apt users on Debian and Ubuntu.
const DEFAULT_UNITS: &[&str] = &[
    "apt-daily.timer",
    "apt-daily.service",
    "apt-daily-upgrade.timer",
    "apt-daily-upgrade.service",
    "unattended-upgrades.service",
    "packagekit.service",
    "packagekit-offline-update.service",
    "snapd.service",
    "snapd.socket",
    "snapd.refresh.timer",
    "dkms.service",
];

pub const DEFAULT_STATE_FILE: &str = "/var/lib/homeops/apt-lockdown.json";

const SPEC: &[Param] = &[
    Param::str("state")
        .default(Default::Str("locked"))
        .choices(&["locked", "released"]),
    Param::list("units").default(Default::List(DEFAULT_UNITS)),
    Param::int("wait_timeout").default(Default::Int(600)).min(0),
    Param::str("state_file").default(Default::Str(DEFAULT_STATE_FILE)),
];

/// systemd is running (what `sd_booted()` checks).
const SYSTEMD_MARKER: &str = "/run/systemd/system";
/// How often the wait looks again.
const POLL: Duration = Duration::from_secs(1);
const SHOW_TIMEOUT: Duration = Duration::from_secs(60);
/// Stopping unattended-upgrades.service can take a while: its stop hook waits for a
/// running upgrade.
const STOP_TIMEOUT: Duration = Duration::from_secs(300);

fn main() {
    runtime::run(NAME, SPEC, |params, ctx| {
        let lockdown = Lockdown::from_params(params, &System, &unattended_upgrade_processes)?;
        runtime::require_root(ctx)?;
        if params.str("state") == Some("released") {
            lockdown.release(ctx)
        } else {
            lockdown.lock(ctx)
        }
    })
}

/// Running `unattended-upgrade` processes (PID, command line), from /proc. Its process name is
/// the script's, cut to 15 characters ("unattended-upgr"), the same as the
/// unattended-upgrade-shutdown helper's, so the command line decides.
fn unattended_upgrade_processes() -> Vec<(u32, String)> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let is_upgrade = cmdline
            .split(|b| *b == 0)
            .take(3)
            .any(|arg| arg.rsplit(|b| *b == b'/').next() == Some(b"unattended-upgrade".as_slice()));
        if is_upgrade {
            out.push((pid, command_of(pid)));
        }
    }
    out.sort();
    out
}

/// What a run did, for the answer (success or failure).
#[derive(Default)]
struct Progress {
    stopped: Vec<String>,
    masked: Vec<String>,
    absent: Vec<String>,
    already_masked: Vec<String>,
    unmasked: Vec<String>,
    started: Vec<String>,
    waited: Duration,
    waited_for: Vec<String>,
    warnings: Vec<String>,
}

impl Progress {
    fn fields(&self, state_file: &Path) -> Vec<(&'static str, Json)> {
        let mut restored = self.unmasked.clone();
        restored.extend(
            self.started
                .iter()
                .filter(|u| !self.unmasked.contains(u))
                .cloned(),
        );
        vec![
            ("stopped", json!(self.stopped)),
            ("masked", json!(self.masked)),
            ("absent", json!(self.absent)),
            ("already_masked", json!(self.already_masked)),
            ("restored", json!(restored)),
            ("unmasked", json!(self.unmasked)),
            ("started", json!(self.started)),
            (
                "waited_seconds",
                json!((self.waited.as_secs_f64() * 10.0).round() / 10.0),
            ),
            ("waited_for", json!(self.waited_for)),
            ("state_file", json!(state_file.to_string_lossy())),
        ]
    }

    fn outcome(&self, outcome: Outcome, state_file: &Path) -> Outcome {
        let mut outcome = outcome;
        for (key, value) in self.fields(state_file) {
            outcome.set(key, value);
        }
        outcome.warnings(self.warnings.iter().cloned());
        outcome
    }

    fn failure(&self, msg: String, state_file: &Path) -> Failure {
        let changed = !(self.stopped.is_empty()
            && self.masked.is_empty()
            && self.unmasked.is_empty()
            && self.started.is_empty());
        let mut failure = Failure::new(msg).after_change(changed);
        for (key, value) in self.fields(state_file) {
            failure = failure.with(key, value);
        }
        for warning in &self.warnings {
            failure = failure.warn(warning.clone());
        }
        failure
    }
}

/// What `busy` saw.
#[derive(Default)]
struct Busy {
    /// Apt work running now, described for the answer; empty when quiet.
    work: Vec<String>,
    /// The states of the services asked about, in the order asked.
    services: Vec<(String, UnitState)>,
}

/// A `systemctl` command that failed.
struct SystemctlError {
    msg: String,
    timed_out: bool,
}

struct Lockdown<'h> {
    host: &'h dyn Host,
    processes: &'h dyn Fn() -> Vec<(u32, String)>,
    units: Vec<String>,
    wait_timeout: Duration,
    state_file: PathBuf,
}

impl<'h> Lockdown<'h> {
    fn from_params(
        params: &Params,
        host: &'h dyn Host,
        processes: &'h dyn Fn() -> Vec<(u32, String)>,
    ) -> Result<Lockdown<'h>, Failure> {
        let mut units: Vec<String> = Vec::new();
        for unit in params.list("units") {
            check_unit(unit)?;
            if !units.contains(unit) {
                units.push(unit.clone());
            }
        }
        let state_file = params.str("state_file").unwrap_or(DEFAULT_STATE_FILE);
        if !state_file.starts_with('/') || state_file.ends_with('/') {
            return Err(Failure::new(format!(
                "state_file: '{state_file}' must be an absolute file path, e.g. {DEFAULT_STATE_FILE}"
            )));
        }
        Ok(Lockdown {
            host,
            processes,
            units,
            wait_timeout: params.secs("wait_timeout"),
            state_file: PathBuf::from(state_file),
        })
    }

    fn systemd(&self) -> bool {
        self.host.exists(Path::new(SYSTEMD_MARKER))
    }

    fn show(&self, units: &[String]) -> Result<Vec<(String, UnitState)>, String> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        let cmd = Command::new("systemctl")
            .args(["show", "-p", PROPERTIES])
            .args(units.iter().cloned())
            .timeout(SHOW_TIMEOUT);
        let out = self.host.run(&cmd)?;
        out.check(&cmd)?;
        Ok(states_for(units, &out.stdout))
    }

    /// Runs one `systemctl` command. The error says what failed and whether it timed out.
    fn systemctl(&self, args: &[&str], timeout: Duration) -> Result<(), SystemctlError> {
        let cmd = Command::new("systemctl")
            .changes_system()
            .args(args.iter().copied())
            .timeout(timeout);
        let out = self.host.run(&cmd).map_err(|msg| SystemctlError {
            msg,
            timed_out: false,
        })?;
        if out.success() {
            Ok(())
        } else {
            Err(SystemctlError {
                msg: format!(
                    "{} failed (rc {}){}: {}",
                    cmd.display(),
                    out.rc,
                    if out.timed_out { ", timed out" } else { "" },
                    out.tail(5)
                ),
                timed_out: out.timed_out,
            })
        }
    }

    /// `systemctl VERB... UNITS` for all `units` in one process: one daemon-reload for a whole
    /// (un)mask and one job transaction for a whole stop or start, where one process per unit
    /// cost a reload (or a transaction) each, ~1 s per lock on a lab host (issue 15). Each unit
    /// that succeeded is added to `done`.
    ///
    /// When the batch fails (not by a timeout), the units are tried again one by one: every
    /// verb used here is idempotent (masking a masked unit, stopping a stopped one), so the units
    /// the batch did succeed at once, the error names the unit that fails, and `done` lists
    /// exactly the units that are done, as when each unit had its own call. After a timeout
    /// the units are not tried again (each could take the whole timeout once more): the error
    /// names them all.
    fn systemctl_batch(
        &self,
        verb: &[&str],
        units: &[String],
        timeout: Duration,
        done: &mut Vec<String>,
    ) -> Result<(), (String, String)> {
        if units.is_empty() {
            return Ok(());
        }
        let args = |units: &[String]| -> Vec<String> {
            verb.iter()
                .map(|v| v.to_string())
                .chain(units.iter().cloned())
                .collect()
        };
        let all = args(units);
        match self.systemctl(&all.iter().map(String::as_str).collect::<Vec<_>>(), timeout) {
            Ok(()) => {
                done.extend(units.iter().cloned());
                return Ok(());
            }
            Err(e) if e.timed_out || units.len() == 1 => return Err((units.join(", "), e.msg)),
            Err(_) => {}
        }
        for unit in units {
            let one = args(std::slice::from_ref(unit));
            self.systemctl(&one.iter().map(String::as_str).collect::<Vec<_>>(), timeout)
                .map_err(|e| (unit.clone(), e.msg))?;
            done.push(unit.clone());
        }
        Ok(())
    }

    fn read_record(&self) -> Result<Option<Record>, Failure> {
        let text = match std::fs::read_to_string(&self.state_file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Failure::new(format!(
                    "cannot read state_file {}: {e}",
                    self.state_file.display()
                )))
            }
        };
        let bad = |why: String| {
            Failure::new(format!(
                "state_file {} is not a valid apt_lockdown record ({why}); if no lockdown is in effect on this host, remove the file",
                self.state_file.display()
            ))
        };
        let json: Json = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        Record::from_json(&json).map(Some).map_err(bad)
    }

    fn write_record(&self, record: &Record) -> Result<(), String> {
        if let Some(dir) = self.state_file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let mut text = serde_json::to_string_pretty(&record.to_json()).unwrap_or_default();
        text.push('\n');
        runtime::write_atomic(&self.state_file, text.as_bytes(), 0o600)
    }

    /// What apt work runs right now, described for the answer, and the current states of
    /// `services` (read in the same `systemctl show` as the apt jobs, so the states a lock
    /// needs after its wait cost no call of their own).
    fn busy(&self, jobs: &[String], services: &[String]) -> Result<Busy, String> {
        let mut busy = Busy::default();
        if self.systemd() {
            let units: Vec<String> = jobs.iter().chain(services).cloned().collect();
            let states = self.show(&units)?;
            let (jobs_now, services_now) = states.split_at(jobs.len());
            for (unit, state) in jobs_now {
                if state.running() {
                    busy.work.push(format!("{unit} ({})", state.active));
                }
            }
            busy.services = services_now.to_vec();
        }
        let processes = (self.processes)();
        for (pid, command) in &processes {
            busy.work
                .push(format!("unattended-upgrade PID {pid} ({command})"));
        }
        if let Some(holder) = self.host.lock_holder(Path::new(FRONTEND_LOCK)) {
            if !processes.iter().any(|(pid, _)| *pid == holder.pid) {
                busy.work
                    .push(format!("{FRONTEND_LOCK} held by {}", holder.describe()));
            }
        }
        Ok(busy)
    }

    /// Waits until no apt work runs, up to `wait_timeout`. Answers the states of `services`
    /// as the last look saw them, when nothing ran any more.
    fn wait_quiet(
        &self,
        jobs: &[String],
        services: &[String],
        progress: &mut Progress,
    ) -> Result<Vec<(String, UnitState)>, String> {
        let start = self.host.now();
        loop {
            let busy = self.busy(jobs, services)?;
            progress.waited = self.host.now().saturating_duration_since(start);
            if busy.work.is_empty() {
                // Said as a warning too: the deploy shows warnings at any verbosity, and a
                // deploy that sat still for minutes should say on whom it waited.
                if !progress.waited_for.is_empty() {
                    progress.warnings.push(format!(
                        "waited {:.1} s for apt work already running to finish: {}",
                        progress.waited.as_secs_f64(),
                        progress.waited_for.join(", ")
                    ));
                }
                return Ok(busy.services);
            }
            for item in &busy.work {
                if !progress.waited_for.contains(item) {
                    progress.waited_for.push(item.clone());
                }
            }
            if progress.waited >= self.wait_timeout {
                return Err(format!(
                    "apt work still running after waiting {} s: {}; the units are masked so nothing new starts, and nothing was killed. Raise wait_timeout, or run state=released to undo",
                    progress.waited.as_secs(),
                    busy.work.join(", ")
                ));
            }
            let left = self.wait_timeout.saturating_sub(progress.waited);
            self.host.sleep(POLL.min(left));
        }
    }

    fn lock(&self, ctx: &Context) -> Result<Outcome, Failure> {
        let mut progress = Progress::default();
        let file = self.state_file.as_path();
        let apt_jobs: Vec<String> = self
            .units
            .iter()
            .filter(|u| is_apt_job(u))
            .cloned()
            .collect();

        if !self.systemd() {
            progress.absent = self.units.clone();
            if ctx.check_mode {
                progress.waited_for = self.busy(&[], &[]).map_err(Failure::new)?.work;
            } else {
                self.wait_quiet(&[], &[], &mut progress)
                    .map_err(|msg| progress.failure(msg, file))?;
            }
            return Ok(progress.outcome(
                Outcome::unchanged("systemd is not running on this host: no units to quiet"),
                file,
            ));
        }

        let existing = self.read_record()?;
        let states = self.show(&self.units).map_err(Failure::new)?;
        let plan = plan_lock(&states, existing.as_ref(), unix_now());
        progress.absent = plan.absent.clone();
        progress.already_masked = plan.already_masked.clone();

        if ctx.check_mode {
            progress.masked = plan.mask.clone();
            progress.stopped = [plan.stop_triggers.clone(), plan.stop_services.clone()].concat();
            progress.waited_for = self.busy(&apt_jobs, &[]).map_err(Failure::new)?.work;
            let msg = if plan.changes() {
                format!(
                    "would mask {} and stop {}",
                    list_or_none(&progress.masked),
                    list_or_none(&progress.stopped)
                )
            } else {
                "already quiet: nothing to mask or stop".to_string()
            };
            return Ok(progress
                .outcome(Outcome::new(plan.changes(), msg), file)
                .with_diff(lock_diff(&states, &plan.mask, &progress.stopped)));
        }

        let mut record = plan.record.clone();
        if plan.changes() && existing.as_ref() != Some(&record) {
            self.write_record(&record).map_err(Failure::new)?;
        }
        if existing.is_some() {
            progress.warnings.push(format!(
                "a lockdown record already existed in {}; it was kept so that release restores the state from before the first lock",
                file.display()
            ));
        }
        // An apt job that is running now is masked only once it has finished: masking a unit
        // reloads systemd with /dev/null for it, and a job still in ExecStartPre (apt-daily's
        // `apt-helper wait-online`) then dies with "There's no 'start' task anymore" and stays
        // `failed`, which is not the state release can put back. Its timer is masked and
        // stopped first, so nothing starts it again in between.
        let (after_wait, now): (Vec<String>, Vec<String>) = plan
            .mask
            .iter()
            .cloned()
            .partition(|u| plan.wait_for.contains(u));
        // One call each: all masks in one daemon-reload, all running triggers in one stop.
        self.mask(&now, &mut progress)?;
        self.stop(&plan.stop_triggers, &mut progress)?;
        // Services that ended on their own while we waited are not ours to restart: the last
        // look of the wait says which still run.
        let services_now = self
            .wait_quiet(&apt_jobs, &plan.stop_services, &mut progress)
            .map_err(|msg| progress.failure(msg, file))?;
        self.mask(&after_wait, &mut progress)?;

        let finished: Vec<String> = services_now
            .iter()
            .filter(|(_, s)| !s.running())
            .map(|(u, _)| u.clone())
            .collect();
        if !finished.is_empty() {
            mark_finished(&mut record, &finished, existing.as_ref());
            self.write_record(&record)
                .map_err(|e| progress.failure(e, file))?;
        }
        let still_running: Vec<String> = plan
            .stop_services
            .iter()
            .filter(|u| !finished.contains(u))
            .cloned()
            .collect();
        self.stop(&still_running, &mut progress)?;

        let changed = !(progress.masked.is_empty() && progress.stopped.is_empty());
        let msg = if changed {
            format!(
                "masked {} and stopped {}{}",
                list_or_none(&progress.masked),
                list_or_none(&progress.stopped),
                if progress.waited_for.is_empty() {
                    String::new()
                } else {
                    format!(
                        " after waiting {:.1} s for {}",
                        progress.waited.as_secs_f64(),
                        progress.waited_for.join(", ")
                    )
                }
            )
        } else {
            "already quiet: nothing to mask or stop".to_string()
        };
        Ok(progress
            .outcome(Outcome::new(changed, msg), file)
            .with_diff(lock_diff(&states, &progress.masked, &progress.stopped)))
    }

    fn mask(&self, units: &[String], progress: &mut Progress) -> Result<(), Failure> {
        let mut done = Vec::new();
        let result = self.systemctl_batch(&["mask", "--runtime"], units, SHOW_TIMEOUT, &mut done);
        progress.masked.extend(done);
        result.map_err(|(unit, e)| {
            progress.failure(format!("cannot mask {unit}: {e}"), &self.state_file)
        })
    }

    fn stop(&self, units: &[String], progress: &mut Progress) -> Result<(), Failure> {
        let mut done = Vec::new();
        let result = self.systemctl_batch(&["stop"], units, STOP_TIMEOUT, &mut done);
        progress.stopped.extend(done);
        result.map_err(|(unit, e)| {
            progress.failure(
                format!(
                    "{unit} exists but did not stop: {e}; run state=released to undo the masks"
                ),
                &self.state_file,
            )
        })
    }

    fn release(&self, ctx: &Context) -> Result<Outcome, Failure> {
        let mut progress = Progress::default();
        let file = self.state_file.as_path();
        let Some(record) = self.read_record()? else {
            return Ok(progress.outcome(
                Outcome::unchanged(format!(
                    "no lockdown record in {}: nothing to release",
                    file.display()
                )),
                file,
            ));
        };
        if !self.systemd() {
            progress.warnings.push(format!(
                "a lockdown record exists in {} but systemd is not running: nothing can be restored now; the record is kept",
                file.display()
            ));
            return Ok(progress.outcome(
                Outcome::unchanged("systemd is not running: nothing restored"),
                file,
            ));
        }
        let units: Vec<String> = record.entries.iter().map(|e| e.unit.clone()).collect();
        let states = self.show(&units).map_err(Failure::new)?;
        let plan = plan_release(&record, &states);
        progress.absent = states
            .iter()
            .filter(|(_, s)| s.absent())
            .map(|(u, _)| u.clone())
            .collect();
        let changes = !(plan.unmask.is_empty() && plan.start.is_empty());

        if ctx.check_mode {
            progress.unmasked = plan.unmask.clone();
            progress.started = plan.start.clone();
            let msg = if changes {
                format!(
                    "would unmask {} and start {}, then remove {}",
                    list_or_none(&plan.unmask),
                    list_or_none(&plan.start),
                    file.display()
                )
            } else {
                format!("nothing to restore; would remove {}", file.display())
            };
            return Ok(progress.outcome(Outcome::new(changes, msg), file));
        }

        let mut unmasked = Vec::new();
        let result = self.systemctl_batch(
            &["unmask", "--runtime"],
            &plan.unmask,
            SHOW_TIMEOUT,
            &mut unmasked,
        );
        progress.unmasked = unmasked;
        result.map_err(|(unit, e)| {
            progress.failure(
                format!("cannot unmask {unit}: {e}; the record is kept, so a rerun retries"),
                file,
            )
        })?;
        // Two batches, services and sockets first and timers last, as `plan.start` orders
        // them: no timer fires a job into a half-restored system.
        for batch in start_batches(&plan.start) {
            let mut started = Vec::new();
            let result = self.systemctl_batch(&["start"], &batch, STOP_TIMEOUT, &mut started);
            progress.started.extend(started);
            result.map_err(|(unit, e)| {
                progress.failure(
                    format!(
                        "cannot start {unit} again: {e}; the record is kept, so a rerun retries"
                    ),
                    file,
                )
            })?;
        }
        std::fs::remove_file(file).map_err(|e| {
            progress.failure(
                format!(
                    "restored the units but cannot remove {}: {e}",
                    file.display()
                ),
                file,
            )
        })?;
        let msg = if changes {
            format!(
                "unmasked {} and started {}",
                list_or_none(&progress.unmasked),
                list_or_none(&progress.started)
            )
        } else {
            "nothing left to restore".to_string()
        };
        // Removing the record alone is housekeeping, not a change to the host's services.
        Ok(progress.outcome(Outcome::new(changes, msg), file))
    }
}

fn lock_diff(states: &[(String, UnitState)], masked: &[String], stopped: &[String]) -> Diff {
    let mut before = String::new();
    let mut after = String::new();
    for (unit, state) in states.iter().filter(|(_, s)| !s.absent()) {
        let line = |masked: bool, running: bool| {
            format!(
                "{unit}: {}{}\n",
                if running { "running" } else { "stopped" },
                if masked { ", masked" } else { "" }
            )
        };
        before.push_str(&line(state.masked(), state.running()));
        after.push_str(&line(
            state.masked() || masked.contains(unit),
            state.running() && !stopped.contains(unit),
        ));
    }
    Diff::new(before, after).headers("units before", "units after")
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join(", ")
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use apt::fake::{fail, ok, FakeHost};

    fn show(units: &[(&str, &str, &str, &str, &str)]) -> String {
        units
            .iter()
            .map(|(id, load, active, sub, file)| {
                format!("Id={id}\nLoadState={load}\nActiveState={active}\nSubState={sub}\nUnitFileState={file}\n")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A unit runtime-masked by a lock, as `show` takes it.
    fn masked<'a>(
        unit: &'a str,
        active: &'a str,
        sub: &'a str,
    ) -> (&'a str, &'a str, &'a str, &'a str, &'a str) {
        (unit, "masked", active, sub, "masked-runtime")
    }

    /// The look of the wait in a lock of `UNITS`: the apt job, and the service to stop after.
    const WAIT_SHOW: &str = "show -p Id,LoadState,ActiveState,SubState,UnitFileState apt-daily-upgrade.service unattended-upgrades.service";

    const UNITS: &[&str] = &[
        "apt-daily.timer",
        "apt-daily-upgrade.service",
        "unattended-upgrades.service",
        "snapd.service",
    ];

    fn before() -> String {
        show(&[
            ("apt-daily.timer", "loaded", "active", "waiting", "enabled"),
            (
                "apt-daily-upgrade.service",
                "loaded",
                "activating",
                "start",
                "static",
            ),
            (
                "unattended-upgrades.service",
                "loaded",
                "active",
                "running",
                "enabled",
            ),
            ("snapd.service", "not-found", "inactive", "dead", ""),
        ])
    }

    fn locked() -> String {
        show(&[
            masked("apt-daily.timer", "inactive", "dead"),
            masked("apt-daily-upgrade.service", "inactive", "dead"),
            masked("unattended-upgrades.service", "inactive", "dead"),
            ("snapd.service", "not-found", "inactive", "dead", ""),
        ])
    }

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        fn file(&self) -> PathBuf {
            self.dir.path().join("lib/homeops/apt-lockdown.json")
        }
        /// The record a first lock of the `before()` host writes, as if it had run.
        fn write_first_record(&self) {
            let units: Vec<String> = UNITS.iter().map(|s| s.to_string()).collect();
            let record = plan_lock(&states_for(&units, &before()), None, 1).record;
            std::fs::create_dir_all(self.file().parent().unwrap()).unwrap();
            std::fs::write(self.file(), record.to_json().to_string()).unwrap();
        }
        fn run(&self, host: &FakeHost, state: &str, check: bool) -> Result<Outcome, Failure> {
            let none = || Vec::new();
            self.run_with(host, state, check, &none)
        }
        fn run_with(
            &self,
            host: &FakeHost,
            state: &str,
            check: bool,
            procs: &dyn Fn() -> Vec<(u32, String)>,
        ) -> Result<Outcome, Failure> {
            let args = json!({"state": state, "units": UNITS, "wait_timeout": 30, "state_file": self.file().to_str().unwrap()});
            let (params, _) = runtime::parse(NAME, SPEC, &args).unwrap();
            let lockdown = Lockdown::from_params(&params, host, procs)?;
            let ctx = Context {
                check_mode: check,
                ..Context::default()
            };
            if state == "released" {
                lockdown.release(&ctx)
            } else {
                lockdown.lock(&ctx)
            }
        }
    }

    fn field(o: &Outcome, key: &str) -> Json {
        o.field(key).cloned().unwrap_or(Json::Null)
    }

    #[test]
    fn lock_then_lock_again_then_release_restores_the_original_state() {
        let fx = Fixture::new();
        let host = FakeHost::new();
        host.file(SYSTEMD_MARKER);
        host.hold(
            FRONTEND_LOCK,
            812,
            "/usr/bin/python3 /usr/bin/unattended-upgrade",
            Duration::from_secs(3),
        );
        host.on("systemctl show", ok(&before()));
        host.always("systemctl mask --runtime", ok(""));
        host.on("systemctl stop apt-daily.timer", ok(""));
        // The apt job runs for 2 more seconds of polling, then ends. Each look reads the job
        // and the services to stop after the wait in one `systemctl show`.
        let busy = || {
            ok(&show(&[
                masked("apt-daily-upgrade.service", "activating", "start"),
                masked("unattended-upgrades.service", "active", "running"),
            ]))
        };
        host.on(WAIT_SHOW, busy());
        host.on(WAIT_SHOW, busy());
        host.always(
            WAIT_SHOW,
            ok(&show(&[
                masked("apt-daily-upgrade.service", "inactive", "dead"),
                masked("unattended-upgrades.service", "active", "running"),
            ])),
        );
        host.on("systemctl stop unattended-upgrades.service", ok(""));

        let out = fx.run(&host, "locked", false).unwrap();
        assert!(out.changed, "{}", out.msg);
        assert_eq!(
            field(&out, "masked"),
            // The running apt job last: masked only after it finished.
            json!([
                "apt-daily.timer",
                "unattended-upgrades.service",
                "apt-daily-upgrade.service"
            ])
        );
        assert_eq!(
            field(&out, "stopped"),
            json!(["apt-daily.timer", "unattended-upgrades.service"])
        );
        assert_eq!(field(&out, "absent"), json!(["snapd.service"]));
        let waited_for = field(&out, "waited_for");
        assert_eq!(
            waited_for[0],
            json!("apt-daily-upgrade.service (activating)")
        );
        assert!(
            waited_for[1].as_str().unwrap().contains("held by PID 812"),
            "{waited_for}"
        );
        assert_eq!(field(&out, "waited_seconds"), json!(3.0));
        // The wait is also a warning, shown by Ansible at any verbosity.
        let shown = format!("{out:?}");
        assert!(
            shown.contains("waited 3.0 s for apt work already running to finish: apt-daily-upgrade.service (activating), ")
                && shown.contains("held by PID 812"),
            "{shown}"
        );
        // Stop order: the timer before the wait, the service after it.
        let cmds = host.commands();
        let pos = |needle: &str| cmds.iter().position(|c| c.contains(needle)).unwrap();
        assert!(pos("mask --runtime apt-daily.timer") < pos("stop apt-daily.timer"));
        assert!(pos("stop apt-daily.timer") < pos("stop unattended-upgrades.service"));
        // The activating apt job is masked after the wait saw it end, never while it starts.
        let last_busy = cmds
            .iter()
            .rposition(|c| c.contains("UnitFileState apt-daily-upgrade.service"))
            .unwrap();
        assert!(
            pos("mask --runtime apt-daily-upgrade.service") > last_busy,
            "{cmds:?}"
        );
        assert_eq!(host.count("stop apt-daily-upgrade.service"), 0);
        // One process per step, not per unit: the states, the masks, the running timer, a look
        // a second until job and lock holder are gone (3 s: four looks), the job's mask once it
        // ended, the service that still runs.
        assert_eq!(
            cmds,
            [
                format!(
                    "systemctl show -p Id,LoadState,ActiveState,SubState,UnitFileState {}",
                    UNITS.join(" ")
                ),
                "systemctl mask --runtime apt-daily.timer unattended-upgrades.service".to_string(),
                "systemctl stop apt-daily.timer".to_string(),
                format!("systemctl {WAIT_SHOW}"),
                format!("systemctl {WAIT_SHOW}"),
                format!("systemctl {WAIT_SHOW}"),
                format!("systemctl {WAIT_SHOW}"),
                "systemctl mask --runtime apt-daily-upgrade.service".to_string(),
                "systemctl stop unattended-upgrades.service".to_string(),
            ]
        );

        // The record: mode 0600, what we did.
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(fx.file()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let first = std::fs::read_to_string(fx.file()).unwrap();
        let record = Record::from_json(&serde_json::from_str(&first).unwrap()).unwrap();
        assert!(record.entry("apt-daily.timer").unwrap().stopped);
        assert!(!record.entry("apt-daily-upgrade.service").unwrap().stopped);
        assert!(record.entry("snapd.service").is_none());

        // Locking again: nothing to do, and the first record is kept byte for byte.
        let host = FakeHost::new();
        host.file(SYSTEMD_MARKER);
        host.always("systemctl show", ok(&locked()));
        let out = fx.run(&host, "locked", false).unwrap();
        assert!(!out.changed, "{}", out.msg);
        assert_eq!(std::fs::read_to_string(fx.file()).unwrap(), first);
        assert_eq!(host.count("mask"), 0);

        // Release: unmask the three, start the two we stopped (timer last), drop the record.
        let host = FakeHost::new();
        host.file(SYSTEMD_MARKER);
        host.on(
            "systemctl show",
            ok(&show(&[
                masked("apt-daily.timer", "inactive", "dead"),
                masked("apt-daily-upgrade.service", "inactive", "dead"),
                masked("unattended-upgrades.service", "inactive", "dead"),
            ])),
        );
        host.always("systemctl unmask --runtime", ok(""));
        host.always("systemctl start", ok(""));
        let out = fx.run(&host, "released", false).unwrap();
        assert!(out.changed);
        assert_eq!(
            field(&out, "started"),
            json!(["unattended-upgrades.service", "apt-daily.timer"])
        );
        assert_eq!(
            field(&out, "restored"),
            json!([
                "apt-daily.timer",
                "apt-daily-upgrade.service",
                "unattended-upgrades.service"
            ])
        );
        assert!(!fx.file().exists());
        assert_eq!(host.count("start apt-daily-upgrade.service"), 0);
        // One unmask for all three, then one start for the service and one for the timer.
        assert_eq!(
            host.commands()[1..],
            [
                "systemctl unmask --runtime apt-daily.timer apt-daily-upgrade.service unattended-upgrades.service",
                "systemctl start unattended-upgrades.service",
                "systemctl start apt-daily.timer",
            ]
        );

        // Released again: no record, nothing to do.
        let host = FakeHost::new();
        host.file(SYSTEMD_MARKER);
        let out = fx.run(&host, "released", false).unwrap();
        assert!(!out.changed);
        assert!(host.commands().is_empty());
    }

    #[test]
    fn a_job_that_never_finishes_fails_the_lock_without_killing_it() {
        let fx = Fixture::new();
        let host = FakeHost::new();
        host.file(SYSTEMD_MARKER);
        host.on("systemctl show", ok(&before()));
        host.always("systemctl mask --runtime", ok(""));
        host.always("systemctl stop", ok(""));
        let upgrade = || {
            vec![(
                812,
                "/usr/bin/python3 /usr/bin/unattended-upgrade".to_string(),
            )]
        };
        host.always(
            WAIT_SHOW,
            ok(&show(&[
                masked("apt-daily-upgrade.service", "activating", "start"),
                masked("unattended-upgrades.service", "active", "running"),
            ])),
        );
        let err = fx.run_with(&host, "locked", false, &upgrade).unwrap_err();
        assert!(err.changed);
        assert!(
            err.msg.contains("still running after waiting 30 s"),
            "{}",
            err.msg
        );
        assert!(
            err.msg.contains("unattended-upgrade PID 812"),
            "{}",
            err.msg
        );
        assert_eq!(host.count("stop unattended-upgrades.service"), 0);
        assert_eq!(host.count("stop apt-daily-upgrade.service"), 0);
        // The record is there, so a release can undo the masks.
        assert!(fx.file().exists());
    }

    #[test]
    fn a_unit_that_will_not_stop_is_a_failure_with_systemctls_message() {
        let fx = Fixture::new();
        let host = FakeHost::new();
        host.file(SYSTEMD_MARKER);
        host.on(
            "systemctl show",
            ok(&show(&[
                ("apt-daily.timer", "loaded", "active", "waiting", "enabled"),
                (
                    "apt-daily-upgrade.service",
                    "loaded",
                    "inactive",
                    "dead",
                    "static",
                ),
                (
                    "unattended-upgrades.service",
                    "loaded",
                    "active",
                    "running",
                    "enabled",
                ),
                ("snapd.service", "not-found", "inactive", "dead", ""),
            ])),
        );
        host.always("systemctl mask --runtime", ok(""));
        host.on("systemctl stop apt-daily.timer", ok(""));
        host.always(
            WAIT_SHOW,
            ok(&show(&[
                masked("apt-daily-upgrade.service", "inactive", "dead"),
                masked("unattended-upgrades.service", "active", "running"),
            ])),
        );
        host.on(
            "systemctl stop unattended-upgrades.service",
            fail(1, "Job for unattended-upgrades.service canceled."),
        );
        let err = fx.run(&host, "locked", false).unwrap_err();
        assert!(
            err.msg
                .contains("unattended-upgrades.service exists but did not stop"),
            "{}",
            err.msg
        );
        assert!(
            err.msg
                .contains("Job for unattended-upgrades.service canceled."),
            "{}",
            err.msg
        );
        assert!(err.changed);
        assert_eq!(err.field("stopped"), Some(&json!(["apt-daily.timer"])));
    }

    #[test]
    fn a_failed_batch_is_tried_again_unit_by_unit_and_names_the_unit() {
        let fx = Fixture::new();
        let host = FakeHost::new();
        host.file(SYSTEMD_MARKER);
        host.on("systemctl show", ok(&before()));
        // The batch fails as a whole; one by one, the timer masks and the service does not.
        let exists = "Failed to mask unit: File /run/systemd/system/unattended-upgrades.service already exists.";
        host.on(
            "systemctl mask --runtime apt-daily.timer unattended-upgrades.service",
            fail(1, exists),
        );
        host.on("systemctl mask --runtime apt-daily.timer", ok(""));
        host.on(
            "systemctl mask --runtime unattended-upgrades.service",
            fail(1, exists),
        );
        let err = fx.run(&host, "locked", false).unwrap_err();
        assert!(
            err.msg.starts_with("cannot mask unattended-upgrades.service: systemctl mask --runtime unattended-upgrades.service failed (rc 1)")
                && err.msg.contains("already exists"),
            "{}",
            err.msg
        );
        assert_eq!(err.field("masked"), Some(&json!(["apt-daily.timer"])));
        assert!(err.changed);
        assert_eq!(host.count("systemctl mask"), 3);
        assert_eq!(host.count("systemctl stop"), 0);
        // The record was written first, so a release can undo the timer's mask.
        assert!(fx.file().exists());
    }

    #[test]
    fn a_batch_that_times_out_is_not_tried_again() {
        let fx = Fixture::new();
        fx.write_first_record();
        let host = FakeHost::new();
        host.file(SYSTEMD_MARKER);
        host.on("systemctl show", ok(&locked()));
        host.always(
            "systemctl unmask --runtime",
            runtime::Output {
                rc: 137,
                timed_out: true,
                ..runtime::Output::default()
            },
        );
        let err = fx.run(&host, "released", false).unwrap_err();
        assert!(
            err.msg.starts_with("cannot unmask apt-daily.timer, apt-daily-upgrade.service, unattended-upgrades.service: ")
                && err.msg.contains("timed out")
                && err.msg.contains("the record is kept"),
            "{}",
            err.msg
        );
        // Each unit could take the whole timeout again: one try only, nothing started.
        assert_eq!(host.count("systemctl unmask"), 1);
        assert_eq!(host.count("systemctl start"), 0);
        assert_eq!(err.field("unmasked"), Some(&json!([])));
        assert!(fx.file().exists());
    }

    #[test]
    fn check_mode_reports_and_changes_nothing() {
        let fx = Fixture::new();
        let host = FakeHost::new();
        host.file(SYSTEMD_MARKER);
        host.on("systemctl show", ok(&before()));
        host.on(
            "apt-daily-upgrade.service",
            ok(&show(&[(
                "apt-daily-upgrade.service",
                "loaded",
                "activating",
                "start",
                "static",
            )])),
        );
        let out = fx.run(&host, "locked", true).unwrap();
        assert!(out.changed);
        assert!(out.msg.starts_with("would mask"), "{}", out.msg);
        assert_eq!(
            field(&out, "stopped"),
            json!(["apt-daily.timer", "unattended-upgrades.service"])
        );
        assert_eq!(
            field(&out, "waited_for"),
            json!(["apt-daily-upgrade.service (activating)"])
        );
        assert!(
            host.commands()
                .iter()
                .all(|c| c.starts_with("systemctl show")),
            "{:?}",
            host.commands()
        );
        assert!(!fx.file().exists());

        // Release in check mode with a record: reports, keeps everything.
        fx.write_first_record();
        let host = FakeHost::new();
        host.file(SYSTEMD_MARKER);
        host.on("systemctl show", ok(&locked()));
        let out = fx.run(&host, "released", true).unwrap();
        assert!(out.changed);
        assert!(out.msg.starts_with("would unmask"), "{}", out.msg);
        assert!(fx.file().exists());
        assert_eq!(host.commands().len(), 1);
    }

    #[test]
    fn without_systemd_everything_is_absent_and_nothing_is_recorded() {
        let fx = Fixture::new();
        let host = FakeHost::new();
        let out = fx.run(&host, "locked", false).unwrap();
        assert!(!out.changed);
        assert_eq!(field(&out, "absent").as_array().unwrap().len(), UNITS.len());
        assert!(host.commands().is_empty());
        assert!(!fx.file().exists());
    }

    #[test]
    fn a_corrupt_record_is_refused_not_overwritten() {
        let fx = Fixture::new();
        std::fs::create_dir_all(fx.file().parent().unwrap()).unwrap();
        std::fs::write(fx.file(), "{not json").unwrap();
        let host = FakeHost::new();
        host.file(SYSTEMD_MARKER);
        for state in ["locked", "released"] {
            let err = fx.run(&host, state, false).unwrap_err();
            assert!(
                err.msg.contains("is not a valid apt_lockdown record"),
                "{}",
                err.msg
            );
        }
        assert_eq!(std::fs::read_to_string(fx.file()).unwrap(), "{not json");
    }

    #[test]
    fn parameters_are_checked() {
        let host = FakeHost::new();
        let none = || Vec::new();
        for (args, needle) in [
            (
                json!({"units": ["apt daily.timer"]}),
                "units: 'apt daily.timer'",
            ),
            (json!({"units": "-H,x.service"}), "units: '-H'"),
            (
                json!({"state_file": "relative.json"}),
                "state_file: 'relative.json' must be an absolute",
            ),
        ] {
            let (params, _) = runtime::parse(NAME, SPEC, &args).unwrap();
            let err = Lockdown::from_params(&params, &host, &none).err().unwrap();
            assert!(err.msg.contains(needle), "{}", err.msg);
        }
    }

    #[test]
    fn the_process_scan_finds_nothing_unusual_here() {
        // Whatever runs on the build machine, the scan must not find itself or panic.
        let found = unattended_upgrade_processes();
        assert!(found.iter().all(|(pid, _)| *pid != std::process::id()));
    }
}
