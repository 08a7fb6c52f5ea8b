//! The real binary. Runs that would act on systemd do so against a TEST FAKE of systemctl
//! (`tests/fake-systemctl`, a shell script keeping unit states in files), never the machine's:
//! the module runs in a private mount namespace (`unshare --mount`) with a scratch directory
//! bind-mounted over /usr/local/sbin, the first directory of the fixed PATH its commands run
//! with. Those tests need root and unshare; without them they say so and pass.

use std::path::{Path, PathBuf};
use std::process::Command;

use runtime::testing::{assert_refused, assert_rejects_malformed_arguments, run_with_file, Run};
use serde_json::{json, Value as Json};

const BIN: &str = env!("CARGO_BIN_EXE_units");
const FAKE: &str = include_str!("fake-systemctl");

fn run(args: Json) -> Run {
    run_with_file(BIN, &args.to_string())
}

/// A fake systemd: unit state files, the calls log, and a wrapper running the module with the
/// fake systemctl first on its PATH.
struct Sandbox {
    dir: tempfile::TempDir,
    wrapper: PathBuf,
}

impl Sandbox {
    fn new() -> Option<Sandbox> {
        if runtime::effective_uid() != 0 {
            eprintln!("skipped: needs root for a private mount namespace");
            return None;
        }
        let probe = Command::new("unshare").args(["--mount", "true"]).status();
        if !probe.map(|s| s.success()).unwrap_or(false) || !Path::new("/usr/local/sbin").is_dir() {
            eprintln!("skipped: `unshare --mount` or /usr/local/sbin is not there");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let sbin = dir.path().join("sbin");
        std::fs::create_dir_all(sbin.as_path()).unwrap();
        std::fs::create_dir_all(dir.path().join("units")).unwrap();
        let fake = sbin.join("systemctl");
        std::fs::write(
            &fake,
            FAKE.replace("@STATE_DIR@", &dir.path().to_string_lossy()),
        )
        .unwrap();
        chmod_x(&fake);
        let wrapper = dir.path().join("run-module");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\n\
                 exec unshare --mount --propagation private sh -c '\
                 mount --bind \"$1\" /usr/local/sbin && exec \"$2\" \"$3\"' sh '{}' '{}' \"$1\"\n",
                sbin.display(),
                BIN
            ),
        )
        .unwrap();
        chmod_x(&wrapper);
        Some(Sandbox { dir, wrapper })
    }

    /// A unit the fake knows: its state file holds shell assignments.
    fn unit(&self, name: &str, file_state: &str, active: &str) {
        let sub = if active == "active" {
            "running"
        } else {
            "dead"
        };
        std::fs::write(
            self.dir.path().join("units").join(name),
            format!("LoadState=loaded\nActiveState={active}\nSubState={sub}\nUnitFileState={file_state}\nNeedDaemonReload=no\nResult=success\nExecMainStatus=0\n"),
        )
        .unwrap();
    }

    /// Adds shell assignments to a unit's state file (`ExecMainStartTimestamp='...'`).
    fn set(&self, name: &str, assignments: &str) {
        let path = self.dir.path().join("units").join(name);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(assignments);
        text.push('\n');
        std::fs::write(path, text).unwrap();
    }

    fn state(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("units").join(name)).unwrap()
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn run(&self, args: Json) -> Run {
        run_with_file(&self.wrapper, &args.to_string())
    }
}

fn chmod_x(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn grafana(restart: bool) -> Json {
    json!({"units": [{"name": "grafana-server", "enabled": true, "state": "started", "restart": restart}], "_ansible_diff": true})
}

#[test]
fn malformed_arguments_fail_clearly() {
    assert_rejects_malformed_arguments(BIN, "units");
}

#[test]
fn broken_arguments_fail_clearly() {
    assert_refused(&run(json!({})), &["missing required parameter 'units'"]);
    assert_refused(
        &run(json!({"units": "grafana-server"})),
        &["'units' must be of type list of dicts"],
    );
    assert_refused(
        &run(json!({"units": [{"name": "grafana-server", "state": "restarted"}]})),
        &["units[0] (grafana-server): value of parameter 'state' must be one of: started, stopped"],
    );
    assert_refused(
        &run(json!({"units": [{"name": "grafana-server", "enabled": "maybe"}]})),
        &["units[0] (grafana-server): parameter 'enabled' must be a boolean"],
    );
    assert_refused(
        &run(json!({"units": [{"name": "--now", "restart": true}]})),
        &["units[0]: name '--now'", "read it as an option"],
    );
    assert_refused(
        &run(json!({"units": [{"name": "a", "restart": true}], "timeout": 0})),
        &["'timeout' must be at least 1"],
    );
}

#[test]
fn first_and_second_deploy_against_a_fake_systemd() {
    let Some(sandbox) = Sandbox::new() else {
        return;
    };
    sandbox.unit("grafana-server.service", "disabled", "inactive");

    let check = sandbox.run(json!({"units": [{"name": "grafana-server", "enabled": true, "state": "started"}], "_ansible_check_mode": true}));
    assert_eq!(check.json["changed"], json!(true), "{}", check.json);
    assert_eq!(
        sandbox.calls().len(),
        1,
        "check mode only reads: {:?}",
        sandbox.calls()
    );
    assert!(sandbox
        .state("grafana-server.service")
        .contains("ActiveState=inactive"));

    let first = sandbox.run(grafana(true));
    assert_eq!(first.code, 0, "{}", first.json);
    assert_eq!(first.json["changed"], json!(true));
    assert_eq!(first.json["started"], json!(["grafana-server.service"]));
    assert_eq!(
        first.json["diff"]["after"],
        json!("grafana-server.service: enabled, active (running)\n")
    );
    assert!(sandbox
        .state("grafana-server.service")
        .contains("UnitFileState=enabled"));
    let calls = sandbox.calls();
    assert_eq!(
        calls[2..4],
        [
            "enable grafana-server.service",
            "start grafana-server.service"
        ]
    );

    let again = sandbox.run(grafana(false));
    assert_eq!(again.json["changed"], json!(false), "{}", again.json);
    assert_eq!(
        sandbox.calls().len(),
        calls.len() + 1,
        "a converged host costs one show"
    );

    let restart = sandbox.run(grafana(true));
    assert_eq!(
        restart.json["restarted"],
        json!(["grafana-server.service"]),
        "{}",
        restart.json
    );
}

#[test]
fn a_missing_unit_and_a_failing_start_fail_clearly() {
    let Some(sandbox) = Sandbox::new() else {
        return;
    };
    let gone = sandbox.run(json!({"units": [{"name": "nope", "state": "started"}]}));
    assert_refused(
        &gone,
        &["nope.service does not exist on this host (LoadState=not-found)"],
    );

    sandbox.unit("broken.service", "enabled", "inactive");
    std::fs::write(sandbox.dir.path().join("units/broken.service.fails"), "").unwrap();
    let broken = sandbox.run(json!({"units": [{"name": "broken", "state": "started"}]}));
    assert_eq!(broken.json["failed"], json!(true), "{}", broken.json);
    assert_eq!(broken.json["changed"], json!(true));
    let msg = broken.msg();
    assert!(
        msg.starts_with(
            "systemctl start broken.service failed (rc 1): Job for broken.service failed"
        ),
        "{msg}"
    );
    assert_eq!(
        broken.json["units"][0]["after"],
        json!("enabled, failed (failed)")
    );
    assert!(broken.stderr.is_empty(), "{}", broken.stderr);
}

#[test]
fn a_restart_lost_by_an_interrupted_run_happens_on_the_next_run() {
    let Some(sandbox) = Sandbox::new() else {
        return;
    };
    // Loki started a minute ago; then a run wrote its config (a new inode, ctime now) and was
    // killed before its restart. The next run knows nothing of that run.
    sandbox.unit("loki.service", "enabled", "active");
    let a_minute_ago = Command::new("date")
        .args(["-u", "-d", "-60 seconds", "+%a %Y-%m-%d %H:%M:%S.%6N UTC"])
        .output()
        .unwrap();
    let stamp = String::from_utf8(a_minute_ago.stdout).unwrap();
    sandbox.set(
        "loki.service",
        &format!("ExecMainStartTimestamp='{}'", stamp.trim()),
    );
    let config = sandbox.dir.path().join("config.yml");
    std::fs::write(&config, "auth_enabled: false\n").unwrap();
    let args = json!({"units": [{"name": "loki", "enabled": true, "state": "started",
        "restart_when_changed": [config.to_str().unwrap(), "/usr/bin/homeops-test-nonexistent"]}]});

    let check = sandbox.run(with_check(&args));
    assert_eq!(check.json["changed"], json!(true), "{}", check.json);
    assert_eq!(check.json["restarted"], json!(["loki.service"]));
    assert_eq!(sandbox.calls().len(), 1, "{:?}", sandbox.calls());

    let run = sandbox.run(args.clone());
    assert_eq!(run.code, 0, "{}", run.json);
    assert_eq!(
        run.json["restarted"],
        json!(["loki.service"]),
        "{}",
        run.json
    );
    let why = run.json["units"][0]["changed_since_start"].to_string();
    assert!(
        why.contains(&format!("{} changed at", config.display())),
        "{why}"
    );
    assert!(
        run.json["warnings"]
            .to_string()
            .contains("/usr/bin/homeops-test-nonexistent does not exist"),
        "{}",
        run.json
    );
    let calls = sandbox.calls();
    assert!(
        calls[1].starts_with("show -p ") && calls[1].contains(" --timestamp=us+utc loki.service"),
        "{calls:?}"
    );
    assert_eq!(calls[2], "restart loki.service");

    let again = sandbox.run(args);
    assert_eq!(again.json["changed"], json!(false), "{}", again.json);
}

#[test]
fn a_stale_unit_file_is_reloaded_and_a_oneshot_that_ran_is_left_alone() {
    let Some(sandbox) = Sandbox::new() else {
        return;
    };
    sandbox.unit("alloy.service", "enabled", "active");
    sandbox.set("alloy.service", "NeedDaemonReload=yes");
    sandbox.unit("setup.service", "enabled", "inactive");
    sandbox.set("setup.service", "Type=oneshot");
    let args = json!({"units": [
        {"name": "alloy", "state": "started"},
        {"name": "setup", "state": "started"},
    ]});
    let first = sandbox.run(args.clone());
    assert_eq!(first.code, 0, "{}", first.json);
    assert_eq!(first.json["daemon_reloaded"], json!(true), "{}", first.json);
    assert_eq!(first.json["started"], json!(["setup.service"]));
    assert_eq!(sandbox.calls()[1], "daemon-reload");
    for _ in 0..2 {
        let again = sandbox.run(args.clone());
        assert_eq!(again.json["changed"], json!(false), "{}", again.json);
    }
}

fn with_check(args: &Json) -> Json {
    let mut args = args.clone();
    args["_ansible_check_mode"] = json!(true);
    args
}

/// The cases of tests/faults/bad-input.json for this module (the fault suite runs them through
/// Ansible on a lab host): each fails, changing nothing, with a message naming the field.
#[test]
fn the_fault_suites_bad_input_cases_fail_naming_the_field() {
    for (args, needle) in [
        (
            r#"{}"#,
            "missing required parameter 'units'",
        ),
        (
            r#"{"units": [{"name": "grafana-server", "state": "restarted"}]}"#,
            "units[0] (grafana-server): value of parameter 'state' must be one of: started, stopped",
        ),
        (
            r#"{"units": [{"name": "--now", "state": "stopped"}]}"#,
            "read it as an option",
        ),
        (
            r#"{"units": [{"name": "loki; reboot", "state": "started"}]}"#,
            "name 'loki; reboot' is not a systemd unit name",
        ),
        (
            r#"{"units": [{"name": "loki", "enabled": "sometimes"}]}"#,
            "parameter 'enabled' must be a boolean",
        ),
        (
            r#"{"units": [{"name": "loki", "state": "started"}], "timeout": 0}"#,
            "'timeout' must be at least 1",
        ),
        (
            r#"{"units": [{"name": "loki", "state": "started"}, {"name": "loki.service", "state": "stopped"}]}"#,
            "loki.service is listed twice",
        ),
        (
            r#"{"units": [{"name": "loki"}], "force": true}"#,
            "Unsupported parameters for (units) module: force",
        ),
    ] {
        assert_refused(&run_with_file(BIN, args), &[needle]);
    }
}
