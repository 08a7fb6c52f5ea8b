//! The local account database as shadow-utils writes it: `/etc/passwd` and `/etc/group`.
//!
//! Read straight from the files, never through `getpwnam`/`getgrnam`: our static binaries carry
//! no NSS (and a static glibc one would `dlopen` the host's NSS modules, which misbehaves when
//! the host's glibc differs). useradd and groupadd write these two files, so they are the truth
//! for local system accounts. Shared by `system_account` (the accounts it manages) and
//! `safe_grep` (owner and group names of a file).
//!
//! The password field of each line is skipped, never stored: nothing here can leak a hash.

use std::path::{Path, PathBuf};

/// One `/etc/passwd` entry, without its password field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub comment: String,
    pub home: String,
    pub shell: String,
}

/// One `/etc/group` entry, without its password field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    /// The supplementary members (the fourth field), in file order.
    pub members: Vec<String>,
}

/// The users and groups of one system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Db {
    pub users: Vec<User>,
    pub groups: Vec<Group>,
}

impl Db {
    /// Parses the text of passwd and group files. Lines that are not well-formed entries
    /// (comments, NIS `+`/`-` lines, wrong field counts, non-numeric ids) are skipped: shadow-
    /// utils keeps them as they are, and they cannot be the account we manage.
    pub fn parse(passwd: &str, group: &str) -> Db {
        let users = passwd
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() != 7 || !plain_name(f[0]) {
                    return None;
                }
                Some(User {
                    name: f[0].to_string(),
                    uid: f[2].parse().ok()?,
                    gid: f[3].parse().ok()?,
                    comment: f[4].to_string(),
                    home: f[5].to_string(),
                    shell: f[6].to_string(),
                })
            })
            .collect();
        let groups = group
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() != 4 || !plain_name(f[0]) {
                    return None;
                }
                Some(Group {
                    name: f[0].to_string(),
                    gid: f[2].parse().ok()?,
                    members: f[3]
                        .split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(String::from)
                        .collect(),
                })
            })
            .collect();
        Db { users, groups }
    }

    /// Reads `ROOT/etc/passwd` and `ROOT/etc/group`.
    pub fn load(root: &Path) -> Result<Db, String> {
        Ok(Db::parse(
            &read(&etc(root).join("passwd"))?,
            &read(&etc(root).join("group"))?,
        ))
    }

    /// Like `load`, but a file that cannot be read counts as empty: for callers that only
    /// show names and can fall back to numbers.
    pub fn load_or_empty(root: &Path) -> Db {
        let text = |name: &str| read(&etc(root).join(name)).unwrap_or_default();
        Db::parse(&text("passwd"), &text("group"))
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn user_by_uid(&self, uid: u32) -> Option<&User> {
        self.users.iter().find(|u| u.uid == uid)
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn group_by_gid(&self, gid: u32) -> Option<&Group> {
        self.groups.iter().find(|g| g.gid == gid)
    }

    /// The users other than `except` who belong to `group`: as their primary group, or as
    /// supplementary members listed in /etc/group.
    pub fn members(&self, group: &Group, except: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .primary_members(group.gid, except)
            .into_iter()
            .map(String::from)
            .collect();
        for m in &group.members {
            if m != except && !out.contains(m) {
                out.push(m.clone());
            }
        }
        out
    }

    /// The users other than `except` whose primary group is `gid`.
    pub fn primary_members(&self, gid: u32, except: &str) -> Vec<&str> {
        self.users
            .iter()
            .filter(|u| u.gid == gid && u.name != except)
            .map(|u| u.name.as_str())
            .collect()
    }
}

/// `ROOT/etc`.
pub fn etc(root: &Path) -> PathBuf {
    root.join("etc")
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read(path)
        // Lossy: a stray non-UTF-8 byte in someone else's comment must not stop us.
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn plain_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with(['+', '-', '#']) && !name.contains(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
# a comment line
+nisuser::::::
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
loki:$6$hash$secret:999:65534::/home/loki:/bin/false
broken:x:notanumber:1::/:/bin/sh
short:x:1:1
";
    const GROUP: &str = "\
root:x:0:
nogroup:x:65534:
adm:x:4:syslog,alice
-nisgroup:::
";

    #[test]
    fn parses_entries_and_skips_what_is_not_one() {
        let db = Db::parse(PASSWD, GROUP);
        let names: Vec<&str> = db.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["root", "nobody", "loki"]);
        assert_eq!(
            db.user("loki"),
            Some(&User {
                name: "loki".into(),
                uid: 999,
                gid: 65534,
                comment: String::new(),
                home: "/home/loki".into(),
                shell: "/bin/false".into(),
            })
        );
        let groups: Vec<(&str, u32)> = db.groups.iter().map(|g| (g.name.as_str(), g.gid)).collect();
        assert_eq!(groups, [("root", 0), ("nogroup", 65534), ("adm", 4)]);
    }

    #[test]
    fn the_password_field_is_never_kept() {
        let db = Db::parse(PASSWD, GROUP);
        assert!(!format!("{db:?}").contains("secret"));
    }

    #[test]
    fn lookups() {
        let db = Db::parse(PASSWD, GROUP);
        assert_eq!(
            db.user_by_uid(65534).map(|u| u.name.as_str()),
            Some("nobody")
        );
        assert_eq!(db.group_by_gid(4).map(|g| g.name.as_str()), Some("adm"));
        assert_eq!(db.group("nogroup").map(|g| g.gid), Some(65534));
        assert_eq!(db.primary_members(65534, "loki"), ["nobody"]);
        assert!(db.primary_members(0, "root").is_empty());
    }

    #[test]
    fn load_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Db::load(dir.path()).unwrap_err();
        assert!(err.contains("etc/passwd"), "{err}");
    }
}
