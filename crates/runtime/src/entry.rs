//! The one entry point of every module: read arguments, run, print one JSON answer, exit.

use std::io::{Read, Write};
use std::panic;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value as Json};

use crate::outcome::{Failure, Outcome};
use crate::params::{parse, Context, Params};
use crate::spec::{Param, ARGUMENT_SPEC_FLAG};

/// Set once this run may have changed the host (a command marked `changes_system` started, or
/// a file was replaced): a panic after that must not answer `changed: false`.
static CHANGED: AtomicBool = AtomicBool::new(false);

/// Records that this run may have changed the host (see `CHANGED`).
pub fn note_change() {
    CHANGED.store(true, Ordering::SeqCst);
}

/// What replaces a secret value wherever it would appear in an answer.
const MASK: &str = "********";

/// Runs a module and exits the process: 0 on success, 1 on failure.
///
/// `argv[1]` is the args file Ansible wrote, or `-` for standard input; `--argument-spec` alone
/// prints the module's argument spec instead (`argument_spec`) and runs nothing.
pub fn run<F>(module: &'static str, spec: &[Param], body: F) -> !
where
    F: FnOnce(&Params, &Context) -> Result<Outcome, Failure>,
{
    let mut argv = std::env::args_os().skip(1);
    let args = argv.next();
    if args.as_deref() == Some(std::ffi::OsStr::new(ARGUMENT_SPEC_FLAG)) && argv.next().is_none() {
        let (json, code) = argument_spec(module, spec);
        let _ = writeln!(std::io::stdout().lock(), "{json}");
        std::process::exit(code)
    }
    run_from(
        module,
        spec,
        args.as_deref().map(|a| a.to_string_lossy().into_owned()),
        body,
    )
}

/// The answer to `MODULE --argument-spec`: `{"module": name, "options": {...}}` (see
/// `spec::to_json`) and exit code 0, or a `failed: true` answer naming what is wrong with the
/// spec and exit code 1. The sidecar-docs test (`tests/test_module_specs.py`) reads it.
pub fn argument_spec(module: &str, spec: &[Param]) -> (Json, i32) {
    match crate::spec::check(spec) {
        Ok(()) => {
            let mut map = Map::new();
            map.insert("module".into(), Json::from(module));
            map.insert("options".into(), crate::spec::to_json(spec));
            (Json::Object(map), 0)
        }
        Err(msg) => (
            failure_json(
                &format!("module {module}: invalid argument spec: {msg}"),
                &[],
            ),
            1,
        ),
    }
}

/// `run` with the args path given instead of taken from `argv[1]` (for tests that run a
/// module inside another program).
pub fn run_from<F>(module: &'static str, spec: &[Param], args_path: Option<String>, body: F) -> !
where
    F: FnOnce(&Params, &Context) -> Result<Outcome, Failure>,
{
    install_panic_hook(module);
    let (json, code) = answer(
        module,
        spec,
        args_path.as_deref(),
        &mut std::io::stdin(),
        body,
    );
    let mut stdout = std::io::stdout().lock();
    // If stdout is gone there is nobody to tell; the exit code still says what happened.
    let _ = writeln!(stdout, "{json}");
    let _ = stdout.flush();
    std::process::exit(code)
}

/// Does everything `run` does except printing and exiting, so tests can call it.
/// Returns the JSON answer and the exit code.
pub fn answer<F>(
    module: &'static str,
    spec: &[Param],
    args_path: Option<&str>,
    stdin: &mut dyn Read,
    body: F,
) -> (Json, i32)
where
    F: FnOnce(&Params, &Context) -> Result<Outcome, Failure>,
{
    let raw = match read_args(args_path, stdin) {
        Ok(raw) => raw,
        Err(msg) => return (failure_json(&msg, &[]), 1),
    };
    let (params, ctx) = match parse(module, spec, &raw) {
        Ok(parsed) => parsed,
        Err(msg) => {
            // Secrets may be present in the raw args even though parsing failed: mask what
            // the spec says is secret before the message goes anywhere.
            let secrets = raw_secrets(spec, &raw);
            return (failure_json(&msg, &secrets), 1);
        }
    };
    let (mut map, code) = match body(&params, &ctx) {
        Ok(outcome) => (outcome.to_json(ctx.diff), 0),
        Err(failure) => (failure.to_json(), 1),
    };
    // Under `no_log` Ansible hides the answer on the controller; we also leave out the
    // arguments so nothing secret is even sent back.
    if !ctx.no_log {
        map.insert("invocation".into(), params.invocation());
    }
    let mut json = Json::Object(map);
    mask(&mut json, params.secrets());
    (json, code)
}

fn read_args(path: Option<&str>, stdin: &mut dyn Read) -> Result<Json, String> {
    let text = match path {
        None => {
            return Err("no arguments: run the module through Ansible, or as `MODULE ARGS_FILE` (or `MODULE -` with the JSON on standard input)".into())
        }
        Some("-") => {
            let mut buf = String::new();
            stdin
                .read_to_string(&mut buf)
                .map_err(|e| format!("cannot read the module arguments from standard input: {e}"))?;
            buf
        }
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the module arguments file '{path}': {e}"))?,
    };
    // The content is never quoted back: it may hold secrets.
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "the module arguments are not valid JSON (line {}, column {}); Ansible writes them as a flat JSON object",
            e.line(),
            e.column()
        )
    })
}

/// Best-effort secret values straight from the raw arguments (used when parsing failed).
fn raw_secrets(spec: &[Param], raw: &Json) -> Vec<String> {
    let Json::Object(map) = raw else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for param in spec {
        if let (Some(secret), Some(Json::Object(inner))) = (param.no_log_keys, map.get(param.name))
        {
            crate::params::secret_values_of(inner, secret, &mut out);
        }
    }
    for param in spec.iter().filter(|p| p.no_log) {
        for name in std::iter::once(&param.name).chain(param.aliases.iter()) {
            match map.get(*name) {
                Some(Json::String(s)) if !s.is_empty() => out.push(s.clone()),
                Some(Json::Array(items)) => out.extend(
                    items
                        .iter()
                        .filter_map(|i| i.as_str())
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                ),
                Some(other @ Json::Number(_)) => out.push(other.to_string()),
                // A secret dict (request headers): every string in it.
                Some(Json::Object(inner)) => out.extend(
                    inner
                        .values()
                        .filter_map(|v| match v {
                            Json::String(s) => Some(s.clone()),
                            Json::Number(n) => Some(n.to_string()),
                            _ => None,
                        })
                        .filter(|s| !s.is_empty()),
                ),
                _ => {}
            }
        }
    }
    out
}

fn failure_json(msg: &str, secrets: &[String]) -> Json {
    let mut json = Json::Object(Failure::new(msg).to_json());
    mask(&mut json, secrets);
    json
}

/// Keys whose names Ansible reads or the runtime writes. They are never renamed by masking: a
/// short secret such as `n` would otherwise turn `changed` into `cha********ged` and `failed`
/// into a key Ansible does not know, so a failure would look like success. Their names come
/// from code, never from input, so they cannot carry a secret.
const RESERVED_KEYS: &[&str] = &[
    "changed",
    "failed",
    "msg",
    "skipped",
    "unreachable",
    "rc",
    "stdout",
    "stderr",
    "stdout_lines",
    "stderr_lines",
    "warnings",
    "deprecations",
    "invocation",
    "module_args",
    "diff",
    "before",
    "after",
    "before_header",
    "after_header",
    "ansible_facts",
    "exception",
];

/// Replaces every occurrence of a secret inside every string of the answer, and in the keys
/// of its objects except the reserved ones.
fn mask(json: &mut Json, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    match json {
        Json::String(s) if secrets.iter().any(|secret| s.contains(secret.as_str())) => {
            *s = masked(s, secrets);
        }
        Json::Array(items) => items.iter_mut().for_each(|i| mask(i, secrets)),
        Json::Object(map) => {
            let keys: Vec<String> = map
                .keys()
                .filter(|k| !RESERVED_KEYS.contains(&k.as_str()))
                .filter(|k| secrets.iter().any(|s| k.contains(s.as_str())))
                .cloned()
                .collect();
            for key in keys {
                if let Some(v) = map.remove(&key) {
                    map.insert(masked(&key, secrets), v);
                }
            }
            map.values_mut().for_each(|v| mask(v, secrets));
        }
        _ => {}
    }
}

/// `text` with every byte covered by any occurrence of any secret (overlapping ones too) masked,
/// each covered run becoming one MASK. Replacing secret after secret would not do: with the
/// secrets `0` and `0pass`, replacing `0` first leaves `********pass` for all to read.
fn masked(text: &str, secrets: &[String]) -> String {
    let mut covered = vec![false; text.len()];
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let mut from = 0;
        while let Some(at) = text[from..].find(secret.as_str()) {
            let start = from + at;
            covered[start..start + secret.len()].fill(true);
            // Next search one character on, so overlapping occurrences are found too.
            from = start + text[start..].chars().next().map_or(1, char::len_utf8);
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut in_run = false;
    for (i, c) in text.char_indices() {
        if covered[i] {
            if !in_run {
                out.push_str(MASK);
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out
}

/// A panic is a bug in the module; Ansible still gets a `failed: true` answer it can show,
/// never a Rust backtrace. The release profile aborts on panic, so the hook exits itself.
fn install_panic_hook(module: &'static str) {
    panic::set_hook(Box::new(move |info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let answer = panic_answer(module, &what, &place, CHANGED.load(Ordering::SeqCst));
        let _ = writeln!(std::io::stdout(), "{answer}");
        std::process::exit(1);
    }));
}

fn panic_answer(module: &str, what: &str, place: &str, changed: bool) -> Json {
    let mut map = Map::new();
    map.insert("changed".into(), Json::from(changed));
    map.insert("failed".into(), Json::from(true));
    let after = if changed {
        " after it had started changing the host (check it)"
    } else {
        ""
    };
    map.insert(
        "msg".into(),
        Json::from(format!(
            "internal error in module {module}{after}: {what}{place}; please report it"
        )),
    );
    Json::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Default;
    use crate::Diff;
    use serde_json::json;
    use std::io::Cursor;

    const SPEC: &[Param] = &[
        Param::str("name").required(),
        Param::str("token").no_log(),
        Param::bool("flag").default(Default::Bool(false)),
    ];

    fn run_with(
        args: &str,
        body: impl FnOnce(&Params, &Context) -> Result<Outcome, Failure>,
    ) -> (Json, i32) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("args");
        std::fs::write(&path, args).unwrap();
        answer(
            "demo",
            SPEC,
            Some(path.to_str().unwrap()),
            &mut Cursor::new(Vec::new()),
            body,
        )
    }

    fn echo(p: &Params, _: &Context) -> Result<Outcome, Failure> {
        Ok(
            Outcome::changed(format!("hello {}", p.str("name").unwrap()))
                .with("flag", p.bool("flag")),
        )
    }

    #[test]
    fn success_has_the_fields_ansible_reads() {
        let (json, code) = run_with(r#"{"name": "loki"}"#, echo);
        assert_eq!(code, 0);
        assert_eq!(json["changed"], json!(true));
        assert_eq!(json["failed"], json!(false));
        assert_eq!(json["msg"], json!("hello loki"));
        assert_eq!(json["flag"], json!(false));
        assert_eq!(json["invocation"]["module_args"]["name"], json!("loki"));
        assert!(json.get("warnings").is_none() && json.get("diff").is_none());
    }

    #[test]
    fn stdin_is_read_when_the_path_is_a_dash() {
        let mut stdin = Cursor::new(br#"{"name": "from-stdin"}"#.to_vec());
        let (json, code) = answer("demo", SPEC, Some("-"), &mut stdin, echo);
        assert_eq!(code, 0);
        assert_eq!(json["msg"], json!("hello from-stdin"));
    }

    #[test]
    fn bad_args_files_fail_with_a_clear_message() {
        let (json, code) = answer(
            "demo",
            SPEC,
            Some("/nonexistent/args"),
            &mut Cursor::new(Vec::new()),
            echo,
        );
        assert_eq!((code, json["failed"].clone()), (1, json!(true)));
        assert!(json["msg"]
            .as_str()
            .unwrap()
            .contains("cannot read the module arguments file '/nonexistent/args'"));

        let (json, code) = run_with("{not json, token=hunter2", echo);
        assert_eq!(code, 1);
        let msg = json["msg"].as_str().unwrap();
        assert!(
            msg.contains("not valid JSON") && !msg.contains("hunter2"),
            "{msg}"
        );

        let (json, _) = run_with("[1,2]", echo);
        assert!(json["msg"].as_str().unwrap().contains("JSON object"));

        let (json, code) = answer("demo", SPEC, None, &mut Cursor::new(Vec::new()), echo);
        assert_eq!(code, 1);
        assert!(json["msg"].as_str().unwrap().contains("no arguments"));
    }

    #[test]
    fn secrets_never_leave_the_module() {
        let body = |p: &Params, _: &Context| -> Result<Outcome, Failure> {
            let t = p.str("token").unwrap().to_string();
            Err(Failure::new(format!("server said: bad token {t}"))
                .with("detail", json!({ "seen": [t.clone()], t.clone(): 1 })))
        };
        let (json, code) = run_with(r#"{"name": "x", "token": "tok-SECRET-123"}"#, body);
        assert_eq!(code, 1);
        let text = json.to_string();
        assert!(!text.contains("tok-SECRET-123"), "{text}");
        assert!(text.contains("********"));

        // Even when the arguments are rejected, the secret is masked in the message.
        let (json, _) = run_with(
            r#"{"name": "x", "token": "tok-SECRET-123", "flag": "tok-SECRET-123"}"#,
            echo,
        );
        assert!(!json.to_string().contains("tok-SECRET-123"), "{json}");
    }

    #[test]
    fn a_short_secret_never_renames_the_keys_ansible_reads() {
        // Found by tests/fuzz.rs: the secret "n" turned `changed` into `cha********ged`, and
        // a secret "a" would have hidden `failed` from Ansible.
        for secret in ["n", "a", "e", "ch"] {
            let body = |_: &Params, _: &Context| -> Result<Outcome, Failure> {
                Err(Failure::new("boom").with("rc", 2))
            };
            let args = json!({"name": "x", "token": secret}).to_string();
            let (json, code) = run_with(&args, body);
            assert_eq!(code, 1);
            assert_eq!(json["failed"], json!(true), "{secret}: {json}");
            assert_eq!(json["changed"], json!(false), "{secret}: {json}");
            assert_eq!(json["rc"], json!(2), "{secret}: {json}");
            assert!(json["invocation"]["module_args"].is_object(), "{json}");
            let (json, code) = run_with(&args, echo);
            assert_eq!(code, 0);
            assert_eq!(json["changed"], json!(true), "{secret}: {json}");
            assert_eq!(json["failed"], json!(false), "{secret}: {json}");
            assert!(!json["msg"].as_str().unwrap().contains(secret), "{json}");
        }
        // A refused run too (the secret comes from the raw arguments there).
        let (json, code) = run_with(r#"{"name": "x", "token": "a", "flag": "maybe"}"#, echo);
        assert_eq!(code, 1);
        assert_eq!(json["failed"], json!(true), "{json}");
        assert_eq!(json["changed"], json!(false), "{json}");
    }

    #[test]
    fn overlapping_secrets_are_masked_whole() {
        // Found by tests/fuzz.rs: secrets "0" and "0pass-XYZ" left "********pass-XYZ".
        let secrets = vec!["0".to_string(), "0pass-XYZ".to_string()];
        assert_eq!(masked("a 0pass-XYZ b", &secrets), "a ******** b");
        assert_eq!(masked("x0y", &secrets), "x********y");
        let secrets = vec!["ab".to_string(), "bc".to_string()];
        assert_eq!(
            masked("abc-bc-aab", &secrets),
            "********-********-a********"
        );
        let secrets = vec!["aa".to_string()];
        assert_eq!(masked("aaa", &secrets), "********");
        let secrets = vec!["\u{e4}\u{e4}".to_string()];
        assert_eq!(masked("x\u{e4}\u{e4}\u{e4}y", &secrets), "x********y");
        assert_eq!(masked("nothing", &secrets), "nothing");
    }

    #[test]
    fn the_argument_spec_answer_names_the_module_and_its_options() {
        let (json, code) = argument_spec("demo", SPEC);
        assert_eq!(code, 0);
        assert_eq!(json["module"], json!("demo"));
        assert_eq!(json["options"]["flag"]["default"], json!(false));
        assert_eq!(json["options"]["token"]["no_log"], json!(true));
        assert_eq!(json["options"].as_object().unwrap().len(), 3);
        assert!(json.get("failed").is_none(), "{json}");
        let bad = [Param::str("a"), Param::str("a")];
        let (json, code) = argument_spec("demo", &bad);
        assert_eq!(code, 1);
        assert_eq!(json["failed"], json!(true));
        let msg = json["msg"].as_str().unwrap();
        assert!(
            msg.starts_with("module demo: invalid argument spec: parameter 'a'"),
            "{msg}"
        );
    }

    #[test]
    fn no_log_leaves_out_the_invocation() {
        let (json, _) = run_with(r#"{"name": "x", "_ansible_no_log": true}"#, echo);
        assert!(json.get("invocation").is_none());
    }

    #[test]
    fn diff_is_sent_only_when_asked() {
        let body = |_: &Params, _: &Context| {
            Ok(Outcome::changed("x").with_diff(Diff::new("a\n", "b\n").headers("old", "new")))
        };
        let (json, _) = run_with(r#"{"name": "x"}"#, body);
        assert!(json.get("diff").is_none());
        let (json, _) = run_with(r#"{"name": "x", "_ansible_diff": true}"#, body);
        assert_eq!(
            json["diff"],
            json!({"before": "a\n", "after": "b\n", "before_header": "old", "after_header": "new"})
        );
    }

    #[test]
    fn several_diffs_are_a_list() {
        let body = |_: &Params, _: &Context| {
            let mut outcome = Outcome::changed("x").with_diff(Diff::new("a\n", "b\n"));
            outcome.add_diff(Diff::new("", "c\n").headers("/c", "/c"));
            Ok(outcome)
        };
        let (json, _) = run_with(r#"{"name": "x", "_ansible_diff": true}"#, body);
        assert_eq!(
            json["diff"],
            json!([{"before": "a\n", "after": "b\n"},
                   {"before": "", "after": "c\n", "before_header": "/c", "after_header": "/c"}])
        );
    }

    #[test]
    fn a_panic_after_a_change_says_changed() {
        let before = panic_answer("demo", "boom", " at x.rs:1", false);
        assert_eq!(before["changed"], json!(false));
        assert_eq!(
            before["msg"],
            json!("internal error in module demo: boom at x.rs:1; please report it")
        );
        let after = panic_answer("demo", "boom", "", true);
        assert_eq!(after["changed"], json!(true));
        assert_eq!(after["failed"], json!(true));
        assert!(after["msg"].as_str().unwrap().contains("started changing"));
    }

    #[test]
    fn failures_carry_fields_and_warnings() {
        let body = |_: &Params, _: &Context| {
            Err(Failure::new("boom")
                .with("rc", 9)
                .warn("careful")
                .after_change(true))
        };
        let (json, code) = run_with(r#"{"name": "x"}"#, body);
        assert_eq!(code, 1);
        assert_eq!(json["failed"], json!(true));
        assert_eq!(json["changed"], json!(true));
        assert_eq!(json["rc"], json!(9));
        assert_eq!(json["warnings"], json!(["careful"]));
    }
}
