//! `files`: converges a whole set of files, directories and removals on a host in one task.
//!
//! The content of each file comes from the task (templates are rendered on the controller,
//! e.g. with `lookup('ansible.builtin.template', ...)`), so the host needs no Python. The order:
//! validate every entry (types, modes, owners, groups, paths), look at every path and plan
//! (conflicts are found here), then stage and validate the new files next to their targets,
//! and only then commit, entry by entry; see `apply` for what a failure leaves.
//!
//! An `ini` entry sets options in a file as it is instead of giving its whole content (what
//! community.general.ini_file does, see `ini`): its new text is computed from the current one
//! while planning, and from there on it is a file like any other (staged, validated, renamed).
//!
//! Secret entries (`secret: true`, the module-level `secret`, or the task's `no_log`): their
//! content is never in the answer, in a diff or in a validate command's output.
//!
//! Every path is reached from `/` through directory descriptors, never through a symbolic link
//! another user could have planted, and nothing is ever written, chowned or chmodded through a
//! link at the path itself (see `walk`).

mod apply;
mod entry;
mod ini;
mod plan;
mod walk;

use std::cell::RefCell;
use std::path::Path;

use runtime::accounts::Db;
use runtime::{Context, Default, Failure, Outcome, Param, Params};
use serde_json::{json, Value as Json};

use crate::entry::Accounts;
use crate::plan::Plan;

const NAME: &str = "files";

/// The keys of one entry of `files`.
pub(crate) const ENTRY: &[Param] = &[
    Param::str("path").required(),
    Param::str("state")
        .default(Default::Str("file"))
        .choices(&["file", "directory", "absent"]),
    // no_log: never echoed in `invocation` (as ansible.builtin.copy's `content`).
    Param::str("content").no_log(),
    // {section: {option: value}}: set in the file as it is (community.general.ini_file's
    // rules). no_log like `content`: its values are often the secret.
    Param::dict("ini").no_log(),
    Param::bool("create").default(Default::Bool(true)),
    Param::str("owner"),
    Param::str("group"),
    Param::str("mode"),
    Param::str("validate"),
    Param::bool("secret"),
    Param::bool("parents").default(Default::Bool(false)),
];

const SPEC: &[Param] = &[
    Param::entries("files", ENTRY).required(),
    Param::bool("secret").default(Default::Bool(false)),
];

fn main() {
    runtime::run(NAME, SPEC, files);
}

/// No accounts database: only numeric ids resolve (when no entry names an owner or group,
/// /etc/passwd is not even read).
struct NoNames;

impl Accounts for NoNames {
    fn uid(&self, _: &str) -> Option<u32> {
        None
    }
    fn gid(&self, _: &str) -> Option<u32> {
        None
    }
}

/// Check mode's accounts: a name the host does not know (yet) resolves to PENDING_ID, which
/// no file has, so the entry plans a change of owner or group; the names are kept for a warning.
struct Pending<'a> {
    known: &'a dyn Accounts,
    missing: RefCell<Vec<String>>,
}

/// Never applied (check mode writes nothing); not u32::MAX, which chown reads as "unchanged".
const PENDING_ID: u32 = u32::MAX - 1;

impl Pending<'_> {
    fn pending(&self, name: &str) -> Option<u32> {
        // A number is an id, never a pending name (entry::resolve reads it as one).
        if name.is_empty() || name.parse::<u32>().is_ok() {
            return None;
        }
        let mut missing = self.missing.borrow_mut();
        if !missing.iter().any(|m| m == name) {
            missing.push(name.to_string());
        }
        Some(PENDING_ID)
    }
}

impl Accounts for Pending<'_> {
    fn uid(&self, name: &str) -> Option<u32> {
        self.known.uid(name).or_else(|| self.pending(name))
    }
    fn gid(&self, name: &str) -> Option<u32> {
        self.known.gid(name).or_else(|| self.pending(name))
    }
}

fn files(params: &Params, ctx: &Context) -> Result<Outcome, Failure> {
    let list = params.entries("files");
    let names_given = list.iter().any(|e| {
        e.str("owner").is_some_and(|o| o.parse::<u32>().is_err())
            || e.str("group").is_some_and(|g| g.parse::<u32>().is_err())
    });
    let db = if names_given {
        Db::load(Path::new("/")).map_err(|e| {
            Failure::new(format!(
                "{e}; owner and group names are looked up there (give numeric ids instead, or run as a user who can read it)"
            ))
        })?
    } else {
        Db::default()
    };
    let known: &dyn Accounts = if names_given { &db } else { &NoNames };
    // In check mode an earlier task (system_account, a package) has not really created the
    // account this entry names: take it as pending, as ansible.builtin.file does for a path
    // it would create, and say so. For real, an unknown name stays an error.
    let pending = Pending {
        known,
        missing: RefCell::new(Vec::new()),
    };
    let accounts: &dyn Accounts = if ctx.check_mode { &pending } else { known };
    // Under the task's no_log every entry is secret: nothing of any content comes back.
    let secret = params.bool("secret") || ctx.no_log;
    let mut entries = entry::entries(list, secret, accounts)?;
    // Likewise a directory an earlier task would make (a package's /etc/loki): in check mode
    // every entry may have its parents made, and those that would need it without asking say so.
    // The same for the file an `ini` entry with create: false edits (a package's grafana.ini).
    let mut parents_pending = Vec::new();
    let mut create_pending = Vec::new();
    if ctx.check_mode {
        for entry in entries.iter_mut() {
            if !entry.parents {
                entry.parents = true;
                parents_pending.push(entry.index);
            }
            if !entry.create {
                entry.create = true;
                create_pending.push(entry.index);
            }
        }
    }
    let plans = plan::plan(&entries)?;
    let parents_pending: Vec<String> = plans
        .iter()
        .filter(|p| parents_pending.contains(&p.entry.index))
        .filter(|p| p.changes.contains(&plan::Change::Parents))
        .filter_map(|p| p.entry.path.parent().map(|d| d.display().to_string()))
        .collect();
    let create_pending: Vec<String> = plans
        .iter()
        .filter(|p| create_pending.contains(&p.entry.index))
        .filter(|p| p.changes.contains(&plan::Change::Create))
        .map(|p| p.entry.path.display().to_string())
        .collect();

    let changed_paths: Vec<String> = if ctx.check_mode {
        plans
            .iter()
            .filter(|p| p.changed())
            .map(|p| p.entry.path.display().to_string())
            .collect()
    } else {
        apply::apply(&plans).map_err(|e| {
            Failure::new(e.msg)
                .after_change(!e.changed_paths.is_empty())
                .with("changed_paths", e.changed_paths)
        })?
    };

    let mut outcome = Outcome::new(!changed_paths.is_empty(), message(&plans, ctx.check_mode))
        .with("changed_paths", changed_paths)
        .with("entries", Json::Array(plans.iter().map(summary).collect()));
    if !parents_pending.is_empty() {
        outcome.warn(format!(
            "check mode: directory {} not on this host yet; taken as made by an earlier task of \
             this run (a real run fails here if it still is not)",
            parents_pending.join(", ")
        ));
    }
    if !create_pending.is_empty() {
        outcome.warn(format!(
            "check mode: file {} not on this host yet (create: false); taken as made by an earlier \
             task of this run (a real run fails here if it still is not)",
            create_pending.join(", ")
        ));
    }
    let missing = pending.missing.take();
    if !missing.is_empty() {
        outcome.warn(format!(
            "check mode: owner/group {} not on this host yet; taken as made by an earlier task of \
             this run (a real run fails here if it still is not)",
            missing.join(", ")
        ));
    }
    if ctx.diff {
        // Names for the ids a diff shows: the host's, or the number.
        let host = if names_given {
            db
        } else {
            Db::load_or_empty(Path::new("/"))
        };
        let names = |user: bool, id: u32| -> String {
            let name = if user {
                host.user_by_uid(id).map(|u| u.name.clone())
            } else {
                host.group_by_gid(id).map(|g| g.name.clone())
            };
            name.unwrap_or_else(|| id.to_string())
        };
        for plan in plans.iter().filter(|p| p.changed()) {
            for diff in plan::diffs(plan, &names) {
                outcome.add_diff(diff);
            }
        }
    }
    Ok(outcome)
}

/// `changed 2 of 9 paths: /etc/loki/config.yml (content, mode), /var/lib/loki/wal (created)`.
fn message(plans: &[Plan], check_mode: bool) -> String {
    let changed: Vec<String> = plans
        .iter()
        .filter(|p| p.changed())
        .map(|p| {
            let words: Vec<&str> = p.changes.iter().map(|c| c.word()).collect();
            format!("{} ({})", p.entry.path.display(), words.join(", "))
        })
        .collect();
    let total = plans.len();
    let paths = if total == 1 { "path" } else { "paths" };
    if changed.is_empty() {
        return format!("all {total} {paths} as wanted");
    }
    let verb = if check_mode {
        "would change"
    } else {
        "changed"
    };
    format!(
        "{verb} {} of {total} {paths}: {}",
        changed.len(),
        changed.join(", ")
    )
}

fn summary(plan: &Plan) -> Json {
    json!({
        "path": plan.entry.path.display().to_string(),
        "state": plan.entry.state.name(),
        "changed": plan.changed(),
        "changes": plan.changes.iter().map(|c| c.word()).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Entry;

    #[test]
    fn the_message_lists_what_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let entries = vec![
            Entry {
                mode: Some(0o640),
                ..Entry::test_file(&tmp.path().join("a"), "x")
            },
            Entry {
                index: 1,
                ..Entry::test_dir(tmp.path())
            },
        ];
        let plans = plan::plan(&entries).unwrap();
        let a = tmp.path().join("a").display().to_string();
        assert_eq!(
            message(&plans, true),
            format!("would change 1 of 2 paths: {a} (created)")
        );
        assert_eq!(
            message(&plans, false),
            format!("changed 1 of 2 paths: {a} (created)")
        );
        assert_eq!(message(&plans[1..], false), "all 1 path as wanted");
        assert_eq!(
            summary(&plans[0]),
            json!({"path": a, "state": "file", "changed": true, "changes": ["created"]})
        );
    }
}
