//! The real binary, run the way Ansible runs it. Nothing here installs or removes a package:
//! the only runs that reach apt are dpkg queries and check-mode simulations (`apt-get -s`,
//! which takes no lock and changes nothing).

use std::process::Command;
use std::time::{Duration, Instant};

use runtime::testing::{
    assert_refused, assert_rejects_malformed_arguments, run_with_file, run_with_stdin, Run,
};
use serde_json::{json, Value as Json};

const BIN: &str = env!("CARGO_BIN_EXE_apt_packages");

fn run(args: Json) -> Run {
    run_with_file(BIN, &args.to_string())
}

fn installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).ends_with(" installed"))
        .unwrap_or(false)
}

fn has_candidate(name: &str) -> bool {
    Command::new("apt-cache")
        .args(["policy", name])
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.contains("Candidate:") && !text.contains("Candidate: (none)")
        })
        .unwrap_or(false)
}

#[test]
fn malformed_arguments_fail_clearly() {
    assert_rejects_malformed_arguments(BIN, "apt_packages");
}

#[test]
fn broken_arguments_fail_clearly() {
    assert_refused(
        &run(json!({"name": "curl", "colour": "red"})),
        &["Unsupported parameters for (apt_packages) module: colour"],
    );
    assert_refused(
        &run(json!({"name": "curl", "lock_timeout": "soon"})),
        &["'lock_timeout' must be of type int"],
    );
    assert_refused(
        &run(json!({"name": "curl", "update_cache": "maybe"})),
        &["'update_cache' must be a boolean"],
    );
    assert_refused(
        &run(json!({"name": {"a": 1}})),
        &["'name' must be of type list"],
    );
    assert_refused(
        &run(json!({"name": "curl", "state": "installed"})),
        &["'state' must be one of: present, absent, latest"],
    );
}

#[test]
fn invalid_package_names_are_refused_before_anything_runs() {
    for (name, why) in [
        (
            json!("curl;rm"),
            "name: 'curl;rm' is not a valid Debian package name: it contains the character ';'",
        ),
        (
            json!(["-oFoo"]),
            "it starts with '-', so apt-get would read it as an option",
        ),
        (json!(["curl rm"]), "it contains a space"),
        (json!(["curl=1.0 -y"]), "has an invalid version"),
        (json!(["Curl"]), "upper-case letter"),
    ] {
        assert_refused(&run(json!({ "name": name })), &[why]);
    }
    assert_refused(
        &run(json!({"name": "curl", "dpkg_options": ["force-confold; rm -rf /"]})),
        &["dpkg_options:"],
    );
}

#[test]
fn negative_numbers_are_refused() {
    for key in ["lock_timeout", "retries", "retry_delay", "cache_valid_time"] {
        assert_refused(
            &run(json!({"name": "curl", key: -1})),
            &[&format!("'{key}' must be at least 0, got -1")],
        );
    }
}

#[test]
fn absurd_numbers_are_accepted_without_a_crash() {
    let run = run(
        json!({"name": "dpkg", "lock_timeout": i64::MAX, "retry_delay": i64::MAX, "retries": i64::MAX}),
    );
    assert_eq!(run.json["failed"], json!(false), "{}", run.json);
    assert_eq!(run.json["changed"], json!(false));
}

#[test]
fn an_installed_package_is_unchanged_at_once_without_any_lock() {
    // dpkg is installed on every Debian host. The answer comes from dpkg-query alone.
    let start = Instant::now();
    let run = run(json!({"name": "dpkg", "update_cache": true, "lock_timeout": 0}));
    assert_eq!(run.json["failed"], json!(false), "{}", run.json);
    assert_eq!(run.json["changed"], json!(false));
    assert_eq!(run.json["attempts"], json!(0));
    assert_eq!(run.json["lock_wait_seconds"], json!(0.0));
    assert_eq!(run.json["lock_holder"], Json::Null);
    assert_eq!(run.json["cache_updated"], json!(false));
    assert_eq!(run.json["installed"], json!([]));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(
        run.json["invocation"]["module_args"]["name"],
        json!(["dpkg"])
    );

    // The same through standard input (our fast path), with key=value style strings.
    let run = run_with_stdin(
        BIN,
        r#"{"pkg": "dpkg", "state": "present", "lock_timeout": "0", "_ansible_check_mode": "yes"}"#,
    );
    assert_eq!(run.json["changed"], json!(false), "{}", run.json);
    assert_eq!(run.code, 0);
}

#[test]
fn check_mode_reports_an_install_and_installs_nothing() {
    // `hello` is in Debian's archive and not installed on a build machine; skip otherwise.
    if installed("hello") || !has_candidate("hello") {
        eprintln!("skipped: hello is installed or not in the apt cache");
        return;
    }
    let run = run(json!({
        "name": ["hello", "dpkg"],
        "_ansible_check_mode": true,
        "_ansible_diff": true
    }));
    assert_eq!(run.json["failed"], json!(false), "{}", run.json);
    assert_eq!(run.json["changed"], json!(true));
    assert!(
        run.msg().starts_with("would install hello"),
        "{}",
        run.msg()
    );
    assert_eq!(run.json["installed"][0]["name"], json!("hello"));
    assert_eq!(run.json["attempts"], json!(0));
    assert!(run.json["diff"]["after"]
        .as_str()
        .unwrap()
        .contains("hello "));
    assert!(!installed("hello"), "check mode installed a package");
}

#[test]
fn check_mode_reports_a_removal_and_removes_nothing() {
    if !installed("curl") {
        eprintln!("skipped: curl is not installed here");
        return;
    }
    let run = run(json!({"name": "curl", "state": "absent", "_ansible_check_mode": true}));
    assert_eq!(run.json["failed"], json!(false), "{}", run.json);
    assert_eq!(run.json["changed"], json!(true));
    assert!(run.json["removed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == json!("curl")));
    assert!(installed("curl"), "check mode removed a package");
}

#[test]
fn check_mode_absent_for_a_missing_package_is_unchanged() {
    let run = run(
        json!({"name": "homeops-no-such-package", "state": "absent", "_ansible_check_mode": true}),
    );
    assert_eq!(run.json["failed"], json!(false), "{}", run.json);
    assert_eq!(run.json["changed"], json!(false));
}

#[test]
fn without_root_it_fails_at_once_and_says_become() {
    runtime::testing::assert_needs_root(BIN, "apt_packages", json!({"name": "curl"}));
}

#[test]
fn the_tasks_apt_environment_reaches_apt() {
    // The task's `environment:` is this process's environment. APT_CONFIG is the variable
    // whose effect a check-mode run can show: an apt.conf that points apt at empty package
    // lists makes the simulation (`apt-get -s`) miss `hello`. (The proxies travel the same
    // way: see apt::engine's APT_ENV and runtime's inherit_env tests.)
    if installed("hello") || !has_candidate("hello") {
        eprintln!("skipped: hello is installed or not in the apt cache");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lists = dir.path().join("lists");
    std::fs::create_dir_all(lists.join("partial")).unwrap();
    let conf = dir.path().join("apt.conf");
    std::fs::write(
        &conf,
        format!(
            "Dir::State::Lists \"{}\";\nDir::Cache::pkgcache \"\";\nDir::Cache::srcpkgcache \"\";\n",
            lists.display()
        ),
    )
    .unwrap();
    let args = json!({"name": "hello", "_ansible_check_mode": true}).to_string();
    let mut child = Command::new(BIN)
        .arg("-")
        .env("APT_CONFIG", &conf)
        .env("http_proxy", "http://127.0.0.1:9")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(args.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let answer: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        answer["warnings"]
            .to_string()
            .contains("Unable to locate package hello"),
        "{answer}"
    );
    // Without it, apt sees the host's lists and simulates the install.
    let run = run(json!({"name": "hello", "_ansible_check_mode": true}));
    assert_eq!(run.json["changed"], json!(true), "{}", run.json);
    assert!(run.json.get("warnings").is_none(), "{}", run.json);
}
