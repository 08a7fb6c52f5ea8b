//! The real binary, run the way Ansible runs it (an args file in argv[1]).
//!
//! Runs that change accounts never touch this machine's /etc: each one runs in a private
//! mount namespace (`unshare --mount`) with a scratch directory bind-mounted over /etc and
//! tmpfs over /var/log and /var/mail, so useradd and friends work exactly as on a host, on
//! files the test made. Those tests need root and unshare; without them they say so and pass.
//! (shadow-utils' own `--prefix` is not usable for this: see `ROOT` in src/main.rs.)

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use runtime::testing::{
    assert_refused, assert_rejects_malformed_arguments, run_with_file, run_with_stdin, Run,
};
use serde_json::{json, Value as Json};

const BIN: &str = env!("CARGO_BIN_EXE_system_account");

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
    nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// A scratch /etc and a wrapper that runs the module with it mounted over /etc.
struct Sandbox {
    dir: tempfile::TempDir,
    wrapper: PathBuf,
}

impl Sandbox {
    /// `None` (after saying why) when this machine cannot make a private mount namespace.
    fn new(passwd: &str, group: &str) -> Option<Sandbox> {
        if runtime::effective_uid() != 0 {
            eprintln!("skipped: needs root for a private mount namespace");
            return None;
        }
        let probe = Command::new("unshare").args(["--mount", "true"]).status();
        if !probe.map(|s| s.success()).unwrap_or(false) {
            eprintln!("skipped: `unshare --mount` does not work here");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        // What the shadow tools read besides the account files: the host's defaults.
        for name in ["login.defs", "nsswitch.conf", "ld.so.cache"] {
            let from = Path::new("/etc").join(name);
            if from.exists() {
                std::fs::copy(&from, etc.join(name)).unwrap();
            }
        }
        let shadow = |text: &str, fields: &str| -> String {
            text.lines()
                .map(|l| format!("{}:*{fields}\n", l.split(':').next().unwrap()))
                .collect()
        };
        std::fs::write(etc.join("passwd"), passwd).unwrap();
        std::fs::write(etc.join("group"), group).unwrap();
        std::fs::write(etc.join("shadow"), shadow(passwd, ":19000:0:99999:7:::")).unwrap();
        std::fs::write(etc.join("gshadow"), shadow(group, "::")).unwrap();
        for name in ["shadow", "gshadow"] {
            std::fs::set_permissions(etc.join(name), std::fs::Permissions::from_mode(0o640))
                .unwrap();
        }
        let wrapper = dir.path().join("module");
        let script = format!(
            "#!/bin/sh\n\
             exec unshare --mount --propagation private sh -c '\
             mount --bind \"$1/etc\" /etc && mount -t tmpfs tmpfs /var/log && \
             {{ [ ! -d /var/mail ] || mount -t tmpfs tmpfs /var/mail; }} && exec \"$2\" \"$3\"' \
             sh '{}' '{}' \"$1\"\n",
            dir.path().display(),
            BIN
        );
        std::fs::write(&wrapper, script).unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Some(Sandbox { dir, wrapper })
    }

    fn run(&self, args: Json) -> Run {
        run_with_file(&self.wrapper, &args.to_string())
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("etc").join(name)).unwrap()
    }

    /// Every file of the scratch /etc with its content and mode.
    fn snapshot(&self) -> BTreeMap<String, (Vec<u8>, u32)> {
        std::fs::read_dir(self.dir.path().join("etc"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let meta = e.metadata().unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    (std::fs::read(e.path()).unwrap(), meta.permissions().mode()),
                )
            })
            .collect()
    }

    fn lines(&self, name: &str, account: &str) -> Vec<String> {
        self.file(name)
            .lines()
            .filter(|l| l.split(':').next() == Some(account))
            .map(String::from)
            .collect()
    }

    /// `(uid, gid, comment, home, shell)` of the single passwd line for `name`.
    fn user(&self, name: &str) -> (u32, u32, String, String, String) {
        let lines = self.lines("passwd", name);
        assert_eq!(lines.len(), 1, "{}", self.file("passwd"));
        let f: Vec<&str> = lines[0].split(':').collect();
        (
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
            f[4].into(),
            f[5].into(),
            f[6].into(),
        )
    }

    fn gid(&self, group: &str) -> u32 {
        let lines = self.lines("group", group);
        assert_eq!(lines.len(), 1, "{}", self.file("group"));
        lines[0].split(':').nth(2).unwrap().parse().unwrap()
    }
}

/// As roles/loki calls it: every field given, so an existing (package-made) user is
/// corrected too. Fields a task leaves out are only used when creating.
fn loki() -> Json {
    json!({
        "name": "loki",
        "group": "loki",
        "home": "/var/lib/loki",
        "shell": "/usr/sbin/nologin",
        "comment": "Grafana Loki",
    })
}

fn with(mut base: Json, extra: Json) -> Json {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn assert_ok(run: &Run, changed: bool) {
    assert_eq!(run.json["failed"], json!(false), "{}", run.json);
    assert_eq!(run.json["changed"], json!(changed), "{}", run.json);
    assert_eq!(run.code, 0, "{}", run.json);
}

#[test]
fn creates_group_then_user_and_a_second_run_changes_nothing() {
    let Some(sb) = Sandbox::new(PASSWD, GROUP) else {
        return;
    };
    let first = sb.run(loki());
    assert_ok(&first, true);
    let gid = sb.gid("loki");
    let (uid, user_gid, comment, home, shell) = sb.user("loki");
    assert_eq!(user_gid, gid, "primary group is the new group");
    assert!(uid < 1000 && gid < 1000, "system ids: {uid} {gid}");
    assert_eq!(
        (comment.as_str(), home.as_str(), shell.as_str()),
        ("Grafana Loki", "/var/lib/loki", "/usr/sbin/nologin")
    );
    assert!(!sb.dir.path().join("var/lib/loki").exists());
    assert_eq!(
        first.json["actions"],
        json!([
            "create group loki",
            "create user loki with primary group loki"
        ])
    );
    for (key, want) in [
        ("name", json!("loki")),
        ("uid", json!(uid)),
        ("gid", json!(gid)),
        ("group", json!("loki")),
        ("home", json!("/var/lib/loki")),
        ("shell", json!("/usr/sbin/nologin")),
        ("comment", json!("Grafana Loki")),
        ("state", json!("present")),
    ] {
        assert_eq!(first.json[key], want, "{key}: {}", first.json);
    }
    assert!(first.json.get("diff").is_none(), "no diff unless asked");

    let before = sb.snapshot();
    let second = sb.run(loki());
    assert_ok(&second, false);
    assert_eq!(second.json["uid"], json!(uid));
    assert_eq!(second.json["actions"], json!([]));
    assert_eq!(sb.snapshot(), before, "an unchanged run writes nothing");
}

#[test]
fn the_package_user_in_nogroup_is_moved_to_its_own_group() {
    // What Loki's postinst leaves behind.
    let passwd = format!("{PASSWD}loki:x:998:65534::/home/loki:/bin/false\n");
    let Some(sb) = Sandbox::new(&passwd, GROUP) else {
        return;
    };
    let run = sb.run(with(loki(), json!({"_ansible_diff": true})));
    assert_ok(&run, true);
    let gid = sb.gid("loki");
    assert_eq!(
        sb.user("loki"),
        (
            998,
            gid,
            "Grafana Loki".into(),
            "/var/lib/loki".into(),
            "/usr/sbin/nologin".into()
        )
    );
    assert_eq!(
        run.json["diff"]["before"],
        json!("name: loki\nuid: 998\ngid: 65534\ngroup: nogroup\nhome: /home/loki\nshell: /bin/false\ncomment: \ngroups: \n")
    );
    assert_eq!(
        run.json["diff"]["after"],
        json!(format!("name: loki\nuid: 998\ngid: {gid}\ngroup: loki\nhome: /var/lib/loki\nshell: /usr/sbin/nologin\ncomment: Grafana Loki\ngroups: \n"))
    );
    assert_ok(&sb.run(loki()), false);
}

#[test]
fn check_mode_changes_nothing_and_predicts_the_change() {
    let passwd = format!("{PASSWD}loki:x:998:65534::/home/loki:/bin/false\n");
    let Some(sb) = Sandbox::new(&passwd, GROUP) else {
        return;
    };
    let before = sb.snapshot();
    let run = sb.run(with(
        loki(),
        json!({"_ansible_check_mode": true, "_ansible_diff": true}),
    ));
    assert_ok(&run, true);
    assert_eq!(sb.snapshot(), before, "check mode wrote something");
    assert!(
        run.json["msg"]
            .as_str()
            .unwrap()
            .starts_with("would create group loki"),
        "{}",
        run.json
    );
    assert_eq!(run.json["group"], json!("loki"));
    assert_eq!(
        run.json["gid"],
        Json::Null,
        "a new group's gid is not known yet"
    );
    assert!(run.json["diff"]["after"]
        .as_str()
        .unwrap()
        .contains("gid: (assigned on creation)\ngroup: loki\n"));

    // A brand-new account in check mode, and one already as wanted.
    let Some(sb) = Sandbox::new(PASSWD, GROUP) else {
        return;
    };
    let before = sb.snapshot();
    let run = sb.run(with(loki(), json!({"_ansible_check_mode": true})));
    assert_ok(&run, true);
    assert_eq!(sb.snapshot(), before);
    assert_ok(&sb.run(loki()), true);
    let run = sb.run(with(loki(), json!({"_ansible_check_mode": true})));
    assert_ok(&run, false);
}

#[test]
fn diff_is_the_account_as_text_and_only_when_asked() {
    let Some(sb) = Sandbox::new(PASSWD, GROUP) else {
        return;
    };
    let run = sb.run(with(loki(), json!({"_ansible_diff": true})));
    assert_ok(&run, true);
    let diff = &run.json["diff"];
    assert_eq!(diff["before"], json!(""));
    let after = diff["after"].as_str().unwrap();
    let keys: Vec<&str> = after
        .lines()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["name", "uid", "gid", "group", "home", "shell", "comment", "groups"]
    );
    assert_eq!(diff["before_header"], json!("account loki (before)"));
    let text = run.json.to_string();
    assert!(
        !text.contains("19000") && !text.contains("password"),
        "{text}"
    );
}

#[test]
fn sixteen_concurrent_runs_all_succeed_and_create_the_account_once() {
    let Some(sb) = Sandbox::new(PASSWD, GROUP) else {
        return;
    };
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16).map(|_| s.spawn(|| sb.run(loki()))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        assert_eq!(run.json["failed"], json!(false), "{}", run.json);
    }
    let creators = runs
        .iter()
        .filter(|r| r.json["changed"] == json!(true))
        .count();
    assert_eq!(creators, 1, "exactly one run creates the account");
    let gid = sb.gid("loki");
    let (uid, user_gid, ..) = sb.user("loki");
    assert_eq!(user_gid, gid);
    for run in &runs {
        assert_eq!(
            (run.json["uid"].clone(), run.json["gid"].clone()),
            (json!(uid), json!(gid))
        );
    }
    // One group line too, and the groupadd really ran once: no churn of gids.
    assert_eq!(sb.lines("group", "loki").len(), 1);
}

#[test]
fn absent_removes_the_user_and_its_group_but_keeps_a_shared_group() {
    let passwd = format!(
        "{PASSWD}loki:x:998:997::/var/lib/loki:/usr/sbin/nologin\nalloy:x:996:995::/:/usr/sbin/nologin\nother:x:994:995::/:/usr/sbin/nologin\n"
    );
    let group = format!("{GROUP}loki:x:997:\nalloy:x:995:\n");
    let Some(sb) = Sandbox::new(&passwd, &group) else {
        return;
    };
    let run = sb.run(json!({"name": "loki", "state": "absent", "_ansible_diff": true}));
    assert_ok(&run, true);
    assert!(sb.lines("passwd", "loki").is_empty() && sb.lines("group", "loki").is_empty());
    assert_eq!(run.json["diff"]["after"], json!(""));
    assert_eq!(run.json["state"], json!("absent"));
    assert_ok(&sb.run(json!({"name": "loki", "state": "absent"})), false);

    let run = sb.run(json!({"name": "alloy", "state": "absent"}));
    assert_ok(&run, true);
    assert!(sb.lines("passwd", "alloy").is_empty());
    assert_eq!(sb.gid("alloy"), 995, "still other's primary group");
    assert!(run.json["notes"][0]
        .as_str()
        .unwrap()
        .contains("primary group of other"));
    assert_ok(&sb.run(json!({"name": "alloy", "state": "absent"})), false);
}

#[test]
fn ids_shell_and_home_are_applied_and_conflicts_refused() {
    let Some(sb) = Sandbox::new(PASSWD, GROUP) else {
        return;
    };
    let home = sb.dir.path().join("srv/grafana");
    let args = json!({
        "name": "grafana", "uid": 450, "gid": 451, "create_home": true,
        "home": home.to_str().unwrap(), "shell": "/bin/false", "system": "yes",
    });
    assert_ok(&sb.run(args.clone()), true);
    assert_eq!(
        sb.user("grafana"),
        (
            450,
            451,
            String::new(),
            home.display().to_string(),
            "/bin/false".into()
        )
    );
    assert!(home.is_dir(), "create_home made the home directory");
    assert_ok(&sb.run(args.clone()), false);

    // Changing ids when given.
    assert_ok(
        &sb.run(with(args.clone(), json!({"uid": 460, "gid": 461}))),
        true,
    );
    assert_eq!(sb.user("grafana").0, 460);
    assert_eq!(sb.user("grafana").1, 461);
    assert_eq!(sb.gid("grafana"), 461);

    // An id used by someone else: refused before anything runs.
    let before = sb.snapshot();
    let run = sb.run(json!({"name": "tempo", "uid": 0}));
    assert_eq!(run.json["failed"], json!(true));
    assert_eq!(run.json["changed"], json!(false));
    assert!(
        run.json["msg"]
            .as_str()
            .unwrap()
            .contains("uid 0 is already used by user 'root'"),
        "{}",
        run.json
    );
    let run = sb.run(json!({"name": "tempo", "gid": 65534}));
    assert!(run.json["msg"]
        .as_str()
        .unwrap()
        .contains("gid 65534 is already used by group 'nogroup'"));
    assert_eq!(sb.snapshot(), before);
}

#[test]
fn a_user_with_another_group_name_gets_that_group() {
    let Some(sb) = Sandbox::new(PASSWD, GROUP) else {
        return;
    };
    assert_ok(
        &sb.run(json!({"name": "promtail", "group": "logreaders"})),
        true,
    );
    assert_eq!(sb.user("promtail").1, sb.gid("logreaders"));
    assert!(sb.lines("group", "promtail").is_empty());
}

#[test]
fn stdin_arguments_work_like_a_file() {
    // Check mode reads /etc only: safe on the real host.
    let run = run_with_stdin(
        BIN,
        r#"{"name": "homeops_never_exists_x", "_ansible_check_mode": true}"#,
    );
    assert_eq!(run.json["failed"], json!(false), "{}", run.json);
    assert_eq!(run.json["changed"], json!(true));
}

// ---- bad input: refused before anything is read or run --------------------------------------

fn refused(args: &str, needles: &[&str]) {
    assert_refused(&run_with_file(BIN, args), needles);
}

#[test]
fn malformed_arguments_fail_clearly() {
    assert_rejects_malformed_arguments(BIN, "system_account");
}

#[test]
fn broken_arguments_fail_clearly() {
    refused("{}", &["missing required parameter 'name'"]);
    refused(
        r#"{"name": "loki", "password": "x"}"#,
        &[
            "Unsupported parameters for (system_account) module: password",
            "append, comment, create_home, gid, group, groups, home, name, shell, state, system, uid",
        ],
    );
    refused(r#"{"name": "loki", "uid": "abc"}"#, &["'uid'", "type int"]);
    refused(
        r#"{"name": "loki", "system": "maybe"}"#,
        &["'system'", "boolean"],
    );
    refused(r#"{"name": ["loki"]}"#, &["'name'", "type str"]);
    refused(
        r#"{"name": "loki", "state": "gone"}"#,
        &["'state'", "present, absent"],
    );
}

#[test]
fn invalid_names_ids_and_paths_fail_naming_the_field() {
    for bad in ["root;rm", "-rf", "a b", "Loki", "lo:ki", "loki\n"] {
        let args = json!({ "name": bad }).to_string();
        refused(
            &args,
            &["'name' is not a valid account name", "like 'loki'"],
        );
    }
    refused(r#"{"name": ""}"#, &["'name' is empty"]);
    refused(
        &json!({"name": "a".repeat(33)}).to_string(),
        &["at most 32"],
    );
    refused(
        r#"{"name": "loki", "group": "wheel;ls"}"#,
        &["'group' is not a valid account name"],
    );
    refused(
        r#"{"name": "loki", "uid": -1}"#,
        &["'uid' must be at least 0"],
    );
    refused(
        r#"{"name": "loki", "gid": 4294967295}"#,
        &["'gid' must be between 0 and 4294967294"],
    );
    refused(
        r#"{"name": "loki", "shell": "nologin"}"#,
        &["'shell' must be an absolute path"],
    );
    refused(
        r#"{"name": "loki", "home": "var/lib/loki"}"#,
        &["'home' must be an absolute path"],
    );
    refused(
        r#"{"name": "loki", "home": "/a:b"}"#,
        &["'home' must be an absolute path"],
    );
    refused(
        r#"{"name": "loki", "comment": "a:b"}"#,
        &["'comment' must not contain ':'"],
    );
    refused(
        r#"{"name": "loki", "comment": "a\nb"}"#,
        &["'comment' must not contain", "line break"],
    );
}

#[test]
fn without_root_it_fails_at_once_and_says_become() {
    runtime::testing::assert_needs_root(BIN, "system_account", json!({"name": "loki"}));
}

#[test]
fn absent_keeps_a_group_that_still_has_other_members() {
    // The sidecar's example: the user's group also lists grafana as a supplementary member.
    let passwd = format!(
        "{PASSWD}promtail:x:998:997::/:/usr/sbin/nologin\ngrafana:x:996:996::/:/usr/sbin/nologin\n"
    );
    let group = format!("{GROUP}logreaders:x:997:promtail,grafana\ngrafana:x:996:\n");
    let Some(sb) = Sandbox::new(&passwd, &group) else {
        return;
    };
    let run = sb.run(json!({"name": "promtail", "group": "logreaders", "state": "absent"}));
    assert_ok(&run, true);
    assert!(sb.lines("passwd", "promtail").is_empty());
    assert_eq!(
        sb.lines("group", "logreaders"),
        ["logreaders:x:997:grafana"],
        "the group stays, without the removed user"
    );
    assert_eq!(
        run.json["notes"],
        json!(["group logreaders is kept: it still has other members (grafana)"])
    );
    assert_ok(
        &sb.run(json!({"name": "promtail", "group": "logreaders", "state": "absent"})),
        false,
    );
}

#[test]
fn check_mode_predicts_exactly_what_the_run_does() {
    // Removals and group changes, each predicted in check mode and then done for real: the
    // predicted account (the diff's after) is the account the run leaves, its actions are
    // the run's. The first case was wrong: check mode predicted that logreaders (with only a
    // supplementary member left) would be removed; the run keeps it.
    let passwd = format!(
        "{PASSWD}promtail:x:998:997::/:/usr/sbin/nologin\ngrafana:x:996:996::/:/usr/sbin/nologin\n\
         alloy:x:997:995::/var/lib/alloy:/bin/false\n"
    );
    let group = format!(
        "{GROUP}logreaders:x:997:promtail,grafana\ngrafana:x:996:\nalloy:x:995:\n\
         adm:x:4:syslog\nsystemd-journal:x:999:\nvideo:x:44:alloy\n"
    );
    for args in [
        json!({"name": "promtail", "group": "logreaders", "state": "absent"}),
        json!({"name": "grafana", "state": "absent"}),
        json!({"name": "alloy", "groups": ["adm", "systemd-journal"], "append": true}),
        json!({"name": "alloy", "groups": ["adm"], "append": false}),
        json!({"name": "loki", "group": "loki", "system": true, "groups": ["adm"]}),
    ] {
        let Some(sb) = Sandbox::new(&passwd, &group) else {
            return;
        };
        let check = sb.run(with(
            args.clone(),
            json!({"_ansible_check_mode": true, "_ansible_diff": true}),
        ));
        let real = sb.run(with(args.clone(), json!({"_ansible_diff": true})));
        assert_ok(&check, true);
        assert_ok(&real, true);
        assert_eq!(
            check.json["diff"]["before"], real.json["diff"]["before"],
            "{args}"
        );
        // What useradd/groupadd pick (ids, a default home) check mode shows as "(assigned on
        // creation)"; every other line must agree.
        let predicted = check.json["diff"]["after"].as_str().unwrap().to_string();
        let picked: Vec<&str> = predicted
            .lines()
            .filter(|l| l.ends_with("(assigned on creation)"))
            .filter_map(|l| l.split(':').next())
            .collect();
        let known = |text: &Json| -> Vec<String> {
            text.as_str()
                .unwrap()
                .lines()
                .filter(|l| !picked.contains(&l.split(':').next().unwrap_or_default()))
                .map(String::from)
                .collect()
        };
        assert_eq!(
            known(&check.json["diff"]["after"]),
            known(&real.json["diff"]["after"]),
            "{args}: check mode predicted {} but the run did {}",
            check.json["diff"]["after"],
            real.json["diff"]["after"]
        );
        assert_eq!(check.json["actions"], real.json["actions"], "{args}");
        assert_eq!(check.json["notes"], real.json["notes"], "{args}");
    }
}

// ---- supplementary groups: the alloy role's task -------------------------------------------

/// What the alloy package leaves: its user with shell /bin/false, home /var/lib/alloy and its
/// own primary group; `video` stands for a membership the task does not mention.
const ALLOY_PASSWD: &str = "alloy:x:997:996::/var/lib/alloy:/bin/false\n";
const ALLOY_GROUP: &str =
    "adm:x:4:syslog\nsystemd-journal:x:999:\nalloy:x:996:\nvideo:x:44:alloy\n";

fn alloy_sandbox() -> Option<Sandbox> {
    Sandbox::new(
        &format!("{PASSWD}{ALLOY_PASSWD}"),
        &format!("{GROUP}{ALLOY_GROUP}"),
    )
}

#[test]
fn groups_are_added_to_the_package_user_and_nothing_else_changes() {
    let Some(sb) = alloy_sandbox() else {
        return;
    };
    let args = json!({"name": "alloy", "groups": ["adm", "systemd-journal"]});
    let passwd = sb.file("passwd");

    // Check mode: the change is reported, with the group lists in the diff, and not made.
    let before = sb.snapshot();
    let run = sb.run(with(
        args.clone(),
        json!({"_ansible_check_mode": true, "_ansible_diff": true}),
    ));
    assert_ok(&run, true);
    assert_eq!(sb.snapshot(), before, "check mode wrote something");
    assert_eq!(
        run.json["msg"],
        json!("would add user alloy to groups adm, systemd-journal")
    );
    let line = |side: &str| -> String {
        let text = run.json["diff"][side].as_str().unwrap().to_string();
        text.lines()
            .find(|l| l.starts_with("groups:"))
            .unwrap()
            .to_string()
    };
    assert_eq!(line("before"), "groups: video");
    assert_eq!(line("after"), "groups: adm, systemd-journal, video");

    let run = sb.run(with(args.clone(), json!({"_ansible_diff": true})));
    assert_ok(&run, true);
    assert_eq!(
        run.json["actions"],
        json!(["add user alloy to groups adm, systemd-journal"])
    );
    assert_eq!(
        sb.file("passwd"),
        passwd,
        "shell, home, comment, gid untouched"
    );
    assert_eq!(sb.lines("group", "adm"), ["adm:x:4:syslog,alloy"]);
    assert_eq!(
        sb.lines("group", "systemd-journal"),
        ["systemd-journal:x:999:alloy"]
    );
    assert_eq!(
        sb.lines("group", "video"),
        ["video:x:44:alloy"],
        "append keeps others"
    );
    assert_eq!(
        run.json["groups"],
        json!(["adm", "systemd-journal", "video"])
    );
    for (key, want) in [
        ("shell", "/bin/false"),
        ("home", "/var/lib/alloy"),
        ("group", "alloy"),
    ] {
        assert_eq!(run.json[key], json!(want), "{key}: {}", run.json);
    }

    let before = sb.snapshot();
    let again = sb.run(args);
    assert_ok(&again, false);
    assert_eq!(again.json["msg"], json!("user alloy is as wanted"));
    assert_eq!(sb.snapshot(), before, "an unchanged run writes nothing");
}

#[test]
fn append_false_makes_the_groups_exactly_the_list() {
    let Some(sb) = alloy_sandbox() else {
        return;
    };
    let run = sb.run(json!({"name": "alloy", "groups": "adm", "append": false}));
    assert_ok(&run, true);
    assert_eq!(
        run.json["msg"],
        json!("set the supplementary groups of user alloy to adm (removing video)")
    );
    assert_eq!(sb.lines("group", "adm"), ["adm:x:4:syslog,alloy"]);
    assert_eq!(sb.lines("group", "video"), ["video:x:44:"]);
    assert_eq!(run.json["groups"], json!(["adm"]));
    assert_ok(
        &sb.run(json!({"name": "alloy", "groups": ["adm"], "append": false})),
        false,
    );
    // An empty list: in no supplementary group at all; others' memberships stay.
    let run = sb.run(json!({"name": "alloy", "groups": [], "append": false}));
    assert_ok(&run, true);
    assert_eq!(sb.lines("group", "adm"), ["adm:x:4:syslog"]);
    assert_eq!(run.json["groups"], json!([]));
    assert_eq!(sb.user("alloy").4, "/bin/false");
}

#[test]
fn a_missing_group_fails_naming_it_and_changes_nothing() {
    let Some(sb) = alloy_sandbox() else {
        return;
    };
    let before = sb.snapshot();
    for args in [
        json!({"name": "alloy", "groups": ["adm", "docker"]}),
        // Not even a new user is created first.
        json!({"name": "tempo", "groups": ["docker"]}),
    ] {
        let run = sb.run(args);
        assert_eq!(run.json["failed"], json!(true), "{}", run.json);
        assert_eq!(run.json["changed"], json!(false), "{}", run.json);
        assert!(
            run.json["msg"]
                .as_str()
                .unwrap()
                .contains("parameter 'groups': group 'docker' does not exist"),
            "{}",
            run.json
        );
    }
    assert_eq!(sb.snapshot(), before);
}

#[test]
fn a_new_user_is_created_with_its_groups_and_the_defaults() {
    let Some(sb) = alloy_sandbox() else {
        return;
    };
    let run = sb.run(json!({"name": "tempo", "groups": ["adm", "video"]}));
    assert_ok(&run, true);
    let (_, gid, _, _, shell) = sb.user("tempo");
    assert_eq!(
        (gid, shell.as_str()),
        (sb.gid("tempo"), "/usr/sbin/nologin")
    );
    assert_eq!(run.json["groups"], json!(["adm", "video"]));
    assert_eq!(sb.lines("group", "video"), ["video:x:44:alloy,tempo"]);
    assert_ok(
        &sb.run(json!({"name": "tempo", "groups": ["adm", "video"]})),
        false,
    );
}

#[test]
fn invalid_group_names_fail_naming_groups() {
    refused(
        r#"{"name": "alloy", "groups": ["adm", "wheel;id"]}"#,
        &["'groups' is not a valid account name", "\"wheel;id\""],
    );
    refused(
        r#"{"name": "alloy", "groups": "adm", "append": "sometimes"}"#,
        &["'append'", "boolean"],
    );
}
