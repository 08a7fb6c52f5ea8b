//! Why an apt-get or dpkg run failed, from its exit code and output, and what to do about it.
//!
//! apt's messages are stable English under `LC_ALL=C` (runtime::Command always sets it).
//! The classes decide the engine's next step: wait for a lock, retry with backoff, repair an
//! interrupted dpkg once, or give up at once because retrying cannot help.

use runtime::Output;

/// The class of a failed run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The dpkg frontend or database lock is held by someone else.
    LockBusy,
    /// The lists lock (`apt-get update`) or archives lock (downloads) is held. apt never waits
    /// for these, whatever `DPkg::Lock::Timeout` says: we retry ourselves against the deadline.
    CacheLockBusy,
    /// Network or mirror trouble that a later attempt may not meet.
    Transient,
    /// "dpkg was interrupted, you must manually run 'dpkg --configure -a'".
    DpkgInterrupted,
    /// The package or version does not exist in the configured repositories.
    NotFound,
    /// Anything else: retrying will not help.
    Permanent,
}

impl FailureKind {
    /// The word the modules return as `failure_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::LockBusy => "lock_busy",
            FailureKind::CacheLockBusy => "cache_lock_busy",
            FailureKind::Transient => "transient",
            FailureKind::DpkgInterrupted => "dpkg_interrupted",
            FailureKind::NotFound => "not_found",
            FailureKind::Permanent => "permanent",
        }
    }
}

const LOCK_MARKERS: &[&str] = &[
    "Could not get lock",
    "Unable to acquire the dpkg frontend lock",
    "Unable to lock the administration directory",
    "Unable to lock directory",
    "dpkg frontend lock was locked by another process",
    "dpkg frontend lock is locked by another process",
    "dpkg status database is locked by another process",
];

const CACHE_LOCK_PATHS: &[&str] = &["/var/lib/apt/lists", "/var/cache/apt/archives"];

const NOT_FOUND_MARKERS: &[&str] = &[
    "Unable to locate package",
    "has no installation candidate",
    "Couldn't find any package by",
];

const TRANSIENT_MARKERS: &[&str] = &[
    "Temporary failure resolving",
    "Failed to fetch",
    "Connection failed",
    "Hash Sum mismatch",
    "Unable to fetch some archives",
    "Could not connect to",
    "Connection timed out",
    "Could not resolve",
    "Some index files failed to download",
    "Undetermined Error",
    "503  Service Unavailable",
    // Concurrent apt-get runs race on the binary cache outside any apt lock (seen with 16
    // concurrent runs in make itest-faults): one renames pkgcache.bin.XXXXXX over the file
    // another just removed. apt rebuilds the cache on the next run, so a retry succeeds.
    "Problem renaming the file /var/cache/apt/",
    "The package cache file is corrupted",
];

/// HTTP answers that say the file is not there (or not for us): the mirror answered, so a
/// retry gets the same answer. apt prints them as `Failed to fetch URL  404  Not Found`.
const CLIENT_ERROR_MARKERS: &[&str] = &[
    "  400  Bad Request",
    "  401  Unauthorized",
    "  403  Forbidden",
    "  404  Not Found",
    "  410  Gone",
];

/// Classifies a failed run. A run killed by its timeout counts as transient.
pub fn classify(out: &Output) -> FailureKind {
    let text = format!("{}\n{}", out.stderr, out.stdout);
    if text.contains("dpkg was interrupted") {
        return FailureKind::DpkgInterrupted;
    }
    let lock_lines: Vec<&str> = text
        .lines()
        .filter(|l| LOCK_MARKERS.iter().any(|m| l.contains(m)))
        .collect();
    if !lock_lines.is_empty() {
        let cache_only = lock_lines
            .iter()
            .all(|l| CACHE_LOCK_PATHS.iter().any(|p| l.contains(p)));
        return if cache_only {
            FailureKind::CacheLockBusy
        } else {
            FailureKind::LockBusy
        };
    }
    if NOT_FOUND_MARKERS.iter().any(|m| text.contains(m)) || version_not_found(&text) {
        return FailureKind::NotFound;
    }
    // Before the transient markers: "Failed to fetch" alone is network trouble, but not with
    // a 404 (stale lists or a wrong repository URL: `apt-get update` or the source must change).
    if text.lines().any(|l| {
        l.contains("Failed to fetch") && CLIENT_ERROR_MARKERS.iter().any(|m| l.contains(m))
    }) {
        return FailureKind::Permanent;
    }
    if out.timed_out || TRANSIENT_MARKERS.iter().any(|m| text.contains(m)) {
        return FailureKind::Transient;
    }
    FailureKind::Permanent
}

/// `E: Version '9.9' for 'curl' was not found`
fn version_not_found(text: &str) -> bool {
    text.lines()
        .any(|l| l.contains("Version '") && l.contains("' for '") && l.contains("was not found"))
}

/// The holder apt names in its lock message: `... It is held by process 1234 (apt-get)`.
pub fn holder_in_message(text: &str) -> Option<(u32, String)> {
    let rest = text.split("held by process ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let pid = digits.parse().ok()?;
    let command = rest[digits.len()..]
        .trim_start()
        .strip_prefix('(')
        .and_then(|r| r.split(')').next())
        .unwrap_or("")
        .to_string();
    Some((pid, command))
}

/// The `E:` lines of apt's output (its errors), or the last lines when there are none.
pub fn error_summary(out: &Output) -> String {
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .filter(|l| l.starts_with("E: ") || l.starts_with("dpkg: error"))
        .collect();
    if errors.is_empty() {
        out.tail(3)
    } else {
        errors.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(stderr: &str) -> Output {
        Output {
            rc: 100,
            stderr: stderr.into(),
            ..Output::default()
        }
    }

    #[test]
    fn lock_messages_are_lock_busy() {
        for text in [
            "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 812 (unattended-upgr)\nE: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?",
            "E: Could not get lock /var/lib/dpkg/lock - open (11: Resource temporarily unavailable)\nE: Unable to lock the administration directory (/var/lib/dpkg/), is another process using it?",
            "dpkg: error: dpkg frontend lock was locked by another process with pid 812",
        ] {
            assert_eq!(classify(&failed(text)), FailureKind::LockBusy, "{text}");
        }
    }

    #[test]
    fn lists_and_archives_locks_are_cache_lock_busy() {
        for text in [
            "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)\nE: Unable to lock directory /var/lib/apt/lists/",
            "E: Could not get lock /var/cache/apt/archives/lock. It is held by process 9 (apt)\nE: Unable to lock directory /var/cache/apt/archives/",
        ] {
            assert_eq!(classify(&failed(text)), FailureKind::CacheLockBusy, "{text}");
        }
    }

    #[test]
    fn network_trouble_is_transient() {
        for text in [
            "W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure resolving 'deb.debian.org'",
            "E: Failed to fetch http://x/pool/c/curl.deb  Connection failed [IP: 1.2.3.4 80]\nE: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?",
            "E: Failed to fetch store:/var/lib/apt/lists/partial/x  Hash Sum mismatch",
        ] {
            assert_eq!(classify(&failed(text)), FailureKind::Transient, "{text}");
        }
        let killed = Output {
            rc: 143,
            timed_out: true,
            ..Output::default()
        };
        assert_eq!(classify(&killed), FailureKind::Transient);
    }

    #[test]
    fn a_binary_cache_race_between_concurrent_runs_is_transient() {
        let text = "E: Problem renaming the file /var/cache/apt/pkgcache.bin.4ADeOZ to /var/cache/apt/pkgcache.bin - rename (2: No such file or directory)\nE: The package cache file is corrupted";
        assert_eq!(classify(&failed(text)), FailureKind::Transient);
        let text = "E: Problem renaming the file /var/cache/apt/srcpkgcache.bin.Xy12ab to /var/cache/apt/srcpkgcache.bin - rename (2: No such file or directory)";
        assert_eq!(classify(&failed(text)), FailureKind::Transient);
    }

    #[test]
    fn interrupted_dpkg_is_recognised_first() {
        let text = "E: dpkg was interrupted, you must manually run 'dpkg --configure -a' to correct the problem.";
        assert_eq!(classify(&failed(text)), FailureKind::DpkgInterrupted);
    }

    #[test]
    fn missing_packages_and_versions_are_not_found() {
        for text in [
            "E: Unable to locate package nosuchpkg",
            "E: Package 'python' has no installation candidate",
            "E: Version '9.9' for 'curl' was not found",
        ] {
            assert_eq!(classify(&failed(text)), FailureKind::NotFound, "{text}");
        }
    }

    #[test]
    fn everything_else_is_permanent() {
        for text in [
            "E: Sub-process /usr/bin/dpkg returned an error code (1)",
            "E: Could not open lock file /var/lib/dpkg/lock-frontend - open (13: Permission denied)",
            // The mirror answered: a retry gets the same 404.
            "E: Failed to fetch http://deb.debian.org/debian/pool/main/c/curl/curl_7.88.1-10_amd64.deb  404  Not Found [IP: 1.2.3.4 80]\nE: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?",
            "E: Failed to fetch https://apt.grafana.com/dists/stable/InRelease  403  Forbidden [IP: 1.2.3.4 443]\nE: Some index files failed to download. They have been ignored, or old ones used instead.",
            "",
        ] {
            assert_eq!(classify(&failed(text)), FailureKind::Permanent, "{text}");
        }
    }

    #[test]
    fn the_holder_named_by_apt_is_read() {
        assert_eq!(
            holder_in_message("E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 812 (unattended-upgr)"),
            Some((812, "unattended-upgr".to_string()))
        );
        assert_eq!(holder_in_message("E: Could not get lock x"), None);
    }

    #[test]
    fn summaries_prefer_error_lines() {
        let out = Output {
            rc: 100,
            stdout: "Reading package lists...\n".into(),
            stderr: "W: something\nE: Unable to locate package x\n".into(),
            ..Output::default()
        };
        assert_eq!(error_summary(&out), "E: Unable to locate package x");
        let out = Output {
            rc: 1,
            stdout: "a\nb\n".into(),
            ..Output::default()
        };
        assert_eq!(error_summary(&out), "a\nb");
    }
}
