//! What dpkg knows about installed packages, read from its database files instead of one
//! `dpkg-query` process: `/var/lib/dpkg/status`, then the journal entries in
//! `/var/lib/dpkg/updates/` that dpkg has not merged into it yet (after an interrupted run),
//! applied in order, as dpkg-query itself does when it loads the database.

use std::collections::BTreeMap;
use std::path::Path;

/// One package instance (a name and an architecture) as the database records it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub package: String,
    pub architecture: String,
    /// The third word of `Status:` (`installed`, `config-files`, `half-installed`, ...);
    /// `not-installed` when the field is missing.
    pub status: String,
    pub version: String,
}

impl Record {
    pub fn installed(&self) -> bool {
        self.status == "installed"
    }
}

/// The records of a database, later entries replacing earlier ones of the same name and
/// architecture (the journal overrides the status file).
#[derive(Clone, Debug, Default)]
pub struct Db {
    records: BTreeMap<(String, String), Record>,
}

impl Db {
    /// Reads `ADMINDIR/status` and `ADMINDIR/updates/NNNN`.
    pub fn load(admindir: &Path) -> Result<Db, String> {
        let status = admindir.join("status");
        let text = std::fs::read(&status)
            .map_err(|e| format!("cannot read the dpkg database {}: {e}", status.display()))?;
        let mut db = Db::default();
        db.apply(&String::from_utf8_lossy(&text));
        // dpkg names its journal entries with digits only; anything else there (a tmp.i being
        // written) is not part of the database yet.
        let updates = admindir.join("updates");
        let mut entries: Vec<(u64, std::path::PathBuf)> = match std::fs::read_dir(&updates) {
            Ok(dir) => dir
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let n = name.parse::<u64>().ok()?;
                    name.bytes()
                        .all(|b| b.is_ascii_digit())
                        .then(|| (n, e.path()))
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        entries.sort();
        for (_, path) in entries {
            let text = std::fs::read(&path).map_err(|e| {
                format!("cannot read the dpkg journal entry {}: {e}", path.display())
            })?;
            db.apply(&String::from_utf8_lossy(&text));
        }
        Ok(db)
    }

    /// Adds the stanzas of one file of the database.
    pub fn apply(&mut self, text: &str) {
        for record in parse(text) {
            self.records.insert(
                (record.package.clone(), record.architecture.clone()),
                record,
            );
        }
    }

    /// The record for `name` (or `name:arch`): with an architecture, exactly that instance;
    /// without, the installed instance if there is one, else any recorded one.
    pub fn find(&self, name: &str) -> Option<&Record> {
        let (package, arch) = match name.split_once(':') {
            Some((p, a)) => (p, Some(a)),
            None => (name, None),
        };
        let all: Vec<&Record> = self
            .records
            .values()
            .filter(|r| r.package == package && arch.is_none_or(|a| r.architecture == a))
            .collect();
        all.iter()
            .find(|r| r.installed())
            .or_else(|| all.first())
            .copied()
    }
}

/// The stanzas of a status-format text, keeping only the fields we answer with. Continuation
/// lines (starting with a space or tab) belong to the field before them and are skipped.
pub fn parse(text: &str) -> Vec<Record> {
    let mut out = Vec::new();
    let mut current = Record::default();
    let mut seen = false;
    let finish = |current: &mut Record, seen: &mut bool, out: &mut Vec<Record>| {
        if *seen && !current.package.is_empty() {
            if current.status.is_empty() {
                current.status = "not-installed".into();
            }
            out.push(std::mem::take(current));
        }
        *current = Record::default();
        *seen = false;
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            finish(&mut current, &mut seen, &mut out);
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        seen = true;
        let value = value.trim();
        // Field names are case-insensitive in deb822.
        match key.trim().to_ascii_lowercase().as_str() {
            "package" => current.package = value.to_string(),
            "architecture" => current.architecture = value.to_string(),
            "version" => current.version = value.to_string(),
            "status" => {
                current.status = value
                    .split_whitespace()
                    .nth(2)
                    .unwrap_or("not-installed")
                    .to_string()
            }
            _ => {}
        }
    }
    finish(&mut current, &mut seen, &mut out);
    out
}

/// Checks a package name from a task: Debian's package name rules (the apt engine's check, the
/// one apt_packages applies), optionally with `:arch` as dpkg-query takes it.
pub fn check_name(name: &str) -> Result<(), String> {
    let (package, arch) = match name.split_once(':') {
        Some((p, a)) => (p, Some(a)),
        None => (name, None),
    };
    apt::names::check_name(package)?;
    if let Some(arch) = arch {
        if arch.is_empty() || !arch.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("'{arch}' is not an architecture name"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: loki
Status: install ok installed
Priority: optional
Architecture: amd64
Version: 3.5.7
Description: LAB STAND-IN
 a continuation line
 Version: 0.0.1 (never a field)

Package: grafana
Status: deinstall ok config-files
Architecture: amd64
Version: 12.1.1

package: libc6
status: install ok installed
architecture: i386
version: 2.36-9

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u4
Conffiles:
 /etc/ld.so.conf.d/x86_64-linux-gnu.conf 0123

Package: gone
Architecture: amd64
";

    #[test]
    fn parses_the_fields_and_skips_continuations() {
        let recs = parse(STATUS);
        let names: Vec<(&str, &str, &str, &str)> = recs
            .iter()
            .map(|r| {
                (
                    r.package.as_str(),
                    r.architecture.as_str(),
                    r.status.as_str(),
                    r.version.as_str(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("loki", "amd64", "installed", "3.5.7"),
                ("grafana", "amd64", "config-files", "12.1.1"),
                ("libc6", "i386", "installed", "2.36-9"),
                ("libc6", "amd64", "installed", "2.36-9+deb12u4"),
                ("gone", "amd64", "not-installed", ""),
            ]
        );
    }

    #[test]
    fn finds_by_name_and_architecture() {
        let mut db = Db::default();
        db.apply(STATUS);
        assert_eq!(db.find("loki").map(|r| r.version.as_str()), Some("3.5.7"));
        assert!(!db.find("grafana").unwrap().installed());
        assert_eq!(
            db.find("libc6:i386").map(|r| r.version.as_str()),
            Some("2.36-9")
        );
        assert_eq!(
            db.find("libc6:amd64").map(|r| r.version.as_str()),
            Some("2.36-9+deb12u4")
        );
        assert!(db.find("libc6:arm64").is_none());
        assert!(db.find("alloy").is_none());
    }

    #[test]
    fn the_journal_overrides_the_status_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), STATUS).unwrap();
        std::fs::create_dir(dir.path().join("updates")).unwrap();
        // dpkg was killed while upgrading loki and after removing grafana's conffiles.
        std::fs::write(
            dir.path().join("updates/0001"),
            "Package: loki\nStatus: install ok half-configured\nArchitecture: amd64\nVersion: 3.6.0\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("updates/0000"),
            "Package: loki\nStatus: install ok unpacked\nArchitecture: amd64\nVersion: 3.5.9\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("updates/tmp.i"),
            "Package: loki\nStatus: install ok installed\nArchitecture: amd64\nVersion: 9.9\n",
        )
        .unwrap();
        let db = Db::load(dir.path()).unwrap();
        let loki = db.find("loki").unwrap();
        assert_eq!(
            (loki.status.as_str(), loki.version.as_str()),
            ("half-configured", "3.6.0")
        );
    }

    #[test]
    fn a_missing_database_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Db::load(dir.path()).unwrap_err();
        assert!(
            err.contains("cannot read the dpkg database") && err.contains("status"),
            "{err}"
        );
    }

    #[test]
    fn package_names_are_checked() {
        for good in [
            "loki",
            "linux-headers-6.1.0-13-amd64",
            "g++",
            "libc6:amd64",
            "0ad",
        ] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("Loki", "upper-case letter 'L'"),
            ("loki 3", "a space"),
            ("-loki", "option"),
            ("libc6:", "architecture"),
            ("libc6:a/b", "architecture"),
        ] {
            let err = check_name(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
