//! The real binary, run the way Ansible runs it (args file) and the way our fast path does
//! (standard input), against this machine: its kernel, its dpkg database, its accounts, temp
//! dirs, and whatever systemd it has (none in a build container: then the clear failure).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use runtime::testing::{
    assert_refused, assert_rejects_malformed_arguments, run_as_nobody, run_with_file,
    run_with_stdin, Run,
};
use serde_json::{json, Value as Json};

const BIN: &str = env!("CARGO_BIN_EXE_host_facts");

fn run(args: Json) -> Run {
    let run = run_with_file(BIN, &args.to_string());
    assert!(run.stderr.is_empty(), "stderr: {}", run.stderr);
    run
}

fn ok(args: Json) -> Json {
    let run = run(args);
    assert_eq!(run.json["failed"], json!(false), "{}", run.json);
    assert_eq!(run.json["changed"], json!(false), "{}", run.json);
    assert_eq!(run.code, 0);
    run.json["ansible_facts"].clone()
}

fn sh(program: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(program).args(args).output().expect(program);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[test]
fn malformed_arguments_are_refused() {
    assert_rejects_malformed_arguments(BIN, "host_facts");
}

#[test]
fn kernel_and_architecture_are_unames() {
    let facts = ok(json!({"kernel": true, "architecture": true}));
    assert_eq!(facts["kernel"], json!(sh("uname", &["-r"]).1));
    assert_eq!(facts["architecture"], json!(sh("uname", &["-m"]).1));
    // The fast path's way in: the same answer from standard input.
    let run = run_with_stdin(
        BIN,
        &json!({"kernel": true, "_ansible_check_mode": true}).to_string(),
    );
    assert_eq!(run.json["ansible_facts"]["kernel"], facts["kernel"]);
}

/// Our reading of the dpkg database and our version ordering agree with dpkg's own tools on
/// this machine's real packages.
#[test]
fn packages_agree_with_dpkg_query_and_dpkg_compare_versions() {
    let names = ["dpkg", "coreutils", "libc6", "homeops-no-such-package"];
    let mut pins: Vec<(String, String)> = Vec::new();
    for name in names {
        let (rc, out) = sh(
            "dpkg-query",
            &[
                "--show",
                "--showformat=${db:Status-Status} ${Version}",
                name,
            ],
        );
        let facts = ok(json!({"packages": [name]}));
        let got = &facts["homeops_packages"][name];
        if rc == 0 {
            let (status, version) = out.split_once(' ').unwrap_or((&out, ""));
            assert_eq!(got["status"], json!(status), "{name}: {got}");
            assert_eq!(got["version"], json!(version), "{name}: {got}");
            assert_eq!(got["installed"], json!(status == "installed"));
            if status == "installed" {
                for pin in [
                    version.to_string(),
                    format!("{version}~rc1"),
                    format!("{version}+b1"),
                    "0.1".to_string(),
                    "99:1".to_string(),
                    "1.0-1".to_string(),
                ] {
                    pins.push((name.to_string(), pin));
                }
            }
        } else {
            assert_eq!(got["installed"], json!(false), "{name}: {got}");
            assert_eq!(got["version"], json!(null));
        }
    }
    assert!(
        !pins.is_empty(),
        "dpkg itself is installed on a Debian build host"
    );
    for (name, pin) in pins {
        let facts = ok(json!({"packages": [format!("{name}={pin}")]}));
        let got = &facts["homeops_packages"][name.as_str()];
        let installed = got["version"].as_str().unwrap();
        let (rc, _) = sh("dpkg", &["--compare-versions", installed, "gt", &pin]);
        assert_eq!(
            got["newer_than_pin"],
            json!(rc == 0),
            "{installed} gt {pin}: {got}"
        );
        let (rc_eq, _) = sh("dpkg", &["--compare-versions", installed, "eq", &pin]);
        let want = if rc == 0 {
            1
        } else if rc_eq == 0 {
            0
        } else {
            -1
        };
        assert_eq!(got["compare"], json!(want), "{installed} vs {pin}: {got}");
    }
}

#[test]
fn a_pin_dpkg_would_refuse_is_refused() {
    let run = run(json!({"packages": ["dpkg=latest"]}));
    assert_refused(
        &run,
        &["packages[0]", "pin of dpkg", "does not start with digit"],
    );
    let (rc, _) = sh("dpkg", &["--compare-versions", "1.0", "gt", "latest"]);
    assert_ne!(rc, 0, "dpkg does not take 'latest' as a version either");
}

#[test]
fn users_and_groups_agree_with_getent() {
    let facts = ok(json!({"users": ["root", "homeops-no-such-user"], "groups": ["root"]}));
    let (_, passwd) = sh("getent", &["passwd", "root"]);
    let f: Vec<&str> = passwd.split(':').collect();
    let root = &facts["homeops_users"]["root"];
    assert_eq!(root["uid"], json!(f[2].parse::<u32>().unwrap()));
    assert_eq!(root["gid"], json!(f[3].parse::<u32>().unwrap()));
    assert_eq!(
        (root["home"].as_str(), root["shell"].as_str()),
        (Some(f[5]), Some(f[6]))
    );
    assert_eq!(
        facts["homeops_users"]["homeops-no-such-user"],
        json!({"exists": false})
    );
    assert_eq!(facts["homeops_groups"]["root"]["gid"], json!(0));
    assert!(!facts.to_string().contains("$6$"), "never a password hash");
}

#[test]
fn paths_are_stated_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).unwrap();
    let secret = data.join("secret.yaml");
    std::fs::write(&secret, "password: hunter2-Xq9\n").unwrap();
    let link = dir.path().join("build");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    let (d, s, l) = (
        data.to_str().unwrap(),
        secret.to_str().unwrap(),
        link.to_str().unwrap(),
    );
    let run = run(json!({"paths": [d, s, l, "/homeops/no/such/path"]}));
    assert!(
        !run.stdout.contains("hunter2"),
        "content never read: {}",
        run.stdout
    );
    let p = &run.json["ansible_facts"]["homeops_paths"];
    assert_eq!(
        (p[d]["isdir"].clone(), p[d]["mode"].clone()),
        (json!(true), json!("0750"))
    );
    assert_eq!(
        (p[s]["isreg"].clone(), p[s]["size"].clone()),
        (json!(true), json!(22))
    );
    assert_eq!(p[l]["islnk"], json!(true));
    assert_eq!(p["/homeops/no/such/path"]["exists"], json!(false));
    // follow: the verify's D2 (the headers' build link resolves to a directory).
    let facts = ok(json!({"paths": [l], "follow": true}));
    assert_eq!(facts["homeops_paths"][l]["isdir"], json!(true));
}

#[test]
fn a_path_this_user_may_not_look_into_is_an_error_saying_become() {
    let dir = tempfile::tempdir().unwrap();
    let closed = dir.path().join("closed");
    std::fs::create_dir(&closed).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    let inside = closed.join("x");
    let args = json!({"paths": [inside.to_str().unwrap()]}).to_string();
    let Some(run) = run_as_nobody(BIN, &args) else {
        return;
    };
    assert_refused(&run, &["paths[0]", "Permission denied", "become: true"]);
}

#[test]
fn units_are_read_with_one_systemctl_call_or_fail_clearly_without_systemd() {
    let run = run(json!({"units": ["homeops-no-such.service", "ssh.service"]}));
    if std::path::Path::new("/run/systemd/system").is_dir() {
        assert_eq!(run.json["failed"], json!(false), "{}", run.json);
        let u = &run.json["ansible_facts"]["homeops_units"];
        assert_eq!(u["homeops-no-such.service"]["state"], json!("not-found"));
        assert!(u["ssh.service"]["state"].is_string());
    } else {
        // A build container: no systemd as PID 1.
        assert_refused(
            &run,
            &[
                "units: systemd is not running on this host",
                "/run/systemd/system",
            ],
        );
    }
}

#[test]
fn bad_fields_fail_without_a_panic() {
    for (args, needle) in [
        (json!({}), "nothing to read"),
        (json!({"units": ["loki"]}), "units[0]"),
        (json!({"paths": ["relative"]}), "paths[0]"),
        (json!({"packages": ["loki=3.5 .7"]}), "packages[0]"),
        (json!({"users": ["a\nb"]}), "users[0]"),
        (json!({"paths": [1, 2]}), "paths[0]"),
        (
            json!({"follow": "yes", "kernel": true}),
            "follow applies to paths",
        ),
    ] {
        assert_refused(&run(args), &[needle]);
    }
}

/// The cases of tests/faults/bad-input.json for this module (the fault suite runs them through
/// Ansible on a lab host): each fails, changing nothing, with a message naming the field.
#[test]
fn the_fault_suites_bad_input_cases_fail_naming_the_field() {
    for (args, needle) in [
        (
            r#"{"packages": ["loki=latest"]}"#,
            "packages[0]: the pin of loki is not a Debian version",
        ),
        (
            r#"{"packages": ["loki;id"]}"#,
            "packages[0]: 'loki;id' is not a package",
        ),
        (
            r#"{"paths": ["etc/loki"]}"#,
            "paths[0]: 'etc/loki' is not a path to look at",
        ),
        (
            r#"{"units": ["loki; reboot"]}"#,
            "units[0]: 'loki; reboot' is not a unit name",
        ),
        (
            r#"{"packages": ["loki"], "admindir": "var/lib/dpkg"}"#,
            "admindir: 'var/lib/dpkg' is not an absolute path",
        ),
        (r#"{"kernel": "sometimes"}"#, "'kernel' must be a boolean"),
        (
            r#"{"facts": ["all"]}"#,
            "Unsupported parameters for (host_facts) module: facts",
        ),
    ] {
        assert_refused(&run_with_file(BIN, args), &[needle]);
    }
}
