//! Reading package state without taking any lock: `dpkg-query`, `apt-cache policy`, and the
//! simulated transaction `apt-get -s` prints. Each parser is a pure function.

use std::collections::BTreeMap;

/// The format every `dpkg-query -W` call uses.
pub const DPKG_QUERY_FORMAT: &str = "${Package}\\t${Status}\\t${Version}\\n";

/// What dpkg knows about one package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageState {
    /// `Status` as dpkg prints it: want, error flag, state (`install ok installed`).
    pub status: String,
    pub version: String,
}

impl PackageState {
    /// Really installed: unpacked and configured. `config-files` (removed, configuration left),
    /// `half-installed`, `unpacked` and the like are not.
    pub fn installed(&self) -> bool {
        self.status.split_whitespace().nth(2) == Some("installed")
    }
}

/// Packages by name, as `dpkg-query -W -f='${Package}\t${Status}\t${Version}\n'` prints them.
///
/// A name can appear more than once (one line per architecture under multiarch); an installed
/// line wins over one that is not.
pub fn parse_dpkg_query(text: &str) -> BTreeMap<String, PackageState> {
    let mut out: BTreeMap<String, PackageState> = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split('\t');
        let (Some(name), Some(status), version) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        let state = PackageState {
            status: status.trim().to_string(),
            version: version.unwrap_or("").trim().to_string(),
        };
        match out.get(name) {
            Some(existing) if existing.installed() && !state.installed() => {}
            _ => {
                out.insert(name.to_string(), state);
            }
        }
    }
    out
}

/// Only the installed packages, name → version.
pub fn installed_versions(states: &BTreeMap<String, PackageState>) -> BTreeMap<String, String> {
    states
        .iter()
        .filter(|(_, s)| s.installed())
        .map(|(n, s)| (n.clone(), s.version.clone()))
        .collect()
}

/// `apt-cache policy` for one package.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub installed: Option<String>,
    pub candidate: Option<String>,
    /// Every version apt knows of, as listed in the version table.
    pub versions: Vec<String>,
}

/// Parses `apt-cache policy NAME...` output. Packages apt does not know are simply absent.
pub fn parse_policy(text: &str) -> BTreeMap<String, Policy> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, Policy)> = None;
    let mut in_table = false;
    let none = |v: &str| -> Option<String> {
        let v = v.trim();
        (!v.is_empty() && v != "(none)").then(|| v.to_string())
    };
    for line in text.lines() {
        if !line.starts_with(' ') && line.trim_end().ends_with(':') {
            if let Some((name, policy)) = current.take() {
                out.insert(name, policy);
            }
            let name = line.trim_end().trim_end_matches(':');
            // `pkg:i386:` for a foreign architecture: keep the package name.
            let name = name.split(':').next().unwrap_or(name).to_string();
            current = Some((name, Policy::default()));
            in_table = false;
            continue;
        }
        let Some((_, policy)) = current.as_mut() else {
            continue;
        };
        let trimmed = line.trim();
        if let Some(v) = trimmed.strip_prefix("Installed:") {
            policy.installed = none(v);
        } else if let Some(v) = trimmed.strip_prefix("Candidate:") {
            policy.candidate = none(v);
        } else if trimmed.starts_with("Version table:") {
            in_table = true;
        } else if in_table {
            // Version lines are indented 5 (or ` *** `); their sources are indented 8.
            let indent = line.len() - line.trim_start().len();
            let entry = trimmed.trim_start_matches("***").trim();
            if indent <= 5 && !entry.is_empty() {
                if let Some(version) = entry.split_whitespace().next() {
                    policy.versions.push(version.to_string());
                }
            }
        }
    }
    if let Some((name, policy)) = current {
        out.insert(name, policy);
    }
    out
}

/// One change in a transaction.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    pub name: String,
    /// The new version (installs and upgrades) or the removed version (removals).
    pub version: String,
    /// The version before an upgrade or downgrade.
    pub from: Option<String>,
}

/// A transaction, as reported after the fact or simulated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub installed: Vec<Change>,
    pub upgraded: Vec<Change>,
    pub removed: Vec<Change>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.installed.is_empty() && self.upgraded.is_empty() && self.removed.is_empty()
    }
}

/// What `apt-get -s` would do, from its `Inst`/`Remv` lines:
///
/// ```text
/// Inst curl (7.88.1-10+deb12u5 Debian:12.5/stable [amd64])
/// Inst jq [1.6-2.1] (1.6-2.1+b1 Debian:12.5/stable [amd64])
/// Remv nano [7.2-1]
/// ```
pub fn parse_simulation(text: &str) -> Changes {
    let mut changes = Changes::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(action), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        let rest: Vec<&str> = words.collect();
        let bracketed = rest
            .first()
            .filter(|w| w.starts_with('[') && w.ends_with(']'))
            .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string());
        let parenthesised = rest
            .iter()
            .find(|w| w.starts_with('('))
            .map(|w| w.trim_start_matches('(').trim_end_matches(')').to_string());
        match action {
            "Inst" => {
                let Some(version) = parenthesised else {
                    continue;
                };
                let change = Change {
                    name: name.to_string(),
                    version,
                    from: bracketed.clone(),
                };
                if bracketed.is_some() {
                    changes.upgraded.push(change);
                } else {
                    changes.installed.push(change);
                }
            }
            "Remv" | "Purg" => changes.removed.push(Change {
                name: name.to_string(),
                version: bracketed.unwrap_or_default(),
                from: None,
            }),
            _ => {}
        }
    }
    changes
}

/// What changed between two `installed_versions` snapshots (before and after a transaction).
pub fn compare(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Changes {
    let mut changes = Changes::default();
    for (name, version) in after {
        match before.get(name) {
            None => changes.installed.push(Change {
                name: name.clone(),
                version: version.clone(),
                from: None,
            }),
            Some(old) if old != version => changes.upgraded.push(Change {
                name: name.clone(),
                version: version.clone(),
                from: Some(old.clone()),
            }),
            Some(_) => {}
        }
    }
    for (name, version) in before {
        if !after.contains_key(name) {
            changes.removed.push(Change {
                name: name.clone(),
                version: version.clone(),
                from: None,
            });
        }
    }
    changes
}

/// Whether an apt-get install/remove run changed any package, from its summary line
/// (`0 upgraded, 1 newly installed, 0 to remove and 3 not upgraded.`). `None` when the line is
/// not in the (bounded) output: then only a dpkg before/after comparison can tell.
pub fn transaction_changed(text: &str) -> Option<bool> {
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains(" newly installed"))?;
    let mut changed = false;
    for part in line
        .trim_end_matches('.')
        .split(", ")
        .flat_map(|p| p.split(" and "))
    {
        let mut words = part.split_whitespace();
        let count: u64 = words.next()?.parse().ok()?;
        // "not upgraded" counts packages this run left alone.
        if words.next() != Some("not") && count > 0 {
            changed = true;
        }
    }
    Some(changed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_transaction_summary_says_whether_this_run_changed_packages() {
        let idle = "Reading package lists...\nloki is already the newest version (3.5.7).\n0 upgraded, 0 newly installed, 0 to remove and 3 not upgraded.\n";
        assert_eq!(transaction_changed(idle), Some(false));
        let busy = "The following NEW packages will be installed:\n  loki\n0 upgraded, 1 newly installed, 0 to remove and 3 not upgraded.\nUnpacking loki ...\n";
        assert_eq!(transaction_changed(busy), Some(true));
        let down = "0 upgraded, 0 newly installed, 1 downgraded, 0 to remove and 0 not upgraded.\n";
        assert_eq!(transaction_changed(down), Some(true));
        assert_eq!(
            transaction_changed("0 upgraded, 0 newly installed, 2 to remove and 0 not upgraded."),
            Some(true)
        );
        assert_eq!(transaction_changed("Unpacking loki ...\n"), None);
    }
    use super::*;

    #[test]
    fn dpkg_query_lines_give_state_and_version() {
        let text = "curl\tinstall ok installed\t7.88.1-10+deb12u5\n\
                    nano\tdeinstall ok config-files\t7.2-1\n\
                    broken\tinstall reinstreq half-installed\t1.0\n\
                    libc6\tinstall ok installed\t2.36-9\n\
                    libc6\tunknown ok not-installed\t\n\
                    weird line without tabs\n";
        let states = parse_dpkg_query(text);
        assert!(states["curl"].installed());
        assert_eq!(states["curl"].version, "7.88.1-10+deb12u5");
        assert!(!states["nano"].installed());
        assert!(!states["broken"].installed());
        // The installed architecture wins.
        assert!(states["libc6"].installed());
        assert_eq!(states.len(), 4);
        let versions = installed_versions(&states);
        assert_eq!(versions.keys().collect::<Vec<_>>(), ["curl", "libc6"]);
    }

    #[test]
    fn policy_gives_installed_candidate_and_versions() {
        let text = "\
curl:
  Installed: 7.88.1-10+deb12u15
  Candidate: 7.88.1-10+deb12u15
  Version table:
 *** 7.88.1-10+deb12u15 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
     7.88.1-10+deb12u5 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-headers-6.1.0-18-amd64:
  Installed: (none)
  Candidate: 6.1.76-1
  Version table:
     6.1.76-1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
virtual-thing:
  Installed: (none)
  Candidate: (none)
  Version table:
";
        let p = parse_policy(text);
        assert_eq!(p["curl"].installed.as_deref(), Some("7.88.1-10+deb12u15"));
        assert_eq!(p["curl"].candidate.as_deref(), Some("7.88.1-10+deb12u15"));
        assert_eq!(
            p["curl"].versions,
            ["7.88.1-10+deb12u15", "7.88.1-10+deb12u5"]
        );
        let h = &p["linux-headers-6.1.0-18-amd64"];
        assert_eq!(
            (h.installed.as_deref(), h.candidate.as_deref()),
            (None, Some("6.1.76-1"))
        );
        assert_eq!(p["virtual-thing"].candidate, None);
        assert!(parse_policy("").is_empty());
    }

    #[test]
    fn simulation_lines_give_the_transaction() {
        let text = "\
NOTE: This is only a simulation!
Reading package lists...
Inst libjq1 (1.6-2.1 Debian:12.5/stable [amd64])
Inst jq [1.6-2.0] (1.6-2.1 Debian:12.5/stable [amd64])
Conf libjq1 (1.6-2.1 Debian:12.5/stable [amd64])
Remv nano [7.2-1]
";
        let c = parse_simulation(text);
        assert_eq!(
            c.installed,
            [Change {
                name: "libjq1".into(),
                version: "1.6-2.1".into(),
                from: None
            }]
        );
        assert_eq!(c.upgraded[0].from.as_deref(), Some("1.6-2.0"));
        assert_eq!(c.upgraded[0].version, "1.6-2.1");
        assert_eq!(c.removed[0].name, "nano");
        assert_eq!(c.removed[0].version, "7.2-1");
        assert!(parse_simulation("nothing here\n").is_empty());
    }

    #[test]
    fn snapshots_compare_into_a_transaction() {
        let before: BTreeMap<String, String> = [("a", "1"), ("b", "1"), ("c", "1")]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let after: BTreeMap<String, String> = [("a", "1"), ("b", "2"), ("d", "1")]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let c = compare(&before, &after);
        assert_eq!(c.installed[0].name, "d");
        assert_eq!(c.upgraded[0].name, "b");
        assert_eq!(c.upgraded[0].from.as_deref(), Some("1"));
        assert_eq!(c.removed[0].name, "c");
        assert!(compare(&before, &before).is_empty());
    }
}
