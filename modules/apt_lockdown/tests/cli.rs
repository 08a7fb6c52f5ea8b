//! The real binary. It never stops or masks a unit on the machine running the tests: runs that
//! could act do so only when systemd is *not* running here (then every unit is absent), and
//! every record lives in a temporary directory.

use std::path::{Path, PathBuf};

use runtime::testing::{
    assert_refused, assert_rejects_malformed_arguments, run_with_file, run_with_stdin, Run,
};
use serde_json::{json, Value as Json};

const BIN: &str = env!("CARGO_BIN_EXE_apt_lockdown");

fn run(args: Json) -> Run {
    run_with_file(BIN, &args.to_string())
}

fn systemd_here() -> bool {
    Path::new("/run/systemd/system").exists()
}

fn state_file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("homeops/apt-lockdown.json")
}

#[test]
fn malformed_arguments_fail_clearly() {
    assert_rejects_malformed_arguments(BIN, "apt_lockdown");
}

#[test]
fn broken_arguments_fail_clearly() {
    assert_refused(
        &run(json!({"state": "locked", "timeout": 5})),
        &["Unsupported parameters for (apt_lockdown) module: timeout"],
    );
    assert_refused(
        &run(json!({"wait_timeout": "soon"})),
        &["'wait_timeout' must be of type int"],
    );
    assert_refused(
        &run(json!({"units": {"a": 1}})),
        &["'units' must be of type list"],
    );
    assert_refused(
        &run(json!({"state": "unlocked"})),
        &["'state' must be one of: locked, released"],
    );
    assert_refused(
        &run(json!({"wait_timeout": -1})),
        &["'wait_timeout' must be at least 0, got -1"],
    );
    assert_refused(
        &run(json!({"units": ["apt-daily.timer; reboot"]})),
        &["units: 'apt-daily.timer; reboot'"],
    );
    assert_refused(
        &run(json!({"units": ["--now"]})),
        &["systemctl would read it as an option"],
    );
    assert_refused(
        &run(json!({"state_file": "lockdown.json"})),
        &["must be an absolute file path"],
    );
}

#[test]
fn check_mode_reports_without_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let file = state_file(&dir);
    let run = run(json!({"_ansible_check_mode": true, "state_file": file, "_ansible_diff": true}));
    assert_eq!(run.json["failed"], json!(false), "{}", run.json);
    assert!(!file.exists());
    assert_eq!(run.json["state_file"], json!(file));
    assert!(run.json["waited_for"].is_array());
    if !systemd_here() {
        assert_eq!(run.json["changed"], json!(false));
        assert_eq!(run.json["absent"].as_array().unwrap().len(), 11);
        assert!(run.msg().contains("systemd is not running"));
    }
}

#[test]
fn without_systemd_a_lock_is_a_no_op_and_leaves_no_record() {
    if systemd_here() {
        eprintln!("skipped: systemd runs here, and tests never stop units on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = state_file(&dir);
    let run = run_with_stdin(
        BIN,
        &json!({"state": "locked", "wait_timeout": 5, "state_file": file}).to_string(),
    );
    assert_eq!(run.json["failed"], json!(false), "{}", run.json);
    assert_eq!(run.json["changed"], json!(false));
    assert_eq!(run.json["stopped"], json!([]));
    assert_eq!(run.json["masked"], json!([]));
    assert_eq!(run.json["absent"][0], json!("apt-daily.timer"));
    assert!(!file.exists());
}

#[test]
fn release_without_a_record_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let run = run(json!({"state": "released", "state_file": state_file(&dir)}));
    assert_eq!(run.json["failed"], json!(false), "{}", run.json);
    assert_eq!(run.json["changed"], json!(false));
    assert_eq!(run.json["restored"], json!([]));
    assert!(run.msg().contains("nothing to release"));
}

#[test]
fn release_with_a_record_but_no_systemd_keeps_the_record() {
    if systemd_here() {
        eprintln!("skipped: systemd runs here, and tests never start units on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = state_file(&dir);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let record = json!({"version": 1, "created": 1, "units": [
        {"unit": "apt-daily.timer", "masked": true, "stopped": true, "active_state": "active", "unit_file_state": "enabled"}
    ]});
    std::fs::write(&file, record.to_string()).unwrap();
    let run = run(json!({"state": "released", "state_file": file}));
    assert_eq!(run.json["failed"], json!(false), "{}", run.json);
    assert_eq!(run.json["changed"], json!(false));
    assert!(run.json["warnings"][0]
        .as_str()
        .unwrap()
        .contains("the record is kept"));
    assert!(file.exists());
}

#[test]
fn a_corrupt_record_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let file = state_file(&dir);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "[]").unwrap();
    let run = run(json!({"state": "released", "state_file": file}));
    assert_refused(&run, &["is not a valid apt_lockdown record"]);
}

#[test]
fn without_root_it_fails_at_once_and_says_become() {
    runtime::testing::assert_needs_root(BIN, "apt_lockdown", json!({"state": "locked"}));
}
