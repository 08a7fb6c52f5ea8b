//! A scripted `Host` for tests: commands answer what the test says, lock holders come and go
//! on a virtual clock, and `sleep` only moves that clock. Used by this crate's tests and by the
//! module crates' tests; the linker leaves it out of the binaries.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use runtime::{Command, Output};

use crate::host::Host;
use crate::locks::Holder;

struct Rule {
    needle: String,
    output: Output,
    sticky: bool,
    used: bool,
}

struct HeldLock {
    path: PathBuf,
    until: Duration,
    holder: Holder,
}

/// A scripted machine.
pub struct FakeHost {
    base: Instant,
    wall_base: SystemTime,
    elapsed: Cell<Duration>,
    rules: RefCell<Vec<Rule>>,
    log: RefCell<Vec<String>>,
    locks: RefCell<Vec<HeldLock>>,
    mtimes: RefCell<BTreeMap<PathBuf, SystemTime>>,
    files: RefCell<BTreeSet<PathBuf>>,
    /// (needle, seconds the command takes on the virtual clock)
    durations: RefCell<Vec<(String, Duration)>>,
}

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost::new()
    }
}

/// A successful output with this stdout.
pub fn ok(stdout: &str) -> Output {
    Output {
        rc: 0,
        stdout: stdout.into(),
        ..Output::default()
    }
}

/// A failed output with this exit code and stderr.
pub fn fail(rc: i32, stderr: &str) -> Output {
    Output {
        rc,
        stderr: stderr.into(),
        ..Output::default()
    }
}

impl FakeHost {
    pub fn new() -> FakeHost {
        FakeHost {
            base: Instant::now(),
            wall_base: SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000),
            elapsed: Cell::new(Duration::ZERO),
            rules: RefCell::new(Vec::new()),
            log: RefCell::new(Vec::new()),
            locks: RefCell::new(Vec::new()),
            mtimes: RefCell::new(BTreeMap::new()),
            files: RefCell::new(BTreeSet::new()),
            durations: RefCell::new(Vec::new()),
        }
    }

    /// The next command whose display contains `needle` answers `output` (once; rules are
    /// used in the order given).
    pub fn on(&self, needle: &str, output: Output) -> &Self {
        self.rules.borrow_mut().push(Rule {
            needle: needle.into(),
            output,
            sticky: false,
            used: false,
        });
        self
    }

    /// Every command containing `needle` answers `output`, after the one-shot rules.
    pub fn always(&self, needle: &str, output: Output) -> &Self {
        self.rules.borrow_mut().push(Rule {
            needle: needle.into(),
            output,
            sticky: true,
            used: false,
        });
        self
    }

    /// Commands containing `needle` take this long on the virtual clock.
    pub fn takes(&self, needle: &str, duration: Duration) -> &Self {
        self.durations.borrow_mut().push((needle.into(), duration));
        self
    }

    /// `path` is locked by `pid`/`command` until `until` has passed on the virtual clock.
    pub fn hold(&self, path: &str, pid: u32, command: &str, until: Duration) -> &Self {
        self.locks.borrow_mut().push(HeldLock {
            path: path.into(),
            until,
            holder: Holder {
                pid,
                command: command.into(),
                path: path.into(),
            },
        });
        self
    }

    /// `path` was modified `age` before the fake's wall clock started.
    pub fn modified_ago(&self, path: &str, age: Duration) -> &Self {
        self.mtimes
            .borrow_mut()
            .insert(path.into(), self.wall_base - age);
        self.files.borrow_mut().insert(path.into());
        self
    }

    /// `path` exists.
    pub fn file(&self, path: &str) -> &Self {
        self.files.borrow_mut().insert(path.into());
        self
    }

    /// Every command run so far, as `Command::display` shows it.
    pub fn commands(&self) -> Vec<String> {
        self.log.borrow().clone()
    }

    /// The commands run so far that contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log
            .borrow()
            .iter()
            .filter(|c| c.contains(needle))
            .count()
    }

    /// Virtual time passed so far.
    pub fn elapsed(&self) -> Duration {
        self.elapsed.get()
    }
}

impl Host for FakeHost {
    fn run(&self, cmd: &Command) -> Result<Output, String> {
        let shown = cmd.display();
        self.log.borrow_mut().push(shown.clone());
        if let Some((_, d)) = self
            .durations
            .borrow()
            .iter()
            .find(|(n, _)| shown.contains(n.as_str()))
        {
            self.sleep(*d);
        }
        let mut rules = self.rules.borrow_mut();
        let pick = rules
            .iter()
            .position(|r| !r.sticky && !r.used && shown.contains(r.needle.as_str()))
            .or_else(|| {
                rules
                    .iter()
                    .position(|r| r.sticky && shown.contains(r.needle.as_str()))
            });
        match pick {
            Some(i) => {
                rules[i].used = true;
                Ok(rules[i].output.clone())
            }
            None => Err(format!("FakeHost: unexpected command: {shown}")),
        }
    }

    fn lock_holder(&self, path: &Path) -> Option<Holder> {
        let now = self.elapsed.get();
        self.locks
            .borrow()
            .iter()
            .find(|l| l.path == path && now < l.until)
            .map(|l| l.holder.clone())
    }

    fn now(&self) -> Instant {
        self.base + self.elapsed.get()
    }

    fn sleep(&self, duration: Duration) {
        self.elapsed
            .set(self.elapsed.get().saturating_add(duration));
    }

    fn wall_clock(&self) -> SystemTime {
        self.wall_base + self.elapsed.get()
    }

    fn modified(&self, path: &Path) -> Option<SystemTime> {
        self.mtimes.borrow().get(path).copied()
    }

    fn exists(&self, path: &Path) -> bool {
        self.files.borrow().contains(path)
    }

    fn has_package_lists(&self, dir: &Path) -> bool {
        self.files.borrow().iter().any(|f| {
            f.parent() == Some(dir)
                && f.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("_Packages"))
        })
    }
}
