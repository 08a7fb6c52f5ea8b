//! The real binary. Every run that gets past argument checks is in check mode: nothing here
//! installs anything. This machine's kernel (a custom build) has no Debian headers package,
//! which is exactly the "missing" path.

use std::process::Command;

use runtime::testing::{
    assert_refused, assert_rejects_malformed_arguments, run_with_file, run_with_stdin, Run,
};
use serde_json::{json, Value as Json};

const BIN: &str = env!("CARGO_BIN_EXE_kernel_headers");

fn run(args: Json) -> Run {
    run_with_file(BIN, &args.to_string())
}

fn uname_r() -> String {
    let out = Command::new("uname").arg("-r").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// True when this machine's kernel has a headers package in the apt cache or installed.
fn headers_known(release: &str) -> bool {
    let out = Command::new("apt-cache")
        .args(["policy", &format!("linux-headers-{release}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.contains("Candidate:") && !text.contains("Candidate: (none)")
        || text.contains("Installed:") && !text.contains("Installed: (none)")
}

#[test]
fn malformed_arguments_fail_clearly() {
    assert_rejects_malformed_arguments(BIN, "kernel_headers");
}

#[test]
fn broken_arguments_fail_clearly() {
    assert_refused(
        &run(json!({"headers": "yes"})),
        &["Unsupported parameters for (kernel_headers) module: headers"],
    );
    assert_refused(
        &run(json!({"lock_timeout": [1]})),
        &["'lock_timeout' must be of type int"],
    );
    assert_refused(
        &run(json!({"on_missing": "ignore"})),
        &["'on_missing' must be one of: fail, warn"],
    );
    assert_refused(
        &run(json!({"lock_timeout": -5})),
        &["'lock_timeout' must be at least 0"],
    );
    assert_refused(
        &run(json!({"retries": -1})),
        &["'retries' must be at least 0"],
    );
}

#[test]
fn invalid_kernels_and_package_names_are_refused() {
    assert_refused(&run(json!({"package": "curl;rm"})), &["package: 'curl;rm'"]);
    assert_refused(
        &run(json!({"package": "-oFoo"})),
        &["would read it as an option"],
    );
    assert_refused(&run(json!({"kernel": "6.1 ; id"})), &["kernel: '6.1 ; id'"]);
    assert_refused(
        &run(json!({"kernel": "../../x"})),
        &["is not a kernel release"],
    );
}

#[test]
fn this_kernel_has_no_headers_package_and_warn_carries_on() {
    let release = uname_r();
    if headers_known(&release) {
        eprintln!("skipped: linux-headers-{release} is known to apt here");
        return;
    }
    let run = run(json!({"on_missing": "warn", "_ansible_check_mode": true}));
    assert_eq!(run.json["failed"], json!(false), "{}", run.json);
    assert_eq!(run.json["changed"], json!(false));
    assert_eq!(run.json["kernel"], json!(release));
    assert_eq!(
        run.json["package"],
        json!(format!("linux-headers-{release}"))
    );
    assert_eq!(run.json["version"], Json::Null);
    assert_eq!(
        run.json["build_dir"],
        json!(format!("/lib/modules/{release}/build"))
    );
    assert_eq!(run.json["attempts"], json!(0));
    let warning = run.json["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains(&format!("for the running kernel {release}")),
        "{warning}"
    );
    assert!(run.json["candidates"].as_array().unwrap().len() <= 5);
}

#[test]
fn this_kernel_has_no_headers_package_and_fail_says_so() {
    let release = uname_r();
    if headers_known(&release) {
        eprintln!("skipped: linux-headers-{release} is known to apt here");
        return;
    }
    let run = run_with_stdin(BIN, r#"{"_ansible_check_mode": true}"#);
    assert_eq!(run.json["failed"], json!(true), "{}", run.json);
    assert_eq!(run.json["changed"], json!(false));
    assert!(run.msg().contains(&format!(
        "no package 'linux-headers-{release}' for the running kernel {release}"
    )));
    assert!(run.msg().contains("on_missing: warn"));
}

#[test]
fn check_mode_for_a_kernel_debian_does_package_reports_the_install() {
    // Ask for an explicit kernel whose headers the cache knows (any linux-headers-<ver>-amd64).
    let out = Command::new("apt-cache")
        .args(["pkgnames", "linux-headers-"])
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some(pkg) = names
        .lines()
        .filter(|n| n.ends_with("-cloud-amd64") && !n.contains("+"))
        .min()
    else {
        eprintln!("skipped: no linux-headers-*-cloud-amd64 in the apt cache");
        return;
    };
    let release = pkg.trim_start_matches("linux-headers-");
    let run = run(json!({"kernel": release, "_ansible_check_mode": true, "_ansible_diff": true}));
    assert_eq!(run.json["failed"], json!(false), "{}", run.json);
    if run.json["version"].is_string() && !run.json["changed"].as_bool().unwrap() {
        return; // installed here after all
    }
    assert_eq!(run.json["changed"], json!(true), "{}", run.json);
    assert!(
        run.msg().starts_with(&format!("would install {pkg}")),
        "{}",
        run.msg()
    );
    assert!(run.json["diff"]["after"].as_str().unwrap().starts_with(pkg));
}

#[test]
fn without_root_it_fails_at_once_and_says_become() {
    runtime::testing::assert_needs_root(BIN, "kernel_headers", json!({}));
}
