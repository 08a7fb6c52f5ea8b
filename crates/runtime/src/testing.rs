//! Helpers for process-level tests: run a built module binary the way Ansible does (an args
//! file in argv[1]) or the way our fast path does (`-` and the JSON on standard input), and
//! read its one JSON answer, and check the refusals every module shares. Only tests use this;
//! the linker drops it from the modules.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value as Json};

use crate::{Failure, Outcome, Param};

/// What a module run printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub json: Json,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The answer's `msg`, or `""` when it has none.
    pub fn msg(&self) -> &str {
        self.json["msg"].as_str().unwrap_or_default()
    }
}

/// Writes `args` (any text: tests also send broken JSON) to a file and runs `binary FILE`.
pub fn run_with_file(binary: impl AsRef<Path>, args: &str) -> Run {
    let dir =
        std::env::temp_dir().join(format!("homeops-test-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("args");
    std::fs::write(&path, args).expect("write args");
    let run = run_with_path(binary, &path);
    let _ = std::fs::remove_dir_all(&dir);
    run
}

/// Runs `binary PATH` as it is, writing nothing: for args files that are missing or odd.
pub fn run_with_path(binary: impl AsRef<Path>, path: impl AsRef<Path>) -> Run {
    let output = Command::new(binary.as_ref())
        .arg(path.as_ref())
        .output()
        .expect("run module binary");
    finish(output)
}

/// Runs `binary -` with `args` on standard input.
pub fn run_with_stdin(binary: impl AsRef<Path>, args: &str) -> Run {
    let mut child = Command::new(binary.as_ref())
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run module binary");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(args.as_bytes())
        .expect("write stdin");
    finish(child.wait_with_output().expect("wait for module"))
}

/// Runs `binary -` with `args` on standard input as the user nobody (uid and gid 65534, no
/// supplementary groups), through util-linux's setpriv. `None`, after saying why, when this
/// test process cannot switch users (not root, or no setpriv).
pub fn run_as_nobody(binary: impl AsRef<Path>, args: &str) -> Option<Run> {
    if crate::effective_uid() != 0 {
        eprintln!("skipped: running a module as nobody needs root");
        return None;
    }
    let spawned = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(binary.as_ref())
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = spawned else {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return None;
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(args.as_bytes())
        .expect("write stdin");
    Some(finish(child.wait_with_output().expect("wait for module")))
}

/// Asserts that `binary`, run as nobody with `args` (valid, not check mode), fails at once
/// saying it needs root and how to get it, and that the same args in check mode get past
/// that check.
pub fn assert_needs_root(binary: impl AsRef<Path>, module: &str, args: Json) {
    let start = std::time::Instant::now();
    let Some(run) = run_as_nobody(binary.as_ref(), &args.to_string()) else {
        return;
    };
    assert_refused(
        &run,
        &[
            &format!("{module} must run as root"),
            "runs as uid 65534",
            "become: true",
        ],
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}: a non-root run must fail at once",
        start.elapsed()
    );
    let mut check = args;
    check["_ansible_check_mode"] = json!(true);
    let run = run_as_nobody(binary.as_ref(), &check.to_string()).expect("ran once already");
    assert!(
        !run.msg().contains("must run as root"),
        "check mode only reads: {}",
        run.json
    );
}

/// Asserts that a run was refused cleanly: `failed: true`, `changed: false`, exit code 1,
/// nothing on standard error, and every one of `needles` in `msg`.
pub fn assert_refused(run: &Run, needles: &[&str]) {
    assert_eq!(run.json["failed"], json!(true), "{}", run.json);
    assert_eq!(run.json["changed"], json!(false), "{}", run.json);
    assert_eq!(run.code, 1, "{}", run.json);
    assert!(run.stderr.is_empty(), "stderr: {}", run.stderr);
    for needle in needles {
        assert!(
            run.msg().contains(needle),
            "{needle:?} not in {:?}",
            run.msg()
        );
    }
}

/// Asserts that `binary` (the module called `module` in its messages) refuses, cleanly and
/// saying why, every way the arguments can be malformed before its own spec is consulted: no
/// argument at all, a missing args file, text that is not JSON, JSON that is not an object,
/// and a parameter the module does not have. Every module shares this through the runtime;
/// each crate's tests still check the bad inputs peculiar to its own parameters.
pub fn assert_rejects_malformed_arguments(binary: impl AsRef<Path>, module: &str) {
    let binary = binary.as_ref();

    let output = Command::new(binary).output().expect("run module binary");
    assert_refused(&finish(output), &["no arguments"]);

    let missing = "/nonexistent/homeops/args";
    assert_refused(
        &run_with_path(binary, missing),
        &[&format!(
            "cannot read the module arguments file '{missing}'"
        )],
    );

    for text in ["{not json", "state=locked", "not json", "{name: curl"] {
        assert_refused(&run_with_file(binary, text), &["not valid JSON"]);
    }

    for (text, kind) in [
        ("null", "null"),
        ("42", "a number"),
        ("\"path\"", "a string"),
        ("[1]", "a list"),
        ("[1, 2]", "a list"),
        ("[\"curl\"]", "a list"),
    ] {
        assert_refused(
            &run_with_file(binary, text),
            &[&format!("must be a JSON object, got {kind}")],
        );
    }

    assert_refused(
        &run_with_file(binary, r#"{"homeops_no_such_parameter": 1}"#),
        &[&format!(
            "Unsupported parameters for ({module}) module: homeops_no_such_parameter"
        )],
    );
}

/// What a module's body answers, rendered as `runtime::run` renders it for a run with
/// `--diff` (and `--check` when `check_mode`): `Ok(json)` for a success, `Err(json)` for a
/// failure. The body gets the Context that run would build. For unit tests that call a
/// module's body with a fake host.
pub fn answer_with_diff(
    module: &'static str,
    spec: &[Param],
    check_mode: bool,
    body: impl FnOnce(&crate::Context) -> Result<Outcome, Failure>,
) -> Result<Json, Json> {
    let args = serde_json::json!({"_ansible_diff": true, "_ansible_check_mode": check_mode});
    let (json, code) = crate::answer(
        module,
        spec,
        Some("-"),
        &mut std::io::Cursor::new(args.to_string().into_bytes()),
        |_, ctx| body(ctx),
    );
    if code == 0 {
        Ok(json)
    } else {
        Err(json)
    }
}

fn finish(output: std::process::Output) -> Run {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "a module prints exactly one JSON line; got stdout={stdout:?} stderr={stderr:?}"
    );
    let json: Json = serde_json::from_str(lines[0])
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"));
    Run {
        json,
        code: output.status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The fixed-seed generator of our fuzz tests: xorshift64*, tiny and deterministic, good
/// enough to explore input shapes. A failing case replays from its seed and iteration.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Cases per fuzz property: `FUZZ_ITERS`, or the test's bounded default.
pub fn fuzz_iterations(default: u64) -> u64 {
    std::env::var("FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The fuzz seed: `FUZZ_SEED`, or the test's fixed default.
pub fn fuzz_seed(default: u64) -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
