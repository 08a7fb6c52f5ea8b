//! The real binary against a tiny HTTP server on 127.0.0.1 run by the test itself: scripted
//! answers, one per connection, and the requests it received.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;

use runtime::testing::{
    assert_refused, assert_rejects_malformed_arguments, run_with_file, run_with_stdin, Run,
};
use serde_json::{json, Value as Json};

const BIN: &str = env!("CARGO_BIN_EXE_http_ready");
const PASSWORD: &str = "pw-Secret-4711";

fn run(args: Json) -> Run {
    run_with_file(BIN, &args.to_string())
}

/// Serves `answers` in order, one per connection (the last one again when they run out), and
/// keeps each request's text.
struct Server {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(answers: &[&str]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let answers: Vec<String> = answers.iter().map(|s| s.to_string()).collect();
        thread::spawn(move || {
            for (i, conn) in listener.incoming().enumerate() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).into_owned());
                let answer = &answers[i.min(answers.len() - 1)];
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        Server { url, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

const NOT_YET: &str = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\nnot ready";
const HEALTHY_CHUNKED: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"database\": \"ok\r\n1E\r\n\", \"commit\": \"private-abc123\"}\r\n0\r\n\r\n";
const DB_FAILING: &str = "HTTP/1.1 200 OK\r\nContent-Length: 51\r\n\r\n{\"database\": \"failing\", \"commit\": \"private-abc123\"}";

#[test]
fn malformed_arguments_fail_clearly() {
    assert_rejects_malformed_arguments(BIN, "http_ready");
}

#[test]
fn broken_arguments_fail_clearly() {
    assert_refused(&run(json!({})), &["missing required parameter 'url'"]);
    assert_refused(
        &run(json!({"url": "https://127.0.0.1/"})),
        &[
            "https is not supported",
            "use ansible.builtin.uri for https",
        ],
    );
    assert_refused(
        &run(json!({"url": "http://127.0.0.1/", "status_code": [200, 999]})),
        &["status_code: '999' is not an HTTP status"],
    );
    assert_refused(
        &run(json!({"url": "http://127.0.0.1/", "json": "database=ok"})),
        &["'json' must be of type dict"],
    );
    assert_refused(
        &run(json!({"url": "http://127.0.0.1/", "body_regex": "("})),
        &["body_regex is not a valid regular expression"],
    );
    assert_refused(
        &run(json!({"url": "http://127.0.0.1/", "url_password": PASSWORD})),
        &["url_password is set without url_username"],
    );
    assert_refused(
        &run(json!({"url": "http://127.0.0.1/", "interval": 0})),
        &["'interval' must be at least 1"],
    );
    let injected = run(
        json!({"url": "http://127.0.0.1/", "headers": {"X-Token": format!("{PASSWORD}\r\nEvil: 1")}}),
    );
    assert_refused(&injected, &["the value of 'X-Token' contains a line break"]);
    assert!(!injected.stdout.contains(PASSWORD), "{}", injected.stdout);
}

#[test]
fn waits_through_503_until_the_json_field_is_ok() {
    let server = Server::start(&[NOT_YET, HEALTHY_CHUNKED]);
    let args = json!({
        "url": format!("{}/api/health", server.url),
        "json": {"database": "ok"},
        "body_regex": "database",
        "timeout": 20,
        "url_username": "admin",
        "url_password": PASSWORD,
        "_ansible_check_mode": true,
    });
    // Standard input, as the fast path sends it.
    let run = run_with_stdin(BIN, &args.to_string());
    assert_eq!(run.code, 0, "{}", run.json);
    assert_eq!(run.json["changed"], json!(false));
    assert_eq!(run.json["status"], json!(200));
    assert_eq!(run.json["attempts"], json!(2));
    assert_eq!(run.json["json"], json!({"database": "ok"}));
    assert_eq!(run.json["body_regex_matched"], json!(true));
    assert!(
        run.json["elapsed"].as_f64().unwrap() >= 1.0,
        "one interval waited: {}",
        run.json
    );
    assert!(
        !run.stdout.contains("private-abc123"),
        "the body stays private: {}",
        run.stdout
    );
    assert!(!run.stdout.contains(PASSWORD), "{}", run.stdout);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let host = server.url.trim_start_matches("http://");
    assert!(
        requests[1].starts_with(&format!("GET /api/health HTTP/1.1\r\nHost: {host}\r\n")),
        "{}",
        requests[1]
    );
    // admin:pw-Secret-4711
    assert!(
        requests[1].contains("Authorization: Basic YWRtaW46cHctU2VjcmV0LTQ3MTE=\r\n"),
        "{}",
        requests[1]
    );
    assert!(requests[1].contains("Connection: close\r\n"));
}

#[test]
fn a_timeout_fails_with_the_last_status_and_the_checked_values_only() {
    let server = Server::start(&[DB_FAILING]);
    let start = std::time::Instant::now();
    let run = run(json!({
        "url": server.url,
        "json": {"database": "ok"},
        "timeout": 2,
        "headers": {"X-Api-Key": PASSWORD},
    }));
    assert_eq!(run.json["failed"], json!(true), "{}", run.json);
    assert_eq!(run.json["changed"], json!(false));
    assert!(
        start.elapsed().as_secs_f64() < 6.0,
        "took {:?}",
        start.elapsed()
    );
    assert!(
        run.msg().contains(r#"is not ready after"#)
            && run
                .msg()
                .ends_with(r#"last: the JSON field 'database' is "failing" (expected "ok")"#),
        "{}",
        run.msg()
    );
    assert_eq!(run.json["json"], json!({"database": "failing"}));
    assert_eq!(run.json["status"], json!(200));
    assert!(run.json["attempts"].as_u64().unwrap() >= 2, "{}", run.json);
    assert!(!run.stdout.contains("private-abc123"), "{}", run.stdout);
    assert!(!run.stdout.contains(PASSWORD), "{}", run.stdout);
    assert!(server.requests()[0].contains(&format!("X-Api-Key: {PASSWORD}\r\n")));
}

#[test]
fn nobody_listening_is_a_clear_failure() {
    // A port that was free a moment ago: bind, note it, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = run(json!({"url": format!("http://127.0.0.1:{port}/ready"), "timeout": 0}));
    assert_eq!(run.json["failed"], json!(true), "{}", run.json);
    assert_eq!(run.json["attempts"], json!(1));
    assert_eq!(run.json["status"], json!(null));
    assert!(
        run.msg().ends_with(&format!(
            "last: cannot connect to 127.0.0.1:{port}: connection refused"
        )),
        "{}",
        run.msg()
    );
}

#[test]
fn a_server_trickling_bytes_cannot_stretch_the_wait_past_timeout_and_one_interval() {
    // Accepts every connection and sends one byte of a never-ending header a second: each
    // read succeeds within request_timeout, so only a deadline for the whole wait stops it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ready", listener.local_addr().unwrap());
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                let mut req = [0u8; 4096];
                let _ = conn.read(&mut req);
                let mut bytes = b"HTTP/1.1 200 OK\r\nX-Slow: ".to_vec();
                bytes.extend([b'a'; 120]);
                for b in bytes {
                    if conn.write_all(&[b]).is_err() {
                        return;
                    }
                    thread::sleep(std::time::Duration::from_secs(1));
                }
            });
        }
    });
    let start = std::time::Instant::now();
    let run = run(json!({"url": url, "timeout": 3, "interval": 1, "request_timeout": 5}));
    let took = start.elapsed().as_secs_f64();
    assert_eq!(run.json["failed"], json!(true), "{}", run.json);
    assert!(
        took < 3.0 + 1.0 + 0.5,
        "timeout 3 + interval 1, but it took {took:.1} s"
    );
    assert!(
        run.msg().contains("timeout 3 s") && run.msg().contains("reading the answer failed"),
        "{}",
        run.msg()
    );
}

#[test]
fn a_huge_timeout_is_refused_naming_the_field_never_an_overflow() {
    let run = run(json!({"url": "http://127.0.0.1:3100/ready", "timeout": 9223372036854775807i64}));
    assert_refused(
        &run,
        &["timeout: 9223372036854775807 s is more than the allowed maximum of 86400 s"],
    );
    assert!(!run.msg().contains("internal error"), "{}", run.msg());
}

#[test]
fn a_plain_header_is_sent_and_shown_only_credentials_are_masked() {
    let server = Server::start(&[NOT_YET]);
    let run = run(json!({
        "url": format!("{}/ready", server.url),
        "timeout": 0,
        "headers": {"X-Scope-OrgID": "1", "Authorization": format!("Bearer {PASSWORD}")},
    }));
    assert_eq!(run.json["failed"], json!(true), "{}", run.json);
    // The URL (its port and address hold "1"s) and the message come back as they are.
    assert_eq!(run.json["url"], json!(format!("{}/ready", server.url)));
    assert!(
        run.msg()
            .starts_with(&format!("{}/ready is not ready after", server.url)),
        "{}",
        run.msg()
    );
    assert!(!run.stdout.contains("********"), "{}", run.stdout);
    assert_eq!(
        run.json["invocation"]["module_args"]["headers"],
        json!({"X-Scope-OrgID": "1", "Authorization": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"})
    );
    assert!(!run.stdout.contains(PASSWORD), "{}", run.stdout);
    let sent = &server.requests()[0];
    assert!(sent.contains("X-Scope-OrgID: 1\r\n"), "{sent}");
    assert!(
        sent.contains(&format!("Authorization: Bearer {PASSWORD}\r\n")),
        "{sent}"
    );
}

/// The cases of tests/faults/bad-input.json for this module (the fault suite runs them through
/// Ansible on a lab host): each fails, changing nothing, with a message naming the field.
#[test]
fn the_fault_suites_bad_input_cases_fail_naming_the_field() {
    for (args, needle) in [
        (r#"{}"#, "missing required parameter 'url'"),
        (
            r#"{"url": "https://127.0.0.1:3100/ready"}"#,
            "https is not supported",
        ),
        (
            r#"{"url": "http:///ready"}"#,
            "url 'http:///ready' has no valid host",
        ),
        (
            r#"{"url": "http://127.0.0.1:3100/ready", "status_code": ["999"]}"#,
            "status_code: '999' is not an HTTP status",
        ),
        (
            r#"{"url": "http://127.0.0.1:3100/ready", "body_regex": "(ready"}"#,
            "body_regex is not a valid regular expression",
        ),
        (
            r#"{"url": "http://127.0.0.1:3100/ready", "url_password": "x"}"#,
            "url_password is set without url_username",
        ),
        (
            r#"{"url": "http://127.0.0.1:3100/ready", "headers": {"X-Token": "a\r\nHost: evil"}}"#,
            "the value of 'X-Token' contains a line break",
        ),
        (
            r#"{"url": "http://127.0.0.1:3100/ready", "interval": 0}"#,
            "'interval' must be at least 1",
        ),
        (
            r#"{"url": "http://127.0.0.1:3100/ready", "json": "ready"}"#,
            "'json' must be of type dict",
        ),
        (
            r#"{"url": "http://127.0.0.1:3100/ready", "validate_certs": false}"#,
            "Unsupported parameters for (http_ready) module: validate_certs",
        ),
    ] {
        assert_refused(&run_with_file(BIN, args), &[needle]);
    }
}
