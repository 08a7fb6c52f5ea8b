//! `http_ready`: wait until an HTTP endpoint is ready: it answers with an expected status,
//! the JSON fields the task names hold the expected values, and the body matches a pattern.
//!
//! It replaces `ansible.builtin.uri` with `until`/`retries`/`delay` in readiness waits: the
//! whole wait is one module run on the host (no Python, no round trip per attempt). Read-only:
//! `changed` is always false and it runs in check mode. Plain http only (no TLS here). The
//! answer never carries the body: only the status, the values of the checked JSON fields, and
//! whether the pattern matched.

mod checks;
mod http;
mod url;

use std::time::{Duration, Instant};

use regex::Regex;
use runtime::{Default, Failure, Outcome, Param, Params};
use serde_json::{json, Map, Value as Json};

const NAME: &str = "http_ready";

const SPEC: &[Param] = &[
    Param::str("url").required(),
    Param::list("status_code").default(Default::List(&["200"])),
    Param::dict("json"),
    Param::str("body_regex"),
    Param::int("timeout").default(Default::Int(60)).min(0),
    Param::int("interval").default(Default::Int(1)).min(1),
    Param::int("request_timeout")
        .default(Default::Int(5))
        .min(1),
    Param::dict("headers").no_log(),
    Param::str("url_username"),
    Param::str("url_password").no_log(),
];

fn main() {
    runtime::run(NAME, SPEC, |params, _ctx| {
        let probe = Probe::from_params(params)?;
        probe.wait(&mut std::thread::sleep)
    })
}

struct Probe {
    url: url::Url,
    url_text: String,
    statuses: Vec<u16>,
    json: Option<Map<String, Json>>,
    body_regex: Option<Regex>,
    timeout: Duration,
    interval: Duration,
    request_timeout: Duration,
    headers: Vec<(String, String)>,
}

/// One attempt, judged.
#[derive(Debug, Default)]
struct Attempt {
    status: Option<u16>,
    fields: Map<String, Json>,
    regex_matched: Option<bool>,
    /// Why it is not ready; `None` when it is.
    not_ready: Option<String>,
}

impl Probe {
    fn from_params(params: &Params) -> Result<Probe, Failure> {
        let url_text = params.str("url").unwrap_or_default().to_string();
        let url = url::parse(&url_text)?;
        let mut statuses = Vec::new();
        for code in params.list("status_code") {
            match code.trim().parse::<u16>() {
                Ok(n) if (100..=599).contains(&n) => statuses.push(n),
                _ => {
                    return Err(Failure::new(format!(
                    "status_code: '{code}' is not an HTTP status (100-599); write e.g. [200, 204]"
                )))
                }
            }
        }
        if statuses.is_empty() {
            return Err(Failure::new(
                "status_code is empty: list the statuses that mean ready, e.g. [200]",
            ));
        }
        let body_regex = match params.str("body_regex") {
            None => None,
            Some(pattern) => Some(
                regex::RegexBuilder::new(pattern)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("body_regex is not a valid regular expression: {e}"))?,
            ),
        };
        let mut headers = Vec::new();
        for (name, value) in params.dict("headers").into_iter().flatten() {
            let value = match value {
                Json::String(s) => s.clone(),
                Json::Number(n) => n.to_string(),
                Json::Bool(b) => b.to_string(),
                _ => {
                    return Err(Failure::new(format!(
                        "headers: the value of '{name}' must be a string"
                    )))
                }
            };
            http::check_header(name, &value)?;
            headers.push((name.clone(), value));
        }
        let user = params.str("url_username");
        let password = params.str("url_password");
        match (user, password) {
            (None, Some(_)) => {
                return Err(Failure::new(
                    "url_password is set without url_username; set both",
                ))
            }
            (Some(user), password) => {
                if user.contains(':') {
                    return Err(Failure::new(
                        "url_username must not contain ':' (Basic authentication separates user and password with it)",
                    ));
                }
                if headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                {
                    return Err(Failure::new(
                        "set either url_username/url_password or an Authorization header, not both",
                    ));
                }
                let token = http::base64(format!("{user}:{}", password.unwrap_or("")).as_bytes());
                headers.push(("Authorization".into(), format!("Basic {token}")));
            }
            (None, None) => {}
        }
        Ok(Probe {
            url,
            url_text,
            statuses,
            json: params.dict("json").filter(|m| !m.is_empty()).cloned(),
            body_regex,
            timeout: params.secs("timeout"),
            interval: params.secs("interval"),
            request_timeout: params.secs("request_timeout"),
            headers,
        })
    }

    fn expected_statuses(&self) -> String {
        self.statuses
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// Judges one answer (or the error instead of one).
    fn judge(&self, answer: Result<http::Response, String>) -> Attempt {
        let response = match answer {
            Ok(r) => r,
            Err(e) => {
                return Attempt {
                    not_ready: Some(e),
                    ..Attempt::default()
                }
            }
        };
        let mut attempt = Attempt {
            status: Some(response.status),
            ..Attempt::default()
        };
        let mut why = Vec::new();
        if !self.statuses.contains(&response.status) {
            why.push(format!(
                "status {} (expected {})",
                response.status,
                self.expected_statuses()
            ));
        }
        if let Some(expected) = &self.json {
            match checks::check_json(&response.body, expected) {
                Ok((fields, mismatch)) => {
                    attempt.fields = fields;
                    why.extend(mismatch);
                }
                Err(e) => why.push(e),
            }
        }
        if let Some(regex) = &self.body_regex {
            let matched = regex.is_match(&String::from_utf8_lossy(&response.body));
            attempt.regex_matched = Some(matched);
            if !matched {
                why.push("the body does not match body_regex".into());
            }
        }
        if !why.is_empty() {
            attempt.not_ready = Some(why.join("; "));
        }
        attempt
    }

    /// Asks until ready or out of time. `sleep` is a parameter so tests need not wait.
    fn wait(&self, sleep: &mut dyn FnMut(Duration)) -> Result<Outcome, Failure> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut attempts = 0u64;
        loop {
            attempts += 1;
            // Each attempt gets its request_timeout, but never runs far past the deadline.
            let left = deadline.saturating_duration_since(Instant::now());
            let per_try = self.request_timeout.min(left.max(Duration::from_secs(1)));
            let attempt = self.judge(http::get(&self.url, &self.headers, per_try));
            let elapsed = started.elapsed();
            let fields = |attempt: &Attempt| -> Vec<(&'static str, Json)> {
                vec![
                    ("url", json!(self.url_text)),
                    ("status", json!(attempt.status)),
                    ("json", Json::Object(attempt.fields.clone())),
                    ("body_regex_matched", json!(attempt.regex_matched)),
                    ("attempts", json!(attempts)),
                    (
                        "elapsed",
                        json!((elapsed.as_secs_f64() * 1000.0).round() / 1000.0),
                    ),
                ]
            };
            let Some(why) = &attempt.not_ready else {
                let mut outcome = Outcome::unchanged(format!(
                    "{} is ready (status {}) after {attempts} attempt(s), {:.1} s",
                    self.url_text,
                    attempt.status.unwrap_or_default(),
                    elapsed.as_secs_f64()
                ));
                for (k, v) in fields(&attempt) {
                    outcome.set(k, v);
                }
                return Ok(outcome);
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let mut failure = Failure::new(format!(
                    "{} is not ready after {:.1} s ({attempts} attempt(s), timeout {} s); last: {why}",
                    self.url_text,
                    elapsed.as_secs_f64(),
                    self.timeout.as_secs()
                ));
                for (k, v) in fields(&attempt) {
                    failure = failure.with(k, v);
                }
                return Err(failure);
            }
            // The last pause is cut short so one attempt falls on the deadline itself.
            sleep(self.interval.min(left));
        }
    }
}
