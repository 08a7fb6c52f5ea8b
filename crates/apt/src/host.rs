//! Everything the engine asks of the machine, behind one trait, so tests can script apt-get's
//! answers, lock holders and the clock, and run the real decision logic without root, without
//! apt, and without waiting.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use runtime::{Command, Output};

use crate::locks::{self, Holder};

/// The machine, as the engine sees it.
pub trait Host {
    /// Runs a command. `Err` only when it could not be started.
    fn run(&self, cmd: &Command) -> Result<Output, String>;
    /// The process holding a lock on `path`, if any.
    fn lock_holder(&self, path: &Path) -> Option<Holder>;
    /// A monotonic clock, for deadlines.
    fn now(&self) -> Instant;
    fn sleep(&self, duration: Duration);
    /// The wall clock, for the age of file modification times.
    fn wall_clock(&self) -> SystemTime;
    /// A file's modification time, `None` when it does not exist.
    fn modified(&self, path: &Path) -> Option<SystemTime>;
    fn exists(&self, path: &Path) -> bool;
    /// Whether `dir` holds any package index (`*_Packages*`): a host whose lists were never
    /// fetched, or were cleaned, has none, whatever the directory's own mtime says.
    fn has_package_lists(&self, dir: &Path) -> bool;
}

/// The real machine.
#[derive(Clone, Copy, Debug, Default)]
pub struct System;

impl Host for System {
    fn run(&self, cmd: &Command) -> Result<Output, String> {
        cmd.run()
    }
    fn lock_holder(&self, path: &Path) -> Option<Holder> {
        locks::holder(path)
    }
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration)
    }
    fn wall_clock(&self) -> SystemTime {
        SystemTime::now()
    }
    fn modified(&self, path: &Path) -> Option<SystemTime> {
        std::fs::metadata(path).and_then(|m| m.modified()).ok()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn has_package_lists(&self, dir: &Path) -> bool {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
            })
            .unwrap_or(false)
    }
}
