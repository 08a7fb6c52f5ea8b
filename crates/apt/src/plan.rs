//! What a task asks for against what dpkg says is there: the plan, as a pure function.

use std::collections::BTreeMap;

use crate::names::PackageSpec;
use crate::query::{PackageState, Policy};

/// The state a task wants its packages in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    Present,
    Absent,
    Latest,
}

impl Wanted {
    pub fn parse(text: &str) -> Option<Wanted> {
        match text {
            "present" => Some(Wanted::Present),
            "absent" => Some(Wanted::Absent),
            "latest" => Some(Wanted::Latest),
            _ => None,
        }
    }
}

/// The work a task needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Not installed, or installed at another version than the one asked for.
    pub install: Vec<PackageSpec>,
    /// Installed and to be removed.
    pub remove: Vec<PackageSpec>,
    /// `latest` only: installed, upgraded if apt's candidate is newer (needs the cache).
    pub check_latest: Vec<PackageSpec>,
    /// Already as wanted.
    pub satisfied: Vec<PackageSpec>,
}

impl Plan {
    /// Nothing to do, known from dpkg alone: answer without any lock or cache work.
    pub fn is_noop(&self) -> bool {
        self.install.is_empty() && self.remove.is_empty() && self.check_latest.is_empty()
    }
}

/// Plans the work from the packages asked for and dpkg's view of them.
pub fn plan(
    specs: &[PackageSpec],
    wanted: Wanted,
    dpkg: &BTreeMap<String, PackageState>,
) -> Result<Plan, String> {
    let mut plan = Plan::default();
    for spec in specs {
        let installed = dpkg
            .get(&spec.name)
            .filter(|s| s.installed())
            .map(|s| s.version.as_str());
        let version_matches = match (&spec.version, installed) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(want), Some(have)) => want == have,
        };
        match wanted {
            Wanted::Present if version_matches => plan.satisfied.push(spec.clone()),
            Wanted::Present => plan.install.push(spec.clone()),
            // `absent` with a version removes the package only when that version is installed.
            Wanted::Absent if version_matches => plan.remove.push(spec.clone()),
            Wanted::Absent => plan.satisfied.push(spec.clone()),
            Wanted::Latest if spec.version.is_some() => {
                return Err(format!(
                    "name: '{spec}' pins a version, which contradicts state=latest; use state=present to pin, or drop the version"
                ))
            }
            Wanted::Latest if installed.is_some() => plan.check_latest.push(spec.clone()),
            Wanted::Latest => plan.install.push(spec.clone()),
        }
    }
    Ok(plan)
}

/// `latest`: which installed packages apt's candidate would upgrade. A package without a
/// candidate (no longer in any repository) stays as it is.
pub fn upgrades(check: &[PackageSpec], policies: &BTreeMap<String, Policy>) -> Vec<PackageSpec> {
    check
        .iter()
        .filter(|spec| {
            policies.get(&spec.name).is_some_and(|p| {
                p.candidate.is_some() && p.candidate.as_deref() != p.installed.as_deref()
            })
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::specs;

    fn dpkg() -> BTreeMap<String, PackageState> {
        crate::query::parse_dpkg_query(
            "curl\tinstall ok installed\t7.88\njq\tinstall ok installed\t1.6\nnano\tdeinstall ok config-files\t7.2\n",
        )
    }

    #[test]
    fn present_installs_only_what_is_missing_or_at_another_version() {
        let p = plan(
            &specs(&["curl", "jq=1.7", "nano", "vim", "curl=7.88"]),
            Wanted::Present,
            &dpkg(),
        )
        .unwrap();
        assert_eq!(p.install, specs(&["jq=1.7", "nano", "vim"]));
        assert_eq!(p.satisfied, specs(&["curl", "curl=7.88"]));
        assert!(!p.is_noop());
        let p = plan(&specs(&["curl", "jq=1.6"]), Wanted::Present, &dpkg()).unwrap();
        assert!(p.is_noop());
    }

    #[test]
    fn absent_removes_installed_packages_and_pinned_versions_only_when_they_match() {
        let p = plan(
            &specs(&["curl", "jq=1.7", "nano", "vim"]),
            Wanted::Absent,
            &dpkg(),
        )
        .unwrap();
        assert_eq!(p.remove, specs(&["curl"]));
        assert_eq!(p.satisfied, specs(&["jq=1.7", "nano", "vim"]));
    }

    #[test]
    fn latest_needs_the_candidate_for_installed_packages() {
        let p = plan(&specs(&["curl", "vim"]), Wanted::Latest, &dpkg()).unwrap();
        assert_eq!(p.install, specs(&["vim"]));
        assert_eq!(p.check_latest, specs(&["curl"]));
        assert!(!p.is_noop());
        let e = plan(&specs(&["curl=1"]), Wanted::Latest, &dpkg()).unwrap_err();
        assert!(e.contains("state=latest"), "{e}");

        let policies = crate::query::parse_policy(
            "curl:\n  Installed: 7.88\n  Candidate: 7.89\njq:\n  Installed: 1.6\n  Candidate: 1.6\ngone:\n  Installed: 1\n  Candidate: (none)\n",
        );
        assert_eq!(
            upgrades(&specs(&["curl", "jq", "gone", "unknown"]), &policies),
            specs(&["curl"])
        );
    }

    #[test]
    fn states_parse() {
        assert_eq!(Wanted::parse("latest"), Some(Wanted::Latest));
        assert_eq!(Wanted::parse("installed"), None);
    }
}
