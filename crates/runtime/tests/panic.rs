//! A module that panics answers `failed: true`, and `changed: true` when it had already started
//! changing the host. The panic hook exits the process, so the module runs as a child: this
//! test binary itself, re-run with HOMEOPS_PANIC_CHILD set, which makes the one test below
//! act as a module instead of as a test.

use std::process::Command;

use runtime::{Failure, Outcome, Param};
use serde_json::Value as Json;

const SPEC: &[Param] = &[Param::bool("change_first")];

fn child_module(args_path: String) -> ! {
    runtime::run_from(
        "panicky",
        SPEC,
        Some(args_path),
        |params, _| -> Result<Outcome, Failure> {
            if params.bool("change_first") {
                // Stands in for apt-get install or useradd: a command that may change the host.
                let out = runtime::Command::new("true").changes_system().run()?;
                assert!(out.success());
            }
            panic!("bug after the first step");
        },
    )
}

fn run_child(args: &str) -> Json {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("args");
    std::fs::write(&path, args).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_panic_answers_changed_when_something_changed_before",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HOMEOPS_PANIC_CHILD", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The test harness prints its own lines around the module's one JSON line.
    let line = stdout
        .lines()
        .find_map(|l| l.find("{\"").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("no JSON answer in {stdout:?}"));
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    serde_json::from_str(line).unwrap()
}

#[test]
fn a_panic_answers_changed_when_something_changed_before() {
    if let Some(path) = std::env::var_os("HOMEOPS_PANIC_CHILD") {
        // We are the child: behave as the module `panicky` with this args file.
        child_module(path.to_string_lossy().into_owned());
    }
    let unchanged = run_child(r#"{"change_first": false}"#);
    assert_eq!(unchanged["failed"], Json::Bool(true), "{unchanged}");
    assert_eq!(unchanged["changed"], Json::Bool(false), "{unchanged}");
    assert!(unchanged["msg"]
        .as_str()
        .unwrap()
        .contains("bug after the first step"));

    let changed = run_child(r#"{"change_first": true}"#);
    assert_eq!(changed["failed"], Json::Bool(true), "{changed}");
    assert_eq!(changed["changed"], Json::Bool(true), "{changed}");
    assert!(changed["msg"]
        .as_str()
        .unwrap()
        .contains("started changing the host"));
}
