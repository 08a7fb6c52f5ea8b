//! `system_account`: a system group and a system user with it as primary group, idempotent
//! and safe when several runs create the same account at once.
//!
//! The work is split so that all decisions are unit-testable without root:
//! `accounts` reads passwd/group text, `plan` turns current + wanted into actions (pure),
//! `exec` runs them one at a time with shadow-utils, re-reading the files before each step,
//! and `lock` keeps concurrent runs of this module from interleaving.

mod exec;
mod lock;
mod plan;

use std::path::Path;
use std::time::Duration;

use runtime::{Context, Default, Diff, Failure, Outcome, Param, Params};
use serde_json::Value as Json;

use plan::{View, Wanted, DEFAULT_SHELL};
use runtime::accounts::{self, Db};

const NAME: &str = "system_account";

const SPEC: &[Param] = &[
    Param::str("name").required(),
    Param::str("group"),
    Param::bool("system").default(Default::Bool(true)),
    Param::int("uid").min(0),
    Param::int("gid").min(0),
    Param::str("home"),
    Param::bool("create_home").default(Default::Bool(false)),
    // No default: unset, a new user gets DEFAULT_SHELL and an existing one keeps its shell.
    Param::str("shell"),
    Param::str("comment"),
    Param::list("groups"),
    Param::bool("append").default(Default::Bool(true)),
    Param::str("state")
        .default(Default::Str("present"))
        .choices(&["present", "absent"]),
];

/// The system whose `etc/passwd` and `etc/group` are managed. Always the host: shadow-utils'
/// `--prefix` looked attractive for tests, but with shadow 4.13 `usermod --prefix DIR --gid G`
/// looks G up in the *host's* group database, not DIR's, so a primary-group change fails
/// (or silently does nothing) there. The process tests instead run the binary in a private
/// mount namespace with a scratch directory mounted over /etc.
const ROOT: &str = "/";

/// The largest id: 4294967295 is (uid_t)-1, which chown and friends read as "no change".
const MAX_ID: i64 = 4_294_967_294;
/// Linux's and Debian's limit on a user or group name.
const MAX_NAME: usize = 32;
/// How long a run waits for another run of this module on the same host.
const LOCK_WAIT: Duration = Duration::from_secs(60);

fn main() {
    runtime::run(NAME, SPEC, system_account);
}

fn system_account(params: &Params, ctx: &Context) -> Result<Outcome, Failure> {
    let want = wanted(params)?;
    runtime::require_root(ctx)?;
    let root = Path::new(ROOT);

    if ctx.check_mode {
        // Only reads: no lock, nothing run.
        let db = Db::load(root)?;
        let plan = plan::plan(&db, &want)?;
        let before = View::current(&db, &want.name, &want.group);
        let changed = !plan.actions.is_empty();
        let after = if changed {
            View::predicted(&db, &want)
        } else {
            before.clone()
        };
        let done: Vec<String> = plan.actions.iter().map(|a| a.describe()).collect();
        let msg = if changed {
            format!("would {}", done.join("; "))
        } else {
            settled(&want)
        };
        return Ok(answer(
            Outcome::new(changed, msg),
            &want,
            &before,
            &after,
            done,
            plan.notes,
        ));
    }

    let _lock = lock::lock_dir(&accounts::etc(root), LOCK_WAIT)?;
    let before = View::current(&Db::load(root)?, &want.name, &want.group);
    let applied = exec::apply(root, &want).map_err(|stopped| {
        let changed = !stopped.done.is_empty();
        let mut msg = stopped.msg;
        if changed {
            msg = format!("{msg} (already done: {})", stopped.done.join("; "));
        }
        let mut failure = Failure::new(msg)
            .after_change(changed)
            .with("actions", stopped.done);
        if let Some(rc) = stopped.rc {
            failure = failure.with("rc", rc);
        }
        failure
    })?;
    let after = View::current(&Db::load(root)?, &want.name, &want.group);
    let changed = !applied.done.is_empty();
    let msg = if changed {
        applied.done.join("; ")
    } else {
        settled(&want)
    };
    Ok(answer(
        Outcome::new(changed, msg),
        &want,
        &before,
        &after,
        applied.done,
        applied.notes,
    ))
}

fn settled(want: &Wanted) -> String {
    if want.present && !want.enforce_group {
        // The primary group was not asked for: an existing user's may be another.
        format!("user {} is as wanted", want.name)
    } else if want.present {
        format!(
            "user {} with primary group {} is as wanted",
            want.name, want.group
        )
    } else {
        format!("user {} is absent", want.name)
    }
}

fn answer(
    outcome: Outcome,
    want: &Wanted,
    before: &View,
    after: &View,
    actions: Vec<String>,
    notes: Vec<String>,
) -> Outcome {
    let opt_id = |v: Option<u32>| v.map(Json::from).unwrap_or(Json::Null);
    let opt_str = |v: &Option<String>| v.clone().map(Json::from).unwrap_or(Json::Null);
    let mut outcome = outcome
        .with("name", want.name.as_str())
        .with("state", if after.exists { "present" } else { "absent" })
        .with("uid", opt_id(after.uid))
        .with("gid", opt_id(after.gid))
        .with("group", opt_str(&after.group))
        .with("home", opt_str(&after.home))
        .with("shell", opt_str(&after.shell))
        .with("comment", opt_str(&after.comment))
        .with("groups", after.groups.clone())
        .with("actions", actions)
        .with_diff(Diff::new(before.render(), after.render()).headers(
            format!("account {} (before)", want.name),
            format!("account {} (after)", want.name),
        ));
    if !notes.is_empty() {
        outcome = outcome.with("notes", notes);
    }
    outcome
}

/// The task's parameters, validated; every error names the field and the fix.
fn wanted(p: &Params) -> Result<Wanted, String> {
    let name = p.str("name").unwrap_or_default().to_string();
    check_name("name", &name)?;
    let group = p.str("group").unwrap_or(&name).to_string();
    check_name("group", &group)?;
    let shell = p.str("shell").map(String::from);
    if let Some(shell) = &shell {
        check_path("shell", shell, DEFAULT_SHELL)?;
    }
    let home = p.str("home").map(String::from);
    if let Some(home) = &home {
        check_path("home", home, "/var/lib/loki")?;
    }
    let comment = p.str("comment").map(String::from);
    if let Some(comment) = &comment {
        if comment.contains(':') || comment.chars().any(char::is_control) {
            return Err(format!(
                "parameter 'comment' must not contain ':' or control characters such as a line break (they would corrupt /etc/passwd); got {comment:?}"
            ));
        }
    }
    let groups = if p.given("groups") {
        let mut groups: Vec<String> = Vec::new();
        for g in p.list("groups") {
            check_name("groups", g)?;
            if !groups.contains(g) {
                groups.push(g.clone());
            }
        }
        Some(groups)
    } else {
        None
    };
    Ok(Wanted {
        present: p.str("state") != Some("absent"),
        // An existing user's primary group is only corrected when the task names it: `gid`
        // is the gid of the group O(group) (default: the user's name), so it counts too.
        enforce_group: p.str("group").is_some() || p.int("gid").is_some(),
        groups,
        append: p.bool("append"),
        system: p.bool("system"),
        uid: id(p, "uid")?,
        gid: id(p, "gid")?,
        create_home: p.bool("create_home"),
        name,
        group,
        home,
        shell,
        comment,
    })
}

/// Debian's default NAME_REGEX, `^[a-z_][a-z0-9_-]*[$]?$`, and at most 32 characters. Such a
/// name can never be read as a command-line option or break a passwd line.
fn check_name(field: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!(
            "parameter '{field}' is empty; give an account name such as 'loki'"
        ));
    }
    let body = name.strip_suffix('$').unwrap_or(name);
    let valid = body
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && body
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !valid {
        return Err(format!(
            "parameter '{field}' is not a valid account name: {name:?}; use lowercase letters, digits, '_' and '-', starting with a letter or '_' (optionally ending in '$'), like 'loki'"
        ));
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!(
            "parameter '{field}' is {} characters long; account names are at most {MAX_NAME}",
            name.chars().count()
        ));
    }
    Ok(())
}

fn check_path(field: &str, path: &str, example: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.contains(':') || path.chars().any(char::is_control) {
        return Err(format!(
            "parameter '{field}' must be an absolute path without ':' or control characters, such as {example}; got {path:?}"
        ));
    }
    Ok(())
}

fn id(p: &Params, field: &str) -> Result<Option<u32>, String> {
    match p.int(field) {
        None => Ok(None),
        Some(v) if (0..=MAX_ID).contains(&v) => Ok(Some(v as u32)),
        Some(v) => Err(format!(
            "parameter '{field}' must be between 0 and {MAX_ID}, got {v}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_debians_name_regex() {
        for good in [
            "loki",
            "_apt",
            "a",
            "grafana-agent",
            "x_1",
            "machine$",
            &"a".repeat(32),
        ] {
            assert!(check_name("name", good).is_ok(), "{good}");
        }
        for bad in [
            "root;rm", "-rf", "a b", "Loki", "1abc", "$", "a$b", "lo:ki", "é", "a\nb",
        ] {
            let e = check_name("name", bad).unwrap_err();
            assert!(
                e.contains("'name' is not a valid account name"),
                "{bad}: {e}"
            );
        }
        assert!(check_name("group", "")
            .unwrap_err()
            .contains("'group' is empty"));
        let e = check_name("name", &"a".repeat(33)).unwrap_err();
        assert!(
            e.contains("33 characters long") && e.contains("at most 32"),
            "{e}"
        );
    }

    #[test]
    fn paths_must_be_absolute_and_passwd_safe() {
        assert!(check_path("shell", "/bin/false", "x").is_ok());
        for bad in ["bin/false", "", "/bin:/x", "/bin/sh\n"] {
            let e = check_path("home", bad, "/var/lib/loki").unwrap_err();
            assert!(e.contains("'home' must be an absolute path"), "{e}");
        }
    }
}
