//! Fuzzing of argument parsing and coercion, with a small self-written generator.
//!
//! No fuzzing crate: a fixed-seed xorshift PRNG builds argument objects that are mostly almost
//! right (the interesting inputs: known names and aliases, strings that look like numbers or
//! booleans, numbers at the i64/f64 edges, nulls, nested junk, duplicate aliases, secrets) plus
//! raw byte soup for the JSON reader. Properties checked on every case:
//! - `parse` and `answer` never panic;
//! - `answer` always yields one JSON object with a boolean `failed` and exit code 0 or 1 to
//!   match, and `changed: false` on failure;
//! - a `no_log` value never appears anywhere in the answer or in an error message;
//! - what parses has the declared type, respects `min` and `choices`, and `given`/defaults agree;
//! - a refusal names a parameter, or says what is wrong with the whole object.
//!
//! `cargo test` runs a bounded number of cases (FUZZ_ITERS, default 20000, a few seconds);
//! a longer run: `FUZZ_ITERS=2000000 FUZZ_SEED=$RANDOM cargo test --release -p runtime --test fuzz`
//! (docs/reliability.md). A failing case prints its seed and iteration, so it replays exactly.

use runtime::testing::{fuzz_iterations, fuzz_seed, Rng};
use runtime::{answer, parse, Default, Failure, Kind, Outcome, Param, Params};
use serde_json::{json, Map, Value as Json};

const SECRET: &str = "fuzz-S3cr3t-9f8e7d6c";

const SPEC: &[Param] = &[
    Param::str("name").required().aliases(&["pkg", "n"]),
    Param::bool("system").default(Default::Bool(true)),
    Param::int("timeout").default(Default::Int(600)).min(0),
    Param::int("retries").min(1),
    Param::list("units").default(Default::List(&["a.timer", "b.service"])),
    Param::str("state")
        .default(Default::Str("present"))
        .choices(&["present", "absent", "latest"]),
    Param::str("password").no_log().aliases(&["pass"]),
    Param::list("tokens").no_log(),
    Param::int("mode_int").choices(&["1", "2", "3"]),
    Param::dict("headers").no_log(),
    Param::entries("items", ITEM),
];

const ITEM: &[Param] = &[
    Param::str("name").required(),
    Param::bool("enabled"),
    Param::str("state").choices(&["started", "stopped"]),
];

const KEYS: &[&str] = &[
    "name",
    "pkg",
    "n",
    "system",
    "timeout",
    "retries",
    "units",
    "state",
    "password",
    "pass",
    "tokens",
    "mode_int",
    "headers",
    "items",
    "_ansible_check_mode",
    "_ansible_diff",
    "_ansible_no_log",
    "_ansible_verbosity",
    "_ansible_module_name",
    "_ansible_future_thing",
    "colour",
    "",
    "NAME",
    "name ",
    "_ansible_",
    "\u{0}",
    "p\u{e4}ss",
];

const WORDS: &[&str] = &[
    "",
    " ",
    "yes",
    "No",
    "ON",
    "off",
    "1",
    "0",
    "true",
    "FALSE",
    "y",
    "t",
    "maybe",
    "present",
    "absent",
    "latest",
    "Present",
    " 5 ",
    "-1",
    "+7",
    "0x10",
    "1e3",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "a,b, c,,",
    ",",
    "loki",
    "é\u{301}",
    "\u{1F600}",
    "\\u0000",
    "line\nbreak",
    "\"quoted\"",
    "NaN",
    "inf",
    "2",
    "3",
];

fn string(rng: &mut Rng) -> String {
    match rng.below(6) {
        0..=2 => rng.pick(WORDS).to_string(),
        3 => SECRET.to_string(),
        4 => {
            let len = rng.below(80);
            (0..len)
                .map(|_| match rng.below(5) {
                    0 => char::from_u32(rng.below(0x80) as u32).unwrap_or('x'),
                    1 => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}'),
                    _ => (b'a' + rng.below(26) as u8) as char,
                })
                .collect()
        }
        _ => format!("{}{}", rng.pick(WORDS), SECRET),
    }
}

fn number(rng: &mut Rng) -> Json {
    match rng.below(8) {
        0 => json!(rng.below(5) as i64 - 2),
        1 => json!(i64::MAX),
        2 => json!(i64::MIN),
        3 => json!(u64::MAX),
        4 => json!(rng.next() as i64),
        5 => json!(*rng.pick(&[0.5, -0.0, 5.0, 1e300, -1e300, 9.0e15, 8.9e15, 1e-300, 3.0])),
        6 => json!((rng.next() as f64) / 7.0),
        _ => json!(rng.below(1000)),
    }
}

fn value(rng: &mut Rng, depth: u32) -> Json {
    match rng.below(if depth > 2 { 5 } else { 8 }) {
        0 => Json::Null,
        1 => Json::Bool(rng.chance(50)),
        2 => number(rng),
        3 | 4 => Json::String(string(rng)),
        5 | 6 => Json::Array((0..rng.below(5)).map(|_| value(rng, depth + 1)).collect()),
        _ => {
            let mut map = Map::new();
            for _ in 0..rng.below(4) {
                map.insert(string(rng), value(rng, depth + 1));
            }
            Json::Object(map)
        }
    }
}

fn args(rng: &mut Rng) -> Json {
    if rng.chance(3) {
        return value(rng, 0);
    }
    let mut map = Map::new();
    if rng.chance(80) {
        map.insert("name".into(), Json::String(string(rng)));
    }
    for _ in 0..rng.below(7) {
        map.insert(rng.pick(KEYS).to_string(), value(rng, 1));
    }
    if rng.chance(30) {
        let key = *rng.pick(&["password", "pass"]);
        map.insert(key.into(), json!(SECRET));
    }
    if rng.chance(15) {
        map.insert("tokens".into(), json!(["x", SECRET]));
    }
    Json::Object(map)
}

/// Text that `read_args` gets: the JSON of an args object, damaged now and then.
fn raw_text(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&args(rng)).unwrap();
    match rng.below(6) {
        0 if !bytes.is_empty() => {
            let at = rng.below(bytes.len());
            bytes.truncate(at);
        }
        1 if !bytes.is_empty() => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                bytes[at] = rng.next() as u8;
            }
        }
        2 => bytes = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        _ => {}
    }
    bytes
}

fn iterations() -> u64 {
    fuzz_iterations(20_000)
}

fn seed() -> u64 {
    fuzz_seed(0x600D_5EED)
}

fn contains_secret(json: &Json) -> bool {
    json.to_string().contains(SECRET) || json.to_string().contains("S3cr3t")
}

/// The invariants of a successful parse.
fn check_parsed(args: &Json, params: &Params) {
    for param in SPEC {
        let given = params.given(param.name);
        match param.kind {
            Kind::Str => {
                if given || param.default.is_some() {
                    let text = params.str(param.name).expect("a given str has a value");
                    if !param.choices.is_empty() {
                        assert!(param.choices.contains(&text), "{text:?} not a choice");
                    }
                }
            }
            Kind::Int => {
                if let Some(i) = params.int(param.name) {
                    if let Some(min) = param.min {
                        assert!(i >= min, "{} = {i} below min {min}", param.name);
                    }
                    if !param.choices.is_empty() {
                        assert!(param.choices.contains(&i.to_string().as_str()));
                    }
                } else {
                    assert!(!given, "{} given but not an int", param.name);
                }
            }
            Kind::Bool => {
                let _ = params.bool(param.name);
            }
            Kind::List => {
                let _ = params.list(param.name);
            }
            Kind::Dict => {
                assert_eq!(given, params.dict(param.name).is_some(), "{}", param.name);
            }
            Kind::Entries => {
                for entry in params.entries(param.name) {
                    assert!(
                        entry.str("name").is_some(),
                        "an entry without its required name"
                    );
                    if let Some(state) = entry.str("state") {
                        assert!(["started", "stopped"].contains(&state), "{state:?}");
                    }
                }
            }
        }
    }
    // A key that is given (not null) and declared must be marked given.
    if let Json::Object(map) = args {
        for (key, v) in map {
            if v.is_null() {
                continue;
            }
            if let Some(p) = SPEC
                .iter()
                .find(|p| p.name == key || p.aliases.contains(&key.as_str()))
            {
                assert!(params.given(p.name), "{key} set but not given");
            }
        }
    }
    if secret_only_in_no_log(args) {
        assert!(
            !contains_secret(&params.invocation()),
            "secret in invocation"
        );
    }
}

/// Whether the secret appears in the arguments only as (part of) a `no_log` value: only then
/// does the module know it is secret. Non-objects hold it nowhere the runtime could tell.
fn secret_only_in_no_log(args: &Json) -> bool {
    match args.as_object() {
        Some(m) => {
            m.iter().all(|(k, v)| {
                ["password", "pass", "tokens", "headers"].contains(&k.as_str())
                    || !v.to_string().contains("S3cr3t")
            }) && !m.keys().any(|k| k.contains("S3cr3t"))
        }
        None => !args.to_string().contains("S3cr3t"),
    }
}

fn body(params: &Params, ctx: &runtime::Context) -> Result<Outcome, Failure> {
    // A body that echoes parameters back, as a careless module might: the runtime must still
    // mask the secrets.
    let name = params.str("name").unwrap_or_default().to_string();
    let pass = params.str("password").unwrap_or_default().to_string();
    if ctx.check_mode && name.starts_with('l') {
        return Err(Failure::new(format!("refusing {name} with {pass}")));
    }
    let mut outcome = Outcome::changed(format!("hello {name} {pass}"));
    outcome.set("echo", json!(params.list("tokens")));
    Ok(outcome)
}

#[test]
fn fuzz_parse_and_answer_never_panic_and_never_leak() {
    let (iters, seed) = (iterations(), seed());
    let mut rng = Rng::new(seed);
    let (mut parsed, mut refused) = (0u64, 0u64);
    for i in 0..iters {
        let case = args(&mut rng);
        let outcome = std::panic::catch_unwind(|| parse("fuzz", SPEC, &case));
        let result =
            outcome.unwrap_or_else(|_| panic!("parse panicked: seed {seed} iteration {i}: {case}"));
        match result {
            Ok((params, _ctx)) => {
                parsed += 1;
                check_parsed(&case, &params);
            }
            Err(msg) => {
                refused += 1;
                assert!(!msg.is_empty());
                // A refusal must not quote a no_log value in the first place (`answer` masks
                // what it can find, but the message is built before that).
                if secret_only_in_no_log(&case) && !msg.contains("set twice") {
                    assert!(!msg.contains("S3cr3t"), "refusal quotes a secret: {msg}");
                }
                assert!(
                    msg.contains('\'')
                        || msg.contains("JSON object")
                        || msg.contains("Unsupported parameters"),
                    "refusal names nothing: {msg} (seed {seed} iteration {i})"
                );
            }
        }

        // The whole pipeline, from bytes on standard input.
        let bytes = if rng.chance(70) {
            serde_json::to_vec(&case).unwrap()
        } else {
            raw_text(&mut rng)
        };
        let mut stdin: &[u8] = &bytes;
        let (json, code) = answer("fuzz", SPEC, Some("-"), &mut stdin, body);
        let failed = json["failed"].as_bool();
        assert!(json.is_object(), "answer is not an object: {json}");
        assert_eq!(
            failed,
            Some(code == 1),
            "failed/code disagree: {json} {code}"
        );
        assert!(code == 0 || code == 1);
        if code == 1 {
            assert_eq!(json["changed"], json!(false), "{json}");
            assert!(
                json["msg"].as_str().is_some_and(|m| !m.is_empty()),
                "{json}"
            );
        }
        // The secret may be in the input under a no_log key; it must not come back. (Under
        // an undeclared key it is not known to be secret: such input has no secret there.)
        let input = String::from_utf8_lossy(&bytes);
        let only_no_log = serde_json::from_slice::<Json>(&bytes)
            .map(|j| secret_only_in_no_log(&j))
            .unwrap_or(!input.contains("S3cr3t"));
        if only_no_log {
            assert!(
                !contains_secret(&json),
                "secret leaked: seed {seed} iteration {i}: {json}"
            );
        }
    }
    eprintln!(
        "fuzz runtime: {iters} cases (seed {seed}): {parsed} parsed, {refused} refused, 0 panics"
    );
    assert!(
        parsed > iters / 20 && refused > iters / 20,
        "generator too one-sided: {parsed}/{refused}"
    );
}

#[test]
fn fuzz_coercions_agree_with_ansible() {
    let spec = &[
        Param::int("i"),
        Param::bool("b"),
        Param::list("l"),
        Param::str("s"),
    ];
    let mut rng = Rng::new(seed() ^ 0xC0E7);
    for _ in 0..iterations() {
        // Ints as strings round-trip, with any surrounding whitespace.
        let n = rng.next() as i64 >> rng.below(63);
        let pad = *rng.pick(&["", " ", "\t", "  "]);
        let (p, _) = parse("c", spec, &json!({ "i": format!("{pad}{n}{pad}") })).unwrap();
        assert_eq!(p.int("i"), Some(n));
        let (p, _) = parse("c", spec, &json!({ "i": n })).unwrap();
        assert_eq!(p.int("i"), Some(n));
        // Booleans: exactly Ansible's words, any case.
        let word = *rng.pick(&[
            "yes", "on", "1", "true", "y", "t", "no", "off", "0", "false", "n", "f",
        ]);
        let cased: String = word
            .chars()
            .map(|c| {
                if rng.chance(50) {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        let (p, _) = parse("c", spec, &json!({ "b": cased })).unwrap();
        assert_eq!(
            p.bool("b"),
            ["yes", "on", "1", "true", "y", "t"].contains(&word)
        );
        // Lists: a comma string is split and trimmed, empty items dropped.
        let items: Vec<String> = (0..rng.below(6))
            .map(|_| format!("i{}", rng.below(99)))
            .collect();
        let text = items.join(*rng.pick(&[",", ", ", " ,", ",,"]));
        let (p, _) = parse("c", spec, &json!({ "l": text })).unwrap();
        assert_eq!(p.list("l"), items.as_slice());
        // Strings: any string is kept byte for byte; numbers become their JSON text.
        let s = string(&mut rng);
        let (p, _) = parse("c", spec, &json!({ "s": s })).unwrap();
        assert_eq!(p.str("s"), Some(s.as_str()));
    }
}
