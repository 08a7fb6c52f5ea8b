//! The real binary, run the way Ansible runs it (an args file) and the way the fast path does
//! (standard input), against temp directories: create, converge again, drift, check mode,
//! diff, secrets, bad input and failures in the middle of a set.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use runtime::testing::{
    assert_refused, assert_rejects_malformed_arguments, run_with_file, run_with_stdin, Run,
};
use serde_json::{json, Value as Json};

const BIN: &str = env!("CARGO_BIN_EXE_files");
const SECRET: &str = "pw-S3cr3t-Qx81Lm";

fn run(args: Json) -> Run {
    let run = run_with_file(BIN, &args.to_string());
    assert!(run.stderr.is_empty(), "stderr: {}", run.stderr);
    run
}

fn is_root() -> bool {
    runtime::effective_uid() == 0
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().mode() & 0o7777
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// Names of everything in `dir`, sorted (temp files would show up here).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A directory, a file in it (owned by daemon when root runs the tests) and a file next to
/// the directory.
fn stack(root: &Path) -> Json {
    let owner = if is_root() { "daemon" } else { "" };
    let mut dir = json!({"path": p(&root.join("conf.d")), "state": "directory", "mode": "0750"});
    let mut inner =
        json!({"path": p(&root.join("conf.d/app.yml")), "content": "a: 1\n", "mode": "0640"});
    if is_root() {
        dir["owner"] = json!(owner);
        dir["group"] = json!(owner);
        inner["group"] = json!(owner);
    }
    json!({"files": [
        dir,
        inner,
        {"path": p(&root.join("top.txt")), "content": "top\n"},
    ]})
}

#[test]
fn creates_then_converges_to_no_change() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let first = run(stack(root));
    assert_eq!(first.json["failed"], json!(false), "{}", first.json);
    assert_eq!(first.json["changed"], json!(true));
    assert_eq!(
        first.json["changed_paths"],
        json!([
            p(&root.join("conf.d")),
            p(&root.join("conf.d/app.yml")),
            p(&root.join("top.txt"))
        ])
    );
    assert_eq!(
        fs::read_to_string(root.join("conf.d/app.yml")).unwrap(),
        "a: 1\n"
    );
    assert_eq!(mode(&root.join("conf.d")), 0o750);
    assert_eq!(mode(&root.join("conf.d/app.yml")), 0o640);
    // No mode given: 0666 minus the umask, as a shell's redirection would make it.
    assert_eq!(mode(&root.join("top.txt")) & 0o600, 0o600);
    if is_root() {
        let meta = fs::metadata(root.join("conf.d")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1, 1));
        assert_eq!(fs::metadata(root.join("conf.d/app.yml")).unwrap().gid(), 1);
    }
    assert_eq!(listing(root), ["conf.d", "top.txt"], "no temp file left");

    let second = run(stack(root));
    assert_eq!(second.json["changed"], json!(false), "{}", second.json);
    assert_eq!(second.json["changed_paths"], json!([]));
    assert_eq!(second.msg(), "all 3 paths as wanted");

    // The same through standard input (the fast path).
    let third = run_with_stdin(BIN, &stack(root).to_string());
    assert_eq!(third.json["changed"], json!(false), "{}", third.json);
}

#[test]
fn drift_in_mode_owner_and_content_is_fixed_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    assert_eq!(run(stack(root)).json["changed"], json!(true));
    let app = root.join("conf.d/app.yml");
    fs::set_permissions(&app, fs::Permissions::from_mode(0o666)).unwrap();
    if is_root() {
        std::os::unix::fs::chown(&app, None, Some(0)).unwrap();
    }
    let inode = fs::metadata(&app).unwrap().ino();
    let fixed = run(stack(root));
    assert_eq!(
        fixed.json["changed_paths"],
        json!([p(&app)]),
        "{}",
        fixed.json
    );
    let want = if is_root() {
        json!(["group", "mode"])
    } else {
        json!(["mode"])
    };
    assert_eq!(fixed.json["entries"][1]["changes"], want);
    assert_eq!(mode(&app), 0o640);
    assert_eq!(
        fs::metadata(&app).unwrap().ino(),
        inode,
        "attributes fixed in place"
    );

    // New content: a new file (a rename), with the mode and group kept.
    let mut args = stack(root);
    args["files"][1]["content"] = json!("a: 2\n");
    let changed = run(args);
    assert_eq!(changed.json["entries"][1]["changes"], json!(["content"]));
    assert_eq!(fs::read_to_string(&app).unwrap(), "a: 2\n");
    assert_ne!(
        fs::metadata(&app).unwrap().ino(),
        inode,
        "content replaced atomically"
    );
    assert_eq!(mode(&app), 0o640);

    // Without a mode in the task, a rewrite keeps the file's mode.
    let top = root.join("top.txt");
    fs::set_permissions(&top, fs::Permissions::from_mode(0o604)).unwrap();
    let mut args = stack(root);
    args["files"][2]["content"] = json!("top 2\n");
    run(args);
    assert_eq!(mode(&top), 0o604);
}

#[test]
fn check_mode_reports_and_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut args = stack(root);
    args["_ansible_check_mode"] = json!(true);
    let run1 = run(args.clone());
    assert_eq!(run1.json["changed"], json!(true), "{}", run1.json);
    assert_eq!(run1.json["changed_paths"].as_array().unwrap().len(), 3);
    assert!(
        run1.msg().starts_with("would change 3 of 3 paths"),
        "{}",
        run1.msg()
    );
    assert!(
        listing(root).is_empty(),
        "check mode wrote {:?}",
        listing(root)
    );

    // And on a converged host it says no change, without touching the drift it reports.
    run(stack(root));
    let top = root.join("top.txt");
    fs::write(&top, "edited\n").unwrap();
    let run2 = run(args);
    assert_eq!(run2.json["changed_paths"], json!([p(&top)]));
    assert_eq!(fs::read_to_string(&top).unwrap(), "edited\n");
}

/// In check mode on a fresh host the account an earlier task would create is not there yet:
/// the entry plans the change and warns; for real, the same task fails naming the owner.
#[test]
fn check_mode_takes_an_account_not_made_yet_as_pending() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = p(&root.join("data"));
    let conf = p(&root.join("etc-app/app.yml"));
    let mut args = json!({"files": [
        {"path": dir, "state": "directory", "owner": "homeops-no-such-user",
         "group": "homeops-no-such-group", "mode": "0750"},
        // Its directory would come with a package an earlier task installs.
        {"path": conf, "content": "a: 1\n"},
    ]});
    args["_ansible_check_mode"] = json!(true);
    args["_ansible_diff"] = json!(true);
    let checked = run(args.clone());
    assert_ne!(checked.json["failed"], json!(true), "{}", checked.json);
    assert_eq!(checked.json["changed"], json!(true), "{}", checked.json);
    let warnings = checked.json["warnings"].to_string();
    assert!(
        warnings.contains("homeops-no-such-user, homeops-no-such-group"),
        "{warnings}"
    );
    assert!(
        warnings.contains(&format!(
            "directory {} not on this host yet",
            p(&root.join("etc-app"))
        )),
        "{warnings}"
    );
    assert!(
        listing(root).is_empty(),
        "check mode wrote {:?}",
        listing(root)
    );

    args["_ansible_check_mode"] = json!(false);
    let real = run(args);
    assert_eq!(real.json["failed"], json!(true), "{}", real.json);
    assert!(
        real.msg()
            .contains("owner 'homeops-no-such-user' does not exist on this host"),
        "{}",
        real.msg()
    );
    assert!(
        listing(root).is_empty(),
        "a refused run wrote {:?}",
        listing(root)
    );
}

#[test]
fn diff_shows_content_and_attributes_per_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let top = root.join("top.txt");
    fs::write(&top, "old\n").unwrap();
    fs::set_permissions(&top, fs::Permissions::from_mode(0o644)).unwrap();
    let args = json!({"_ansible_diff": true, "files": [
        {"path": p(&top), "content": "new\n", "mode": "0600"},
        {"path": p(&root.join("d")), "state": "directory", "mode": "0700"},
    ]});
    let out = run(args.clone());
    let diff = &out.json["diff"];
    assert_eq!(
        diff,
        &json!([
            {"before": "old\n", "after": "new\n", "before_header": p(&top), "after_header": p(&top)},
            {"before": "state: file\nmode: 0644\n", "after": "state: file\nmode: 0600\n",
             "before_header": format!("{} (attributes)", p(&top)), "after_header": format!("{} (attributes)", p(&top))},
            {"before": "state: absent\n", "after": "state: directory\nmode: 0700\n",
             "before_header": format!("{}/d (attributes)", p(root)), "after_header": format!("{}/d (attributes)", p(root))},
        ]),
        "{}",
        out.json
    );
    // Nothing changes, nothing to show.
    let again = run(args);
    assert!(again.json.get("diff").is_none(), "{}", again.json);
    // Without --diff no diff is sent.
    let plain = run(json!({"files": [{"path": p(&top), "content": "newer\n"}]}));
    assert!(plain.json.get("diff").is_none(), "{}", plain.json);
}

#[test]
fn secret_content_never_leaves_the_module() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ini = root.join("grafana.ini");
    fs::write(&ini, format!("admin_password = old-{SECRET}\n")).unwrap();
    let content = format!("admin_password = {SECRET}\n");
    let assert_hidden = |run: &Run| {
        assert!(
            !run.stdout.contains("S3cr3t"),
            "secret leaked: {}",
            run.stdout
        );
        assert!(
            !run.stderr.contains("S3cr3t"),
            "secret leaked: {}",
            run.stderr
        );
    };
    // Entry-level secret, with --diff.
    let out = run(json!({"_ansible_diff": true, "files": [
        {"path": p(&ini), "content": content, "mode": "0640", "secret": true},
        {"path": p(&root.join("plain.txt")), "content": "plain\n"},
    ]}));
    assert_hidden(&out);
    assert_eq!(out.json["changed"], json!(true));
    let diff = out.json["diff"].as_array().unwrap();
    assert!(
        diff[0]["before"]
            .as_str()
            .unwrap()
            .contains("content hidden"),
        "{}",
        out.json
    );
    assert!(diff[0]["after"]
        .as_str()
        .unwrap()
        .contains("content hidden"));
    assert_ne!(diff[0]["before"], diff[0]["after"]);
    assert_eq!(
        diff[2]["after"],
        json!("plain\n"),
        "a plain entry still shows its diff"
    );
    assert_eq!(fs::read_to_string(&ini).unwrap(), content);
    // Content is never echoed in invocation, secret or not.
    let inv = out.json["invocation"]["module_args"]["files"].to_string();
    assert!(
        !inv.contains("plain\\n") && inv.contains("VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"),
        "{inv}"
    );

    // The module-level secret and the task's no_log hide every entry; a validate command that
    // prints the file (as checkers quoting a bad line do) is not shown either.
    for (key, value) in [("secret", json!(true)), ("_ansible_no_log", json!(true))] {
        let mut args = json!({"_ansible_diff": true, "files": [
            {"path": p(&ini), "content": format!("x = {SECRET}\n"),
             "validate": "/bin/sh -c 'cat \"$0\"; exit 3' %s"},
        ]});
        args[key] = value;
        let out = run(args);
        assert_hidden(&out);
        assert_eq!(out.json["failed"], json!(true));
        assert!(
            out.msg()
                .contains("exited 3 (its output is hidden: the entry is secret)"),
            "{}",
            out.msg()
        );
        assert_eq!(
            fs::read_to_string(&ini).unwrap(),
            content,
            "a failed validation replaces nothing"
        );
    }
    // Without secret, the checker's output is shown (it is how the user finds the error).
    let out = run(
        json!({"files": [{"path": p(&root.join("plain.txt")), "content": "visible-line\n",
        "validate": "/bin/sh -c 'cat \"$0\"; exit 3' %s"}]}),
    );
    assert!(out.msg().contains("visible-line"), "{}", out.msg());
}

#[test]
fn validation_runs_on_the_staged_file() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("app.conf");
    let ok = run(
        json!({"files": [{"path": p(&conf), "content": "hello\n", "validate": "/bin/grep -q ^hello$ %s"}]}),
    );
    assert_eq!(ok.json["changed"], json!(true), "{}", ok.json);
    let bad = run(
        json!({"files": [{"path": p(&conf), "content": "bye\n", "validate": "/bin/grep -q ^hello$ %s"}]}),
    );
    assert_refused(
        &bad,
        &[
            "the new content failed validation, the file was not replaced",
            "exited 1",
            "nothing was changed",
        ],
    );
    assert_eq!(fs::read_to_string(&conf).unwrap(), "hello\n");
    let missing = run(
        json!({"files": [{"path": p(&conf), "content": "x\n", "validate": "/nonexistent/checker %s"}]}),
    );
    assert_refused(&missing, &["cannot run the validate command"]);
    assert_eq!(listing(tmp.path()), ["app.conf"], "no temp file left");
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let good = json!({"path": p(&root.join("good.txt")), "content": "x\n"});
    let cases = [
        (
            json!({"path": p(&root.join("b")), "content": "x", "mode": "u=rw"}),
            "files[1] (",
            "'mode' must be an octal mode",
        ),
        (
            json!({"path": p(&root.join("b")), "content": "x", "owner": "no-such-user-hq"}),
            "owner 'no-such-user-hq' does not exist on this host",
            "system_account",
        ),
        (
            json!({"path": p(&root.join("b")), "content": "x", "group": "no-such-group-hq"}),
            "group 'no-such-group-hq' does not exist",
            "/etc/group",
        ),
        (
            json!({"path": "relative/b", "content": "x"}),
            "files[1] (relative/b)",
            "must be absolute",
        ),
        (
            json!({"path": p(&root.join("b"))}),
            "state=file needs 'content'",
            "lookup('ansible.builtin.template'",
        ),
        (
            json!({"path": p(&root.join("no/such/dir/b")), "content": "x"}),
            "does not exist",
            "state=directory entry before this one",
        ),
        (
            json!({"path": p(&root.join("b")), "content": 5, "size": 1}),
            "unsupported keys in 'files': size",
            "Supported keys",
        ),
        (
            json!({"path": p(&root.join("good.txt")), "state": "absent"}),
            "the path is also files[0]",
            "merge",
        ),
    ];
    for (bad, a, b) in cases {
        let out = run(json!({"files": [good.clone(), bad]}));
        assert_refused(&out, &[a, b]);
        assert!(
            listing(root).is_empty(),
            "{:?} after {}",
            listing(root),
            out.msg()
        );
    }
    assert_refused(
        &run(json!({"files": "/etc/x"})),
        &["'files' must be of type list of dicts"],
    );
    assert_refused(&run(json!({})), &["missing required parameter 'files'"]);
    assert_rejects_malformed_arguments(BIN, "files");
}

#[test]
fn a_failure_in_the_middle_leaves_every_file_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for name in ["a", "b", "c"] {
        fs::write(root.join(name), format!("old {name}\n")).unwrap();
    }
    let out = run(json!({"files": [
        {"path": p(&root.join("a")), "content": "new a\n"},
        {"path": p(&root.join("b")), "content": "new b\n", "validate": "/bin/false %s"},
        {"path": p(&root.join("c")), "content": "new c\n"},
    ]}));
    assert_refused(
        &out,
        &["files[1] (", "failed validation", "nothing was changed"],
    );
    assert_eq!(out.json["changed_paths"], json!([]));
    for name in ["a", "b", "c"] {
        assert_eq!(
            fs::read_to_string(root.join(name)).unwrap(),
            format!("old {name}\n")
        );
    }
    assert_eq!(listing(root), ["a", "b", "c"], "staged files are removed");

    // A file in a directory made by this run is staged after the directory: its failure
    // leaves the directory (and says so), never a half-written file.
    let out = run(json!({"files": [
        {"path": p(&root.join("d")), "state": "directory"},
        {"path": p(&root.join("d/x")), "content": "x\n", "validate": "/bin/false %s"},
    ]}));
    assert_eq!(out.json["failed"], json!(true));
    assert_eq!(out.json["changed"], json!(true), "{}", out.json);
    assert_eq!(out.json["changed_paths"], json!([p(&root.join("d"))]));
    assert!(
        out.msg().contains("already changed before the error"),
        "{}",
        out.msg()
    );
    assert!(listing(&root.join("d")).is_empty());
}

#[test]
fn absent_removes_files_links_and_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fs::write(root.join("f"), "x").unwrap();
    fs::create_dir_all(root.join("d/sub")).unwrap();
    fs::write(root.join("d/sub/x"), "x").unwrap();
    std::os::unix::fs::symlink(root.join("f"), root.join("l")).unwrap();
    let entries: Vec<Json> = ["f", "d", "l", "never"]
        .iter()
        .map(|n| json!({"path": p(&root.join(n)), "state": "absent"}))
        .collect();
    let args = json!({ "files": entries });
    let out = run(args.clone());
    assert_eq!(
        out.json["changed_paths"],
        json!([p(&root.join("f")), p(&root.join("d")), p(&root.join("l"))]),
        "{}",
        out.json
    );
    assert!(listing(root).is_empty());
    assert_eq!(run(args).json["changed"], json!(false));
}

#[test]
fn parents_true_makes_missing_directories_like_mkdir_p() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let deep = root.join("a/b/c.yml");
    let args = json!({"files": [{"path": p(&deep), "content": "c\n", "parents": true}]});
    let mut check = args.clone();
    check["_ansible_check_mode"] = json!(true);
    let dry = run(check);
    assert_eq!(
        dry.json["entries"][0]["changes"],
        json!(["parents created", "created"]),
        "{}",
        dry.json
    );
    assert!(
        listing(root).is_empty(),
        "check mode made {:?}",
        listing(root)
    );
    let out = run(args.clone());
    assert_eq!(out.json["changed_paths"], json!([p(&deep)]), "{}", out.json);
    assert_eq!(fs::read_to_string(&deep).unwrap(), "c\n");
    assert_eq!(run(args).json["changed"], json!(false));
    // Without it the same entry is refused, naming both fixes.
    let refused = run(json!({"files": [{"path": p(&root.join("x/y.yml")), "content": ""}]}));
    assert_refused(&refused, &["does not exist", "or set parents: true"]);
    // A file in the way of a parent is an error, before anything is made.
    let blocked =
        run(json!({"files": [{"path": p(&deep.join("d/e")), "content": "", "parents": true}]}));
    assert_refused(&blocked, &["c.yml is not a directory"]);
    assert_eq!(listing(&root.join("a/b")), ["c.yml"]);
}

/// The cases of tests/faults/bad-input.json for this module (the fault suite runs them through
/// Ansible on a lab host): each fails, changing nothing, with a message naming the field.
#[test]
fn the_fault_suites_bad_input_cases_fail_naming_the_field() {
    for (args, needle) in [
        (r#"{}"#, "missing required parameter 'files'"),
        (
            r#"{"files": "/etc/loki"}"#,
            "'files' must be of type list of dicts",
        ),
        (
            r#"{"files": [{"path": "etc/loki", "state": "directory"}]}"#,
            "'path' must be absolute (start with /)",
        ),
        (
            r#"{"files": [{"path": "/etc/homeops-x", "state": "link"}]}"#,
            "value of parameter 'state' must be one of: file, directory, absent",
        ),
        (
            r#"{"files": [{"path": "/etc/homeops-x", "state": "directory", "mode": "999"}]}"#,
            "parameter 'mode' must be an octal mode",
        ),
        (
            r#"{"files": [{"path": "/etc/homeops-x", "state": "directory", "mode": 644}]}"#,
            "mode 644 is an integer; YAML reads an unquoted 644 as decimal",
        ),
        (
            r#"{"files": [{"path": "/etc/homeops-x", "state": "directory", "owner": "root;id"}]}"#,
            "owner 'root;id' does not exist on this host",
        ),
        (
            r#"{"files": [{"path": "/etc/homeops-x", "state": "directory", "content": "x"}]}"#,
            "'content' does not apply to state=directory",
        ),
        (
            r#"{"files": [{"path": "/etc/homeops-x", "state": "directory"}, {"path": "/etc/homeops-x", "state": "absent"}]}"#,
            "the path is also files[0]",
        ),
        (
            r#"{"files": [{"path": "/etc/homeops-x", "state": "directory", "recurse": true}]}"#,
            "unsupported keys in 'files': recurse",
        ),
        (
            r#"{"files": [], "force": true}"#,
            "Unsupported parameters for (files) module: force",
        ),
    ] {
        assert_refused(&run_with_file(BIN, args), &[needle]);
    }
}

/// grafana.ini as its package ships it: defaults commented out, other sections around.
const GRAFANA_INI: &str = "; Grafana's own comment\n[paths]\ndata = /var/lib/grafana\n\n[server]\nhttp_addr =\nhttp_port = 3000\n\n[security]\n;admin_user = admin\n;admin_password = admin\n\n[users]\n;allow_sign_up = false\n";

fn ini_entry(path: &Path, password: &str) -> Json {
    let mut entry = json!({"path": p(path), "mode": "0640",
        "ini": {"security": {"admin_user": "root-admin", "admin_password": password}}});
    if is_root() {
        entry["owner"] = json!("root");
        entry["group"] = json!("daemon");
    }
    entry
}

#[test]
fn ini_entries_set_options_keep_the_rest_and_converge() {
    let tmp = tempfile::tempdir().unwrap();
    let ini = tmp.path().join("grafana.ini");
    fs::write(&ini, GRAFANA_INI).unwrap();
    fs::set_permissions(&ini, fs::Permissions::from_mode(0o644)).unwrap();
    let inode = fs::metadata(&ini).unwrap().ino();
    let args = json!({"_ansible_diff": true, "files": [ini_entry(&ini, "pw=with;odd #chars")]});
    let first = run(args.clone());
    assert_eq!(first.json["changed"], json!(true), "{}", first.json);
    let want = GRAFANA_INI.replace(
        ";admin_user = admin\n;admin_password = admin\n",
        "admin_user = root-admin\nadmin_password = pw=with;odd #chars\n",
    );
    assert_eq!(fs::read_to_string(&ini).unwrap(), want);
    assert_eq!(mode(&ini), 0o640);
    if is_root() {
        assert_eq!(fs::metadata(&ini).unwrap().gid(), 1);
    }
    assert_ne!(
        fs::metadata(&ini).unwrap().ino(),
        inode,
        "written atomically (a new file renamed over it)"
    );
    assert_eq!(listing(tmp.path()), ["grafana.ini"], "no temp file left");
    // Not secret: the diff shows the options the entry sets, before and after, and nothing
    // else of the file (another entry's or task's values may be in it).
    assert_eq!(
        first.json["diff"][0]["before"],
        json!("[security] admin_password (not set)\n[security] admin_user (not set)\n")
    );
    assert_eq!(
        first.json["diff"][0]["after"],
        json!(
            "[security] admin_password = pw=with;odd #chars\n[security] admin_user = root-admin\n"
        )
    );
    assert!(
        !first.json["diff"].to_string().contains("http_port"),
        "{}",
        first.json["diff"]
    );
    // The values are no_log like content: never echoed in invocation.
    let inv = first.json["invocation"]["module_args"]["files"][0]["ini"].clone();
    assert_eq!(inv, json!("VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"));

    let second = run(args.clone());
    assert_eq!(second.json["changed"], json!(false), "{}", second.json);
    assert!(second.json.get("diff").is_none(), "{}", second.json);

    // Drift of the mode alone: fixed in place, the content untouched.
    fs::set_permissions(&ini, fs::Permissions::from_mode(0o666)).unwrap();
    let inode = fs::metadata(&ini).unwrap().ino();
    let fixed = run(args.clone());
    assert_eq!(fixed.json["entries"][0]["changes"], json!(["mode"]));
    assert_eq!(mode(&ini), 0o640);
    assert_eq!(fs::metadata(&ini).unwrap().ino(), inode);
    assert_eq!(fs::read_to_string(&ini).unwrap(), want);

    // An edit elsewhere in the file stays; a changed value is set again in check mode only
    // as a report.
    let edited = want.replace("http_port = 3000", "http_port = 3001");
    fs::write(&ini, &edited).unwrap();
    assert_eq!(run(args.clone()).json["changed"], json!(false));
    let mut check = json!({"files": [ini_entry(&ini, "new-pw")]});
    check["_ansible_check_mode"] = json!(true);
    let dry = run(check);
    assert_eq!(dry.json["entries"][0]["changes"], json!(["content"]));
    assert_eq!(fs::read_to_string(&ini).unwrap(), edited);
}

#[test]
fn an_ini_file_that_is_missing_is_created_unless_create_is_false() {
    let tmp = tempfile::tempdir().unwrap();
    let ini = tmp.path().join("app.ini");
    let mut entry = json!({"path": p(&ini), "ini": {"main": {"port": 3000, "name": "x"}},
        "create": false});
    let refused = run(json!({"files": [entry.clone()]}));
    assert_refused(
        &refused,
        &["does not exist", "create: false", "set create: true"],
    );
    assert!(listing(tmp.path()).is_empty());
    // Check mode takes it as made by an earlier task (a package) and says so.
    let dry = run(json!({"_ansible_check_mode": true, "files": [entry.clone()]}));
    assert_eq!(dry.json["changed"], json!(true), "{}", dry.json);
    assert!(
        dry.json["warnings"].to_string().contains("(create: false)"),
        "{}",
        dry.json
    );
    assert!(listing(tmp.path()).is_empty());
    entry["create"] = json!(true);
    let made = run(json!({"files": [entry.clone()]}));
    assert_eq!(made.json["entries"][0]["changes"], json!(["created"]));
    // Integers are written in decimal; options in the order the module receives them (sorted).
    assert_eq!(
        fs::read_to_string(&ini).unwrap(),
        "[main]\nname = x\nport = 3000\n"
    );
    assert_eq!(run(json!({"files": [entry]})).json["changed"], json!(false));
}

#[test]
fn secret_ini_values_never_appear_in_any_output() {
    let tmp = tempfile::tempdir().unwrap();
    let ini = tmp.path().join("grafana.ini");
    fs::write(&ini, GRAFANA_INI).unwrap();
    let assert_hidden = |run: &Run| {
        for needle in [SECRET, "S3cr3t", "Qx81Lm"] {
            assert!(
                !run.stdout.contains(needle),
                "secret leaked: {}",
                run.stdout
            );
            assert!(
                !run.stderr.contains(needle),
                "secret leaked: {}",
                run.stderr
            );
        }
    };
    let mut entry = ini_entry(&ini, SECRET);
    entry["secret"] = json!(true);
    // Check mode with --diff, then for real with --diff, then again (no change).
    for check in [true, false, false] {
        let out = run(json!({"_ansible_diff": true, "_ansible_check_mode": check,
            "files": [entry.clone()]}));
        assert_hidden(&out);
        assert_ne!(out.json["failed"], json!(true), "{}", out.json);
    }
    assert!(fs::read_to_string(&ini).unwrap().contains(SECRET));
    // A new password: changed, the diff says only that.
    let mut newer = entry.clone();
    newer["ini"]["security"]["admin_password"] = json!(format!("{SECRET}-2"));
    let out = run(json!({"_ansible_diff": true, "files": [newer.clone()]}));
    assert_hidden(&out);
    assert_eq!(out.json["changed"], json!(true));
    // One diff comes as a dict (a list only when there are several).
    let diff = &out.json["diff"];
    assert!(
        diff["before"]
            .as_str()
            .unwrap_or_default()
            .contains("content hidden"),
        "{}",
        out.json
    );
    assert_ne!(diff["before"], diff["after"]);
    // The task's no_log, a failed validation and refused values show nothing either.
    let out = run(
        json!({"_ansible_no_log": true, "_ansible_diff": true, "files": [
        {"path": p(&ini), "ini": {"security": {"admin_password": format!("x-{SECRET}")}},
         "validate": "/bin/sh -c 'cat \"$0\"; exit 3' %s"}]}),
    );
    assert_hidden(&out);
    assert_eq!(out.json["failed"], json!(true));
    for bad in [
        json!({"security": {"admin_password": [SECRET]}}),
        json!({"security": {"admin_password": format!("{SECRET}\nx = 1")}}),
        json!({"security": SECRET}),
    ] {
        let out = run(json!({"files": [{"path": p(&ini), "ini": bad, "secret": true}]}));
        assert_eq!(out.json["failed"], json!(true), "{}", out.json);
        assert_hidden(&out);
    }
    assert!(fs::read_to_string(&ini)
        .unwrap()
        .contains(&format!("{SECRET}-2\n")));
}

#[test]
fn ini_entries_refuse_what_they_cannot_mean() {
    let tmp = tempfile::tempdir().unwrap();
    let path = p(&tmp.path().join("a.ini"));
    let ini = json!({"s": {"k": "v"}});
    let cases = [
        (
            json!({"path": path, "ini": ini, "content": "x"}),
            "'content' and 'ini' are mutually exclusive",
        ),
        (
            json!({"path": path, "content": "x", "create": false}),
            "'create' applies only to an 'ini' entry",
        ),
        (
            json!({"path": path, "state": "directory", "ini": ini}),
            "'ini' does not apply to state=directory",
        ),
        (
            json!({"path": path, "state": "absent", "create": true}),
            "'create' does not apply to state=absent",
        ),
        (
            json!({"path": path, "ini": {"s": {"enabled": true}}}),
            "ini.s.enabled: the value must be a string (or an integer), got a boolean",
        ),
        (
            json!({"path": path, "ini": "s.k=v"}),
            "parameter 'ini' must be of type dict",
        ),
    ];
    for (bad, needle) in cases {
        let out = run(json!({"files": [bad]}));
        assert_refused(&out, &["files[0] (", needle]);
        assert!(listing(tmp.path()).is_empty());
    }
    // A file that is not text is not edited.
    fs::write(&path, [0xff, 0xfe, b'\n']).unwrap();
    let out = run(json!({"files": [{"path": path, "ini": ini}]}));
    assert_refused(&out, &["is not UTF-8 text"]);
}

/// The uid of `nobody`: a user who is not root, as the loki user is on a host.
const USER: u32 = 65534;

/// (uid, gid, mode) of a path, not following a link.
fn attrs(path: &Path) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// Issue 19: the loki user replaces its chunks directory with a link to /etc; the next deploy
/// (root) must neither chown nor chmod /etc, nor write below it, in any mode, and must say why.
#[test]
fn a_link_a_user_planted_is_refused_in_every_mode_and_nothing_changes() {
    if !is_root() {
        eprintln!("skipped: needs root to plant a link owned by uid {USER}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let etc = root.join("etc");
    fs::create_dir(&etc).unwrap();
    fs::set_permissions(&etc, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(etc.join("shadow"), "root:*:1::::::\n").unwrap();
    let loki = root.join("var/lib/loki");
    fs::create_dir_all(&loki).unwrap();
    std::os::unix::fs::chown(&loki, Some(USER), Some(USER)).unwrap();
    let chunks = loki.join("chunks");
    std::os::unix::fs::symlink(&etc, &chunks).unwrap();
    std::os::unix::fs::lchown(&chunks, Some(USER), Some(USER)).unwrap();
    let owned = |path: &Path, state: &str, mode: &str| {
        json!({"path": p(path), "state": state, "owner": USER.to_string(),
               "group": USER.to_string(), "mode": mode})
    };
    let cases = [
        // The directory entry itself: a link at the final component, whoever owns it.
        (
            json!([
                owned(&loki, "directory", "0750"),
                owned(&chunks, "directory", "0750")
            ]),
            format!(
                "files[1] ({}): is a symbolic link (to {})",
                p(&chunks),
                p(&etc)
            ),
        ),
        // A file below it: the link is on the way, and it is not root's.
        (
            json!([{"path": p(&chunks.join("shadow")), "content": "pwned\n", "mode": "0644"}]),
            format!(
                "{} is a symbolic link (to {}) owned by",
                p(&chunks),
                p(&etc)
            ),
        ),
        (
            json!([{"path": p(&chunks.join("new/dir")), "state": "directory", "parents": true}]),
            format!("{} is a symbolic link", p(&chunks)),
        ),
    ];
    for (files, needle) in cases {
        for (check, diff) in [(false, false), (true, true), (false, true)] {
            let out = run(json!({"files": files.clone(), "_ansible_check_mode": check,
                                 "_ansible_diff": diff}));
            assert_refused(&out, &[&needle, "uid 65534"]);
            assert_eq!(out.json["changed"], json!(false), "{}", out.json);
            assert_eq!(attrs(&etc), (0, 0, 0o755), "{}", out.msg());
            assert_eq!(attrs(&etc.join("shadow")).0, 0);
            assert_eq!(
                fs::read_to_string(etc.join("shadow")).unwrap(),
                "root:*:1::::::\n"
            );
            assert_eq!(listing(&etc), ["shadow"], "{}", out.msg());
        }
    }
    // state: absent removes the link itself, never what it points to.
    let out = run(json!({"files": [{"path": p(&chunks), "state": "absent"}]}));
    assert_eq!(
        out.json["changed_paths"],
        json!([p(&chunks)]),
        "{}",
        out.json
    );
    assert!(fs::symlink_metadata(&chunks).is_err());
    assert_eq!(listing(&etc), ["shadow"]);
    // And then the directory entry makes a real directory.
    let out = run(json!({"files": [owned(&chunks, "directory", "0750")]}));
    assert_eq!(out.json["changed"], json!(true), "{}", out.json);
    assert_eq!(attrs(&chunks), (USER, USER, 0o750));
    assert_eq!(attrs(&etc), (0, 0, 0o755));
}

/// Debian's own links on the way (/var/run -> /run, merged-/usr /lib -> usr/lib) are root's:
/// followed. A root-owned link where the file itself goes is still refused.
#[test]
fn root_links_on_the_way_are_followed_but_never_at_the_end() {
    if !is_root() {
        eprintln!("skipped: the links the tests make are root's only when root runs them");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fs::create_dir(root.join("run")).unwrap();
    fs::create_dir(root.join("var")).unwrap();
    std::os::unix::fs::symlink("../run", root.join("var/run")).unwrap();
    let conf = root.join("var/run/app.conf");
    let out = run(json!({"files": [{"path": p(&conf), "content": "x\n", "mode": "0600"}]}));
    assert_eq!(out.json["changed"], json!(true), "{}", out.json);
    assert_eq!(
        fs::read_to_string(root.join("run/app.conf")).unwrap(),
        "x\n"
    );
    std::os::unix::fs::symlink(root.join("run/app.conf"), root.join("run/alias.conf")).unwrap();
    let out = run(json!({"files": [{"path": p(&root.join("run/alias.conf")), "content": "y\n"}]}));
    assert_refused(
        &out,
        &["alias.conf): is a symbolic link", "owned by root (uid 0)"],
    );
    assert_eq!(
        fs::read_to_string(root.join("run/app.conf")).unwrap(),
        "x\n"
    );
}

#[test]
fn parents_get_the_entrys_owner_and_group_whatever_the_umask() {
    if !is_root() {
        eprintln!("skipped: needs root to give the parents another owner");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // The module under umask 027 (a hardened sudo), as Ansible would start it.
    let wrapper = root.join("files-umask-027");
    fs::write(
        &wrapper,
        format!("#!/bin/sh\numask 027\nexec '{BIN}' \"$@\"\n"),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let ds = root.join("etc/grafana/provisioning/datasources");
    let args = json!({"files": [
        {"path": p(&ds), "state": "directory", "owner": "root", "group": USER.to_string(),
         "mode": "0755", "parents": true},
        {"path": p(&root.join("srv/app/conf/app.yml")), "content": "a\n", "owner": USER.to_string(),
         "group": USER.to_string(), "mode": "0640", "parents": true},
    ]});
    let out = run_with_file(&wrapper, &args.to_string());
    assert_eq!(out.json["changed"], json!(true), "{}", out.json);
    for made in [
        "etc",
        "etc/grafana",
        "etc/grafana/provisioning",
        "etc/grafana/provisioning/datasources",
    ] {
        assert_eq!(attrs(&root.join(made)), (0, USER, 0o755), "{made}");
    }
    for made in ["srv", "srv/app", "srv/app/conf"] {
        assert_eq!(attrs(&root.join(made)), (USER, USER, 0o755), "{made}");
    }
    assert_eq!(
        attrs(&root.join("srv/app/conf/app.yml")),
        (USER, USER, 0o640)
    );
    assert_eq!(
        run_with_file(&wrapper, &args.to_string()).json["changed"],
        json!(false)
    );
}

#[test]
fn an_unquoted_yaml_mode_is_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.conf");
    let out = run(json!({"files": [{"path": p(&path), "content": "x\n", "mode": 644}]}));
    assert_refused(
        &out,
        &[&format!(
            "files[0] ({}): mode 644 is an integer; YAML reads an unquoted 644 as decimal (it would become 01204): quote it, mode: \"0644\"",
            p(&path)
        )],
    );
    assert!(listing(tmp.path()).is_empty());
}

#[test]
fn an_ini_diff_never_shows_another_entrys_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let ini = tmp.path().join("grafana.ini");
    fs::write(&ini, GRAFANA_INI).unwrap();
    // One (secret) entry writes the password; another task sets a plain option with --diff.
    let secret = json!({"files": [{"path": p(&ini), "secret": true,
        "ini": {"security": {"admin_password": SECRET}}}]});
    assert_eq!(run(secret).json["changed"], json!(true));
    let plain = json!({"_ansible_diff": true, "files": [{"path": p(&ini),
        "ini": {"server": {"http_port": "3001"}, "users": {"allow_sign_up": "false"}}}]});
    let out = run(plain);
    assert!(
        !out.stdout.contains("S3cr3t"),
        "secret leaked: {}",
        out.stdout
    );
    assert_eq!(
        out.json["diff"]["before"],
        json!("[server] http_port = 3000\n[users] allow_sign_up (not set)\n"),
        "{}",
        out.json
    );
    assert_eq!(
        out.json["diff"]["after"],
        json!("[server] http_port = 3001\n[users] allow_sign_up = false\n")
    );
}
