//! What to do: the current accounts plus the wanted account give a list of actions. Pure
//! functions, so every case is a unit test without root.

use runtime::accounts::Db;

/// The shell of a new user when the task gives none: a service account nobody logs in to.
pub const DEFAULT_SHELL: &str = "/usr/sbin/nologin";

/// The account the task asks for, validated.
///
/// A new user is created with every field (defaults where the task gave none); an existing
/// user only gets the fields the task gave. A package-created account (alloy: shell
/// /bin/false, home /var/lib/alloy) must not be rewritten by a task that only adds it to a
/// group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub name: String,
    /// The primary group of a new user (and the group `state: absent` removes).
    pub group: String,
    /// Whether an existing user's primary group is corrected to `group`: the task gave
    /// `group` or `gid`.
    pub enforce_group: bool,
    pub present: bool,
    pub system: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub home: Option<String>,
    pub create_home: bool,
    /// `None`: DEFAULT_SHELL for a new user, an existing user keeps its own.
    pub shell: Option<String>,
    pub comment: Option<String>,
    /// Supplementary groups; `None`: not managed.
    pub groups: Option<Vec<String>>,
    /// With `groups`: only add the missing memberships (true), or make them exactly `groups`.
    pub append: bool,
}

impl Wanted {
    /// Whether the user's primary group is managed in this run: always for a new user.
    fn manages_group(&self, db: &Db) -> bool {
        self.enforce_group || db.user(&self.name).is_none()
    }
}

/// Fields `usermod` should set on an existing user; `None` leaves a field alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserMod {
    pub group: Option<String>,
    pub uid: Option<u32>,
    pub home: Option<String>,
    pub shell: Option<String>,
    pub comment: Option<String>,
}

/// One step, run by one shadow-utils command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    AddGroup {
        name: String,
        gid: Option<u32>,
        system: bool,
    },
    SetGroupGid {
        name: String,
        gid: u32,
    },
    AddUser {
        name: String,
        group: String,
        uid: Option<u32>,
        home: Option<String>,
        create_home: bool,
        shell: String,
        comment: Option<String>,
        /// Supplementary groups, all existing (`useradd --groups`).
        groups: Vec<String>,
        system: bool,
    },
    ModUser {
        name: String,
        change: UserMod,
    },
    /// `usermod --append --groups` (add `groups`) or `usermod --groups` (exactly `groups`).
    SetGroups {
        name: String,
        groups: Vec<String>,
        append: bool,
        /// Only for the description: memberships `append: false` removes.
        removed: Vec<String>,
    },
    DelUser {
        name: String,
    },
    DelGroup {
        name: String,
    },
}

impl Action {
    /// The command that performs the action: long options, so a log reads without a manual.
    pub fn argv(&self) -> Vec<String> {
        let mut argv: Vec<String> = Vec::new();
        let mut push = |s: &str| argv.push(s.to_string());
        let program = match self {
            Action::AddGroup { .. } => "groupadd",
            Action::SetGroupGid { .. } => "groupmod",
            Action::AddUser { .. } => "useradd",
            Action::ModUser { .. } | Action::SetGroups { .. } => "usermod",
            Action::DelUser { .. } => "userdel",
            Action::DelGroup { .. } => "groupdel",
        };
        push(program);
        match self {
            Action::AddGroup { name, gid, system } => {
                if *system {
                    push("--system");
                }
                if let Some(gid) = gid {
                    push("--gid");
                    push(&gid.to_string());
                }
                push(name);
            }
            Action::SetGroupGid { name, gid } => {
                push("--gid");
                push(&gid.to_string());
                push(name);
            }
            Action::AddUser {
                name,
                group,
                uid,
                home,
                create_home,
                shell,
                comment,
                groups,
                system,
            } => {
                if *system {
                    // --no-log-init: no lastlog/faillog records for an account nobody logs
                    // in to (and no multi-gigabyte sparse lastlog for a high uid).
                    push("--system");
                    push("--no-log-init");
                }
                push("--gid");
                push(group);
                push("--shell");
                push(shell);
                if let Some(home) = home {
                    push("--home-dir");
                    push(home);
                }
                push(if *create_home {
                    "--create-home"
                } else {
                    "--no-create-home"
                });
                if let Some(comment) = comment {
                    push("--comment");
                    push(comment);
                }
                if !groups.is_empty() {
                    push("--groups");
                    push(&groups.join(","));
                }
                if let Some(uid) = uid {
                    push("--uid");
                    push(&uid.to_string());
                }
                push(name);
            }
            Action::ModUser { name, change } => {
                if let Some(group) = &change.group {
                    push("--gid");
                    push(group);
                }
                if let Some(uid) = change.uid {
                    push("--uid");
                    push(&uid.to_string());
                }
                if let Some(home) = &change.home {
                    push("--home");
                    push(home);
                }
                if let Some(shell) = &change.shell {
                    push("--shell");
                    push(shell);
                }
                if let Some(comment) = &change.comment {
                    push("--comment");
                    push(comment);
                }
                push(name);
            }
            Action::SetGroups {
                name,
                groups,
                append,
                ..
            } => {
                if *append {
                    push("--append");
                }
                // An empty list with `--groups ""` leaves the user in no supplementary group.
                push("--groups");
                push(&groups.join(","));
                push(name);
            }
            Action::DelUser { name } | Action::DelGroup { name } => push(name),
        }
        argv
    }

    /// One line for a person: what this step does.
    pub fn describe(&self) -> String {
        match self {
            Action::AddGroup { name, gid, .. } => match gid {
                Some(gid) => format!("create group {name} with gid {gid}"),
                None => format!("create group {name}"),
            },
            Action::SetGroupGid { name, gid } => format!("change the gid of group {name} to {gid}"),
            Action::AddUser {
                name,
                group,
                groups,
                ..
            } => {
                if groups.is_empty() {
                    format!("create user {name} with primary group {group}")
                } else {
                    format!(
                        "create user {name} with primary group {group} and supplementary groups {}",
                        groups.join(", ")
                    )
                }
            }
            Action::SetGroups {
                name,
                groups,
                append: true,
                ..
            } => format!("add user {name} to groups {}", groups.join(", ")),
            Action::SetGroups {
                name,
                groups,
                removed,
                ..
            } => {
                let to = if groups.is_empty() {
                    "none".to_string()
                } else {
                    groups.join(", ")
                };
                if removed.is_empty() {
                    format!("set the supplementary groups of user {name} to {to}")
                } else {
                    format!(
                        "set the supplementary groups of user {name} to {to} (removing {})",
                        removed.join(", ")
                    )
                }
            }
            Action::ModUser { name, change } => {
                let mut parts = Vec::new();
                if let Some(g) = &change.group {
                    parts.push(format!("primary group {g}"));
                }
                if let Some(u) = change.uid {
                    parts.push(format!("uid {u}"));
                }
                if let Some(h) = &change.home {
                    parts.push(format!("home {h}"));
                }
                if let Some(s) = &change.shell {
                    parts.push(format!("shell {s}"));
                }
                if let Some(c) = &change.comment {
                    parts.push(format!("comment {c:?}"));
                }
                format!("set {} of user {name}", parts.join(", "))
            }
            Action::DelUser { name } => format!("remove user {name} (its files are kept)"),
            Action::DelGroup { name } => format!("remove group {name}"),
        }
    }
}

/// The actions, in order, and remarks for the answer (e.g. why a group is kept).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub notes: Vec<String>,
}

/// Computes the plan. `Err` is a conflict the task must resolve (an id used by another
/// account); nothing has been changed then.
pub fn plan(db: &Db, want: &Wanted) -> Result<Plan, String> {
    if want.present {
        plan_present(db, want)
    } else {
        Ok(plan_absent(db, want))
    }
}

fn plan_present(db: &Db, want: &Wanted) -> Result<Plan, String> {
    let mut plan = Plan::default();
    // First, so a missing group stops the run before anything is created.
    if let Some(groups) = &want.groups {
        if let Some(missing) = groups.iter().find(|g| db.group(g).is_none()) {
            return Err(format!(
                "parameter 'groups': group '{missing}' does not exist; supplementary groups are not created by this module: create it first (or install the package that does) or remove it from 'groups'"
            ));
        }
    }
    let group = db.group(&want.group);
    let manages_group = want.manages_group(db);

    if let Some(gid) = want.gid {
        if group.map(|g| g.gid) != Some(gid) {
            if let Some(other) = db.group_by_gid(gid) {
                return Err(format!(
                    "gid {gid} is already used by group '{}'; choose another gid for group '{}' or leave gid unset",
                    other.name, want.group
                ));
            }
        }
    }
    if manages_group {
        match group {
            None => plan.actions.push(Action::AddGroup {
                name: want.group.clone(),
                gid: want.gid,
                system: want.system,
            }),
            Some(g) => {
                if let Some(gid) = want.gid.filter(|gid| *gid != g.gid) {
                    plan.actions.push(Action::SetGroupGid {
                        name: g.name.clone(),
                        gid,
                    });
                }
            }
        }
    }

    let user = db.user(&want.name);
    if let Some(uid) = want.uid {
        if user.map(|u| u.uid) != Some(uid) {
            if let Some(other) = db.user_by_uid(uid) {
                return Err(format!(
                    "uid {uid} is already used by user '{}'; choose another uid for '{}' or leave uid unset",
                    other.name, want.name
                ));
            }
        }
    }
    match user {
        None => plan.actions.push(Action::AddUser {
            name: want.name.clone(),
            group: want.group.clone(),
            uid: want.uid,
            home: want.home.clone(),
            create_home: want.create_home,
            shell: want
                .shell
                .clone()
                .unwrap_or_else(|| DEFAULT_SHELL.to_string()),
            comment: want.comment.clone(),
            groups: want.groups.clone().unwrap_or_default(),
            system: want.system,
        }),
        Some(u) => {
            // Only what the task gave: `None` leaves a field as it is.
            let differs = |current: &str, wanted: &Option<String>| {
                wanted.as_ref().filter(|w| w.as_str() != current).cloned()
            };
            let change = UserMod {
                // A group that exists with the user's gid is right; `groupmod --gid` moves
                // its primary members along with it.
                group: match group {
                    _ if !manages_group => None,
                    Some(g) if g.gid == u.gid => None,
                    _ => Some(want.group.clone()),
                },
                uid: want.uid.filter(|uid| *uid != u.uid),
                home: differs(&u.home, &want.home),
                shell: differs(&u.shell, &want.shell),
                comment: differs(&u.comment, &want.comment),
            };
            if change != UserMod::default() {
                plan.actions.push(Action::ModUser {
                    name: u.name.clone(),
                    change,
                });
            }
            if let Some(groups) = &want.groups {
                let current = supplementary(db, &u.name);
                let missing: Vec<String> = groups
                    .iter()
                    .filter(|g| !current.contains(g))
                    .cloned()
                    .collect();
                let removed: Vec<String> = current
                    .iter()
                    .filter(|g| !want.append && !groups.contains(g))
                    .cloned()
                    .collect();
                if want.append && !missing.is_empty() {
                    plan.actions.push(Action::SetGroups {
                        name: u.name.clone(),
                        groups: missing,
                        append: true,
                        removed: Vec::new(),
                    });
                } else if !want.append && (!missing.is_empty() || !removed.is_empty()) {
                    plan.actions.push(Action::SetGroups {
                        name: u.name.clone(),
                        groups: groups.clone(),
                        append: false,
                        removed,
                    });
                }
            }
        }
    }
    Ok(plan)
}

/// The user's supplementary groups: the groups whose member list (/etc/group) names it, in
/// file order.
pub fn supplementary(db: &Db, user: &str) -> Vec<String> {
    db.groups
        .iter()
        .filter(|g| g.members.iter().any(|m| m == user))
        .map(|g| g.name.clone())
        .collect()
}

fn plan_absent(db: &Db, want: &Wanted) -> Plan {
    let mut plan = Plan::default();
    if db.user(&want.name).is_some() {
        plan.actions.push(Action::DelUser {
            name: want.name.clone(),
        });
    }
    if let Some(g) = db.group(&want.group) {
        // Deleting a group its other members still rely on would take it from them too:
        // primary members (their gid) and supplementary ones (listed in /etc/group) alike.
        let primary = db.primary_members(g.gid, &want.name);
        let others = db.members(g, &want.name);
        if others.is_empty() {
            plan.actions.push(Action::DelGroup {
                name: g.name.clone(),
            });
        } else if others.len() == primary.len() {
            plan.notes.push(format!(
                "group {} is kept: it is the primary group of {}",
                g.name,
                others.join(", ")
            ));
        } else {
            plan.notes.push(format!(
                "group {} is kept: it still has other members ({})",
                g.name,
                others.join(", ")
            ));
        }
    }
    plan
}

/// The account as the diff and the answer show it: never a password or shadow field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub name: String,
    pub exists: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub group: Option<String>,
    pub home: Option<String>,
    pub shell: Option<String>,
    pub comment: Option<String>,
    /// Supplementary groups (file order of /etc/group); empty when the user does not exist.
    pub groups: Vec<String>,
}

impl View {
    /// The account as it is in `db`. A user without one keeps the group line if the group
    /// exists, so removing or creating only the group still shows in a diff.
    pub fn current(db: &Db, name: &str, group: &str) -> View {
        match db.user(name) {
            Some(u) => View {
                name: name.into(),
                exists: true,
                uid: Some(u.uid),
                gid: Some(u.gid),
                group: Some(
                    db.group_by_gid(u.gid)
                        .map(|g| g.name.clone())
                        .unwrap_or_else(|| u.gid.to_string()),
                ),
                home: Some(u.home.clone()),
                shell: Some(u.shell.clone()),
                comment: Some(u.comment.clone()),
                groups: supplementary(db, name),
            },
            None => View {
                name: name.into(),
                exists: false,
                gid: db.group(group).map(|g| g.gid),
                group: db.group(group).map(|g| g.name.clone()),
                ..View::default()
            },
        }
    }

    /// What the account will look like once `plan` ran (check mode). Ids that useradd or
    /// groupadd would pick are `None`.
    pub fn predicted(db: &Db, want: &Wanted) -> View {
        let now = View::current(db, &want.name, &want.group);
        if !want.present {
            // The plan decides, so the prediction cannot drift from the run: a group with
            // other members of either kind (primary or supplementary) stays.
            let group_stays = !plan_absent(db, want)
                .actions
                .iter()
                .any(|a| matches!(a, Action::DelGroup { .. }));
            return View {
                name: want.name.clone(),
                exists: false,
                gid: now.gid.filter(|_| group_stays),
                group: now.group.filter(|_| group_stays),
                ..View::default()
            };
        }
        let user = db.user(&want.name);
        // Group and shell as plan() leaves them: only a new user, or a task that names
        // them, changes them.
        let (gid, group) = if want.manages_group(db) {
            (
                want.gid.or(db.group(&want.group).map(|g| g.gid)),
                Some(want.group.clone()),
            )
        } else {
            (now.gid, now.group.clone())
        };
        let keep = want.groups.is_none() || want.append;
        let groups = db
            .groups
            .iter()
            .filter(|g| {
                want.groups.as_ref().is_some_and(|w| w.contains(&g.name))
                    || (keep && now.groups.contains(&g.name))
            })
            .map(|g| g.name.clone())
            .collect();
        View {
            name: want.name.clone(),
            exists: true,
            uid: want.uid.or(user.map(|u| u.uid)),
            gid,
            group,
            home: want.home.clone().or(user.map(|u| u.home.clone())),
            shell: want
                .shell
                .clone()
                .or(user.map(|u| u.shell.clone()))
                .or(Some(DEFAULT_SHELL.to_string())),
            comment: want
                .comment
                .clone()
                .or(user.map(|u| u.comment.clone()))
                .or(Some(String::new())),
            groups,
        }
    }

    /// Text lines for `--diff`: empty for an account that does not exist.
    pub fn render(&self) -> String {
        let unknown = "(assigned on creation)";
        let id = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_else(|| unknown.into());
        if !self.exists {
            return match &self.group {
                Some(g) => format!("group: {g}\ngid: {}\n", id(self.gid)),
                None => String::new(),
            };
        }
        let text = |v: &Option<String>| v.clone().unwrap_or_else(|| unknown.into());
        format!(
            "name: {}\nuid: {}\ngid: {}\ngroup: {}\nhome: {}\nshell: {}\ncomment: {}\ngroups: {}\n",
            self.name,
            id(self.uid),
            id(self.gid),
            text(&self.group),
            text(&self.home),
            text(&self.shell),
            text(&self.comment),
            self.groups.join(", "),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE_PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const BASE_GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

    fn want(name: &str) -> Wanted {
        Wanted {
            name: name.into(),
            group: name.into(),
            present: true,
            system: true,
            uid: None,
            gid: None,
            home: Some("/var/lib/loki".into()),
            create_home: false,
            // As the loki role calls it: every field given.
            enforce_group: true,
            shell: Some("/usr/sbin/nologin".into()),
            comment: Some("Grafana Loki".into()),
            groups: None,
            append: true,
        }
    }

    fn db(extra_passwd: &str, extra_group: &str) -> Db {
        Db::parse(
            &format!("{BASE_PASSWD}{extra_passwd}"),
            &format!("{BASE_GROUP}{extra_group}"),
        )
    }

    #[test]
    fn a_new_account_is_group_then_user() {
        let p = plan(&db("", ""), &want("loki")).unwrap();
        assert_eq!(
            p.actions,
            [
                Action::AddGroup {
                    name: "loki".into(),
                    gid: None,
                    system: true
                },
                Action::AddUser {
                    name: "loki".into(),
                    group: "loki".into(),
                    uid: None,
                    home: Some("/var/lib/loki".into()),
                    create_home: false,
                    shell: "/usr/sbin/nologin".into(),
                    comment: Some("Grafana Loki".into()),
                    groups: vec![],
                    system: true,
                }
            ]
        );
        assert_eq!(p.actions[0].argv(), ["groupadd", "--system", "loki"]);
        assert_eq!(
            p.actions[1].argv(),
            [
                "useradd",
                "--system",
                "--no-log-init",
                "--gid",
                "loki",
                "--shell",
                "/usr/sbin/nologin",
                "--home-dir",
                "/var/lib/loki",
                "--no-create-home",
                "--comment",
                "Grafana Loki",
                "loki"
            ]
        );
    }

    #[test]
    fn an_account_as_wanted_needs_nothing() {
        let d = db(
            "loki:x:999:998:Grafana Loki:/var/lib/loki:/usr/sbin/nologin\n",
            "loki:x:998:\n",
        );
        assert_eq!(plan(&d, &want("loki")).unwrap(), Plan::default());
        // Unset optional fields are left alone.
        let mut w = want("loki");
        w.home = None;
        w.comment = None;
        let d = db(
            "loki:x:999:998:other:/home/loki:/usr/sbin/nologin\n",
            "loki:x:998:\n",
        );
        assert!(plan(&d, &w).unwrap().actions.is_empty());
    }

    #[test]
    fn the_package_user_in_nogroup_is_moved_to_its_own_group() {
        // What Loki's postinst leaves: loki in nogroup with shell /bin/false.
        let d = db("loki:x:999:65534::/home/loki:/bin/false\n", "");
        let p = plan(&d, &want("loki")).unwrap();
        assert_eq!(p.actions.len(), 2);
        assert!(matches!(&p.actions[0], Action::AddGroup { name, .. } if name == "loki"));
        assert_eq!(
            p.actions[1],
            Action::ModUser {
                name: "loki".into(),
                change: UserMod {
                    group: Some("loki".into()),
                    uid: None,
                    home: Some("/var/lib/loki".into()),
                    shell: Some("/usr/sbin/nologin".into()),
                    comment: Some("Grafana Loki".into()),
                }
            }
        );
        assert_eq!(
            p.actions[1].argv(),
            [
                "usermod",
                "--gid",
                "loki",
                "--home",
                "/var/lib/loki",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "Grafana Loki",
                "loki"
            ]
        );
        assert_eq!(
            p.actions[1].describe(),
            "set primary group loki, home /var/lib/loki, shell /usr/sbin/nologin, comment \"Grafana Loki\" of user loki"
        );
    }

    #[test]
    fn ids_change_only_when_given() {
        let d = db(
            "loki:x:999:998:Grafana Loki:/var/lib/loki:/usr/sbin/nologin\n",
            "loki:x:998:\n",
        );
        let mut w = want("loki");
        w.uid = Some(950);
        w.gid = Some(951);
        let p = plan(&d, &w).unwrap();
        assert_eq!(
            p.actions,
            [
                Action::SetGroupGid {
                    name: "loki".into(),
                    gid: 951
                },
                Action::ModUser {
                    name: "loki".into(),
                    change: UserMod {
                        uid: Some(950),
                        ..UserMod::default()
                    }
                }
            ]
        );
    }

    #[test]
    fn ids_used_by_other_accounts_are_refused() {
        let d = db("", "");
        let mut w = want("loki");
        w.gid = Some(65534);
        let e = plan(&d, &w).unwrap_err();
        assert!(
            e.contains("gid 65534 is already used by group 'nogroup'"),
            "{e}"
        );
        let mut w = want("loki");
        w.uid = Some(0);
        let e = plan(&d, &w).unwrap_err();
        assert!(e.contains("uid 0 is already used by user 'root'"), "{e}");
        // Its own ids are not a conflict.
        let d = db(
            "loki:x:999:998:Grafana Loki:/var/lib/loki:/usr/sbin/nologin\n",
            "loki:x:998:\n",
        );
        let mut w = want("loki");
        w.uid = Some(999);
        w.gid = Some(998);
        assert!(plan(&d, &w).unwrap().actions.is_empty());
    }

    #[test]
    fn a_wrong_primary_group_is_corrected_even_if_the_group_exists() {
        let d = db(
            "loki:x:999:65534::/var/lib/loki:/usr/sbin/nologin\n",
            "loki:x:998:\n",
        );
        let mut w = want("loki");
        w.comment = None;
        let p = plan(&d, &w).unwrap();
        assert_eq!(
            p.actions,
            [Action::ModUser {
                name: "loki".into(),
                change: UserMod {
                    group: Some("loki".into()),
                    ..UserMod::default()
                }
            }]
        );
    }

    #[test]
    fn absent_removes_the_user_then_an_unused_group() {
        let d = db(
            "loki:x:999:998::/var/lib/loki:/usr/sbin/nologin\n",
            "loki:x:998:\n",
        );
        let mut w = want("loki");
        w.present = false;
        let p = plan(&d, &w).unwrap();
        assert_eq!(
            p.actions,
            [
                Action::DelUser {
                    name: "loki".into()
                },
                Action::DelGroup {
                    name: "loki".into()
                }
            ]
        );
        assert_eq!(p.actions[0].argv(), ["userdel", "loki"]);
        // Already gone: nothing to do.
        assert_eq!(plan(&db("", ""), &w).unwrap(), Plan::default());
    }

    #[test]
    fn absent_keeps_a_group_that_is_someone_elses_primary_group() {
        let d = db(
            "loki:x:999:998::/:/usr/sbin/nologin\nother:x:997:998::/:/usr/sbin/nologin\n",
            "loki:x:998:\n",
        );
        let mut w = want("loki");
        w.present = false;
        let p = plan(&d, &w).unwrap();
        assert_eq!(
            p.actions,
            [Action::DelUser {
                name: "loki".into()
            }]
        );
        assert_eq!(
            p.notes,
            ["group loki is kept: it is the primary group of other"]
        );
        let v = View::predicted(&d, &w);
        assert_eq!(v.render(), "group: loki\ngid: 998\n");
    }

    #[test]
    fn absent_keeps_a_group_with_other_supplementary_members() {
        // The sidecar's own example: grafana (and the removed user itself) listed in the group.
        let d = db(
            "loki:x:999:998::/:/usr/sbin/nologin\n",
            "loki:x:998:loki,grafana\n",
        );
        let mut w = want("loki");
        w.present = false;
        let p = plan(&d, &w).unwrap();
        assert_eq!(
            p.actions,
            [Action::DelUser {
                name: "loki".into()
            }]
        );
        assert_eq!(
            p.notes,
            ["group loki is kept: it still has other members (grafana)"]
        );
        // Check mode's prediction keeps the group as the run does (it predicted its removal).
        assert_eq!(View::predicted(&d, &w).render(), "group: loki\ngid: 998\n");
        // Only the removed user itself listed: the group goes.
        let d = db("loki:x:999:998::/:/usr/sbin/nologin\n", "loki:x:998:loki\n");
        assert_eq!(plan(&d, &w).unwrap().actions.len(), 2);
        assert_eq!(View::predicted(&d, &w).render(), "");
    }

    /// What the alloy package leaves, and how the alloy role calls the module.
    const ALLOY_PASSWD: &str = "alloy:x:997:996::/var/lib/alloy:/bin/false\n";
    const ALLOY_GROUP: &str =
        "adm:x:4:syslog\nsystemd-journal:x:999:\nalloy:x:996:\nvideo:x:44:alloy\n";

    fn alloy(groups: &[&str]) -> Wanted {
        Wanted {
            name: "alloy".into(),
            group: "alloy".into(),
            enforce_group: false,
            present: true,
            system: true,
            uid: None,
            gid: None,
            home: None,
            create_home: false,
            shell: None,
            comment: None,
            groups: Some(groups.iter().map(|g| g.to_string()).collect()),
            append: true,
        }
    }

    #[test]
    fn missing_memberships_are_added_and_nothing_else_is_touched() {
        let d = db(ALLOY_PASSWD, ALLOY_GROUP);
        let p = plan(&d, &alloy(&["adm", "systemd-journal"])).unwrap();
        assert_eq!(
            p.actions,
            [Action::SetGroups {
                name: "alloy".into(),
                groups: vec!["adm".into(), "systemd-journal".into()],
                append: true,
                removed: vec![],
            }]
        );
        assert_eq!(
            p.actions[0].argv(),
            [
                "usermod",
                "--append",
                "--groups",
                "adm,systemd-journal",
                "alloy"
            ]
        );
        assert_eq!(
            p.actions[0].describe(),
            "add user alloy to groups adm, systemd-journal"
        );
        // Check mode's prediction: the memberships change, shell, home, comment and the
        // primary group stay; video (not asked about) is kept with append.
        let after = View::predicted(&d, &alloy(&["adm", "systemd-journal"]));
        assert_eq!(
            after.render(),
            "name: alloy\nuid: 997\ngid: 996\ngroup: alloy\nhome: /var/lib/alloy\nshell: /bin/false\ncomment: \ngroups: adm, systemd-journal, video\n"
        );
        // Only the one still missing is added.
        let d = db(
            ALLOY_PASSWD,
            &ALLOY_GROUP.replace("adm:x:4:syslog", "adm:x:4:syslog,alloy"),
        );
        let p = plan(&d, &alloy(&["adm", "systemd-journal"])).unwrap();
        assert_eq!(p.actions[0].argv()[3], "systemd-journal");
    }

    #[test]
    fn a_member_of_every_group_needs_nothing() {
        let d = db(
            ALLOY_PASSWD,
            "adm:x:4:syslog,alloy\nsystemd-journal:x:999:alloy\nalloy:x:996:\n",
        );
        assert_eq!(
            plan(&d, &alloy(&["adm", "systemd-journal"])).unwrap(),
            Plan::default()
        );
        // Listed twice by the task, or with append: false and nothing else: still nothing.
        let mut w = alloy(&["systemd-journal", "adm"]);
        w.append = false;
        assert!(plan(&d, &w).unwrap().actions.is_empty());
    }

    #[test]
    fn append_false_makes_the_memberships_exactly_the_list() {
        let d = db(ALLOY_PASSWD, ALLOY_GROUP);
        let mut w = alloy(&["adm"]);
        w.append = false;
        let p = plan(&d, &w).unwrap();
        assert_eq!(
            p.actions,
            [Action::SetGroups {
                name: "alloy".into(),
                groups: vec!["adm".into()],
                append: false,
                removed: vec!["video".into()],
            }]
        );
        assert_eq!(p.actions[0].argv(), ["usermod", "--groups", "adm", "alloy"]);
        assert_eq!(
            p.actions[0].describe(),
            "set the supplementary groups of user alloy to adm (removing video)"
        );
        assert_eq!(View::predicted(&d, &w).groups, ["adm"]);
        // Already a member of the listed ones: removing the rest is still a change.
        let d = db(
            ALLOY_PASSWD,
            &ALLOY_GROUP.replace("adm:x:4:syslog", "adm:x:4:alloy"),
        );
        assert_eq!(plan(&d, &w).unwrap().actions.len(), 1);
        // An empty list: out of every supplementary group.
        let mut w = alloy(&[]);
        w.append = false;
        let p = plan(&d, &w).unwrap();
        assert_eq!(p.actions[0].argv(), ["usermod", "--groups", "", "alloy"]);
        assert_eq!(
            p.actions[0].describe(),
            "set the supplementary groups of user alloy to none (removing adm, video)"
        );
        // With append (the default) an empty list changes nothing.
        assert!(plan(&d, &alloy(&[])).unwrap().actions.is_empty());
    }

    #[test]
    fn a_missing_group_is_refused_before_anything_is_planned() {
        // Not even the user: nothing may be created when the task cannot be done.
        let e = plan(&db("", ALLOY_GROUP), &alloy(&["adm", "docker"])).unwrap_err();
        assert!(
            e.contains("parameter 'groups': group 'docker' does not exist"),
            "{e}"
        );
        assert!(plan(&db(ALLOY_PASSWD, ALLOY_GROUP), &alloy(&["nope"])).is_err());
        // With state: absent the groups do not matter.
        let mut w = alloy(&["nope"]);
        w.present = false;
        assert!(plan(&db(ALLOY_PASSWD, ALLOY_GROUP), &w).is_ok());
    }

    #[test]
    fn an_existing_user_keeps_the_fields_the_task_did_not_give() {
        // The package's alloy: shell /bin/false, home /var/lib/alloy, in its own group.
        // A task with only name and groups must not "correct" shell or primary group.
        let d = db(ALLOY_PASSWD, ALLOY_GROUP);
        let mut w = alloy(&[]);
        w.groups = None;
        assert_eq!(plan(&d, &w).unwrap(), Plan::default());
        // Even in another primary group than its name, and without a group of its name.
        let d = db("alloy:x:997:65534::/var/lib/alloy:/bin/false\n", "");
        assert_eq!(plan(&d, &w).unwrap(), Plan::default());
        let v = View::predicted(&d, &w);
        assert_eq!(
            (v.group.as_deref(), v.shell.as_deref()),
            (Some("nogroup"), Some("/bin/false"))
        );
        // Given, they are enforced.
        w.shell = Some("/usr/sbin/nologin".into());
        w.enforce_group = true;
        let p = plan(&d, &w).unwrap();
        assert!(matches!(&p.actions[0], Action::AddGroup { name, .. } if name == "alloy"));
        assert_eq!(
            p.actions[1],
            Action::ModUser {
                name: "alloy".into(),
                change: UserMod {
                    group: Some("alloy".into()),
                    shell: Some("/usr/sbin/nologin".into()),
                    ..UserMod::default()
                }
            }
        );
    }

    #[test]
    fn a_new_user_gets_the_defaults_and_its_groups_at_once() {
        let p = plan(&db("", ALLOY_GROUP), &alloy(&["adm"])).unwrap();
        // The group alloy exists already: only the user is created, with nologin.
        assert_eq!(
            p.actions[0].argv(),
            [
                "useradd",
                "--system",
                "--no-log-init",
                "--gid",
                "alloy",
                "--shell",
                "/usr/sbin/nologin",
                "--no-create-home",
                "--groups",
                "adm",
                "alloy"
            ]
        );
        assert_eq!(
            p.actions[0].describe(),
            "create user alloy with primary group alloy and supplementary groups adm"
        );
        assert_eq!(p.actions.len(), 1);
    }

    #[test]
    fn views_render_without_secrets_and_predict_unknown_ids() {
        let d = db("loki:x:999:65534::/home/loki:/bin/false\n", "");
        let before = View::current(&d, "loki", "loki");
        assert_eq!(
            before.render(),
            "name: loki\nuid: 999\ngid: 65534\ngroup: nogroup\nhome: /home/loki\nshell: /bin/false\ncomment: \ngroups: \n"
        );
        let after = View::predicted(&d, &want("loki"));
        assert_eq!(
            after.render(),
            "name: loki\nuid: 999\ngid: (assigned on creation)\ngroup: loki\nhome: /var/lib/loki\nshell: /usr/sbin/nologin\ncomment: Grafana Loki\ngroups: \n"
        );
        assert_eq!(View::current(&db("", ""), "loki", "loki").render(), "");
    }
}
