//! The task's entries, validated all at once before anything on the host is touched: every
//! error names the entry (index and path), the field and the fix.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use runtime::accounts::Db;
use runtime::Params;

use crate::ini::{self, Settings};

/// What an entry wants at its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    File,
    Directory,
    Absent,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::File => "file",
            State::Directory => "directory",
            State::Absent => "absent",
        }
    }
}

/// An owner or group: the name the task gave (or the number) and the id it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Id {
    pub name: String,
    pub id: u32,
}

/// One validated entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub index: usize,
    pub path: PathBuf,
    pub state: State,
    pub content: Option<String>,
    /// Options to set in the file as it is (`ini`), instead of its whole `content`.
    pub ini: Option<Settings>,
    /// A missing file is created (`ini` entries; a `content` entry always is).
    pub create: bool,
    pub owner: Option<Id>,
    pub group: Option<Id>,
    pub mode: Option<u32>,
    /// The validate command as an argument vector; `%s` stands for the staged file.
    pub validate: Option<Vec<String>>,
    /// Neither the content nor any output about it may appear in the answer.
    pub secret: bool,
    /// Missing parent directories are made (`mkdir -p`), as ansible.builtin.file does.
    pub parents: bool,
}

impl Entry {
    /// `files[2] (/etc/loki/config.yml)`: how messages name the entry.
    pub fn label(&self) -> String {
        format!("files[{}] ({})", self.index, self.path.display())
    }

    /// A plain `state: file` entry with this content and nothing else set, for tests.
    #[cfg(test)]
    pub fn test_file(path: &Path, content: &str) -> Entry {
        Entry {
            index: 0,
            path: path.to_path_buf(),
            state: State::File,
            content: Some(content.into()),
            ini: None,
            create: true,
            owner: None,
            group: None,
            mode: None,
            validate: None,
            secret: false,
            parents: false,
        }
    }

    /// A plain `state: directory` entry, for tests.
    #[cfg(test)]
    pub fn test_dir(path: &Path) -> Entry {
        Entry {
            state: State::Directory,
            content: None,
            ..Entry::test_file(path, "")
        }
    }
}

/// How names resolve to ids: from the host's /etc/passwd and /etc/group (never NSS).
pub trait Accounts {
    fn uid(&self, name: &str) -> Option<u32>;
    fn gid(&self, name: &str) -> Option<u32>;
}

impl Accounts for Db {
    fn uid(&self, name: &str) -> Option<u32> {
        self.user(name).map(|u| u.uid)
    }
    fn gid(&self, name: &str) -> Option<u32> {
        self.group(name).map(|g| g.gid)
    }
}

/// Validates every entry; the first error stops everything (nothing has been touched yet).
/// `secret_default` is the module-level `secret` (or the task's no_log).
pub fn entries(
    list: &[Params],
    secret_default: bool,
    accounts: &dyn Accounts,
) -> Result<Vec<Entry>, String> {
    let mut out: Vec<Entry> = Vec::with_capacity(list.len());
    let mut seen: BTreeMap<PathBuf, usize> = BTreeMap::new();
    for (index, p) in list.iter().enumerate() {
        let entry = entry(index, p, secret_default, accounts)?;
        if let Some(first) = seen.insert(entry.path.clone(), index) {
            return Err(format!(
                "{}: the path is also files[{first}]; give each path once (merge the two entries)",
                entry.label()
            ));
        }
        out.push(entry);
    }
    Ok(out)
}

fn entry(
    index: usize,
    p: &Params,
    secret_default: bool,
    accounts: &dyn Accounts,
) -> Result<Entry, String> {
    let raw_path = p.str("path").unwrap_or_default();
    let head = format!("files[{index}] ({raw_path})");
    let path = check_path(raw_path).map_err(|e| format!("{head}: {e}"))?;
    let state = match p.str("state") {
        Some("directory") => State::Directory,
        Some("absent") => State::Absent,
        _ => State::File,
    };
    let forbid = |field: &str, why: &str| -> Result<(), String> {
        if p.given(field) {
            return Err(format!(
                "{head}: '{field}' does not apply to state={}: {why}",
                state.name()
            ));
        }
        Ok(())
    };
    match state {
        State::File => match (p.given("content"), p.given("ini")) {
            (true, true) => {
                return Err(format!(
                    "{head}: 'content' and 'ini' are mutually exclusive: 'content' is the whole file, 'ini' sets options in the file as it is; give one of them"
                ))
            }
            (false, false) => {
                return Err(format!(
                    "{head}: state=file needs 'content' (the whole text of the file; render a template on the controller with lookup('ansible.builtin.template', 'name.j2')) or 'ini' (options to set in it)"
                ))
            }
            (true, false) if p.given("create") => {
                return Err(format!(
                    "{head}: 'create' applies only to an 'ini' entry (a 'content' entry always creates its file); remove it"
                ))
            }
            _ => {}
        },
        State::Directory => {
            forbid(
                "content",
                "a directory has no content; remove it or use state=file",
            )?;
            forbid("ini", "a directory has no options; remove it or use state=file")?;
            forbid("create", "it applies only to an 'ini' entry; remove it")?;
            forbid("validate", "only a file's content is validated; remove it")?;
        }
        State::Absent => {
            for field in [
                "content", "ini", "create", "owner", "group", "mode", "validate", "parents",
            ] {
                forbid(field, "state=absent takes only 'path'; remove the field")?;
            }
        }
    }
    let settings = match p.dict("ini") {
        Some(map) if state == State::File => {
            Some(ini::settings(map).map_err(|e| format!("{head}: {e}"))?)
        }
        _ => None,
    };
    let owner = match p.str("owner") {
        Some(name) => Some(resolve(&head, "owner", name, |n| accounts.uid(n))?),
        None => None,
    };
    let group = match p.str("group") {
        Some(name) => Some(resolve(&head, "group", name, |n| accounts.gid(n))?),
        None => None,
    };
    let mode = match p.str("mode") {
        Some(text) if p.was_number("mode") => return Err(integer_mode(&head, text)),
        Some(text) => Some(
            runtime::parse_mode(text, false)
                .map_err(|e| format!("{head}: {e}; symbolic modes (u=rw,g=r) are not supported"))?,
        ),
        None => None,
    };
    let validate = match p.str("validate") {
        Some(command) => Some(split_command(command).map_err(|e| format!("{head}: {e}"))?),
        None => None,
    };
    let secret = if p.given("secret") {
        // The task's no_log still wins: an entry cannot undo it.
        p.bool("secret") || secret_default
    } else {
        secret_default
    };
    Ok(Entry {
        index,
        path,
        state,
        content: p.str("content").map(String::from),
        ini: settings,
        create: p.bool("create"),
        owner,
        group,
        mode,
        validate,
        secret,
        parents: p.bool("parents"),
    })
}

/// Every integer mode is refused, not only those whose decimal digits look octal: the integer
/// cannot say what was written. YAML (1.1, as Ansible reads it) turns an unquoted `644` into
/// decimal 644 (= 0o1204) and an unquoted `0640` into 416 (= 0o640); both arrive as plain
/// integers. Refusing only all-octal-digit integers would refuse 416 (from `0640`) yet accept
/// 488 (from `0750`), and would still take a decimal `644` someone wrote for 0o1204 at face
/// value: one rule, "quote it", is the one that never guesses. The message names both readings.
fn integer_mode(head: &str, text: &str) -> String {
    let Ok(n) = text.parse::<u64>() else {
        return format!(
            "{head}: mode {text} is a number, not an octal string: quote it, mode: \"0644\""
        );
    };
    let digits_octal = text.bytes().all(|b| (b'0'..=b'7').contains(&b)) && text.len() <= 4;
    // What was most likely meant: the digits themselves when they are octal ones, else the
    // octal form of the number (an unquoted 0750 arrives as 488).
    let meant = if digits_octal {
        format!("{text:0>4}")
    } else {
        format!("{n:04o}")
    };
    let mut msg = format!(
        "{head}: mode {n} is an integer; YAML reads an unquoted {n} as decimal (it would become 0{n:o})"
    );
    if n <= 0o777 {
        // A plain permission such as 0640 written without quotes arrives as this number too.
        msg.push_str(&format!(", and an unquoted 0{n:o} as octal (also {n})"));
        if digits_octal {
            msg.push_str(&format!(
                ": quote the one you mean, mode: \"{n:04o}\" or mode: \"{meant}\""
            ));
            return msg;
        }
    }
    msg.push_str(&format!(": quote it, mode: \"{meant}\""));
    msg
}

/// An absolute, normal path: no `.`/`..` parts (the same file must not hide behind two
/// spellings, and a template variable gone empty must not turn into `/`).
fn check_path(raw: &str) -> Result<PathBuf, String> {
    if raw.is_empty() {
        return Err("'path' is empty; give an absolute path such as /etc/loki/config.yml".into());
    }
    if raw.contains('\0') {
        return Err("'path' contains a NUL byte; give a plain absolute path".into());
    }
    let path = Path::new(raw);
    if !path.is_absolute() {
        return Err(format!(
            "'path' must be absolute (start with /), got {raw:?}; the module does not guess a working directory"
        ));
    }
    let mut clean = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::RootDir => {}
            Component::Normal(name) => clean.push(name),
            Component::CurDir | Component::ParentDir | Component::Prefix(_) => {
                return Err(format!(
                    "'path' must not contain '.' or '..' parts, got {raw:?}; write the path it means"
                ))
            }
        }
    }
    if clean == Path::new("/") {
        return Err("'path' is /; the module never manages the root directory".into());
    }
    Ok(clean)
}

/// A user or group name (or numeric id) and the id it stands for.
fn resolve(
    head: &str,
    field: &str,
    name: &str,
    lookup: impl Fn(&str) -> Option<u32>,
) -> Result<Id, String> {
    if name.is_empty() {
        return Err(format!(
            "{head}: '{field}' is empty; give a name or a numeric id, or leave it out"
        ));
    }
    if let Some(id) = lookup(name) {
        return Ok(Id {
            name: name.to_string(),
            id,
        });
    }
    if let Ok(id) = name.parse::<u32>() {
        return Ok(Id {
            name: name.to_string(),
            id,
        });
    }
    let (file, make) = if field == "owner" {
        (
            "/etc/passwd",
            "create the user first (homeops.observability.system_account)",
        )
    } else {
        (
            "/etc/group",
            "create the group first (homeops.observability.system_account)",
        )
    };
    Err(format!(
        "{head}: {field} '{name}' does not exist on this host (not in {file}); {make}, or fix the name"
    ))
}

/// Splits a validate command into words the way a shell would for plain words and quotes
/// ('...', "...", backslash), without ever running a shell: no variable, glob or pipe is
/// interpreted. `%s` must appear: it is where the staged file goes.
pub fn split_command(command: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(unclosed(command)),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err(unclosed(command)),
                        },
                        Some(c) => word.push(c),
                        None => return Err(unclosed(command)),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err("'validate' is empty; give a command with %s for the file, e.g. 'loki -verify-config -config.file=%s', or leave it out".into());
    }
    if !words.iter().any(|w| w.contains("%s")) {
        return Err(format!(
            "'validate' must contain %s where the file to check goes, e.g. 'loki -verify-config -config.file=%s'; got {command:?}"
        ));
    }
    Ok(words)
}

fn unclosed(command: &str) -> String {
    format!("'validate' has an unclosed quote: {command:?}; close it or drop it")
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::{parse, Default, Param};
    use serde_json::{json, Value as Json};

    struct Fake;
    impl Accounts for Fake {
        fn uid(&self, name: &str) -> Option<u32> {
            [("root", 0), ("loki", 990)]
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, id)| *id)
        }
        fn gid(&self, name: &str) -> Option<u32> {
            [("root", 0), ("loki", 991)]
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, id)| *id)
        }
    }

    const SPEC: &[Param] = &[
        Param::entries("files", crate::ENTRY).required(),
        Param::bool("secret").default(Default::Bool(false)),
    ];

    fn run(files: Json) -> Result<Vec<Entry>, String> {
        let (p, _) = parse("files", SPEC, &json!({ "files": files }))?;
        entries(p.entries("files"), false, &Fake)
    }

    fn err(files: Json) -> String {
        run(files).expect_err("should be refused")
    }

    #[test]
    fn a_full_entry_is_typed() {
        let got = run(json!([
            {"path": "/var/lib/loki", "state": "directory", "owner": "loki", "group": "loki", "mode": "0750"},
            {"path": "/etc/loki/config.yml", "content": "a: 1\n", "owner": "root", "group": "991",
             "mode": "0640", "validate": "loki -verify-config '-config.file=%s'", "secret": true},
            {"path": "/etc/old.conf", "state": "absent"},
        ]))
        .unwrap();
        assert_eq!(got[0].state, State::Directory);
        assert_eq!(
            got[0].owner,
            Some(Id {
                name: "loki".into(),
                id: 990
            })
        );
        assert_eq!(got[0].mode, Some(0o750));
        assert!(!got[0].secret);
        assert_eq!(got[1].mode, Some(0o640));
        assert_eq!(
            got[1].group,
            Some(Id {
                name: "991".into(),
                id: 991
            })
        );
        assert_eq!(
            got[1].validate.as_deref(),
            Some(
                &[
                    "loki".to_string(),
                    "-verify-config".into(),
                    "-config.file=%s".into()
                ][..]
            )
        );
        assert!(got[1].secret);
        assert_eq!(got[2].state, State::Absent);
        assert_eq!(got[1].label(), "files[1] (/etc/loki/config.yml)");
    }

    #[test]
    fn errors_name_the_entry_the_field_and_the_fix() {
        let e = err(
            json!([{"path": "/a", "content": ""}, {"path": "/b", "content": "", "mode": "rw-r--r--"}]),
        );
        assert!(
            e.starts_with("files[1] (/b): parameter 'mode' must be an octal mode"),
            "{e}"
        );
        assert!(e.contains("symbolic modes"), "{e}");
        let e = err(json!([{"path": "/etc/x", "content": "", "owner": "lokix"}]));
        assert_eq!(e, "files[0] (/etc/x): owner 'lokix' does not exist on this host (not in /etc/passwd); create the user first (homeops.observability.system_account), or fix the name");
        let e = err(json!([{"path": "/etc/x", "content": "", "group": "nogrp"}]));
        assert!(
            e.contains("group 'nogrp' does not exist on this host (not in /etc/group)"),
            "{e}"
        );
        let e = err(json!([{"path": "/etc/x"}]));
        assert!(
            e.contains("files[0] (/etc/x): state=file needs 'content'"),
            "{e}"
        );
        let e = err(json!([{"path": "/d", "state": "directory", "content": "x"}]));
        assert!(
            e.contains("'content' does not apply to state=directory"),
            "{e}"
        );
        let e = err(json!([{"path": "/d", "state": "absent", "mode": "0644"}]));
        assert!(e.contains("'mode' does not apply to state=absent"), "{e}");
        let e = err(json!([{"path": "/a", "content": "", "validate": "true"}]));
        assert!(e.contains("'validate' must contain %s"), "{e}");
        let e = err(json!([{"path": "/a", "content": "", "validate": "sh -c 'x %s"}]));
        assert!(e.contains("unclosed quote"), "{e}");
        let e = err(json!([{"path": "/a", "content": "", "colour": "red"}]));
        assert!(
            e.contains("files[0] (/a): unsupported keys in 'files': colour."),
            "{e}"
        );
        let e = err(json!([{"path": "/a", "content": "", "state": "link"}]));
        assert!(
            e.contains(
                "files[0] (/a): value of parameter 'state' must be one of: file, directory, absent"
            ),
            "{e}"
        );
        let e = err(json!([{"content": "x"}]));
        assert!(
            e.contains("files[0]: missing required parameter 'path'"),
            "{e}"
        );
        let e = err(json!(["/etc/x"]));
        assert!(
            e.contains("files[0]: each entry of 'files' must be a dict, got a string"),
            "{e}"
        );
    }

    #[test]
    fn an_integer_mode_is_refused_naming_both_yaml_readings() {
        // YAML's unquoted 644 is decimal 644: taken as a mode it was 0o1204, silently.
        let e = err(json!([{"path": "/etc/x", "content": "", "mode": 644}]));
        assert_eq!(
            e,
            "files[0] (/etc/x): mode 644 is an integer; YAML reads an unquoted 644 as decimal (it would become 01204): quote it, mode: \"0644\""
        );
        // An unquoted 0640 arrives as 416: refused too, both readings named.
        let e = err(json!([{"path": "/etc/x", "content": "", "mode": 416}]));
        assert_eq!(
            e,
            "files[0] (/etc/x): mode 416 is an integer; YAML reads an unquoted 416 as decimal (it would become 0640), and an unquoted 0640 as octal (also 416): quote the one you mean, mode: \"0640\" or mode: \"0416\""
        );
        // An unquoted 0750 arrives as 488, whose digits are not octal: one suggestion.
        let e = err(json!([{"path": "/d", "state": "directory", "mode": 488}]));
        assert!(e.ends_with("(also 488): quote it, mode: \"0750\""), "{e}");
        // The quoted forms are what works.
        let ok = run(json!([{"path": "/etc/x", "content": "", "mode": "644"},
                            {"path": "/etc/y", "content": "", "mode": "0o640"}]))
        .unwrap();
        assert_eq!((ok[0].mode, ok[1].mode), (Some(0o644), Some(0o640)));
    }

    #[test]
    fn paths_are_absolute_normal_and_unique() {
        for (bad, needle) in [
            ("etc/x", "must be absolute"),
            ("", "'path' is empty"),
            ("/etc/../x", "'.' or '..'"),
            ("/", "root directory"),
        ] {
            let e = err(json!([{"path": bad, "content": ""}]));
            assert!(e.contains(needle), "{bad}: {e}");
        }
        let e = err(
            json!([{"path": "/etc/x", "content": ""}, {"path": "/etc//x/", "state": "absent"}]),
        );
        assert!(
            e.contains("files[1] (/etc/x): the path is also files[0]"),
            "{e}"
        );
    }

    #[test]
    fn module_level_secret_and_entry_secret() {
        let (p, _) = parse(
            "files",
            SPEC,
            &json!({"files": [{"path": "/a", "content": ""}, {"path": "/b", "content": "", "secret": false}]}),
        )
        .unwrap();
        let got = entries(p.entries("files"), true, &Fake).unwrap();
        assert!(got[0].secret, "inherits the module-level secret");
        assert!(
            got[1].secret,
            "an entry cannot undo the module-level secret or no_log"
        );
        let got = entries(p.entries("files"), false, &Fake).unwrap();
        assert!(!got[0].secret && !got[1].secret);
    }

    #[test]
    fn split_command_is_quote_aware_and_never_a_shell() {
        assert_eq!(
            split_command(r#"visudo -cf %s"#).unwrap(),
            ["visudo", "-cf", "%s"]
        );
        assert_eq!(
            split_command(r#"a "b c" 'd e' f\ g "h\"i" %s $HOME"#).unwrap(),
            ["a", "b c", "d e", "f g", "h\"i", "%s", "$HOME"]
        );
        assert!(split_command("   ")
            .unwrap_err()
            .contains("'validate' is empty"));
    }
}
