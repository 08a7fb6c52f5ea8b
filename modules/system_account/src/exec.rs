//! Runs a plan against the system: one action at a time, re-reading the account files before
//! each, so a step another process already did is not done twice and a run that lost a race
//! converges instead of failing.

use std::path::Path;
use std::time::Duration;

use runtime::Command;

use crate::plan::{plan, Action, Wanted};
use runtime::accounts::Db;

/// How often a run re-checks after "already exists" or "cannot lock" before giving up.
const MAX_RETRIES: u32 = 8;
/// More steps than any plan has (at most two, re-planned after each): a loop guard.
const MAX_STEPS: usize = 8;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What an applied plan did.
#[derive(Debug, Default)]
pub struct Applied {
    pub done: Vec<String>,
    pub notes: Vec<String>,
    pub retries: u32,
}

/// An error after `done` steps already changed the host.
#[derive(Debug)]
pub struct Stopped {
    pub msg: String,
    pub done: Vec<String>,
    pub rc: Option<i32>,
}

enum Step {
    Done,
    /// Someone else changed the files at the same time: re-read and re-plan.
    Raced(String),
    Failed(String, i32),
}

/// Observes, plans and runs the first action, until nothing is left to do.
pub fn apply(root: &Path, want: &Wanted) -> Result<Applied, Stopped> {
    let mut applied = Applied::default();
    let mut last: Option<Action> = None;
    let stop = |msg: String, applied: &Applied, rc: Option<i32>| Stopped {
        msg,
        done: applied.done.clone(),
        rc,
    };
    // The group removal planned after a `userdel` this run made: userdel takes the user's own
    // group along when nothing else uses it (USERGROUPS_ENAB), so the next plan no longer has
    // it. It is still this run's change, and check mode announces it: report it as done.
    let mut taken_along: Option<Action> = None;
    for _ in 0..MAX_STEPS + MAX_RETRIES as usize {
        let db = Db::load(root).map_err(|m| stop(m, &applied, None))?;
        let plan = plan(&db, want).map_err(|m| stop(m, &applied, None))?;
        applied.notes = plan.notes;
        if let Some(group) = taken_along.take() {
            if let Action::DelGroup { name } = &group {
                if !plan.actions.contains(&group) && db.group(name).is_none() {
                    applied.done.push(group.describe());
                }
            }
        }
        let mut actions = plan.actions.into_iter();
        let Some(action) = actions.next() else {
            return Ok(applied);
        };
        let next = actions.next();
        if last.as_ref() == Some(&action) {
            return Err(stop(
                format!(
                    "'{}' succeeded but {} does not show the change; check for a second account database (NSS, LDAP) or a read-only /etc",
                    command(&action).display(),
                    root.join("etc").display()
                ),
                &applied,
                None,
            ));
        }
        if applied.done.len() >= MAX_STEPS {
            return Err(stop(
                "the account did not converge; the account files keep changing under this run"
                    .into(),
                &applied,
                None,
            ));
        }
        match run(&action) {
            Step::Done => {
                applied.done.push(action.describe());
                if matches!(action, Action::DelUser { .. }) {
                    taken_along = next.filter(|a| matches!(a, Action::DelGroup { .. }));
                }
                last = Some(action);
            }
            Step::Raced(why) => {
                last = None;
                applied.retries += 1;
                if applied.retries > MAX_RETRIES {
                    return Err(stop(
                        format!("gave up after {MAX_RETRIES} retries: {why}"),
                        &applied,
                        None,
                    ));
                }
                std::thread::sleep(backoff(applied.retries));
            }
            Step::Failed(msg, rc) => return Err(stop(msg, &applied, Some(rc))),
        }
    }
    Err(stop(
        "the account did not converge; the account files keep changing under this run".into(),
        &applied,
        None,
    ))
}

fn command(action: &Action) -> Command {
    let argv = action.argv();
    Command::new(&argv[0])
        .changes_system()
        .args(argv[1..].iter().cloned())
        .timeout(COMMAND_TIMEOUT)
        .output_limit(8 * 1024)
}

fn run(action: &Action) -> Step {
    let cmd = command(action);
    let out = match cmd.run() {
        Ok(out) => out,
        Err(e) => {
            return Step::Failed(
                format!("{e}; is the passwd package (shadow-utils) installed?"),
                127,
            )
        }
    };
    if out.success() {
        return Step::Done;
    }
    let said = out.tail(3);
    if out.timed_out {
        return Step::Failed(
            format!(
                "{} did not finish within {}s",
                cmd.display(),
                COMMAND_TIMEOUT.as_secs()
            ),
            out.rc,
        );
    }
    classify(action, out.rc, &said, &cmd.display())
}

/// Sorts a failed shadow-utils command: a lost race is retried, the rest is explained.
fn classify(action: &Action, rc: i32, said: &str, shown: &str) -> Step {
    let lock = said.contains("cannot lock") || said.contains("try again later");
    let deleting = matches!(action, Action::DelUser { .. } | Action::DelGroup { .. });
    // 9: the name exists now (another run created it); 6 on userdel/groupdel: it is gone
    // already (another run removed it, or userdel took the user's group with it).
    if lock || rc == 9 || (deleting && rc == 6) {
        return Step::Raced(format!("{shown} exited {rc}: {said}"));
    }
    let hint = match (action, rc) {
        (_, 1) if said.contains("Permission denied") || said.contains("Only root") => {
            "; the module must run as root (become: true)"
        }
        (Action::AddUser { .. } | Action::ModUser { .. }, 4) => {
            "; the uid is used by another user: choose another uid"
        }
        (Action::AddGroup { .. } | Action::SetGroupGid { .. }, 4) => {
            "; the gid is used by another group: choose another gid"
        }
        (Action::AddUser { .. }, 12) => "; the home directory could not be created",
        (Action::DelUser { .. }, 8) => {
            "; the user is logged in or a process runs as it: stop it first"
        }
        (Action::DelGroup { .. }, 8) => "; the group is still some user's primary group",
        _ => "",
    };
    Step::Failed(format!("{shown} failed (exit {rc}): {said}{hint}"), rc)
}

/// 50 ms, 100 ms, ... capped at 1 s, plus up to 50% jitter so racing runs spread out.
fn backoff(attempt: u32) -> Duration {
    let base = 50u64 << attempt.min(5).saturating_sub(1);
    let base = base.min(1000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let jitter = (nanos ^ std::process::id() as u64) % (base / 2 + 1);
    Duration::from_millis(base + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add_group() -> Action {
        Action::AddGroup {
            name: "loki".into(),
            gid: None,
            system: true,
        }
    }

    #[test]
    fn races_are_retried_and_real_errors_explained() {
        let raced = |a: &Action, rc, said| matches!(classify(a, rc, said, "x"), Step::Raced(_));
        assert!(raced(
            &add_group(),
            9,
            "groupadd: group 'loki' already exists"
        ));
        assert!(raced(
            &add_group(),
            10,
            "groupadd: cannot lock /etc/group; try again later."
        ));
        assert!(raced(
            &add_group(),
            1,
            "useradd: cannot lock /etc/passwd; try again later."
        ));
        let del = Action::DelUser {
            name: "loki".into(),
        };
        assert!(raced(&del, 6, "userdel: user 'loki' does not exist"));
        assert!(!raced(&add_group(), 6, "groupadd: whatever"));
        match classify(
            &add_group(),
            4,
            "groupadd: GID '5' already exists",
            "groupadd -g 5 loki",
        ) {
            Step::Failed(msg, 4) => {
                assert!(msg.contains("groupadd -g 5 loki failed (exit 4)"), "{msg}");
                assert!(msg.contains("choose another gid"), "{msg}");
            }
            _ => panic!("not a failure"),
        }
        match classify(
            &del,
            8,
            "userdel: user loki is currently used by process 1",
            "userdel loki",
        ) {
            Step::Failed(msg, 8) => assert!(msg.contains("stop it first"), "{msg}"),
            _ => panic!("not a failure"),
        }
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert!(backoff(1) >= Duration::from_millis(50) && backoff(1) <= Duration::from_millis(75));
        for attempt in 1..=MAX_RETRIES {
            assert!(backoff(attempt) <= Duration::from_millis(1500));
        }
        assert!(backoff(MAX_RETRIES) >= Duration::from_millis(800));
    }
}
