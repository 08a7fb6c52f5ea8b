//! Helpers for process-level tests: run a built module binary the way Ansible does (an args
//! file in argv[1]) or the way our fast path does (`-` and the JSON on standard input), and
//! read its one JSON answer. Only tests use this; the linker drops it from the modules.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value as Json;

/// What a module run printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub json: Json,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Writes `args` (any text: tests also send broken JSON) to a file and runs `binary FILE`.
pub fn run_with_file(binary: &Path, args: &str) -> Run {
    let dir =
        std::env::temp_dir().join(format!("homeops-test-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("args");
    std::fs::write(&path, args).expect("write args");
    let output = Command::new(binary)
        .arg(&path)
        .output()
        .expect("run module binary");
    let _ = std::fs::remove_dir_all(&dir);
    finish(output)
}

/// Runs `binary -` with `args` on standard input.
pub fn run_with_stdin(binary: &Path, args: &str) -> Run {
    let mut child = Command::new(binary)
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
