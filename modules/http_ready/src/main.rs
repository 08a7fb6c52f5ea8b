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
    Param::dict("headers").no_log_keys(secret_header),
    Param::str("url_username"),
    Param::str("url_password").no_log(),
];

/// Whether a request header's value is a secret (never shown): the credentials HTTP itself
/// defines, and any header whose name says it carries one (`X-Api-Key`, `X-Auth-Token`,
/// `Private-Token`, ...). Other values (`X-Scope-OrgID: "1"`) are shown as they are: masking
/// them would mask that text everywhere in the answer, the URL included.
fn secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie"
    ) || [
        "token",
        "secret",
        "passw",
        "key",
        "auth",
        "session",
        "credential",
        "signature",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// The longest `timeout`, `interval` or `request_timeout` accepted, in seconds: one day. A
/// readiness wait beyond that is a typo, and the limit keeps every deadline computed from
/// these values far from the clock's overflow (`Instant` + a huge `Duration` would panic).
const MAX_SECS: i64 = 86_400;

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
        for field in ["timeout", "interval", "request_timeout"] {
            let secs = params.int(field).unwrap_or(0);
            if secs > MAX_SECS {
                return Err(Failure::new(format!(
                    "{field}: {secs} s is more than the allowed maximum of {MAX_SECS} s (one day); set a readiness wait in seconds, e.g. {field}: 60"
                )));
            }
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
            // Each attempt gets its request_timeout as a deadline for the whole attempt (connect,
            // send, every read), but never runs more than a second past the wait's deadline:
            // the whole run stays within timeout + 1 s (<= timeout + interval).
            let now = Instant::now();
            let left = deadline.saturating_duration_since(now);
            let per_try = self.request_timeout.min(left.max(Duration::from_secs(1)));
            let attempt = self.judge(http::get(&self.url, &self.headers, now + per_try));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(args: Json) -> Result<Probe, String> {
        let (params, _) = runtime::parse(NAME, SPEC, &args)?;
        Probe::from_params(&params).map_err(|f| f.msg)
    }

    #[test]
    fn a_huge_timeout_is_refused_naming_the_field_and_the_maximum() {
        for field in ["timeout", "interval", "request_timeout"] {
            let Err(e) = probe(json!({"url": "http://127.0.0.1/", field: i64::MAX})) else {
                panic!("{field}: a huge value was accepted");
            };
            assert_eq!(
                e,
                format!("{field}: 9223372036854775807 s is more than the allowed maximum of 86400 s (one day); set a readiness wait in seconds, e.g. {field}: 60")
            );
            assert!(probe(json!({"url": "http://127.0.0.1/", field: 86_400})).is_ok());
        }
    }

    #[test]
    fn only_credential_headers_are_secret() {
        for name in [
            "Authorization",
            "proxy-authorization",
            "Cookie",
            "X-Api-Key",
            "X-Auth-Token",
            "Private-Token",
            "X-Grafana-Session",
        ] {
            assert!(secret_header(name), "{name}");
        }
        for name in ["X-Scope-OrgID", "Accept", "User-Agent", "X-Request-Id"] {
            assert!(!secret_header(name), "{name}");
        }
    }
}
