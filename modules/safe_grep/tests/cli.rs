//! The real binary, run the way Ansible runs it, against files the tests make in temp dirs.
//! The central property: nothing from the searched file ever appears in what the module
//! prints (stdout or stderr), whether it succeeds or fails.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use runtime::testing::{
    assert_refused, assert_rejects_malformed_arguments, run_with_file, run_with_stdin, Run,
};
use serde_json::{json, Value as Json};

const BIN: &str = env!("CARGO_BIN_EXE_safe_grep");

/// Pieces of the secret file that must never be printed. The tests' patterns never contain
/// them (a pattern is echoed back in `invocation`: it is the task's input, not the file's).
const SECRET: &str = "s3cr3t-Zq7Wx9Lp";
const NEVER: &[&str] = &[
    "Zq7Wx9Lp",
    "s3cr3t",
    "admin-Kf2",
    "Kf2Hq",
    "basicAuthPassword: ",
];

const DATASOURCE: &str = "apiVersion: 1\n\
datasources:\n\
  - name: Loki\n\
    type: loki\n\
    access: proxy\n\
    url: http://127.0.0.1:3100\n\
    basicAuth: true\n\
    basicAuthUser: admin-Kf2Hq\n\
    secureJsonData:\n\
      basicAuthPassword: s3cr3t-Zq7Wx9Lp\n";

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn file(&self, name: &str, content: &[u8], mode: u32) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

fn run(args: Json) -> Run {
    let run = run_with_file(BIN, &args.to_string());
    assert_no_secret(&run);
    run
}

fn assert_no_secret(run: &Run) {
    for piece in NEVER {
        assert!(
            !run.stdout.contains(piece) && !run.stderr.contains(piece),
            "{piece:?} leaked: stdout={} stderr={}",
            run.stdout,
            run.stderr
        );
    }
    assert!(!run.stdout.contains(SECRET));
}

fn assert_passed(run: &Run) {
    assert_eq!(run.json["failed"], json!(false), "{}", run.json);
    assert_eq!(run.json["changed"], json!(false), "{}", run.json);
    assert_eq!(run.code, 0);
    assert!(run.stderr.is_empty(), "stderr: {}", run.stderr);
}

fn secret_file(d: &Dir) -> String {
    d.file("loki.yaml", DATASOURCE.as_bytes(), 0o640)
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn proves_a_line_is_present_with_counts_and_line_numbers_only() {
    let d = Dir::new();
    let path = secret_file(&d);
    let r = run(json!({
        "path": path,
        "pattern": r#"^\s*type:\s*["']?loki["']?\s*$"#,
        "state": "present",
        "min_count": 1,
        "mode": "0640",
        "owner": "root",
        "group": "0",
    }));
    assert_passed(&r);
    assert_eq!(r.json["matched"], json!(true));
    assert_eq!(r.json["count"], json!(1));
    assert_eq!(r.json["lines"], json!([4]));
    assert_eq!(r.json["lines_truncated"], json!(false));
    assert_eq!(r.json["mode"], json!("0640"));
    assert_eq!(r.json["owner"], json!("root"));
    assert_eq!(r.json["group"], json!("root"));
    assert_eq!(r.json["size"], json!(DATASOURCE.len()));
    assert_eq!(r.msg(), format!("1 line matching the pattern in {path}"));
    let keys: Vec<&String> = r.json.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "changed",
            "count",
            "failed",
            "gid",
            "group",
            "invocation",
            "lines",
            "lines_truncated",
            "matched",
            "mode",
            "msg",
            "owner",
            "path",
            "size",
            "uid"
        ]
    );
}

#[test]
fn matching_the_secret_line_itself_reveals_nothing() {
    let d = Dir::new();
    let path = secret_file(&d);
    // Captures, the whole line, a fixed string that is part of the line: only numbers come back.
    for args in [
        json!({"path": path, "pattern": r"basicAuthPassword:\s*(\S+)"}),
        json!({"path": path, "pattern": r"^.*$"}),
        json!({"path": path, "fixed": "basicAuthPassword"}),
        json!({"path": path, "pattern": r"(?P<pw>[a-z0-9]{6}-\w+)$", "_ansible_diff": true}),
        json!({"path": path, "pattern": ".", "_ansible_check_mode": true, "_ansible_verbosity": 4}),
    ] {
        let r = run(args);
        assert_passed(&r);
        assert!(r.json.get("diff").is_none());
    }
    let r = run(json!({"path": path, "fixed": "basicAuthPassword"}));
    assert_eq!(
        (r.json["count"].clone(), r.json["lines"].clone()),
        (json!(1), json!([10]))
    );
    let r = run_with_stdin(
        BIN,
        &json!({"path": path, "pattern": "Password"}).to_string(),
    );
    assert_no_secret(&r);
    assert_passed(&r);
}

#[test]
fn every_failure_about_the_file_quotes_nothing_from_it() {
    let d = Dir::new();
    let path = secret_file(&d);
    let cases: Vec<(Json, Vec<String>)> = vec![
        (
            json!({"path": path, "pattern": r"basicAuthPassword:\s*\S+", "state": "absent"}),
            vec![format!(
                "expected no line matching the pattern in {path}, found 1"
            )],
        ),
        (
            json!({"path": path, "pattern": "prometheus"}),
            vec![format!(
                "expected at least 1 line matching the pattern in {path}, found 0"
            )],
        ),
        (
            json!({"path": path, "pattern": r"basicAuth", "min_count": 5}),
            vec![format!(
                "expected at least 5 lines matching the pattern in {path}, found 3"
            )],
        ),
        (
            json!({"path": path, "pattern": r"basicAuth", "max_count": 1}),
            vec![format!(
                "expected at most 1 line matching the pattern in {path}, found 3"
            )],
        ),
        (
            json!({"path": path, "fixed": "basicAuthPassword", "mode": "0600"}),
            vec![format!("expected mode 0600 of {path}, found 0640")],
        ),
        (
            json!({"path": path, "fixed": "x", "owner": "nobody", "group": "nogroup"}),
            vec![
                format!("expected owner nobody of {path}, found root"),
                format!("expected group nogroup of {path}, found root"),
            ],
        ),
        (
            json!({"path": path, "fixed": "x", "owner": "no-such-user-homeops"}),
            vec!["no owner named no-such-user-homeops in /etc/passwd".into()],
        ),
    ];
    for (args, needles) in cases {
        let r = run(args);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_refused(&r, &needles);
        // The registered result still has the numbers for a later assert.
        assert!(
            r.json["count"].is_u64() && r.json["mode"] == json!("0640"),
            "{}",
            r.json
        );
    }
}

#[test]
fn files_that_are_not_plain_text_are_fine_and_still_secret() {
    let d = Dir::new();
    let mut content = b"\xff\xfe\x00binary\x00\n".to_vec();
    content.extend_from_slice(DATASOURCE.as_bytes());
    content.extend_from_slice(b"\xc3\x28 invalid utf8 then s3cr3t-Zq7Wx9Lp\r\n");
    let path = d.file("blob", &content, 0o600);
    let r = run(json!({"path": path, "pattern": r"(?-u:\xff\xfe)"}));
    assert_passed(&r);
    assert_eq!(r.json["lines"], json!([1]));
    let r = run(json!({"path": path, "pattern": "Zq7", "state": "absent"}));
    assert_refused(&r, &["expected no line matching the pattern", "found 2"]);
}

#[test]
fn an_overlong_line_fails_without_quoting_it() {
    let d = Dir::new();
    let mut content = b"short line\n".to_vec();
    let line = format!("{SECRET} ").repeat((17 * 1024 * 1024) / (SECRET.len() + 1));
    content.extend_from_slice(line.as_bytes());
    let path = d.file("huge-line", &content, 0o600);
    let r = run(json!({"path": path, "fixed": "short"}));
    assert_refused(&r, &["line 2 of", "longer than 16 MiB"]);
}

#[test]
fn a_large_file_is_streamed_in_bounded_memory() {
    let d = Dir::new();
    let path = d.dir.path().join("big.log");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for i in 0..1_200_000u32 {
            if i % 1000 == 0 {
                writeln!(f, "level=error msg=\"disk full\" secret={SECRET} n={i}").unwrap();
            } else {
                writeln!(
                    f,
                    "level=info msg=\"all good, nothing to see here\" n={i:08}"
                )
                .unwrap();
            }
        }
    }
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 60 * 1024 * 1024, "{size}");
    let args = json!({"path": path, "pattern": "level=error", "min_count": 1000});
    let r = run(args.clone());
    assert_passed(&r);
    assert_eq!(r.json["count"], json!(1200));
    assert_eq!(r.json["lines"].as_array().unwrap().len(), 1000);
    assert_eq!(r.json["lines_truncated"], json!(true));
    assert_eq!(r.json["lines"][1], json!(1001)); // i = 1000 is line 1001

    // Peak memory, if GNU time is there to measure it: far below the file's size.
    if Path::new("/usr/bin/time").exists() {
        let dir = tempfile::tempdir().unwrap();
        let args_file = dir.path().join("args");
        std::fs::write(&args_file, args.to_string()).unwrap();
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%M"])
            .arg(BIN)
            .arg(&args_file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let kib: u64 = stderr
            .trim()
            .lines()
            .last()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(kib < 32 * 1024, "peak RSS {kib} KiB for a {size}-byte file");
    }
}

#[test]
fn paths_that_are_not_readable_files_fail_clearly() {
    let d = Dir::new();
    let dir = d.dir.path().to_str().unwrap().to_string();
    assert_refused(
        &run(json!({"path": dir, "fixed": "x"})),
        &[&format!("{dir} is a directory; 'path' must name a file")],
    );
    let missing = format!("{dir}/nope.yaml");
    assert_refused(
        &run(json!({"path": missing, "fixed": "x"})),
        &[&format!("{missing} does not exist")],
    );
    assert_refused(
        &run(json!({"path": "/dev/null", "fixed": "x"})),
        &["/dev/null is not a regular file"],
    );
    // Unreadable: only testable when not root (root reads anything).
    let locked = d.file("locked", DATASOURCE.as_bytes(), 0o000);
    let r = run(json!({"path": locked, "fixed": "x"}));
    if r.json["failed"] == json!(true) {
        assert_refused(&r, &["permission denied", "become: true"]);
    }
}

#[test]
fn mode_is_read_as_octal_or_as_yamls_unquoted_number() {
    let d = Dir::new();
    let path = secret_file(&d);
    assert_passed(&run(json!({"path": path, "fixed": "type", "mode": "640"})));
    // `mode: 0640` unquoted in YAML is the number 416.
    assert_passed(&run(json!({"path": path, "fixed": "type", "mode": 416})));
    assert_refused(
        &run(json!({"path": path, "fixed": "type", "mode": "u=rw"})),
        &["'mode' must be an octal mode such as \"0640\""],
    );
}

#[test]
fn bad_parameters_fail_naming_the_field() {
    let d = Dir::new();
    let path = secret_file(&d);
    let cases: Vec<(Json, &[&str])> = vec![
        (json!({"path": path}), &["set one of 'pattern'", "'fixed'"]),
        (
            json!({"path": path, "pattern": "a", "fixed": "b"}),
            &["set only one of 'pattern'"],
        ),
        (
            json!({"path": path, "pattern": "(unclosed"}),
            &[
                "parameter 'pattern' is not a valid regular expression",
                "unclosed group",
            ],
        ),
        (
            json!({"path": path, "pattern": r"\w{5000}\w{5000}"}),
            &["'pattern' compiles to a program larger than"],
        ),
        (
            json!({"path": path, "fixed": "a\nb"}),
            &["'fixed' contains a line break"],
        ),
        (
            json!({"path": path, "fixed": "a", "state": "absent", "min_count": 1}),
            &["apply to state=present"],
        ),
        (
            json!({"path": path, "fixed": "a", "min_count": 3, "max_count": 2}),
            &["'min_count' (3) is larger than 'max_count' (2)"],
        ),
        (
            json!({"path": path, "fixed": "a", "max_count": -1}),
            &["'max_count' must be at least 0"],
        ),
        (
            json!({"path": path, "fixed": "a", "min_count": "many"}),
            &["'min_count'", "type int"],
        ),
        (
            json!({"path": path, "fixed": "a", "state": "maybe"}),
            &["'state'", "present, absent"],
        ),
        (
            json!({"path": path, "fixed": "a", "owner": ""}),
            &["'owner' is empty"],
        ),
        (json!({"path": "", "fixed": "a"}), &["'path' is empty"]),
        (
            json!({"fixed": "a"}),
            &["missing required parameter 'path'"],
        ),
        (
            json!({"path": path, "fixed": ["a"]}),
            &["'fixed'", "type str"],
        ),
        (
            json!({"path": path, "fixed": "a", "content": "x"}),
            &[
                "Unsupported parameters for (safe_grep) module: content",
                "fixed, group, max_count, min_count, mode, owner, path, pattern, state",
            ],
        ),
    ];
    for (args, needles) in cases {
        assert_refused(&run(args), needles);
    }
}

#[test]
fn broken_argument_files_fail_clearly() {
    assert_rejects_malformed_arguments(BIN, "safe_grep");
}

#[test]
fn any_user_may_read_a_file_it_can_read() {
    // safe_grep only reads: unlike the modules that change the system, it needs no root.
    let args = json!({"path": "/etc/passwd", "pattern": "^root:"}).to_string();
    let Some(run) = runtime::testing::run_as_nobody(BIN, &args) else {
        return;
    };
    assert_eq!(run.json["failed"], json!(false), "{}", run.json);
    assert_eq!(run.json["count"], json!(1), "{}", run.json);
}

#[test]
fn a_fifo_is_refused_at_once_without_waiting_for_a_writer() {
    let d = Dir::new();
    let fifo = d.dir.path().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let start = std::time::Instant::now();
    let refused = run(json!({"path": fifo, "pattern": "x"}));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}: opening a FIFO must not block",
        start.elapsed()
    );
    assert_refused(
        &refused,
        &[
            "is not a regular file but a pipe (FIFO)",
            "'path' must name a regular file",
        ],
    );
    // A character device too (reading /dev/zero would never end).
    assert_refused(
        &run_with_file(
            BIN,
            &json!({"path": "/dev/zero", "pattern": "x"}).to_string(),
        ),
        &["/dev/zero is not a regular file but a device"],
    );
}

#[test]
fn case_insensitive_patterns_work() {
    let d = Dir::new();
    let path = d.file(
        "conf",
        b"Type: LOKI\ntype: loki\nTYPE: Loki\nother\n",
        0o644,
    );
    let found = run(json!({"path": path, "pattern": "(?i)^type: loki$"}));
    assert_eq!(found.json["failed"], json!(false), "{}", found.json);
    assert_eq!(found.json["count"], json!(3), "{}", found.json);
    assert_eq!(found.json["lines"], json!([1, 2, 3]));
    // Non-ASCII letters fold too (the regex crate's Unicode case folding).
    let path = d.file("names", "ÄRGER\närger\n".as_bytes(), 0o644);
    let found = run(json!({"path": path, "pattern": "(?i)ärger"}));
    assert_eq!(found.json["count"], json!(2), "{}", found.json);
}
