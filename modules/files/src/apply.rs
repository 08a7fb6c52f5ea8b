//! Making the plans true, in two phases so that a failure leaves as little as possible:
//!
//! 1. Stage: every file whose directory exists already gets its new content in a temporary
//!    file next to it (mode 0600 while written, then fsync, owner, group, mode) and is
//!    validated there. Any failure removes all temporary files: nothing at all has changed.
//! 2. Commit, entry by entry in the task's order: directories, renames of the staged files
//!    (atomic: a reader sees the old file or the new one), attribute fixes, removals. Files in
//!    directories made in this run are staged here, after their directory. A failure here says
//!    `changed: true` and lists what was done.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use runtime::Command;

use crate::entry::{Entry, State};
use crate::plan::{access_error, Change, Plan};

/// A validate command that runs longer than this is killed and the entry fails.
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(300);

/// What went wrong, and which paths had already changed by then.
#[derive(Debug)]
pub struct Error {
    pub msg: String,
    pub changed_paths: Vec<String>,
}

/// Temporary files not yet renamed: removed when dropped, so no error path leaves one behind.
#[derive(Default)]
struct Staged {
    files: Vec<Option<PathBuf>>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        for tmp in self.files.iter().flatten() {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// Applies every plan. Returns the paths that changed, in the task's order.
pub fn apply(plans: &[Plan]) -> Result<Vec<String>, Error> {
    let umask = current_umask();
    let mut staged = Staged {
        files: vec![None; plans.len()],
    };
    // Phase 1: stage and validate what can be staged now.
    for (i, plan) in plans.iter().enumerate() {
        let parent_exists = plan
            .entry
            .path
            .parent()
            .is_some_and(|p| fs::metadata(p).is_ok_and(|m| m.is_dir()));
        if plan.writes_content() && parent_exists {
            let tmp = stage(plan, umask).map_err(|msg| Error {
                msg: format!("{msg}; nothing was changed"),
                changed_paths: Vec::new(),
            })?;
            staged.files[i] = Some(tmp);
        }
    }
    // Phase 2: commit in order.
    let mut changed = Vec::new();
    let mut synced: Vec<PathBuf> = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        if !plan.changed() {
            continue;
        }
        let result = commit(plan, staged.files[i].take(), umask);
        if let Err(msg) = result {
            let msg = if changed.is_empty() {
                format!("{msg}; nothing was changed")
            } else {
                format!(
                    "{msg}; already changed before the error: {}",
                    changed.join(", ")
                )
            };
            return Err(Error {
                msg,
                changed_paths: changed,
            });
        }
        changed.push(plan.entry.path.display().to_string());
        if let Some(parent) = plan.entry.path.parent() {
            if !synced.iter().any(|p| p == parent) {
                synced.push(parent.to_path_buf());
            }
        }
    }
    // Renames, new and removed entries are durable once their directory is synced.
    for dir in synced {
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
    }
    Ok(changed)
}

fn commit(plan: &Plan, staged: Option<PathBuf>, umask: u32) -> Result<(), String> {
    let entry = plan.entry;
    runtime::note_change();
    if plan.changes.contains(&Change::Parents) {
        if let Some(parent) = entry.path.parent() {
            // Like `mkdir -p`: 0777 minus the umask, owned by the module's user.
            DirBuilder::new()
                .recursive(true)
                .mode(0o777 & !umask)
                .create(parent)
                .map_err(|e| access_error(entry, "create the parents of", &e))?;
        }
    }
    match entry.state {
        State::Absent => remove(plan),
        State::Directory if plan.changes.contains(&Change::Create) => make_dir(entry, umask),
        State::File if plan.writes_content() => {
            let tmp = match staged {
                Some(tmp) => tmp,
                // Its directory was made earlier in this run.
                None => stage(plan, umask)?,
            };
            let mut guard = Staged {
                files: vec![Some(tmp.clone())],
            };
            fs::rename(&tmp, &entry.path).map_err(|e| access_error(entry, "replace", &e))?;
            guard.files.clear();
            Ok(())
        }
        // An existing file or directory whose owner, group or mode differ.
        State::File | State::Directory => set_attributes(entry, &entry.path),
    }
}

/// Writes the new content next to the target and validates it there. Returns the temporary
/// file, complete, synced, with its final owner, group and mode.
fn stage(plan: &Plan, umask: u32) -> Result<PathBuf, String> {
    let entry = plan.entry;
    let tmp = temp_path(&entry.path);
    let mut guard = Staged {
        files: vec![Some(tmp.clone())],
    };
    // 0600 while the content is written: a secret is never readable by others, even briefly.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| access_error(entry, "write a temporary file next to", &e))?;
    file.write_all(plan.content.as_deref().unwrap_or_default().as_bytes())
        .map_err(|e| access_error(entry, "write a temporary file next to", &e))?;
    // What the entry does not say is kept from the file it replaces (as ansible-core's
    // atomic_move does); a new file gets the process's owner and 0666 minus the umask.
    let current = plan.current.meta();
    let uid = entry
        .owner
        .as_ref()
        .map(|o| o.id)
        .or(current.map(|m| m.uid()));
    let gid = entry
        .group
        .as_ref()
        .map(|g| g.id)
        .or(current.map(|m| m.gid()));
    let mode = entry
        .mode
        .or(current.map(|m| m.mode() & 0o7777))
        .unwrap_or(0o666 & !umask);
    let mine = file
        .metadata()
        .map_err(|e| access_error(entry, "stat the temporary file of", &e))?;
    let uid = uid.filter(|u| *u != mine.uid());
    let gid = gid.filter(|g| *g != mine.gid());
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::fchown(&file, uid, gid).map_err(|e| owner_error(entry, &e))?;
    }
    // After the chown, which clears set-id bits.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| access_error(entry, "set the mode of", &e))?;
    file.sync_all()
        .map_err(|e| access_error(entry, "sync the temporary file of", &e))?;
    drop(file);
    if let Some(command) = &entry.validate {
        validate(entry, command, &tmp)?;
    }
    guard.files.clear();
    Ok(tmp)
}

/// `.<name>.files-<pid>-<n>.tmp` in the target's directory: the rename stays on one file
/// system, and a leftover (after a kill) is hidden and says who made it.
fn temp_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.files-{}-{n}.tmp", std::process::id()))
}

fn validate(entry: &Entry, words: &[String], tmp: &Path) -> Result<(), String> {
    let file = tmp.display().to_string();
    let words: Vec<String> = words.iter().map(|w| w.replace("%s", &file)).collect();
    let command = Command::new(&words[0])
        .args(words[1..].iter().cloned())
        .timeout(VALIDATE_TIMEOUT);
    let output = command
        .run()
        .map_err(|e| format!("{}: cannot run the validate command: {e}", entry.label()))?;
    if output.success() {
        return Ok(());
    }
    let why = if output.timed_out {
        format!("did not finish within {} s", VALIDATE_TIMEOUT.as_secs())
    } else if entry.secret {
        // A checker may quote the lines it rejects: of a secret file, nothing is shown.
        format!(
            "exited {} (its output is hidden: the entry is secret)",
            output.rc
        )
    } else {
        format!("exited {}: {}", output.rc, output.tail(5))
    };
    Err(format!(
        "{}: the new content failed validation, the file was not replaced: `{}` {why}",
        entry.label(),
        command.display()
    ))
}

fn make_dir(entry: &Entry, umask: u32) -> Result<(), String> {
    let path = &entry.path;
    // 0700 until owner and mode are set, so nobody uses it half-made.
    DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| access_error(entry, "create", &e))?;
    let done = set_ids(entry, path).and_then(|()| {
        fs::set_permissions(
            path,
            Permissions::from_mode(entry.mode.unwrap_or(0o777 & !umask)),
        )
        .map_err(|e| access_error(entry, "set the mode of", &e))
    });
    if done.is_err() {
        // Empty and ours: leave nothing half-made behind.
        let _ = fs::remove_dir(path);
    }
    done
}

fn set_attributes(entry: &Entry, path: &Path) -> Result<(), String> {
    set_ids(entry, path)?;
    if let Some(mode) = entry.mode {
        fs::set_permissions(path, Permissions::from_mode(mode))
            .map_err(|e| access_error(entry, "set the mode of", &e))?;
    }
    Ok(())
}

fn set_ids(entry: &Entry, path: &Path) -> Result<(), String> {
    let uid = entry.owner.as_ref().map(|o| o.id);
    let gid = entry.group.as_ref().map(|g| g.id);
    if uid.is_none() && gid.is_none() {
        return Ok(());
    }
    std::os::unix::fs::chown(path, uid, gid).map_err(|e| owner_error(entry, &e))
}

fn owner_error(entry: &Entry, e: &std::io::Error) -> String {
    let want = |id: &Option<crate::entry::Id>| id.as_ref().map(|i| i.name.clone());
    let who = [want(&entry.owner), want(&entry.group)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(":");
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        format!(
            "{}: cannot give it owner/group {who}: permission denied; run the task as root (become: true)",
            entry.label()
        )
    } else {
        format!("{}: cannot give it owner/group {who}: {e}", entry.label())
    }
}

fn remove(plan: &Plan) -> Result<(), String> {
    let entry = plan.entry;
    let result = match plan.current {
        crate::plan::Current::Dir { .. } => fs::remove_dir_all(&entry.path),
        _ => fs::remove_file(&entry.path),
    };
    result.map_err(|e| access_error(entry, "remove", &e))
}

/// The process's umask (read by setting it and putting it back; the module is one thread).
fn current_umask() -> u32 {
    use nix::sys::stat::{umask, Mode};
    let old = umask(Mode::from_bits_truncate(0o022));
    umask(old);
    old.bits()
}
