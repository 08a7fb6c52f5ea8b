//! Making the plans true, in two phases so that a failure leaves as little as possible:
//!
//! 1. Stage: every file whose directory exists already gets its new content in a temporary
//!    file next to it (mode 0600 while written, then fsync, owner, group, mode) and is
//!    validated there. Any failure removes all temporary files: nothing at all has changed.
//! 2. Commit, entry by entry in the task's order: directories, renames of the staged files
//!    (atomic: a reader sees the old file or the new one), attribute fixes, removals. Files in
//!    directories made in this run are staged here, after their directory. A failure here says
//!    `changed: true` and lists what was done.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fchmod, fstat, mkdirat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use runtime::Command;

use crate::entry::{Entry, State};
use crate::plan::{errno_error, Change, Plan};
use crate::walk::{self, Found};

/// A validate command that runs longer than this is killed and the entry fails.
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(300);

/// What went wrong, and which paths had already changed by then.
#[derive(Debug)]
pub struct Error {
    pub msg: String,
    pub changed_paths: Vec<String>,
}

/// A staged temporary file: the directory it is in (open: the rename goes there, whatever
/// happens to the path meanwhile) and its name there.
struct Temp {
    dir: OwnedFd,
    name: OsString,
}

/// Temporary files not yet renamed: removed when dropped, so no error path leaves one behind.
#[derive(Default)]
struct Staged {
    files: Vec<Option<Temp>>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        for tmp in self.files.iter().flatten() {
            let _ = unlinkat(
                tmp.dir.as_fd(),
                tmp.name.as_os_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

/// Applies every plan. Returns the paths that changed, in the task's order.
pub fn apply(plans: &[Plan]) -> Result<Vec<String>, Error> {
    let umask = current_umask();
    let mut staged = Staged {
        files: plans.iter().map(|_| None).collect(),
    };
    // Phase 1: stage and validate what can be staged now (a file whose directory this run
    // makes is staged in phase 2, after it; so is one whose walk fails: phase 2 says why).
    for (i, plan) in plans.iter().enumerate() {
        if !plan.writes_content() {
            continue;
        }
        let (parent, _) = walk::split(&plan.entry.path);
        let Ok(Found::Dir(dir)) = walk::dir(parent) else {
            continue;
        };
        let tmp = stage(plan, dir, umask).map_err(|msg| Error {
            msg: format!("{msg}; nothing was changed"),
            changed_paths: Vec::new(),
        })?;
        staged.files[i] = Some(tmp);
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
        if let Ok(Found::Dir(fd)) = walk::dir(&dir) {
            if let Ok(real) = walk::open_dir(fd.as_fd(), OsStr::new(".")) {
                let _ = File::from(real).sync_all();
            }
        }
    }
    Ok(changed)
}

fn commit(plan: &Plan, staged: Option<Temp>, umask: u32) -> Result<(), String> {
    let entry = plan.entry;
    runtime::note_change();
    let (parent, name) = walk::split(&entry.path);
    if plan.changes.contains(&Change::Parents) {
        make_parents(entry, parent, umask)?;
    }
    match entry.state {
        State::Absent => remove(entry, parent, name),
        State::Directory if plan.changes.contains(&Change::Create) => {
            let dir = parent_dir(entry, parent)?;
            let mode = entry.mode.unwrap_or(0o777 & !umask);
            make_dir(entry, dir.as_fd(), name, &entry.path, mode)
                .map_err(|e| errno_error(entry, "create", e))
                .and_then(|made| made.map(drop))
        }
        State::File if plan.writes_content() => {
            let tmp = match staged {
                Some(tmp) => tmp,
                // Its directory was made earlier in this run.
                None => stage(plan, parent_dir(entry, parent)?, umask)?,
            };
            let mut guard = Staged {
                files: vec![Some(tmp)],
            };
            if let Some(tmp) = &guard.files[0] {
                // Within the directory the file was staged in: a link put at the target
                // meanwhile is replaced, never followed.
                renameat(tmp.dir.as_fd(), tmp.name.as_os_str(), tmp.dir.as_fd(), name)
                    .map_err(|e| errno_error(entry, "replace", e))?;
            }
            guard.files.clear();
            Ok(())
        }
        // An existing file or directory whose owner, group or mode differ.
        State::File | State::Directory => {
            let dir = parent_dir(entry, parent)?;
            set_attributes(entry, dir.as_fd(), name)
        }
    }
}

/// The open parent directory of an entry (the plan saw it; a failure here is a race).
fn parent_dir(entry: &Entry, parent: &Path) -> Result<OwnedFd, String> {
    match walk::dir(parent) {
        Ok(Found::Dir(fd)) => Ok(fd),
        Ok(Found::Missing { .. }) => Err(format!(
            "{}: the parent directory {} does not exist (it went away while the task ran); run the task again",
            entry.label(),
            parent.display()
        )),
        Err(e) => Err(e.describe(&entry.label())),
    }
}

/// The mode of the parents `parents: true` makes. ansible.builtin.file gives the directories
/// it makes for a directory the same owner, group and mode as that directory: a directory
/// entry's parents get its mode (0777 minus the umask without one). For a file entry there is
/// no mode a directory should share (0640 would lock its own service out), and the umask
/// (ansible.builtin.copy's choice without directory_mode) depends on the session: under 027 a
/// service could not reach its own file. So 0755, whatever the umask.
fn parents_mode(entry: &Entry, umask: u32) -> u32 {
    match entry.state {
        State::Directory => entry.mode.unwrap_or(0o777 & !umask),
        _ => 0o755,
    }
}

/// Like `mkdir -p`, never through a link another user made (the walk refuses those); what it
/// makes gets the entry's owner and group and `parents_mode`.
fn make_parents(entry: &Entry, parent: &Path, umask: u32) -> Result<(), String> {
    let (mut at, mut fd, rest) = match walk::dir(parent) {
        Ok(Found::Dir(_)) => return Ok(()),
        Ok(Found::Missing { at, fd, rest }) => (at, fd, rest),
        Err(e) => return Err(e.describe(&entry.label())),
    };
    let mode = parents_mode(entry, umask);
    for name in rest {
        at.push(&name);
        fd = match make_dir(entry, fd.as_fd(), &name, &at, mode) {
            Ok(Ok(made)) => made,
            Ok(Err(msg)) => return Err(msg),
            // Made meanwhile by someone else: entered as the walk would (never a link).
            Err(Errno::EEXIST) => walk::open_dir_path(fd.as_fd(), &name)
                .map_err(|e| walk::io_message(&entry.label(), "enter the parent", &at, e))?,
            Err(e) => {
                return Err(walk::io_message(
                    &entry.label(),
                    "create the parent",
                    &at,
                    e,
                ))
            }
        };
    }
    Ok(())
}

/// Makes the directory `name` in `dir` with the entry's owner and group and `mode`, 0700 until
/// they are set so nobody uses it half-made. The outer error is mkdir's own (EEXIST for a
/// caller that accepts it); the inner one a message, after which nothing is left behind.
fn make_dir(
    entry: &Entry,
    dir: BorrowedFd,
    name: &OsStr,
    shown: &Path,
    mode: u32,
) -> Result<Result<OwnedFd, String>, Errno> {
    mkdirat(dir, name, Mode::from_bits_truncate(0o700))?;
    let done = walk::open_dir(dir, name)
        .map_err(|e| walk::io_message(&entry.label(), "open the new directory", shown, e))
        .and_then(|fd| {
            set_ids(entry, fd.as_fd())?;
            fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))
                .map_err(|e| walk::io_message(&entry.label(), "set the mode of", shown, e))?;
            Ok(fd)
        });
    if done.is_err() {
        // Empty and ours: leave nothing half-made behind.
        let _ = unlinkat(dir, name, UnlinkatFlags::RemoveDir);
    }
    Ok(done)
}

/// Writes the new content next to the target (in its open directory) and validates it there.
/// Returns the temporary file, complete, synced, with its final owner, group and mode.
fn stage(plan: &Plan, dir: OwnedFd, umask: u32) -> Result<Temp, String> {
    let entry = plan.entry;
    let (parent, name) = walk::split(&entry.path);
    let tmp_name = temp_name(name);
    let path = parent.join(&tmp_name);
    // 0600 while the content is written: a secret is never readable by others, even briefly.
    // O_EXCL: a link planted under this name is never followed.
    let fd = openat(
        dir.as_fd(),
        tmp_name.as_os_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| errno_error(entry, "write a temporary file next to", e))?;
    let mut guard = Staged {
        files: vec![Some(Temp {
            dir,
            name: tmp_name,
        })],
    };
    let mut file = File::from(fd);
    file.write_all(plan.content.as_deref().unwrap_or_default().as_bytes())
        .map_err(|e| access_error(entry, "write a temporary file next to", &e))?;
    // What the entry does not say is kept from the file it replaces (as ansible-core's
    // atomic_move does); a new file gets the process's owner and 0666 minus the umask.
    let current = plan.current.meta();
    let uid = entry
        .owner
        .as_ref()
        .map(|o| o.id)
        .or(current.map(|m| m.uid));
    let gid = entry
        .group
        .as_ref()
        .map(|g| g.id)
        .or(current.map(|m| m.gid));
    let mode = entry
        .mode
        .or(current.map(|m| m.mode))
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
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| access_error(entry, "set the mode of", &e))?;
    file.sync_all()
        .map_err(|e| access_error(entry, "sync the temporary file of", &e))?;
    drop(file);
    if let Some(command) = &entry.validate {
        validate(entry, command, &path)?;
    }
    guard.files[0]
        .take()
        .ok_or_else(|| format!("{}: the staged file went missing", entry.label()))
}

fn access_error(entry: &Entry, what: &str, e: &std::io::Error) -> String {
    crate::plan::access_error(entry, what, e)
}

/// `.<name>.files-<pid>-<n>.tmp` in the target's directory: the rename stays on one file
/// system, and a leftover (after a kill) is hidden and says who made it.
fn temp_name(name: &OsStr) -> OsString {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    OsString::from(format!(
        ".{}.files-{}-{n}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ))
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

/// Fixes the owner, group and mode of `name` in `dir` through a descriptor opened without
/// following a link: a link swapped in since the plan makes this fail, never chown /etc.
fn set_attributes(entry: &Entry, dir: BorrowedFd, name: &OsStr) -> Result<(), String> {
    let fd = walk::open_leaf(dir, name).map_err(|e| match e {
        Errno::ELOOP => format!(
            "{}: became a symbolic link while the task ran; the module never chowns or chmods through a link: remove the link and run the task again",
            entry.label()
        ),
        e => errno_error(entry, "open", e),
    })?;
    let want = match entry.state {
        State::Directory => SFlag::S_IFDIR,
        _ => SFlag::S_IFREG,
    };
    let st = fstat(fd.as_fd()).map_err(|e| errno_error(entry, "inspect", e))?;
    if walk::kind(&st) != want {
        return Err(format!(
            "{}: is no longer a {} (it changed while the task ran); run the task again",
            entry.label(),
            entry.state.name()
        ));
    }
    set_ids(entry, fd.as_fd())?;
    if let Some(mode) = entry.mode {
        fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| errno_error(entry, "set the mode of", e))?;
    }
    Ok(())
}

fn set_ids(entry: &Entry, fd: BorrowedFd) -> Result<(), String> {
    let uid = entry.owner.as_ref().map(|o| o.id);
    let gid = entry.group.as_ref().map(|g| g.id);
    if uid.is_none() && gid.is_none() {
        return Ok(());
    }
    std::os::unix::fs::fchown(fd, uid, gid).map_err(|e| owner_error(entry, &e))
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

/// Removes what is at the path: a link itself (never its target), a file, or a directory with
/// everything in it (never following a link inside).
fn remove(entry: &Entry, parent: &Path, name: &OsStr) -> Result<(), String> {
    let dir = match walk::dir(parent) {
        Ok(Found::Dir(fd)) => fd,
        // Gone already (the plan saw it: something removed it meanwhile).
        Ok(Found::Missing { .. }) => return Ok(()),
        Err(e) => return Err(e.describe(&entry.label())),
    };
    walk::remove(dir.as_fd(), name).map_err(|e| errno_error(entry, "remove", e))
}

/// The process's umask (read by setting it and putting it back; the module is one thread).
fn current_umask() -> u32 {
    use nix::sys::stat::{umask, Mode};
    let old = umask(Mode::from_bits_truncate(0o022));
    umask(old);
    old.bits()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Id;
    use crate::plan::plan;
    use std::fs;
    use std::os::unix::fs::{lchown, symlink};

    /// The uid of `nobody`: a user who is not root, as the loki user is on a host.
    const USER: u32 = 65534;

    fn is_root() -> bool {
        runtime::effective_uid() == 0
    }

    fn owned_dir(path: &Path, mode: u32) -> Entry {
        Entry {
            owner: Some(Id {
                name: "nobody".into(),
                id: USER,
            }),
            group: Some(Id {
                name: "nogroup".into(),
                id: USER,
            }),
            mode: Some(mode),
            ..Entry::test_dir(path)
        }
    }

    /// (uid, gid, mode) of a path, not following a link.
    fn attrs(path: &Path) -> (u32, u32, u32) {
        let m = fs::symlink_metadata(path).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    }

    /// A stand-in for /etc: root's, 0755, with a file in it.
    fn victim(root: &Path) -> PathBuf {
        let etc = root.join("etc");
        fs::create_dir(&etc).unwrap();
        fs::set_permissions(&etc, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(etc.join("passwd"), "root:x:0:0\n").unwrap();
        etc
    }

    #[test]
    fn a_link_planted_by_a_user_is_never_chowned_or_written_through() {
        if !is_root() {
            eprintln!("skipped: needs root to plant a link owned by uid {USER}");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let etc = victim(root);
        let data = root.join("data");
        fs::create_dir(&data).unwrap();
        // The service user replaced its data directory with a link to /etc.
        let chunks = data.join("chunks");
        symlink(&etc, &chunks).unwrap();
        lchown(&chunks, Some(USER), Some(USER)).unwrap();
        let entries = [owned_dir(&chunks, 0o750)];
        let e = plan(&entries).unwrap_err();
        assert!(
            e.contains("chunks): is a symbolic link (to ") && e.contains("uid 65534"),
            "{e}"
        );
        // A file below the link: refused on the way, naming the link and its owner.
        let below = Entry {
            owner: Some(Id {
                name: "nobody".into(),
                id: USER,
            }),
            mode: Some(0o600),
            ..Entry::test_file(&chunks.join("passwd"), "pwned\n")
        };
        let e = plan(std::slice::from_ref(&below)).unwrap_err();
        assert!(
            e.contains(&format!("{} is a symbolic link", chunks.display()))
                && e.contains("(uid 65534), not root"),
            "{e}"
        );
        assert_eq!(attrs(&etc), (0, 0, 0o755));
        assert_eq!(
            fs::read_to_string(etc.join("passwd")).unwrap(),
            "root:x:0:0\n"
        );
        assert_eq!(attrs(&etc.join("passwd")).0, 0);
    }

    #[test]
    fn a_link_swapped_in_after_the_plan_is_not_followed() {
        if !is_root() {
            eprintln!("skipped: needs root to chown");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let etc = victim(root);
        let chunks = root.join("chunks");
        fs::create_dir(&chunks).unwrap();
        let conf = root.join("conf.yml");
        fs::write(&conf, "old\n").unwrap();
        let entries = [
            owned_dir(&chunks, 0o750),
            Entry {
                mode: Some(0o600),
                ..Entry::test_file(&conf, "old\n")
            },
        ];
        let plans = plan(&entries).unwrap();
        assert!(plans[0].changed() && plans[1].changed());
        // Between the look and the change, both paths become links to /etc things.
        fs::remove_dir(&chunks).unwrap();
        symlink(&etc, &chunks).unwrap();
        fs::remove_file(&conf).unwrap();
        symlink(etc.join("passwd"), &conf).unwrap();
        let e = apply(&plans).unwrap_err();
        assert!(e.msg.contains("became a symbolic link"), "{}", e.msg);
        assert_eq!(attrs(&etc), (0, 0, 0o755));
        // The second entry was never reached; run alone it is refused the same way.
        let e = apply(&plans[1..]).unwrap_err();
        assert!(e.msg.contains("became a symbolic link"), "{}", e.msg);
        assert_eq!(attrs(&etc.join("passwd")).2 & 0o777, 0o644);
    }

    #[test]
    fn parents_get_the_entrys_owner_and_group_not_root_and_the_umask() {
        if !is_root() {
            eprintln!("skipped: needs root to chown");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // A directory entry: its parents get its owner, group and mode (ansible.builtin.file).
        let mut deep = owned_dir(&root.join("a/b/c"), 0o750);
        deep.parents = true;
        // A file entry: its parents get its owner and group, and 0755 whatever the umask.
        let mut file = Entry {
            owner: Some(Id {
                name: "nobody".into(),
                id: USER,
            }),
            group: Some(Id {
                name: "nogroup".into(),
                id: USER,
            }),
            mode: Some(0o640),
            parents: true,
            ..Entry::test_file(&root.join("p/q/f.yml"), "x\n")
        };
        file.index = 1;
        let entries = [deep, file];
        let plans = plan(&entries).unwrap();
        apply(&plans).unwrap();
        for made in ["a", "a/b", "a/b/c"] {
            assert_eq!(attrs(&root.join(made)), (USER, USER, 0o750), "{made}");
        }
        for made in ["p", "p/q"] {
            assert_eq!(attrs(&root.join(made)), (USER, USER, 0o755), "{made}");
        }
        assert_eq!(attrs(&root.join("p/q/f.yml")), (USER, USER, 0o640));
        // What existed before is left as it was.
        assert_eq!(attrs(root).0, 0);
    }

    #[test]
    fn parents_are_never_made_through_a_users_link() {
        if !is_root() {
            eprintln!("skipped: needs root to plant a link owned by uid {USER}");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let etc = victim(root);
        let link = root.join("lib");
        symlink(&etc, &link).unwrap();
        lchown(&link, Some(USER), Some(USER)).unwrap();
        let mut entry = owned_dir(&link.join("new/dir"), 0o777);
        entry.parents = true;
        let e = plan(std::slice::from_ref(&entry)).unwrap_err();
        assert!(e.contains("(uid 65534), not root"), "{e}");
        assert!(!etc.join("new").exists());
        // A root-owned link on the way (Debian's /var/run -> /run) is followed.
        let ours = root.join("run");
        symlink(&etc, &ours).unwrap();
        let mut entry = owned_dir(&ours.join("new/dir"), 0o750);
        entry.parents = true;
        let plans = plan(std::slice::from_ref(&entry)).unwrap();
        apply(&plans).unwrap();
        assert_eq!(attrs(&etc.join("new/dir")), (USER, USER, 0o750));
    }
}
