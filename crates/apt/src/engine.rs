//! Running apt-get the way a deploy needs it: wait for the locks against one deadline and say
//! who held them, retry what may pass, repair an interrupted dpkg once, and give up at once
//! when retrying cannot help.
//!
//! One deadline (`lock_timeout` from the start of the task) bounds all lock waiting: our own
//! polling of `/proc/locks`, apt-get's `-o DPkg::Lock::Timeout=<what is left>`, and our retries
//! of `apt-get update` on the lists lock, which apt never waits for. Transient network failures
//! are retried `retries` times with a doubling delay, independently of the deadline.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use runtime::{Command, Failure, Outcome, Output};
use serde_json::{json, Value as Json};

use crate::classify::{classify, error_summary, holder_in_message, FailureKind};
use crate::host::Host;
use crate::locks::{self, Holder, ARCHIVES_LOCK, FRONTEND_LOCK, LISTS_LOCK};
use crate::names::PackageSpec;
use crate::query::{self, Changes, PackageState, Policy};

/// The longest pause between two attempts after a transient failure.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// How long to pause before retrying a busy lock whose holder `/proc/locks` does not show
/// (another PID namespace, or already gone).
const LOCK_RETRY_PAUSE: Duration = Duration::from_secs(2);
/// `apt-get update` may be killed when it hangs: it changes nothing until it finishes.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(900);
/// Reading commands (dpkg-query, apt-cache).
const QUERY_TIMEOUT: Duration = Duration::from_secs(120);
/// What a query may print before we refuse to parse it (it is parsed whole, never cut).
const QUERY_LIMIT: usize = 16 * 1024 * 1024;

/// The variables of the task's `environment:` that apt and dpkg honour: the proxies apt's
/// http/https/ftp methods read (lower case; apt ignores the upper-case forms, but maintainer
/// scripts that download with curl or wget read them), and APT_CONFIG, an extra apt.conf.
pub const APT_ENV: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "APT_CONFIG",
];

/// apt-get, apt-cache and dpkg with the task's proxy settings (`APT_ENV`).
fn apt_tool(program: &str) -> Command {
    Command::new(program).inherit_env(APT_ENV)
}
/// Lines of output kept in `stdout_tail`/`stderr_tail`.
pub const TAIL_LINES: usize = 20;

/// Where apt keeps the package indexes it fetched.
pub const LISTS_DIR: &str = "/var/lib/apt/lists";

/// Where apt records its last successful update; the lists directory's mtime is the fallback.
pub const CACHE_STAMPS: &[&str] = &[
    "/var/lib/apt/periodic/update-success-stamp",
    "/var/lib/apt/lists",
];

/// How the engine runs apt-get.
#[derive(Clone, Debug)]
pub struct Settings {
    pub lock_timeout: Duration,
    pub retries: u32,
    pub retry_delay: Duration,
    pub install_recommends: bool,
    /// dpkg options without the leading `--` (`force-confdef`).
    pub dpkg_options: Vec<String>,
    pub allow_downgrade: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            lock_timeout: Duration::from_secs(600),
            retries: 3,
            retry_delay: Duration::from_secs(5),
            install_recommends: false,
            dpkg_options: vec!["force-confdef".into(), "force-confold".into()],
            allow_downgrade: false,
        }
    }
}

/// Checks `dpkg_options` items (`force-confdef`, `force-confnew`, `path-exclude=/usr/share/doc/*`).
pub fn check_dpkg_options(items: &[String]) -> Result<Vec<String>, String> {
    items
        .iter()
        .map(|item| {
            let item = item.trim().trim_start_matches("--");
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (item, None),
            };
            let name_ok = name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            let value_ok = value.is_none_or(|v| {
                !v.is_empty()
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "/._-*,+:".contains(c))
            });
            if name_ok && value_ok {
                Ok(item.to_string())
            } else {
                Err(format!(
                    "dpkg_options: '{item}' is not a dpkg option; give names without the leading dashes, e.g. 'force-confdef,force-confold'"
                ))
            }
        })
        .collect()
}

/// Whether the package lists need `apt-get update`.
pub fn cache_is_stale(update_cache: bool, valid_time: Duration, age: Option<Duration>) -> bool {
    update_cache && (valid_time.is_zero() || age.is_none_or(|a| a > valid_time))
}

/// Why the engine gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The deadline passed while someone held a lock.
    LockTimeout,
    /// apt-get or dpkg failed.
    Failed(FailureKind),
    /// A command could not be started at all.
    CannotRun,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::LockTimeout => "lock_timeout",
            ErrorKind::Failed(kind) => kind.as_str(),
            ErrorKind::CannotRun => "cannot_run",
        }
    }
}

/// A failed step, with a message for the person reading the deploy output.
#[derive(Clone, Debug)]
pub struct AptError {
    pub kind: ErrorKind,
    pub msg: String,
    pub rc: Option<i32>,
}

/// What happened while the engine worked; every module returns it, on success and failure.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// apt-get and dpkg runs that could change the system (not queries).
    pub attempts: u32,
    pub lock_wait: Duration,
    /// The process that made us wait (or, on a timeout, the one still holding the lock).
    pub lock_holder: Option<Holder>,
    pub stdout_tail: String,
    pub stderr_tail: String,
    pub cache_updated: bool,
    /// Whether the install/remove runs of apt-get changed any package, from their own summary
    /// lines; `None` when none ran or a summary was missing. A concurrent run may have done the
    /// work while this one waited for the lock: then dpkg's before/after differ, but this run
    /// changed nothing.
    pub transactions_changed: Option<bool>,
    /// How many install/remove runs of apt-get succeeded.
    pub transactions: u32,
    /// `dpkg --configure -a` was run to repair an interrupted dpkg.
    pub dpkg_repaired: bool,
    pub warnings: Vec<String>,
}

impl Report {
    /// The result fields every apt module returns.
    pub fn fields(&self) -> Vec<(&'static str, Json)> {
        let wait = (self.lock_wait.as_secs_f64() * 100.0).round() / 100.0;
        vec![
            ("attempts", json!(self.attempts)),
            ("lock_wait_seconds", json!(wait)),
            (
                "lock_holder",
                self.lock_holder
                    .as_ref()
                    .map(|h| json!({"pid": h.pid, "command": h.command}))
                    .unwrap_or(Json::Null),
            ),
            ("stdout_tail", json!(self.stdout_tail)),
            ("stderr_tail", json!(self.stderr_tail)),
            ("cache_updated", json!(self.cache_updated)),
            ("dpkg_repaired", json!(self.dpkg_repaired)),
        ]
    }

    // `#[inline]` on these two: measured, without it apt_lockdown (which calls neither) grows
    // by 128 bytes and kernel_headers by 64.

    /// A successful answer with the report's fields and warnings added.
    #[inline]
    pub fn add_to(&self, mut outcome: Outcome) -> Outcome {
        for (key, value) in self.fields() {
            outcome.set(key, value);
        }
        outcome.warnings(self.warnings.iter().cloned());
        outcome
    }

    /// The answer for a step that failed: its message, `failure_kind`, `rc` when apt-get or
    /// dpkg ran, and the report's fields and warnings. The module adds its own fields and
    /// says whether the host had changed.
    #[inline]
    pub fn failure(&self, err: AptError) -> Failure {
        let mut failure = Failure::new(err.msg).with("failure_kind", err.kind.as_str());
        if let Some(rc) = err.rc {
            failure = failure.with("rc", rc);
        }
        for (key, value) in self.fields() {
            failure = failure.with(key, value);
        }
        for warning in &self.warnings {
            failure = failure.warn(warning.clone());
        }
        failure
    }
}

/// The last `n` non-empty lines of a text.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[derive(Clone, Debug)]
enum Step {
    Update,
    Install(Vec<PackageSpec>),
    Remove(Vec<PackageSpec>),
}

/// The engine for one module run.
pub struct Engine<'h> {
    host: &'h dyn Host,
    settings: Settings,
    deadline: std::time::Instant,
    pub report: Report,
}

impl<'h> Engine<'h> {
    /// Starts the clock: the lock deadline is `lock_timeout` from now.
    pub fn new(host: &'h dyn Host, settings: Settings) -> Engine<'h> {
        // A timeout too large for the clock (a typo such as 10**18) means "wait very long",
        // never a panic.
        let now = host.now();
        let deadline = now
            .checked_add(settings.lock_timeout)
            .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
            .unwrap_or(now);
        Engine {
            host,
            settings,
            deadline,
            report: Report::default(),
        }
    }

    /// Lock-wait budget left.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(self.host.now())
    }

    pub fn host(&self) -> &'h dyn Host {
        self.host
    }

    // ---- reading, no locks -------------------------------------------------------------

    /// Output that is parsed must be whole: a cut answer would silently lose packages.
    fn whole(out: &Output, cmd: &Command, limit: usize) -> Result<(), String> {
        if out.truncated {
            return Err(format!(
                "{} printed more than {} MiB, more than this module reads; ask for fewer packages at once",
                cmd.display(),
                limit / (1024 * 1024)
            ));
        }
        Ok(())
    }

    /// dpkg's view of these packages (all packages when `names` is empty). Takes no lock.
    pub fn dpkg_query(&self, names: &[String]) -> Result<BTreeMap<String, PackageState>, String> {
        let cmd = Command::new("dpkg-query")
            .args(["-W", &format!("-f={}", query::DPKG_QUERY_FORMAT)])
            .args(names.iter().cloned())
            .timeout(QUERY_TIMEOUT)
            .output_limit(QUERY_LIMIT);
        let out = self.host.run(&cmd)?;
        Self::whole(&out, &cmd, QUERY_LIMIT)?;
        // rc 1 with "no packages found matching X" is an answer: X is not installed.
        let only_missing = out.rc == 1
            && out
                .stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .all(|l| l.contains("no packages found matching"));
        if !only_missing {
            out.check(&cmd)?;
        }
        Ok(query::parse_dpkg_query(&out.stdout))
    }

    /// Installed packages only, name → version.
    pub fn installed(&self, names: &[String]) -> Result<BTreeMap<String, String>, String> {
        self.dpkg_query(names)
            .map(|states| query::installed_versions(&states))
    }

    /// `apt-cache policy` for these packages (unknown packages are absent from the map).
    pub fn policy(&self, names: &[String]) -> Result<BTreeMap<String, Policy>, String> {
        // The whole answer: cut to the default 64 KiB tail, the first packages' entries would
        // be lost without a word (about 300 packages with a few versions each).
        let cmd = apt_tool("apt-cache")
            .arg("policy")
            .args(names.iter().cloned())
            .timeout(QUERY_TIMEOUT)
            .output_limit(QUERY_LIMIT);
        let out = self.host.run(&cmd)?;
        out.check(&cmd)?;
        Self::whole(&out, &cmd, QUERY_LIMIT)?;
        Ok(query::parse_policy(&out.stdout))
    }

    /// Package names apt knows that start with `prefix`.
    pub fn pkgnames(&self, prefix: &str) -> Result<Vec<String>, String> {
        let cmd = apt_tool("apt-cache")
            .args(["pkgnames", prefix])
            .timeout(QUERY_TIMEOUT)
            .output_limit(QUERY_LIMIT);
        let out = self.host.run(&cmd)?;
        out.check(&cmd)?;
        Self::whole(&out, &cmd, QUERY_LIMIT)?;
        Ok(out
            .stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    /// How old the package lists are; `None` when apt has never updated them.
    pub fn cache_age(&self) -> Option<Duration> {
        // A fresh image or a cleaned cache has an empty lists directory with a recent mtime:
        // that is "never updated", not "just updated".
        if !self.host.has_package_lists(Path::new(LISTS_DIR)) {
            return None;
        }
        let newest = CACHE_STAMPS
            .iter()
            .filter_map(|p| self.host.modified(Path::new(p)))
            .max()?;
        Some(
            self.host
                .wall_clock()
                .duration_since(newest)
                .unwrap_or(Duration::ZERO),
        )
    }

    /// What installing (or removing) would do, from `apt-get -s`. Takes no lock.
    pub fn simulate(&self, specs: &[PackageSpec], remove: bool) -> Result<Changes, String> {
        let step = if remove {
            Step::Remove(specs.to_vec())
        } else {
            Step::Install(specs.to_vec())
        };
        let cmd = self
            .apt_command(&step, 0)
            .args(["-s", "-o", "Debug::NoLocking=1"]);
        let out = self.host.run(&cmd.timeout(QUERY_TIMEOUT))?;
        if !out.success() {
            return Err(error_summary(&out));
        }
        Ok(query::parse_simulation(&out.stdout))
    }

    // ---- changing, with locks ----------------------------------------------------------

    /// `apt-get update`, retried on the lists lock until the deadline and on network trouble.
    pub fn update(&mut self) -> Result<(), AptError> {
        let out = self.run_step(&Step::Update)?;
        self.report.cache_updated = true;
        // apt-get update exits 0 when some sources failed; say so rather than hide it.
        for line in out.stderr.lines().chain(out.stdout.lines()) {
            if line.starts_with("W: ") || line.starts_with("E: ") {
                self.report
                    .warnings
                    .push(format!("apt-get update: {}", line.trim()));
            }
        }
        Ok(())
    }

    /// `apt-get install` these packages.
    pub fn install(&mut self, specs: &[PackageSpec]) -> Result<(), AptError> {
        self.run_step(&Step::Install(specs.to_vec())).map(|_| ())
    }

    /// `apt-get remove` these packages.
    pub fn remove(&mut self, specs: &[PackageSpec]) -> Result<(), AptError> {
        self.run_step(&Step::Remove(specs.to_vec())).map(|_| ())
    }

    fn apt_command(&self, step: &Step, lock_secs: u64) -> Command {
        let mut cmd = apt_tool("apt-get")
            .changes_system()
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("APT_LISTCHANGES_FRONTEND", "none")
            .args(["-q", "-y"]);
        let (verb, specs) = match step {
            Step::Update => return cmd.arg("update").timeout(UPDATE_TIMEOUT),
            Step::Install(specs) => ("install", specs),
            Step::Remove(specs) => ("remove", specs),
        };
        cmd = cmd.args(["-o".to_string(), format!("DPkg::Lock::Timeout={lock_secs}")]);
        if !self.settings.install_recommends {
            cmd = cmd.arg("--no-install-recommends");
        }
        if self.settings.allow_downgrade {
            cmd = cmd.arg("--allow-downgrades");
        }
        for opt in &self.settings.dpkg_options {
            cmd = cmd.args(["-o".to_string(), format!("Dpkg::Options::=--{opt}")]);
        }
        cmd.arg(verb)
            .args(specs.iter().map(PackageSpec::apt_arg))
            // A full transaction's "Setting up ..." lines can be long; errors are at the end.
            .output_limit(1024 * 1024)
    }

    fn run_step(&mut self, step: &Step) -> Result<Output, AptError> {
        let lock = match step {
            Step::Update => LISTS_LOCK,
            _ => FRONTEND_LOCK,
        };
        let mut transient_left = self.settings.retries;
        let mut delay = self.settings.retry_delay;
        loop {
            self.wait_for(lock)?;
            let cmd = self.apt_command(step, self.remaining().as_secs());
            let out = self.attempt(&cmd)?;
            if out.success() {
                if !matches!(step, Step::Update) {
                    self.note_transaction(&out);
                }
                return Ok(out);
            }
            let kind = classify(&out);
            match kind {
                FailureKind::LockBusy | FailureKind::CacheLockBusy => {
                    let path = busy_lock_path(kind, &out);
                    self.lock_busy(path, &out)?;
                }
                FailureKind::DpkgInterrupted if !self.report.dpkg_repaired => self.repair()?,
                FailureKind::Transient if transient_left > 0 => {
                    transient_left -= 1;
                    self.report.warnings.push(format!(
                        "attempt {} of {} failed ({}); retrying in {} s",
                        self.report.attempts,
                        cmd.display(),
                        error_summary(&out),
                        delay.as_secs()
                    ));
                    self.host.sleep(delay);
                    delay = delay
                        .saturating_mul(2)
                        .min(MAX_RETRY_DELAY.max(self.settings.retry_delay));
                }
                _ => return Err(self.failed(kind, &cmd, &out)),
            }
        }
    }

    /// Folds one successful install/remove run's own summary into the report.
    fn note_transaction(&mut self, out: &Output) {
        let this = query::transaction_changed(&out.stdout);
        self.report.transactions += 1;
        self.report.transactions_changed = if self.report.transactions == 1 {
            this
        } else {
            match (self.report.transactions_changed, this) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }
        };
    }

    /// A busy lock after apt-get gave up on it: wait again if the deadline allows.
    fn lock_busy(&mut self, path: &'static str, out: &Output) -> Result<(), AptError> {
        if self.remaining().is_zero() {
            if self.report.lock_holder.is_none() {
                self.report.lock_holder = self
                    .host
                    .lock_holder(Path::new(path))
                    .or_else(|| message_holder(out, path));
            }
            return Err(self.timeout_error(path));
        }
        if self.host.lock_holder(Path::new(path)).is_none() {
            // apt saw a holder we cannot: pause so we do not spin on apt-get.
            if self.report.lock_holder.is_none() {
                self.report.lock_holder = message_holder(out, path);
            }
            let pause = LOCK_RETRY_PAUSE.min(self.remaining());
            self.report.lock_wait += pause;
            self.host.sleep(pause);
        }
        self.wait_for(path)
    }

    /// `dpkg --configure -a`, once per run, after dpkg said it was interrupted.
    fn repair(&mut self) -> Result<(), AptError> {
        self.report.dpkg_repaired = true;
        loop {
            self.wait_for(FRONTEND_LOCK)?;
            let cmd = apt_tool("dpkg")
                .changes_system()
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(self.settings.dpkg_options.iter().map(|o| format!("--{o}")))
                .args(["--configure", "-a"])
                .output_limit(1024 * 1024);
            let out = self.attempt(&cmd)?;
            if out.success() {
                self.report.warnings.push(
                    "dpkg had been interrupted; ran 'dpkg --configure -a' to finish the pending configuration".into(),
                );
                return Ok(());
            }
            match classify(&out) {
                FailureKind::LockBusy => self.lock_busy(FRONTEND_LOCK, &out)?,
                kind => {
                    let mut err = self.failed(kind, &cmd, &out);
                    err.msg = format!(
                        "dpkg was interrupted and 'dpkg --configure -a' could not repair it: {}",
                        error_summary(&out)
                    );
                    return Err(err);
                }
            }
        }
    }

    fn attempt(&mut self, cmd: &Command) -> Result<Output, AptError> {
        self.report.attempts += 1;
        let out = self.host.run(cmd).map_err(|e| AptError {
            kind: ErrorKind::CannotRun,
            msg: e,
            rc: None,
        })?;
        self.report.stdout_tail = tail_lines(&out.stdout, TAIL_LINES);
        self.report.stderr_tail = tail_lines(&out.stderr, TAIL_LINES);
        Ok(out)
    }

    /// Waits for `path` to be free until the deadline, recording who made us wait.
    pub fn wait_for(&mut self, path: &str) -> Result<(), AptError> {
        let host = self.host;
        let p = Path::new(path);
        let wait = locks::wait_free_with(
            || host.lock_holder(p),
            || host.now(),
            |d| host.sleep(d),
            self.deadline,
        );
        self.report.lock_wait += wait.waited;
        if let Some(holder) = &wait.holder {
            if wait.free {
                self.report.warnings.push(format!(
                    "waited {:.1} s for {path}, held by {}",
                    wait.waited.as_secs_f64(),
                    holder.describe()
                ));
            }
            self.report.lock_holder = Some(holder.clone());
        }
        if wait.free {
            Ok(())
        } else {
            Err(self.timeout_error(path))
        }
    }

    fn timeout_error(&self, path: &str) -> AptError {
        let who = self
            .report
            .lock_holder
            .as_ref()
            .map(Holder::describe)
            .unwrap_or_else(|| "another process".into());
        AptError {
            kind: ErrorKind::LockTimeout,
            msg: format!(
                "gave up after waiting {:.0} s for {path}: it is held by {who}; raise lock_timeout (now {} s), or quiet background apt jobs first (apt_lockdown)",
                self.report.lock_wait.as_secs_f64(),
                self.settings.lock_timeout.as_secs()
            ),
            rc: None,
        }
    }

    fn failed(&self, kind: FailureKind, cmd: &Command, out: &Output) -> AptError {
        let hint = match kind {
            FailureKind::NotFound => "; check the name and version (apt-cache policy NAME), and the apt sources, or set update_cache: true",
            FailureKind::Transient => "; the network or the mirror failed on every attempt: check the apt sources and the host's DNS and proxy, or raise retries",
            FailureKind::DpkgInterrupted => "; 'dpkg --configure -a' already ran once in this task; repair the host by hand",
            _ if out.stderr.contains("Permission denied") => "; are you root? set become: true on the task",
            _ => "",
        };
        AptError {
            kind: ErrorKind::Failed(kind),
            msg: format!(
                "{} failed (rc {}): {}{hint}",
                cmd.display(),
                out.rc,
                error_summary(out)
            ),
            rc: Some(out.rc),
        }
    }
}

fn busy_lock_path(kind: FailureKind, out: &Output) -> &'static str {
    if kind == FailureKind::LockBusy {
        return FRONTEND_LOCK;
    }
    if out.stderr.contains(ARCHIVES_LOCK) || out.stderr.contains("/var/cache/apt/archives") {
        ARCHIVES_LOCK
    } else {
        LISTS_LOCK
    }
}

fn message_holder(out: &Output, path: &str) -> Option<Holder> {
    holder_in_message(&out.stderr).map(|(pid, command)| Holder {
        pid,
        command,
        path: path.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{fail, ok, FakeHost};
    use crate::names::specs;

    fn settings() -> Settings {
        Settings {
            lock_timeout: Duration::from_secs(60),
            ..Settings::default()
        }
    }

    const LISTS_BUSY: &str = "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)\nE: Unable to lock directory /var/lib/apt/lists/";
    const FRONTEND_BUSY: &str = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 812 (unattended-upgr)\nE: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?";
    const INTERRUPTED: &str = "E: dpkg was interrupted, you must manually run 'dpkg --configure -a' to correct the problem.";
    const NET: &str = "E: Failed to fetch http://deb.debian.org/debian/pool/main/c/curl/curl.deb  Temporary failure resolving 'deb.debian.org'\nE: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?";

    #[test]
    fn install_runs_apt_get_with_the_lock_timeout_and_dpkg_options() {
        let host = FakeHost::new();
        host.on("apt-get", ok("Setting up curl (7.88) ...\n"));
        let mut engine = Engine::new(&host, settings());
        engine.install(&specs(&["curl", "jq=1.6"])).unwrap();
        let cmds = host.commands();
        assert_eq!(
            cmds,
            ["apt-get -q -y -o DPkg::Lock::Timeout=60 --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install curl jq=1.6"]
        );
        assert_eq!(engine.report.attempts, 1);
        assert_eq!(engine.report.stdout_tail, "Setting up curl (7.88) ...");
        assert!(engine.report.lock_holder.is_none());
    }

    #[test]
    fn recommends_downgrades_and_remove_are_passed_through() {
        let host = FakeHost::new();
        host.always("apt-get", ok(""));
        let mut engine = Engine::new(
            &host,
            Settings {
                install_recommends: true,
                allow_downgrade: true,
                dpkg_options: vec!["force-confnew".into()],
                ..settings()
            },
        );
        engine.remove(&specs(&["nano"])).unwrap();
        assert_eq!(
            host.commands()[0],
            "apt-get -q -y -o DPkg::Lock::Timeout=60 --allow-downgrades -o Dpkg::Options::=--force-confnew remove nano"
        );
    }

    #[test]
    fn the_frontend_lock_is_waited_for_and_the_remaining_time_given_to_apt() {
        let host = FakeHost::new();
        host.hold(
            FRONTEND_LOCK,
            812,
            "/usr/bin/python3 /usr/bin/unattended-upgrade",
            Duration::from_secs(20),
        );
        host.on("apt-get", ok(""));
        let mut engine = Engine::new(&host, settings());
        engine.install(&specs(&["curl"])).unwrap();
        assert_eq!(engine.report.lock_wait, Duration::from_secs(20));
        assert_eq!(engine.report.lock_holder.as_ref().unwrap().pid, 812);
        // 60 s budget, 20 s spent waiting: apt-get gets the other 40.
        assert!(
            host.commands()[0].contains("DPkg::Lock::Timeout=40"),
            "{:?}",
            host.commands()
        );
        assert!(
            engine.report.warnings[0].contains("held by PID 812"),
            "{:?}",
            engine.report.warnings
        );
    }

    #[test]
    fn a_lock_held_past_the_deadline_fails_naming_the_holder() {
        let host = FakeHost::new();
        host.hold(
            FRONTEND_LOCK,
            812,
            "unattended-upgrade",
            Duration::from_secs(3600),
        );
        let mut engine = Engine::new(&host, settings());
        let err = engine.install(&specs(&["curl"])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::LockTimeout);
        assert!(
            err.msg
                .contains("waiting 60 s for /var/lib/dpkg/lock-frontend"),
            "{}",
            err.msg
        );
        assert!(
            err.msg.contains("PID 812 (unattended-upgrade)"),
            "{}",
            err.msg
        );
        assert!(
            host.commands().is_empty(),
            "apt-get must not run: {:?}",
            host.commands()
        );
        assert_eq!(host.elapsed(), Duration::from_secs(60));
    }

    #[test]
    fn a_zero_lock_timeout_fails_at_once_on_a_held_lock() {
        let host = FakeHost::new();
        host.hold(FRONTEND_LOCK, 9, "apt", Duration::from_secs(5));
        let mut engine = Engine::new(
            &host,
            Settings {
                lock_timeout: Duration::ZERO,
                ..settings()
            },
        );
        let err = engine.install(&specs(&["curl"])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::LockTimeout);
        assert_eq!(host.elapsed(), Duration::ZERO);
    }

    #[test]
    fn apt_reporting_the_lock_busy_is_retried_until_the_deadline() {
        // apt took longer than its Lock::Timeout (or is too old to have one): we look again.
        let host = FakeHost::new();
        host.on("apt-get", fail(100, FRONTEND_BUSY));
        host.on("apt-get", ok(""));
        let mut engine = Engine::new(&host, settings());
        engine.install(&specs(&["curl"])).unwrap();
        assert_eq!(engine.report.attempts, 2);
        // The holder only apt could see is reported from its message.
        assert_eq!(engine.report.lock_holder.as_ref().unwrap().pid, 812);

        let host = FakeHost::new();
        host.takes("apt-get", Duration::from_secs(60));
        host.always("apt-get", fail(100, FRONTEND_BUSY));
        let mut engine = Engine::new(&host, settings());
        let err = engine.install(&specs(&["curl"])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::LockTimeout);
        assert_eq!(engine.report.attempts, 1);
        assert!(err.msg.contains("PID 812"), "{}", err.msg);
    }

    #[test]
    fn update_is_retried_on_the_lists_lock_which_apt_never_waits_for() {
        let host = FakeHost::new();
        host.on("update", fail(100, LISTS_BUSY));
        host.on("update", fail(100, LISTS_BUSY));
        host.on(
            "update",
            ok("Hit:1 http://deb.debian.org/debian bookworm InRelease\n"),
        );
        let mut engine = Engine::new(&host, settings());
        engine.update().unwrap();
        assert_eq!(host.count("apt-get -q -y update"), 3);
        assert!(engine.report.cache_updated);
        assert_eq!(engine.report.lock_holder.as_ref().unwrap().pid, 4242);
        // Lock retries do not use up the transient retries.
        assert_eq!(engine.report.attempts, 3);

        // Held for good: bounded by the deadline, not by `retries`.
        let host = FakeHost::new();
        host.hold(
            LISTS_LOCK,
            4242,
            "apt-get update",
            Duration::from_secs(3600),
        );
        let mut engine = Engine::new(&host, settings());
        let err = engine.update().unwrap_err();
        assert_eq!(err.kind, ErrorKind::LockTimeout);
        assert!(err.msg.contains("/var/lib/apt/lists/lock"), "{}", err.msg);
    }

    #[test]
    fn update_warnings_are_passed_on() {
        let host = FakeHost::new();
        host.on("update", ok("W: Some index files failed to download. They have been ignored, or old ones used instead.\n"));
        let mut engine = Engine::new(&host, settings());
        engine.update().unwrap();
        assert!(engine.report.warnings[0].contains("Some index files failed"));
    }

    #[test]
    fn an_interrupted_dpkg_is_configured_once_then_retried() {
        let host = FakeHost::new();
        host.on("apt-get", fail(100, INTERRUPTED));
        host.on(
            "dpkg --force-confdef --force-confold --configure -a",
            ok(""),
        );
        host.on("apt-get", ok(""));
        let mut engine = Engine::new(&host, settings());
        engine.install(&specs(&["curl"])).unwrap();
        assert_eq!(host.count("--configure -a"), 1);
        assert_eq!(engine.report.attempts, 3);
        assert!(engine.report.dpkg_repaired);

        // Interrupted again after the repair: give up, do not loop.
        let host = FakeHost::new();
        host.always("apt-get", fail(100, INTERRUPTED));
        host.always("--configure -a", ok(""));
        let mut engine = Engine::new(&host, settings());
        let err = engine.install(&specs(&["curl"])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Failed(FailureKind::DpkgInterrupted));
        assert_eq!(host.count("--configure -a"), 1);

        // The repair itself fails.
        let host = FakeHost::new();
        host.on("apt-get", fail(100, INTERRUPTED));
        host.on("--configure -a", fail(1, "dpkg: error processing package x (--configure):\n subprocess installed post-installation script returned error exit status 1"));
        let mut engine = Engine::new(&host, settings());
        let err = engine.install(&specs(&["curl"])).unwrap_err();
        assert!(err.msg.contains("could not repair it"), "{}", err.msg);
    }

    #[test]
    fn transient_failures_are_retried_with_doubling_delays() {
        let host = FakeHost::new();
        host.on("apt-get", fail(100, NET));
        host.on("apt-get", fail(100, NET));
        host.on("apt-get", ok(""));
        let mut engine = Engine::new(
            &host,
            Settings {
                retry_delay: Duration::from_secs(5),
                ..settings()
            },
        );
        engine.install(&specs(&["curl"])).unwrap();
        assert_eq!(engine.report.attempts, 3);
        // 5 s, then 10 s.
        assert_eq!(host.elapsed(), Duration::from_secs(15));
        assert_eq!(engine.report.warnings.len(), 2);

        // Out of retries: the last failure, classified.
        let host = FakeHost::new();
        host.always("apt-get", fail(100, NET));
        let mut engine = Engine::new(
            &host,
            Settings {
                retries: 2,
                retry_delay: Duration::from_secs(40),
                ..settings()
            },
        );
        let err = engine.install(&specs(&["curl"])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Failed(FailureKind::Transient));
        assert_eq!(engine.report.attempts, 3);
        // 40 s, then 60 s (capped), not 80 s.
        assert_eq!(host.elapsed(), Duration::from_secs(100));
        assert!(
            err.msg.contains("Temporary failure resolving"),
            "{}",
            err.msg
        );
    }

    #[test]
    fn apt_commands_carry_the_tasks_proxy_settings() {
        std::env::set_var("https_proxy", "http://127.0.0.1:3128");
        let host = FakeHost::new();
        host.always("apt-get", ok(""));
        let engine = Engine::new(&host, settings());
        let cmd = engine.apt_command(&Step::Install(specs(&["curl"])), 10);
        assert_eq!(cmd.env_value("https_proxy"), Some("http://127.0.0.1:3128"));
        assert_eq!(
            apt_tool("apt-cache").env_value("https_proxy"),
            Some("http://127.0.0.1:3128")
        );
        std::env::remove_var("https_proxy");
    }

    #[test]
    fn a_policy_answer_too_long_to_read_whole_is_an_error() {
        let host = FakeHost::new();
        host.always(
            "apt-cache",
            Output {
                rc: 0,
                stdout: "curl:\n  Installed: (none)\n  Candidate: 7.88\n".into(),
                truncated: true,
                ..Output::default()
            },
        );
        let engine = Engine::new(&host, settings());
        let err = engine.policy(&["curl".to_string()]).unwrap_err();
        assert!(
            err.contains("apt-cache policy curl printed more than 16 MiB"),
            "{err}"
        );
    }

    #[test]
    fn a_404_from_the_mirror_is_not_retried() {
        let host = FakeHost::new();
        host.always(
            "apt-get",
            fail(100, "E: Failed to fetch http://deb.debian.org/debian/pool/main/c/curl/curl_7.88.1-10_amd64.deb  404  Not Found [IP: 1.2.3.4 80]\nE: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?"),
        );
        let mut engine = Engine::new(
            &host,
            Settings {
                retries: 3,
                retry_delay: Duration::from_secs(5),
                ..settings()
            },
        );
        let err = engine.install(&specs(&["curl"])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Failed(FailureKind::Permanent));
        assert_eq!(engine.report.attempts, 1);
        assert_eq!(host.elapsed(), Duration::ZERO);
        assert!(err.msg.contains("404  Not Found"), "{}", err.msg);
    }

    #[test]
    fn missing_packages_fail_at_once() {
        let host = FakeHost::new();
        host.always(
            "apt-get",
            fail(100, "E: Unable to locate package nosuchpkg"),
        );
        let mut engine = Engine::new(&host, settings());
        let err = engine.install(&specs(&["nosuchpkg"])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Failed(FailureKind::NotFound));
        assert_eq!(engine.report.attempts, 1);
        assert_eq!(err.rc, Some(100));
        assert!(
            err.msg.contains("Unable to locate package nosuchpkg"),
            "{}",
            err.msg
        );
    }

    #[test]
    fn absurd_timeouts_do_not_overflow_the_clock() {
        let host = FakeHost::new();
        host.on("apt-get", fail(100, NET));
        host.on("apt-get", ok(""));
        let mut engine = Engine::new(
            &host,
            Settings {
                lock_timeout: Duration::from_secs(u64::MAX),
                retry_delay: Duration::from_secs(1_000_000_000),
                ..settings()
            },
        );
        assert!(engine.remaining() > Duration::from_secs(86_400 * 365));
        engine.install(&specs(&["curl"])).unwrap();
    }

    #[test]
    fn a_missing_apt_get_is_reported() {
        let host = FakeHost::new();
        let mut engine = Engine::new(&host, settings());
        let err = engine.install(&specs(&["curl"])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::CannotRun);
    }

    #[test]
    fn queries_take_no_lock_and_parse() {
        let host = FakeHost::new();
        host.hold(FRONTEND_LOCK, 1, "apt", Duration::from_secs(3600));
        host.on(
            "dpkg-query",
            Output {
                rc: 1,
                stdout: "curl\tinstall ok installed\t7.88\n".into(),
                stderr: "dpkg-query: no packages found matching nosuch\n".into(),
                ..Output::default()
            },
        );
        let engine = Engine::new(&host, settings());
        let states = engine
            .dpkg_query(&["curl".into(), "nosuch".into()])
            .unwrap();
        assert!(states["curl"].installed());
        assert!(!states.contains_key("nosuch"));
        assert_eq!(host.elapsed(), Duration::ZERO);
        assert_eq!(
            host.commands()[0],
            "dpkg-query -W '-f=${Package}\\t${Status}\\t${Version}\\n' curl nosuch"
        );

        host.on("dpkg-query", fail(2, "dpkg-query: error: something else"));
        assert!(engine
            .dpkg_query(&[])
            .unwrap_err()
            .contains("something else"));
    }

    #[test]
    fn simulation_parses_and_takes_no_lock() {
        let host = FakeHost::new();
        host.on(
            "-s -o Debug::NoLocking=1",
            ok("Inst jq (1.6 Debian [amd64])\n"),
        );
        let engine = Engine::new(&host, settings());
        let changes = engine.simulate(&specs(&["jq"]), false).unwrap();
        assert_eq!(changes.installed[0].name, "jq");
        host.on("-s", fail(100, "E: Unable to locate package zz"));
        assert!(engine
            .simulate(&specs(&["zz"]), false)
            .unwrap_err()
            .contains("Unable to locate"));
    }

    #[test]
    fn cache_age_and_staleness() {
        let host = FakeHost::new();
        let engine = Engine::new(&host, settings());
        assert_eq!(engine.cache_age(), None);
        host.modified_ago("/var/lib/apt/lists", Duration::from_secs(5));
        // A recent but empty lists directory is a cache that was never filled.
        assert_eq!(engine.cache_age(), None);
        host.modified_ago(
            "/var/lib/apt/lists/deb.example_dists_stable_main_binary-amd64_Packages",
            Duration::from_secs(7200),
        );
        assert_eq!(engine.cache_age(), Some(Duration::from_secs(5)));
        host.modified_ago(
            "/var/lib/apt/periodic/update-success-stamp",
            Duration::from_secs(1),
        );
        assert_eq!(engine.cache_age(), Some(Duration::from_secs(1)));

        let hour = Duration::from_secs(3600);
        assert!(!cache_is_stale(false, Duration::ZERO, None));
        assert!(cache_is_stale(
            true,
            Duration::ZERO,
            Some(Duration::from_secs(1))
        ));
        assert!(cache_is_stale(true, hour, None));
        assert!(cache_is_stale(true, hour, Some(hour * 2)));
        assert!(!cache_is_stale(true, hour, Some(Duration::from_secs(100))));
    }

    #[test]
    fn dpkg_options_are_checked() {
        let ok = check_dpkg_options(&[
            "force-confdef".into(),
            "--force-confold".into(),
            "path-exclude=/usr/share/doc/*".into(),
        ])
        .unwrap();
        assert_eq!(
            ok,
            [
                "force-confdef",
                "force-confold",
                "path-exclude=/usr/share/doc/*"
            ]
        );
        for bad in ["force confdef", "-o", "x;y", "FORCE", "a=b c", ""] {
            let e = check_dpkg_options(&[bad.into()]).unwrap_err();
            assert!(e.starts_with("dpkg_options: "), "{e}");
        }
    }

    #[test]
    fn report_fields_are_what_modules_return() {
        let report = Report {
            attempts: 2,
            lock_wait: Duration::from_millis(12_345),
            lock_holder: Some(Holder {
                pid: 5,
                command: "apt".into(),
                path: FRONTEND_LOCK.into(),
            }),
            ..Report::default()
        };
        let fields: BTreeMap<_, _> = report.fields().into_iter().collect();
        assert_eq!(fields["attempts"], json!(2));
        assert_eq!(fields["lock_wait_seconds"], json!(12.35));
        assert_eq!(fields["lock_holder"], json!({"pid": 5, "command": "apt"}));
        assert_eq!(tail_lines("a\n\nb\nc\n", 2), "b\nc");
    }
}
