//! Every path is reached from `/` one component at a time, with directory file descriptors
//! and `*at` calls that never follow a symbolic link by accident: the module runs as root, and
//! a link a service user planted (say `/var/lib/loki/chunks` -> `/etc`) must never make it
//! chown, chmod, write or remove something else.
//!
//! The rules:
//! - an intermediate component that is a symbolic link owned by root is followed (Debian's own
//!   `/var/run` -> `/run`, merged-/usr `/lib` -> `usr/lib`): only root could have made it, and
//!   root can change anything anyway;
//! - one owned by anybody else is refused ([`Error::Link`], naming the link and its owner);
//! - the final component is never followed: the caller looks at it with `fstatat(...,
//!   AT_SYMLINK_NOFOLLOW)` and opens it with `O_NOFOLLOW`, so a link there (any owner) is seen as
//!   a link, and a link swapped in after the look makes the open fail instead of being followed.
//!
//! Directories are opened with `O_PATH` (search permission is all a walk needs, as for the
//! kernel's own lookup); what is read, written or changed is opened for real at the end.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Links followed in one walk before it gives up (the kernel's own limit).
const MAX_LINKS: usize = 40;
/// Directory levels a removal descends before it gives up (never a stack overflow).
const MAX_DEPTH: usize = 256;

/// Why a walk stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// A component is a symbolic link not owned by root.
    Link {
        path: PathBuf,
        uid: u32,
        target: String,
    },
    /// A component is there but is neither a directory nor a link (a file in the way).
    NotDir {
        path: PathBuf,
    },
    /// More than MAX_LINKS links (a loop).
    Loop {
        path: PathBuf,
    },
    Io {
        path: PathBuf,
        errno: Errno,
    },
}

impl Error {
    /// The error as a message about `label` (`files[2] (/x/y)`).
    pub fn describe(&self, label: &str) -> String {
        match self {
            Error::Link { path, uid, target } => format!(
                "{label}: {} is a symbolic link (to {target}) owned by {}, not root; the module never follows a link another user could have planted: remove the link (and make {} a real directory), or fix the path",
                path.display(),
                owner_name(*uid),
                path.display()
            ),
            Error::NotDir { path } => format!(
                "{label}: {} is not a directory, so nothing can be below it; fix the path",
                path.display()
            ),
            Error::Loop { path } => format!(
                "{label}: more than {MAX_LINKS} symbolic links on the way to {}; fix the links",
                path.display()
            ),
            Error::Io { path, errno } => io_message(label, "reach", path, *errno),
        }
    }
}

/// `loki (uid 998)`, or `uid 998` for an id /etc/passwd does not know.
pub fn owner_name(uid: u32) -> String {
    let db = runtime::accounts::Db::load_or_empty(Path::new("/"));
    match db.user_by_uid(uid) {
        Some(user) => format!("{} (uid {uid})", user.name),
        None => format!("uid {uid}"),
    }
}

/// `files[0] (/x): cannot create /x: permission denied; run the task as root (become: true)`.
pub fn io_message(label: &str, what: &str, path: &Path, errno: Errno) -> String {
    if matches!(errno, Errno::EACCES | Errno::EPERM) {
        format!(
            "{label}: cannot {what} {}: permission denied; run the task as root (become: true)",
            path.display()
        )
    } else {
        format!(
            "{label}: cannot {what} {}: {}",
            path.display(),
            errno.desc()
        )
    }
}

/// What a walk to a directory found.
#[derive(Debug)]
pub enum Found {
    /// The directory, open.
    Dir(OwnedFd),
    /// A component is missing: `fd` is the deepest directory that exists (at `at`), `rest` the
    /// names still to go below it, the missing one first.
    Missing {
        at: PathBuf,
        fd: OwnedFd,
        rest: Vec<OsString>,
    },
}

fn flags(extra: OFlag) -> OFlag {
    OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | extra
}

/// Opens the directory `name` in `dir` without following a link (a link fails: ELOOP or
/// ENOTDIR). `O_PATH`: only search permission is needed.
pub fn open_dir_path(dir: BorrowedFd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        flags(OFlag::O_PATH | OFlag::O_DIRECTORY),
        Mode::empty(),
    )
}

/// Opens the directory `name` in `dir` for real (to change, read or sync it), never through a
/// link.
pub fn open_dir(dir: BorrowedFd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY),
        Mode::empty(),
    )
}

/// Opens `name` in `dir` whatever it is (never blocking on a pipe, never through a link), to
/// read or change it; the caller checks with `fstat` that it is what it expects.
pub fn open_leaf(dir: BorrowedFd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY),
        Mode::empty(),
    )
}

/// `lstat` of `name` in `dir`; `None` when nothing is there.
pub fn stat(dir: BorrowedFd, name: &OsStr) -> nix::Result<Option<FileStat>> {
    match fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

/// The target of the link `name` in `dir`, for messages.
pub fn link_target(dir: BorrowedFd, name: &OsStr) -> String {
    readlinkat(dir, name)
        .map(|t| Path::new(&t).display().to_string())
        .unwrap_or_else(|_| "an unreadable target".into())
}

/// The parent of an absolute, normal path and its last name (`/etc/x` -> `/etc`, `x`).
pub fn split(path: &Path) -> (&Path, &OsStr) {
    (
        path.parent().unwrap_or(Path::new("/")),
        path.file_name().unwrap_or_default(),
    )
}

fn shown(stack: &[(OsString, OwnedFd)]) -> PathBuf {
    let mut path = PathBuf::from("/");
    for (name, _) in stack {
        path.push(name);
    }
    path
}

/// Walks from `/` to the directory `path` (see the module comment for the rules).
pub fn dir(path: &Path) -> Result<Found, Error> {
    let root: OwnedFd = File::open("/")
        .map_err(|e| Error::Io {
            path: "/".into(),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        })?
        .into();
    // The directories passed so far: real ones (never a link), so `..` is the one before.
    let mut stack: Vec<(OsString, OwnedFd)> = Vec::new();
    let mut todo: VecDeque<OsString> = names(path).collect();
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            stack.pop();
            continue;
        }
        let here = stack.last().map_or(root.as_fd(), |(_, fd)| fd.as_fd());
        let at = || shown(&stack).join(&name);
        match open_dir_path(here, &name) {
            Ok(fd) => stack.push((name, fd)),
            Err(Errno::ENOENT) => {
                let at = shown(&stack);
                let fd = match stack.pop() {
                    Some((_, fd)) => fd,
                    None => root,
                };
                let mut rest = vec![name];
                rest.extend(todo);
                return Ok(Found::Missing { at, fd, rest });
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let st = match stat(here, &name) {
                    Ok(Some(st)) => st,
                    // Gone since the open: as if it had never been there.
                    Ok(None) => {
                        return Err(Error::Io {
                            path: at(),
                            errno: Errno::ENOENT,
                        })
                    }
                    Err(errno) => return Err(Error::Io { path: at(), errno }),
                };
                if kind(&st) != SFlag::S_IFLNK {
                    return Err(Error::NotDir { path: at() });
                }
                if st.st_uid != 0 {
                    return Err(Error::Link {
                        path: at(),
                        uid: st.st_uid,
                        target: link_target(here, &name),
                    });
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(Error::Loop {
                        path: path.to_path_buf(),
                    });
                }
                let target = readlinkat(here, name.as_os_str())
                    .map_err(|errno| Error::Io { path: at(), errno })?;
                let target = PathBuf::from(target);
                if target.is_absolute() {
                    stack.clear();
                }
                for part in names(&target).collect::<Vec<_>>().into_iter().rev() {
                    todo.push_front(part);
                }
            }
            Err(errno) => return Err(Error::Io { path: at(), errno }),
        }
    }
    Ok(Found::Dir(match stack.pop() {
        Some((_, fd)) => fd,
        None => root,
    }))
}

/// The names of a path, `..` kept, `/` and `.` dropped.
fn names(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some("..".into()),
        _ => None,
    })
}

/// Reads the regular file `name` in `dir` (never through a link). Returns its stat and bytes.
pub fn read_file(dir: BorrowedFd, name: &OsStr) -> Result<(FileStat, Vec<u8>), Errno> {
    let fd = open_leaf(dir, name)?;
    let st = fstat(&fd)?;
    if kind(&st) != SFlag::S_IFREG {
        return Err(Errno::EINVAL);
    }
    let mut bytes = Vec::with_capacity(st.st_size.max(0) as usize);
    File::from(fd)
        .read_to_end(&mut bytes)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    Ok((st, bytes))
}

/// Removes `name` in `dir`: a directory with everything in it (each level opened without
/// following a link, links inside removed as links), anything else by unlinking it.
pub fn remove(dir: BorrowedFd, name: &OsStr) -> nix::Result<()> {
    remove_at(dir, name, 0)
}

fn remove_at(dir: BorrowedFd, name: &OsStr, depth: usize) -> nix::Result<()> {
    let Some(st) = stat(dir, name)? else {
        return Ok(());
    };
    if kind(&st) != SFlag::S_IFDIR {
        return unlinkat(dir, name, UnlinkatFlags::NoRemoveDir);
    }
    if depth >= MAX_DEPTH {
        return Err(Errno::ELOOP);
    }
    let fd = open_dir(dir, name)?;
    let inner = fd.try_clone().map_err(|_| Errno::EMFILE)?;
    let mut listing = nix::dir::Dir::from_fd(fd)?;
    let mut children: Vec<OsString> = Vec::new();
    for item in listing.iter() {
        let item = item?;
        let child = item.file_name().to_bytes();
        if child != b"." && child != b".." {
            use std::os::unix::ffi::OsStrExt;
            children.push(OsStr::from_bytes(child).to_os_string());
        }
    }
    drop(listing);
    for child in children {
        remove_at(inner.as_fd(), &child, depth + 1)?;
    }
    drop(inner);
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn found_dir(path: &Path) -> bool {
        matches!(dir(path), Ok(Found::Dir(_)))
    }

    #[test]
    fn a_plain_path_opens_and_a_missing_one_says_where_it_stops() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        assert!(found_dir(&root.join("a/b")));
        match dir(&root.join("a/b/c/d")).unwrap() {
            Found::Missing { at, rest, .. } => {
                assert_eq!(at, root.join("a/b"));
                assert_eq!(rest, [OsString::from("c"), OsString::from("d")]);
            }
            other => panic!("{other:?}"),
        }
        fs::write(root.join("a/f"), "x").unwrap();
        assert_eq!(
            dir(&root.join("a/f/g")).unwrap_err(),
            Error::NotDir {
                path: root.join("a/f")
            }
        );
    }

    /// Run as root (the lab's and CI's case): a link owned by another user is refused, a
    /// root-owned one is followed.
    #[test]
    fn a_link_owned_by_another_user_is_refused_and_a_root_one_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("real/sub")).unwrap();
        symlink(root.join("real"), root.join("abs")).unwrap();
        symlink("real", root.join("rel")).unwrap();
        symlink("../real", root.join("real/up")).unwrap();
        let me = runtime::effective_uid();
        // Links the module's own user made count as root's only when that user is root.
        for via in ["abs/sub", "rel/sub", "real/up/sub"] {
            let got = dir(&root.join(via));
            if me == 0 {
                assert!(matches!(got, Ok(Found::Dir(_))), "{via}: {got:?}");
            } else {
                assert!(matches!(got, Err(Error::Link { .. })), "{via}: {got:?}");
            }
        }
        if me != 0 {
            return;
        }
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &root.join("rel"),
            Some(nix::unistd::Uid::from_raw(65534)),
            Some(nix::unistd::Gid::from_raw(65534)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        let e = dir(&root.join("rel/sub")).unwrap_err();
        assert_eq!(
            e,
            Error::Link {
                path: root.join("rel"),
                uid: 65534,
                target: "real".into()
            }
        );
        let msg = e.describe("files[0] (x)");
        assert!(
            msg.contains("is a symbolic link (to real) owned by")
                && msg.contains("uid 65534")
                && msg.contains("not root"),
            "{msg}"
        );
        // A loop of root's links ends, it does not spin.
        symlink(root.join("loop2"), root.join("loop1")).unwrap();
        symlink(root.join("loop1"), root.join("loop2")).unwrap();
        assert!(matches!(
            dir(&root.join("loop1/x")),
            Err(Error::Loop { .. })
        ));
    }

    #[test]
    fn remove_takes_a_tree_and_never_what_a_link_inside_points_to() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("gone/a/b")).unwrap();
        fs::write(root.join("gone/a/b/f"), "x").unwrap();
        fs::create_dir(root.join("keep")).unwrap();
        fs::write(root.join("keep/precious"), "x").unwrap();
        symlink(root.join("keep"), root.join("gone/a/link")).unwrap();
        let Found::Dir(fd) = dir(root).unwrap() else {
            panic!("no dir")
        };
        remove(fd.as_fd(), OsStr::new("gone")).unwrap();
        assert!(!root.join("gone").exists());
        assert!(root.join("keep/precious").exists());
        // A link itself is removed, not its target.
        symlink(root.join("keep"), root.join("l")).unwrap();
        remove(fd.as_fd(), OsStr::new("l")).unwrap();
        assert!(root.join("keep/precious").exists());
        assert!(fs::symlink_metadata(root.join("l")).is_err());
    }
}
