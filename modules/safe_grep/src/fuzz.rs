//! Fuzzing of the matcher and of the whole module body, with a small self-written generator.
//!
//! A fixed-seed xorshift PRNG builds patterns from regex fragments (valid and broken ones,
//! huge repetitions, classes, anchors, escapes, non-ASCII), literal strings, and files of
//! random bytes with long lines, CRs, NULs and invalid UTF-8. Properties on every case:
//! - `compile` and `scan` never panic; a refusal is one line naming 'pattern' or 'fixed';
//! - `scan` agrees with a naive line split matched line by line with the same regex, the line
//!   numbers are ascending, capped, and `truncated` says exactly when the cap cut them;
//! - a line over the limit is refused with its number, and only then;
//! - a fixed string is literal: its count is the number of lines that contain it;
//! - the module body never returns a byte of the file: a marker that only the file holds
//!   never appears in an answer, whatever the parameters.
//!
//! `cargo test` runs FUZZ_ITERS cases (default 2000 per property, a few seconds); a longer run:
//! `FUZZ_ITERS=300000 FUZZ_SEED=$RANDOM cargo test --release -p safe_grep fuzz`
//! (docs/reliability.md). A failure prints its seed and iteration.

use std::io::Write;

use serde_json::{json, Value as Json};

use runtime::testing::{fuzz_iterations, fuzz_seed, Rng};

use crate::matcher::{compile, scan, Needle, ScanError};

fn iterations() -> u64 {
    fuzz_iterations(2_000)
}

fn seed() -> u64 {
    fuzz_seed(0x05AF_E6E5)
}

const FRAGMENTS: &[&str] = &[
    "a",
    "b",
    "ab",
    "key",
    ":",
    " ",
    ".",
    ".*",
    ".+",
    "\\s*",
    "\\S+",
    "\\d",
    "\\w",
    "\\b",
    "^",
    "$",
    "[a-c]",
    "[^x]",
    "[[:alpha:]]",
    "(",
    ")",
    "(?:",
    "|",
    "*",
    "+",
    "?",
    "{2}",
    "{1,3}",
    "{,}",
    "{99999}",
    "\\w{5000}",
    "(a|b)*",
    "(?i)",
    "(?-u:\\xff)",
    "\\xff",
    "\\x00",
    "\\n",
    "\\r",
    "\\",
    "[",
    "]",
    "}",
    "\\p{L}",
    "\\p{Nope}",
    "ä",
    "\u{1F600}",
    "(?P<n>x)",
    "\\1",
    "(?=x)",
    "a**",
    "[z-a]",
    "\\Q",
    "\\u{110000}",
    "x{2,1}",
];

fn pattern(rng: &mut Rng) -> String {
    (0..rng.below(7)).map(|_| *rng.pick(FRAGMENTS)).collect()
}

fn literal(rng: &mut Rng) -> String {
    let alphabet = [
        "a", "b", "k", ".", "*", "(", "[", "\\", "$", "^", " ", "ä", "\r", "\t",
    ];
    (0..rng.below(5)).map(|_| *rng.pick(&alphabet)).collect()
}

/// File content: short lines of a small alphabet (so patterns match), sometimes junk bytes,
/// CRs, NULs, long lines, no final newline.
fn content(rng: &mut Rng, max_line: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(40) {
        let len = if rng.chance(1) {
            max_line + rng.below(3)
        } else {
            rng.below(20)
        };
        for _ in 0..len {
            let byte = match rng.below(10) {
                0 => rng.next() as u8,
                1 => *rng.pick(b"\r\0\t "),
                2 => *rng.pick(&[0xc3u8, 0xa4, 0xff, 0xfe]),
                _ => *rng.pick(b"abk:.*()[$^"),
            };
            out.push(byte);
        }
        if !rng.chance(3) {
            out.push(b'\n');
        }
    }
    out
}

#[test]
fn fuzz_compile_and_scan_agree_with_a_naive_matcher() {
    let (iters, seed) = (iterations(), seed());
    let mut rng = Rng::new(seed);
    let (mut compiled, mut refused, mut too_long) = (0u64, 0u64, 0u64);
    for i in 0..iters {
        let needle = if rng.chance(70) {
            Needle::Pattern(pattern(&mut rng))
        } else {
            Needle::Fixed(literal(&mut rng))
        };
        let re = match compile(&needle) {
            Ok(re) => re,
            Err(msg) => {
                refused += 1;
                assert!(
                    matches!(needle, Needle::Pattern(_)),
                    "a fixed string was refused: {needle:?}: {msg}"
                );
                assert!(msg.starts_with("parameter 'pattern' "), "{msg}");
                assert!(!msg.contains('\n'), "multi-line refusal: {msg:?}");
                continue;
            }
        };
        compiled += 1;
        let max_line = 8 + rng.below(64);
        let cap = rng.below(6);
        let text = content(&mut rng, max_line);

        // The naive reference: split on \n, drop the empty tail after a final \n.
        let mut lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
        if text.last() == Some(&b'\n') || text.is_empty() {
            lines.pop();
        }
        let first_long = lines.iter().position(|l| l.len() > max_line);

        match scan(text.as_slice(), &re, cap, max_line) {
            Ok(found) => {
                assert!(
                    first_long.is_none(),
                    "seed {seed} iteration {i}: a long line passed"
                );
                let hits: Vec<u64> = lines
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| re.is_match(l))
                    .map(|(n, _)| n as u64 + 1)
                    .collect();
                assert_eq!(found.total, lines.len() as u64, "seed {seed} iteration {i}");
                assert_eq!(found.count, hits.len() as u64, "seed {seed} iteration {i}");
                assert_eq!(
                    found.lines,
                    hits[..hits.len().min(cap)],
                    "seed {seed} iteration {i}"
                );
                assert_eq!(found.truncated, hits.len() > cap);
                if let Needle::Fixed(f) = &needle {
                    let want = lines
                        .iter()
                        .filter(|l| f.is_empty() || l.windows(f.len()).any(|w| w == f.as_bytes()))
                        .count() as u64;
                    assert_eq!(found.count, want, "fixed {f:?}: seed {seed} iteration {i}");
                }
            }
            Err(ScanError::LineTooLong { line, limit }) => {
                too_long += 1;
                assert_eq!(limit, max_line);
                assert_eq!(
                    Some(line as usize),
                    first_long.map(|n| n + 1),
                    "seed {seed} iteration {i}"
                );
            }
            Err(ScanError::Read { .. }) => panic!("a slice cannot fail to read"),
        }
    }
    eprintln!(
        "fuzz safe_grep matcher: {iters} cases (seed {seed}): {compiled} compiled, {refused} refused, {too_long} overlong, 0 panics"
    );
    assert!(
        compiled > iters / 10 && refused > iters / 20,
        "generator too one-sided"
    );
}

/// The module body end to end on a real file: parameters parsed by the runtime as Ansible would
/// send them, then `safe_grep` itself. Nothing of the file may come back.
#[test]
fn fuzz_module_never_returns_file_content() {
    const MARK: &str = "QZXJ-file-only";
    let (iters, seed) = (iterations() / 3 + 1, seed() ^ 0xF11E);
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("target.conf");
    let mut failed = 0u64;
    for i in 0..iters {
        let mut file = std::fs::File::create(&path).unwrap();
        for _ in 0..rng.below(12) {
            let line = match rng.below(4) {
                0 => format!("password: {MARK}-{}\n", rng.next()),
                1 => format!("key: value{}\n", rng.below(9)),
                2 => "type: loki\n".to_string(),
                _ => format!("{MARK}\n"),
            };
            file.write_all(line.as_bytes()).unwrap();
        }
        drop(file);
        let mut args = serde_json::Map::new();
        let path_value = match rng.below(10) {
            0 => json!(""),
            1 => json!(dir.path().to_str().unwrap()),
            2 => json!("/nonexistent/x"),
            3 => json!("/dev/null"),
            _ => json!(path.to_str().unwrap()),
        };
        args.insert("path".into(), path_value);
        match rng.below(5) {
            0 => {}
            1 => {
                args.insert("fixed".into(), json!(literal(&mut rng)));
            }
            2 => {
                args.insert("pattern".into(), json!("^password: "));
                args.insert("fixed".into(), json!("x"));
            }
            3 => {
                args.insert("pattern".into(), json!(pattern(&mut rng)));
            }
            _ => {
                let sane = [
                    "^key: ",
                    "type: loki",
                    "^password: ",
                    "value[0-9]",
                    "^$",
                    "nothing",
                ];
                args.insert("pattern".into(), json!(rng.pick(&sane)));
            }
        }
        for (key, values) in [
            (
                "state",
                &[json!("present"), json!("absent"), json!("gone")][..],
            ),
            (
                "min_count",
                &[json!(0), json!(1), json!("3"), json!(-1), json!(i64::MAX)][..],
            ),
            (
                "max_count",
                &[json!(0), json!(2), json!("x"), json!(u64::MAX)][..],
            ),
            (
                "owner",
                &[
                    json!("root"),
                    json!(""),
                    json!("nobody"),
                    json!(0),
                    json!("99999"),
                ][..],
            ),
            ("group", &[json!("root"), json!("grafana"), json!(0)][..]),
            (
                "mode",
                &[
                    json!("0640"),
                    json!("0644"),
                    json!(416),
                    json!("999"),
                    json!("0o7777"),
                    json!(-5),
                    json!(1.5),
                ][..],
            ),
        ] {
            if rng.chance(12) {
                args.insert(key.into(), rng.pick(values).clone());
            }
        }
        if rng.chance(10) {
            args.insert("_ansible_check_mode".into(), json!(true));
        }
        let args = Json::Object(args);
        let mut stdin: &[u8] = &[];
        let args_path = dir.path().join("args.json");
        std::fs::write(&args_path, args.to_string()).unwrap();
        let (answer, code) = runtime::answer(
            "safe_grep",
            crate::SPEC,
            Some(args_path.to_str().unwrap()),
            &mut stdin,
            crate::safe_grep,
        );
        assert!(code == 0 || code == 1);
        assert_eq!(answer["failed"], json!(code == 1), "{answer}");
        assert_eq!(
            answer["changed"],
            json!(false),
            "safe_grep changed something: {answer}"
        );
        let text = answer.to_string();
        assert!(
            !text.contains("QZXJ"),
            "file content in the answer: seed {seed} iteration {i}: {args} -> {text}"
        );
        if code == 1 {
            failed += 1;
            let msg = answer["msg"].as_str().unwrap_or_default();
            assert!(!msg.is_empty() && !msg.contains('\n'), "{answer}");
            if std::env::var_os("FUZZ_SHOW").is_some() {
                eprintln!("{msg}");
            }
        }
    }
    eprintln!("fuzz safe_grep module: {iters} runs (seed {seed}): {failed} failed cleanly, 0 panics, 0 content leaks");
}

#[test]
fn fuzz_parse_mode_is_total() {
    let mut rng = Rng::new(seed() ^ 0x0DE);
    for _ in 0..iterations() * 3 {
        let text: String = (0..rng.below(7))
            .map(|_| *rng.pick(&['0', '1', '6', '7', '8', 'o', 'x', '-', ' ', '9', '\u{e4}']))
            .collect();
        let was_number = rng.chance(30);
        match crate::expect::parse_mode(&text, was_number) {
            Ok(mode) => assert!(mode <= 0o7777, "{text:?} -> {mode:o}"),
            Err(msg) => assert!(msg.starts_with("parameter 'mode' "), "{msg}"),
        }
    }
}
