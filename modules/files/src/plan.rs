//! What is at each path now, and what has to change: read-only, so check mode stops here.
//! Every conflict (a directory where a file is wanted, a missing parent, a symlink) is found
//! for all entries before anything is written.

use std::io::ErrorKind;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::sys::stat::{FileStat, SFlag};
use runtime::Diff;

use crate::entry::{Entry, State};
use crate::ini;
use crate::walk::{self, Found};

/// The owner, group and permission bits of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl From<&FileStat> for Meta {
    fn from(st: &FileStat) -> Meta {
        Meta {
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
        }
    }
}

/// What is at a path now.
#[derive(Debug)]
pub enum Current {
    Missing,
    File {
        meta: Meta,
        content: Vec<u8>,
    },
    Dir {
        meta: Meta,
    },
    /// A symbolic link (only for state=absent, which removes the link itself).
    Link,
}

impl Current {
    pub fn meta(&self) -> Option<&Meta> {
        match self {
            Current::File { meta, .. } | Current::Dir { meta } => Some(meta),
            Current::Missing | Current::Link => None,
        }
    }

    fn state(&self) -> &'static str {
        match self {
            Current::Missing => "absent",
            Current::File { .. } => "file",
            Current::Dir { .. } => "directory",
            Current::Link => "link",
        }
    }
}

/// One change an entry needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Create,
    /// Missing parent directories are made first (`parents: true`).
    Parents,
    Content,
    Owner {
        from: u32,
        to: u32,
    },
    Group {
        from: u32,
        to: u32,
    },
    Mode {
        from: u32,
        to: u32,
    },
    Remove,
}

impl Change {
    pub fn word(self) -> &'static str {
        match self {
            Change::Create => "created",
            Change::Parents => "parents created",
            Change::Content => "content",
            Change::Owner { .. } => "owner",
            Change::Group { .. } => "group",
            Change::Mode { .. } => "mode",
            Change::Remove => "removed",
        }
    }
}

/// An entry, what is there now and what has to change.
#[derive(Debug)]
pub struct Plan<'a> {
    pub entry: &'a Entry,
    pub current: Current,
    /// The whole text the file must have (state=file): the entry's `content`, or its `ini`
    /// settings applied to the file as it is now.
    pub content: Option<String>,
    pub changes: Vec<Change>,
}

impl Plan<'_> {
    pub fn changed(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The file content must be (re)written: a new file or different bytes.
    pub fn writes_content(&self) -> bool {
        self.entry.state == State::File
            && self
                .changes
                .iter()
                .any(|c| matches!(c, Change::Create | Change::Content))
    }
}

/// Looks at every path and plans every entry. The first conflict is the error.
pub fn plan(entries: &[Entry]) -> Result<Vec<Plan<'_>>, String> {
    let mut plans: Vec<Plan> = Vec::with_capacity(entries.len());
    for entry in entries {
        check_nesting(entry, entries)?;
        let current = inspect(entry)?;
        let content = wanted(entry, &current)?;
        let mut changes = changes(entry, &current, content.as_deref())?;
        if changes.contains(&Change::Create) && check_parent(entry, &plans)? {
            changes.insert(0, Change::Parents);
        }
        plans.push(Plan {
            entry,
            current,
            content,
            changes,
        });
    }
    Ok(plans)
}

/// An entry that removes a path must not hold another entry's path below it.
fn check_nesting(entry: &Entry, all: &[Entry]) -> Result<(), String> {
    if entry.state != State::Absent {
        return Ok(());
    }
    match all
        .iter()
        .find(|other| other.state != State::Absent && other.path.starts_with(&entry.path))
    {
        Some(inner) => Err(format!(
            "{}: removes a path that holds {} (state={}); drop one of the two entries",
            entry.label(),
            inner.label(),
            inner.state.name()
        )),
        None => Ok(()),
    }
}

fn inspect(entry: &Entry) -> Result<Current, String> {
    let (parent, name) = walk::split(&entry.path);
    let dir = match walk::dir(parent) {
        Ok(Found::Dir(fd)) => fd,
        // A missing parent, or a file where one should be: nothing is at the path; the
        // parent check then says which part is in the way.
        Ok(Found::Missing { .. }) | Err(walk::Error::NotDir { .. }) => return Ok(Current::Missing),
        Err(e) => return Err(e.describe(&entry.label())),
    };
    let st = match walk::stat(dir.as_fd(), name) {
        Ok(Some(st)) => st,
        Ok(None) => return Ok(Current::Missing),
        Err(e) => return Err(errno_error(entry, "inspect", e)),
    };
    let kind = walk::kind(&st);
    if kind == SFlag::S_IFLNK {
        if entry.state == State::Absent {
            return Ok(Current::Link);
        }
        // Never through a link, whoever owns it: writing, chowning or chmodding what it
        // points to would change a path elsewhere (a service user's link to /etc), and
        // replacing the link would surprise whoever made it. Neither is guessed.
        return Err(format!(
            "{}: is a symbolic link (to {}) owned by {}; the module never writes, chowns or chmods through a link: remove the link (state: absent) and let the entry make a real {}, or point 'path' at the link's target",
            entry.label(),
            walk::link_target(dir.as_fd(), name),
            walk::owner_name(st.st_uid),
            entry.state.name()
        ));
    }
    if kind == SFlag::S_IFDIR {
        return Ok(Current::Dir {
            meta: Meta::from(&st),
        });
    }
    if kind == SFlag::S_IFREG {
        // Only a file whose content is managed is read (opened without following a link, and
        // its own stat kept: what was read is what is compared).
        if entry.state != State::File {
            return Ok(Current::File {
                meta: Meta::from(&st),
                content: Vec::new(),
            });
        }
        let (st, content) =
            walk::read_file(dir.as_fd(), name).map_err(|e| errno_error(entry, "read", e))?;
        return Ok(Current::File {
            meta: Meta::from(&st),
            content,
        });
    }
    Err(format!(
        "{}: is neither a file nor a directory (a socket, pipe or device); the module does not replace those: fix the path",
        entry.label()
    ))
}

pub fn errno_error(entry: &Entry, what: &str, e: Errno) -> String {
    access_error(entry, what, &std::io::Error::from_raw_os_error(e as i32))
}

pub fn access_error(entry: &Entry, what: &str, e: &std::io::Error) -> String {
    if e.kind() == ErrorKind::PermissionDenied {
        format!(
            "{}: cannot {what} it: permission denied; run the task as root (become: true)",
            entry.label()
        )
    } else {
        format!("{}: cannot {what} it: {e}", entry.label())
    }
}

/// The text a file entry wants at its path; `None` for other states (and for an `ini` entry
/// whose path is not a file: `changes` names that conflict).
fn wanted(entry: &Entry, current: &Current) -> Result<Option<String>, String> {
    if entry.state != State::File {
        return Ok(None);
    }
    let Some(settings) = &entry.ini else {
        return Ok(entry.content.clone());
    };
    match current {
        Current::File { content, .. } => {
            let text = std::str::from_utf8(content).map_err(|_| {
                format!(
                    "{}: is not UTF-8 text, so 'ini' cannot edit it; fix the file, or write it whole with 'content'",
                    entry.label()
                )
            })?;
            Ok(Some(ini::apply(text, settings)))
        }
        Current::Missing if entry.create => Ok(Some(ini::apply("", settings))),
        Current::Missing => Err(format!(
            "{}: does not exist and the entry has create: false; install what ships it first (an earlier task), or set create: true",
            entry.label()
        )),
        Current::Dir { .. } | Current::Link => Ok(None),
    }
}

fn changes(entry: &Entry, current: &Current, wanted: Option<&str>) -> Result<Vec<Change>, String> {
    let mut out = Vec::new();
    let mismatch = |want: &str| {
        Err(format!(
            "{}: is a {}, but the entry wants a {want}; remove it first (a separate task) or fix the path",
            entry.label(),
            current.state()
        ))
    };
    match (entry.state, current) {
        (State::Absent, Current::Missing) => {}
        (State::Absent, _) => out.push(Change::Remove),
        (_, Current::Missing) => out.push(Change::Create),
        (State::File, Current::File { meta, content }) => {
            if Some(content.as_slice()) != wanted.map(str::as_bytes) {
                out.push(Change::Content);
            }
            attributes(entry, meta, &mut out);
        }
        (State::Directory, Current::Dir { meta }) => attributes(entry, meta, &mut out),
        (State::File, _) => return mismatch("file"),
        (State::Directory, _) => return mismatch("directory"),
    }
    Ok(out)
}

fn attributes(entry: &Entry, meta: &Meta, out: &mut Vec<Change>) {
    if let Some(owner) = entry.owner.as_ref().filter(|o| o.id != meta.uid) {
        out.push(Change::Owner {
            from: meta.uid,
            to: owner.id,
        });
    }
    if let Some(group) = entry.group.as_ref().filter(|g| g.id != meta.gid) {
        out.push(Change::Group {
            from: meta.gid,
            to: group.id,
        });
    }
    let mode = meta.mode;
    if let Some(want) = entry.mode.filter(|m| *m != mode) {
        out.push(Change::Mode {
            from: mode,
            to: want,
        });
    }
}

/// A new path needs its parent: on the host already, made by an earlier entry, or (with
/// `parents: true`) made now. `Ok(true)`: the parent is missing and will be made.
fn check_parent(entry: &Entry, earlier: &[Plan]) -> Result<bool, String> {
    let Some(parent) = entry.path.parent() else {
        return Ok(false);
    };
    if earlier
        .iter()
        .any(|p| p.entry.path == parent && p.entry.state == State::Directory)
    {
        return Ok(false);
    }
    match walk::dir(parent) {
        Ok(Found::Dir(_)) => Ok(false),
        // Everything below the nearest existing directory is made.
        Ok(Found::Missing { .. }) if entry.parents => Ok(true),
        Ok(Found::Missing { .. }) => Err(format!(
            "{}: the parent directory {} does not exist; add it as a state=directory entry before this one, or set parents: true",
            entry.label(),
            parent.display()
        )),
        Err(e) => Err(e.describe(&entry.label())),
    }
}

/// At most this much text is shown in a diff (ansible-core's default `max_diff_size`).
const MAX_DIFF: usize = 104_448;
pub const HIDDEN: &str = "content hidden: secret entry";

/// The diffs of one changed entry, in the form ansible-core prints: the content (for files)
/// and the attributes. A secret entry's content is never shown, only that it changed.
pub fn diffs(plan: &Plan, names: &dyn Fn(bool, u32) -> String) -> Vec<Diff> {
    let entry = plan.entry;
    let path = entry.path.display().to_string();
    let mut out = Vec::new();
    if plan.writes_content() {
        let new = plan.content.as_deref().unwrap_or_default();
        let (before, after) = match (&plan.current, entry.secret) {
            // Only the options the entry sets: the rest of the file may hold values another
            // entry or task wrote (a password), which this entry's diff has no business showing.
            (current, false) if entry.ini.is_some() => {
                let text = match current {
                    Current::File { content, .. } => Some(String::from_utf8_lossy(content)),
                    _ => None,
                };
                ini::diff(text.as_deref(), entry.ini.as_ref().unwrap_or(&Vec::new()))
            }
            (Current::File { .. }, true) => (
                format!("({HIDDEN}; the current version)\n"),
                format!("({HIDDEN}; the new version)\n"),
            ),
            (_, true) => (String::new(), format!("({HIDDEN})\n")),
            (Current::File { content, .. }, false) => (shown(content), shown(new.as_bytes())),
            (_, false) => (String::new(), shown(new.as_bytes())),
        };
        out.push(Diff::new(before, after).headers(path.clone(), path.clone()));
    }
    let attrs = plan.changes.iter().any(|c| !matches!(c, Change::Content));
    if attrs {
        // (key, before, after); a key with no before is only in the new version.
        let mut rows: Vec<(&str, Option<String>, String)> = vec![(
            "state",
            Some(plan.current.state().into()),
            entry.state.name().into(),
        )];
        for change in &plan.changes {
            match *change {
                Change::Owner { from, to } => {
                    rows.push(("owner", Some(names(true, from)), names(true, to)))
                }
                Change::Group { from, to } => {
                    rows.push(("group", Some(names(false, from)), names(false, to)))
                }
                Change::Mode { from, to } => {
                    rows.push(("mode", Some(runtime::octal(from)), runtime::octal(to)))
                }
                Change::Create => {
                    // What the new path gets, as far as the entry says.
                    if let Some(o) = &entry.owner {
                        rows.push(("owner", None, o.name.clone()));
                    }
                    if let Some(g) = &entry.group {
                        rows.push(("group", None, g.name.clone()));
                    }
                    if let Some(m) = entry.mode {
                        rows.push(("mode", None, runtime::octal(m)));
                    }
                }
                Change::Parents => rows.push(("parents", None, "created".into())),
                Change::Content | Change::Remove => {}
            }
        }
        let (mut before, mut after) = (String::new(), String::new());
        for (key, old, new) in rows {
            if let Some(old) = old {
                before.push_str(&format!("{key}: {old}\n"));
            }
            after.push_str(&format!("{key}: {new}\n"));
        }
        out.push(Diff::new(before, after).headers(
            format!("{path} (attributes)"),
            format!("{path} (attributes)"),
        ));
    }
    out
}

fn shown(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if bytes.len() <= MAX_DIFF => text.to_string(),
        Ok(_) => format!(
            "(not shown: {} bytes, more than the {MAX_DIFF} a diff shows)\n",
            bytes.len()
        ),
        Err(_) => format!(
            "(not shown: {} bytes that are not UTF-8 text)\n",
            bytes.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Id;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    fn file(path: &Path, content: &str) -> Entry {
        Entry::test_file(path, content)
    }

    fn dir(path: &Path) -> Entry {
        Entry::test_dir(path)
    }

    fn names(_: bool, id: u32) -> String {
        format!("id{id}")
    }

    #[test]
    fn a_new_file_in_a_new_directory_plans_both() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("conf.d");
        let entries = vec![dir(&d), file(&d.join("a.yml"), "a: 1\n")];
        let plans = plan(&entries).unwrap();
        assert_eq!(plans[0].changes, [Change::Create]);
        assert_eq!(plans[1].changes, [Change::Create]);
        assert!(plans[1].writes_content());
        // The other order is refused: the file comes before its directory.
        let reversed = vec![file(&d.join("a.yml"), "a: 1\n"), dir(&d)];
        let e = plan(&reversed).unwrap_err();
        assert!(
            e.contains("the parent directory") && e.contains("before this one"),
            "{e}"
        );
    }

    #[test]
    fn same_content_and_attributes_plan_nothing_and_drift_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x");
        fs::write(&path, "same\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let meta = fs::metadata(&path).unwrap();
        let mut entry = file(&path, "same\n");
        entry.mode = Some(0o644);
        entry.owner = Some(Id {
            name: "me".into(),
            id: meta.uid(),
        });
        assert!(plan(std::slice::from_ref(&entry)).unwrap()[0]
            .changes
            .is_empty());
        entry.mode = Some(0o640);
        entry.content = Some("new\n".into());
        entry.owner = Some(Id {
            name: "other".into(),
            id: meta.uid() + 1,
        });
        let plans = plan(std::slice::from_ref(&entry)).unwrap();
        assert_eq!(
            plans[0].changes,
            [
                Change::Content,
                Change::Owner {
                    from: meta.uid(),
                    to: meta.uid() + 1
                },
                Change::Mode {
                    from: 0o644,
                    to: 0o640
                }
            ]
        );
        let d = diffs(&plans[0], &names);
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].before.as_str(), d[0].after.as_str()),
            ("same\n", "new\n")
        );
        assert_eq!(
            d[1].before,
            format!("state: file\nowner: id{}\nmode: 0644\n", meta.uid())
        );
        assert_eq!(
            d[1].after,
            format!("state: file\nowner: id{}\nmode: 0640\n", meta.uid() + 1)
        );
    }

    #[test]
    fn secret_content_is_never_in_a_diff() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("secret.ini");
        fs::write(&path, "password = old-S3cret\n").unwrap();
        let mut entry = file(&path, "password = new-S3cret\n");
        entry.secret = true;
        let plans = plan(std::slice::from_ref(&entry)).unwrap();
        let d = diffs(&plans[0], &names);
        assert_eq!(d.len(), 1);
        let text = format!("{d:?}");
        assert!(!text.contains("S3cret"), "{text}");
        assert!(d[0].before.contains(HIDDEN) && d[0].after.contains(HIDDEN));
        assert_ne!(d[0].before, d[0].after, "the diff must still show a change");
    }

    #[test]
    fn conflicts_are_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        fs::create_dir(&d).unwrap();
        let e = plan(&[file(&d, "x")]).unwrap_err();
        assert!(
            e.contains("is a directory, but the entry wants a file"),
            "{e}"
        );
        let f = tmp.path().join("f");
        fs::write(&f, "x").unwrap();
        let e = plan(&[dir(&f)]).unwrap_err();
        assert!(
            e.contains("is a file, but the entry wants a directory"),
            "{e}"
        );
        let link = tmp.path().join("l");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let e = plan(&[file(&link, "x")]).unwrap_err();
        assert!(
            e.contains("is a symbolic link (to ") && e.contains("never writes, chowns or chmods"),
            "{e}"
        );
        let mut gone = file(&d, "");
        gone.state = State::Absent;
        gone.content = None;
        let e = plan(&[gone.clone(), file(&d.join("in"), "x")]).unwrap_err();
        assert!(e.contains("removes a path that holds"), "{e}");
        // A link to a directory is refused for state=directory too (whoever owns it: a chmod
        // through it would change its target), and removable as a link.
        let dlink = tmp.path().join("dl");
        std::os::unix::fs::symlink(&d, &dlink).unwrap();
        let e = plan(&[dir(&dlink)]).unwrap_err();
        assert!(
            e.contains("dl): is a symbolic link (to ") && e.contains("a real directory"),
            "{e}"
        );
        gone.path = dlink;
        assert_eq!(plan(&[gone]).unwrap()[0].changes, [Change::Remove]);
        let missing = PathBuf::from("/nonexistent-homeops/x/y");
        let e = plan(&[file(&missing, "")]).unwrap_err();
        assert!(e.contains("/nonexistent-homeops/x does not exist"), "{e}");
    }

    #[test]
    fn big_or_binary_content_is_summarised() {
        assert_eq!(shown(b"a\n"), "a\n");
        assert!(shown(&[0xff, 0xfe]).contains("2 bytes that are not UTF-8"));
        assert!(shown(&vec![b'a'; MAX_DIFF + 1]).contains("more than the"));
    }
}
