//! Who holds an apt/dpkg lock, and waiting until nobody does.
//!
//! apt and dpkg lock with `fcntl` record locks on fixed files (`/var/lib/dpkg/lock-frontend`
//! first, then `/var/lib/dpkg/lock`; `/var/lib/apt/lists/lock` during an update,
//! `/var/cache/apt/archives/lock` while downloading). A lock *file* that exists blocks nobody:
//! only a live process holding a lock on it does. The kernel lists every held lock in
//! `/proc/locks` by device and inode, with the holder's PID, so we stat the lock file and look
//! it up there. That needs no privileges, takes no lock itself, and names the holder, which is
//! what a person reading a failed deploy needs ("held by PID 812, unattended-upgrade").

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

/// dpkg's frontend lock: apt-get, apt, unattended-upgrade, packagekit all take it first.
pub const FRONTEND_LOCK: &str = "/var/lib/dpkg/lock-frontend";
/// dpkg's own database lock.
pub const DPKG_LOCK: &str = "/var/lib/dpkg/lock";
/// Held by `apt-get update` (apt never waits for it).
pub const LISTS_LOCK: &str = "/var/lib/apt/lists/lock";
/// Held while packages are downloaded (apt never waits for it).
pub const ARCHIVES_LOCK: &str = "/var/cache/apt/archives/lock";
/// How often a wait looks at `/proc/locks` again.
pub const POLL: Duration = Duration::from_millis(250);

/// A process holding a lock on a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// 0 when the kernel does not say (an open-file-description lock, or a holder outside our
    /// PID namespace).
    pub pid: u32,
    /// Its command line, or `[comm]`, or "unknown" when it could not be read.
    pub command: String,
    /// The lock file.
    pub path: PathBuf,
}

impl Holder {
    /// "PID 812 (/usr/bin/python3 /usr/bin/unattended-upgrade)", for messages.
    pub fn describe(&self) -> String {
        if self.pid == 0 {
            format!("an unidentified process ({})", self.command)
        } else {
            format!("PID {} ({})", self.pid, self.command)
        }
    }

    /// `{pid, command}` as the modules return it (`lock_holder`).
    pub fn to_json(&self) -> Json {
        json!({"pid": self.pid, "command": self.command, "path": self.path.to_string_lossy()})
    }
}

/// One held lock from `/proc/locks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockEntry {
    /// `None` for open-file-description locks (the kernel prints -1).
    pub pid: Option<u32>,
    pub major: u32,
    pub minor: u32,
    pub inode: u64,
}

/// Parses `/proc/locks`. Lines for processes *waiting* for a lock (`->`) are skipped: they
/// block nobody. Lines that do not parse are skipped too; the format has been stable since
/// Linux 2.6 but a probe must never fail a deploy.
///
/// ```text
/// 1: POSIX  ADVISORY  WRITE 1234 08:01:131090 0 EOF
/// 1: -> POSIX  ADVISORY  WRITE 1240 08:01:131090 0 EOF
/// 2: OFDLCK ADVISORY  READ  -1 00:06:9195 0 EOF
/// ```
pub fn parse_proc_locks(text: &str) -> Vec<LockEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<LockEntry> {
    let mut fields = line.split_whitespace();
    let _ordinal = fields.next()?;
    let kind = fields.next()?;
    if kind == "->" {
        return None;
    }
    let _advisory = fields.next()?;
    let _mode = fields.next()?;
    let pid = fields.next()?;
    let id = fields.next()?;
    let pid = match pid.parse::<i64>().ok()? {
        p if p > 0 => Some(u32::try_from(p).ok()?),
        _ => None,
    };
    let mut parts = id.split(':');
    let major = u32::from_str_radix(parts.next()?, 16).ok()?;
    let minor = u32::from_str_radix(parts.next()?, 16).ok()?;
    let inode = parts.next()?.parse::<u64>().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(LockEntry {
        pid,
        major,
        minor,
        inode,
    })
}

/// The held locks on the file with this device and inode.
pub fn locks_on(entries: &[LockEntry], major: u32, minor: u32, inode: u64) -> Vec<LockEntry> {
    entries
        .iter()
        .filter(|e| e.major == major && e.minor == minor && e.inode == inode)
        .copied()
        .collect()
}

/// The holder of a lock on `path`, or `None` when nobody holds one (or the file is missing).
pub fn holder(path: &Path) -> Option<Holder> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    holder_from(&text, path)
}

/// `holder` with the content of `/proc/locks` given.
pub fn holder_from(proc_locks: &str, path: &Path) -> Option<Holder> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let dev = meta.dev();
    let entries = parse_proc_locks(proc_locks);
    let mut found = locks_on(&entries, libc::major(dev), libc::minor(dev), meta.ino());
    if found.is_empty() {
        // On some file systems (btrfs subvolumes) stat's device is not the superblock device
        // /proc/locks prints. Fall back to the inode, but only for holders that really have
        // this file open, so an unrelated lock on another device is never blamed.
        found = entries
            .iter()
            .filter(|e| e.inode == meta.ino())
            .filter(|e| e.pid.is_some_and(|pid| has_open(pid, path)))
            .copied()
            .collect();
    }
    // Prefer a holder we can name.
    found.sort_by_key(|e| e.pid.is_none());
    let entry = found.first()?;
    Some(match entry.pid {
        Some(pid) => Holder {
            pid,
            command: command_of(pid),
            path: path.to_path_buf(),
        },
        None => Holder {
            pid: 0,
            command: "open file description lock, PID not reported by the kernel".into(),
            path: path.to_path_buf(),
        },
    })
}

fn has_open(pid: u32, path: &Path) -> bool {
    let Ok(want) = std::fs::canonicalize(path) else {
        return false;
    };
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    dir.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == want))
}

/// The command line of a process, bounded; `[comm]` for kernel threads or unreadable ones.
pub fn command_of(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let text = if words.is_empty() {
        match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            Ok(comm) => format!("[{}]", comm.trim()),
            Err(_) => "unknown (process already gone)".into(),
        }
    } else {
        words.join(" ")
    };
    bounded(&text, 200)
}

fn bounded(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max - 3).collect();
        format!("{cut}...")
    }
}

/// The result of waiting for a lock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wait {
    /// How long we waited (zero when the lock was free at once).
    pub waited: Duration,
    /// The last process seen holding it (on a timeout: the one still holding it).
    pub holder: Option<Holder>,
    /// The lock was free when we stopped waiting.
    pub free: bool,
}

/// Waits until nobody holds a lock on `path`, or the deadline passes.
pub fn wait_free(path: &Path, deadline: Instant) -> Wait {
    wait_free_with(|| holder(path), Instant::now, std::thread::sleep, deadline)
}

/// `wait_free` with the probe and the clock given, so the logic is testable without waiting.
pub fn wait_free_with(
    mut probe: impl FnMut() -> Option<Holder>,
    mut now: impl FnMut() -> Instant,
    mut sleep: impl FnMut(Duration),
    deadline: Instant,
) -> Wait {
    let start = now();
    let mut last = None;
    loop {
        let current = probe();
        let t = now();
        match current {
            None => {
                return Wait {
                    waited: t.saturating_duration_since(start),
                    holder: last,
                    free: true,
                }
            }
            Some(h) => last = Some(h),
        }
        if t >= deadline {
            return Wait {
                waited: t.saturating_duration_since(start),
                holder: last,
                free: false,
            };
        }
        sleep(POLL.min(deadline.saturating_duration_since(t)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::io::Read;
    use std::os::unix::io::AsRawFd;

    const SAMPLE: &str = "\
1: POSIX  ADVISORY  WRITE 1234 08:01:131090 0 EOF
1: -> POSIX  ADVISORY  WRITE 1240 08:01:131090 0 EOF
2: FLOCK  ADVISORY  WRITE 567 fd:00:42 0 EOF
3: OFDLCK ADVISORY  READ  -1 00:06:9195 0 EOF
4: POSIX  ADVISORY  READ  88 103:0a:7 0 EOF
garbage line
5: POSIX ADVISORY WRITE 12 zz:01:1 0 EOF
";

    #[test]
    fn proc_locks_lines_parse_and_waiters_are_skipped() {
        let entries = parse_proc_locks(SAMPLE);
        assert_eq!(
            entries,
            vec![
                LockEntry {
                    pid: Some(1234),
                    major: 8,
                    minor: 1,
                    inode: 131090
                },
                LockEntry {
                    pid: Some(567),
                    major: 0xfd,
                    minor: 0,
                    inode: 42
                },
                LockEntry {
                    pid: None,
                    major: 0,
                    minor: 6,
                    inode: 9195
                },
                LockEntry {
                    pid: Some(88),
                    major: 0x103,
                    minor: 0x0a,
                    inode: 7
                },
            ]
        );
        assert!(parse_proc_locks("").is_empty());
    }

    #[test]
    fn locks_are_matched_by_device_and_inode() {
        let entries = parse_proc_locks(SAMPLE);
        let found = locks_on(&entries, 8, 1, 131090);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].pid, Some(1234));
        // Same inode on another device is someone else's file.
        assert!(locks_on(&entries, 8, 2, 131090).is_empty());
        assert!(locks_on(&entries, 8, 1, 131091).is_empty());
    }

    #[test]
    fn a_missing_file_or_an_unlocked_file_has_no_holder() {
        assert_eq!(holder_from(SAMPLE, Path::new("/nonexistent/lock")), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock-frontend");
        std::fs::write(&path, "").unwrap();
        // The file exists, nobody holds it: it blocks nobody.
        assert_eq!(holder(&path), None);
    }

    #[test]
    fn holder_descriptions_name_pid_and_command() {
        let h = Holder {
            pid: 812,
            command: "/usr/bin/python3 /usr/bin/unattended-upgrade".into(),
            path: FRONTEND_LOCK.into(),
        };
        assert_eq!(
            h.describe(),
            "PID 812 (/usr/bin/python3 /usr/bin/unattended-upgrade)"
        );
        assert_eq!(h.to_json()["pid"], json!(812));
        let unknown = Holder { pid: 0, ..h };
        assert!(unknown.describe().starts_with("an unidentified process"));
    }

    #[test]
    fn our_own_process_has_a_readable_command_line() {
        let me = command_of(std::process::id());
        assert!(!me.is_empty() && !me.starts_with("unknown"), "{me}");
        assert_eq!(bounded(&"x".repeat(300), 10), "xxxxxxx...");
    }

    /// A child process holding a real fcntl (POSIX record) lock, like apt's.
    struct Locker {
        pid: libc::pid_t,
    }

    impl Locker {
        fn lock(path: &Path) -> Locker {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .unwrap();
            let mut fds = [0; 2];
            // SAFETY: pipe(2) fills the two-element array.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            // SAFETY: the child only calls async-signal-safe functions (fcntl, write, pause,
            // _exit) before it is killed.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                unsafe {
                    let mut lock: libc::flock = std::mem::zeroed();
                    lock.l_type = libc::F_WRLCK as libc::c_short;
                    lock.l_whence = libc::SEEK_SET as libc::c_short;
                    if libc::fcntl(file.as_raw_fd(), libc::F_SETLKW, &lock) == 0 {
                        libc::write(fds[1], b"L".as_ptr().cast(), 1);
                    }
                    loop {
                        libc::pause();
                    }
                }
            }
            // SAFETY: closing our copy of the write end.
            unsafe { libc::close(fds[1]) };
            let mut ready = [0u8; 1];
            // SAFETY: fds[0] is the read end we own; File closes it on drop.
            let mut reader =
                unsafe { <std::fs::File as std::os::unix::io::FromRawFd>::from_raw_fd(fds[0]) };
            reader.read_exact(&mut ready).expect("child took the lock");
            Locker { pid }
        }

        fn release(&mut self) {
            if self.pid > 0 {
                // SAFETY: kill and reap our own child.
                unsafe {
                    libc::kill(self.pid, libc::SIGKILL);
                    libc::waitpid(self.pid, std::ptr::null_mut(), 0);
                }
                self.pid = 0;
            }
        }
    }

    impl Drop for Locker {
        fn drop(&mut self) {
            self.release();
        }
    }

    #[test]
    fn a_real_fcntl_lock_is_found_with_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock-frontend");
        let mut locker = Locker::lock(&path);
        let found = holder(&path).expect("the child's lock is in /proc/locks");
        assert_eq!(found.pid, locker.pid as u32);
        assert_eq!(found.path, path);
        // A forked child shares our command line.
        assert_eq!(found.command, command_of(std::process::id()));

        // Released (the holder died): free again, and a wait returns at once.
        locker.release();
        assert_eq!(holder(&path), None);
        let wait = wait_free(&path, Instant::now() + Duration::from_secs(5));
        assert!(wait.free && wait.holder.is_none());
        assert!(wait.waited < Duration::from_secs(1));
    }

    #[test]
    fn a_wait_ends_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let locker = Locker::lock(&path);
        let pid = locker.pid as u32;
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(600));
            drop(locker);
        });
        let wait = wait_free(&path, Instant::now() + Duration::from_secs(20));
        releaser.join().unwrap();
        assert!(wait.free);
        assert!(wait.waited >= Duration::from_millis(400), "{wait:?}");
        assert_eq!(wait.holder.map(|h| h.pid), Some(pid));
    }

    #[test]
    fn a_wait_gives_up_at_the_deadline_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let locker = Locker::lock(&path);
        let start = Instant::now();
        let wait = wait_free(&path, start + Duration::from_millis(600));
        assert!(!wait.free);
        assert_eq!(wait.holder.map(|h| h.pid), Some(locker.pid as u32));
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(wait.waited >= Duration::from_millis(500));
    }

    #[test]
    fn the_wait_logic_polls_until_free_on_a_virtual_clock() {
        let base = Instant::now();
        let clock = Cell::new(Duration::ZERO);
        let holder = Holder {
            pid: 7,
            command: "apt-get update".into(),
            path: LISTS_LOCK.into(),
        };
        // Held for 2 s of virtual time, then free.
        let wait = wait_free_with(
            || (clock.get() < Duration::from_secs(2)).then(|| holder.clone()),
            || base + clock.get(),
            |d| clock.set(clock.get() + d),
            base + Duration::from_secs(10),
        );
        assert!(wait.free);
        assert_eq!(wait.waited, Duration::from_secs(2));
        assert_eq!(wait.holder.as_ref().map(|h| h.pid), Some(7));

        // Never free: stops exactly at the deadline.
        clock.set(Duration::ZERO);
        let wait = wait_free_with(
            || Some(holder.clone()),
            || base + clock.get(),
            |d| clock.set(clock.get() + d),
            base + Duration::from_millis(1100),
        );
        assert!(!wait.free);
        assert_eq!(wait.waited, Duration::from_millis(1100));

        // A zero budget still looks once.
        clock.set(Duration::ZERO);
        let wait = wait_free_with(|| None, || base, |_| {}, base);
        assert!(wait.free && wait.waited.is_zero());
    }
}
