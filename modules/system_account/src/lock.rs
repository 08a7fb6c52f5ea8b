//! Serialises concurrent runs of this module on one host.
//!
//! shadow-utils checks "does the name exist?" *before* it takes its own lock, and then
//! replaces any entry of that name: measured here with shadow 4.13, 16 concurrent
//! `groupadd loki` all exit 0 and the group ends up with the gid of the last one, so a user
//! created in between points at a gid that no longer exists. Its lock alone does not make
//! concurrent creates safe. Our runs therefore take an exclusive `flock` on the `etc`
//! directory for the whole observe-plan-act loop. A directory is always there (nothing to
//! create or leave behind), its inode never changes (useradd replaces `passwd` by rename, so
//! a lock on that file would be lost), and shadow-utils never flocks it, so useradd, run
//! while we hold it, is not blocked. Other tools that create accounts are not serialised by
//! it; for those the executor's re-check and retry on "already exists" and lock errors remain.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Held until dropped (dropping unlocks and closes the descriptor).
pub struct DirLock {
    _lock: Flock<File>,
}

/// Waits up to `timeout` for an exclusive lock on the directory.
pub fn lock_dir(dir: &Path, timeout: Duration) -> Result<DirLock, String> {
    let mut file = File::open(dir).map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(DirLock { _lock: lock }),
            Err((file, Errno::EWOULDBLOCK | Errno::EINTR)) => file,
            Err((_, errno)) => {
                return Err(format!(
                    "cannot lock {}: {}",
                    dir.display(),
                    std::io::Error::from(errno)
                ))
            }
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "another system_account run kept {} locked for {}s; try again when it has finished",
                dir.display(),
                timeout.as_secs()
            ));
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_waits_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_dir(dir.path(), Duration::from_secs(1)).unwrap();
        let start = Instant::now();
        let err = lock_dir(dir.path(), Duration::from_millis(200))
            .err()
            .expect("the lock is held");
        assert!(err.contains("kept") && err.contains("locked"), "{err}");
        assert!(start.elapsed() >= Duration::from_millis(200));
        drop(held);
        assert!(lock_dir(dir.path(), Duration::from_millis(200)).is_ok());
    }

    #[test]
    fn a_missing_directory_is_named() {
        let err = lock_dir(Path::new("/nonexistent/etc"), Duration::from_millis(10))
            .err()
            .unwrap();
        assert!(err.contains("/nonexistent/etc"), "{err}");
    }
}
