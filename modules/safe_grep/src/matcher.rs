//! Matching a file line by line on bytes, in bounded memory, keeping only line numbers.
//!
//! Nothing read from the file leaves this module: a scan returns counts and line numbers, and
//! its errors say where, never what.

use std::io::{BufRead, BufReader, Read};

use regex::bytes::{Regex, RegexBuilder};

/// The compiled program of a pattern may use this much memory, and so may the lazy DFA's
/// cache: enough for any sane pattern, small enough that `\w{10000}` is refused at once
/// instead of eating a small host's memory.
const SIZE_LIMIT: usize = 4 * 1024 * 1024;

/// What the task asks to look for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Needle {
    /// A regular expression (`regex` syntax, matched against the bytes of each line).
    Pattern(String),
    /// A literal string.
    Fixed(String),
}

/// Compiles the needle. The error names the parameter and says how to fix it; it quotes only
/// the task's own pattern, never the file.
pub fn compile(needle: &Needle) -> Result<Regex, String> {
    let (source, field) = match needle {
        Needle::Pattern(p) => (p.clone(), "pattern"),
        Needle::Fixed(f) => (regex::escape(f), "fixed"),
    };
    RegexBuilder::new(&source)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => format!(
                "parameter '{field}' compiles to a program larger than {limit} bytes; simplify it (large repetitions such as \\w{{1000}} are the usual cause)"
            ),
            regex::Error::Syntax(text) => {
                // The library's message repeats the pattern with a caret under the error;
                // its last line is the reason, which is all a task output needs.
                let reason = text
                    .lines()
                    .rev()
                    .find_map(|l| l.trim().strip_prefix("error:"))
                    .map(str::trim)
                    .unwrap_or("syntax error");
                format!(
                    "parameter '{field}' is not a valid regular expression: {reason}; fix it, or use 'fixed' for a literal string"
                )
            }
            other => format!("parameter '{field}' cannot be compiled: {other}"),
        })
}

/// What a scan found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Matching lines.
    pub count: u64,
    /// Their 1-based numbers, at most `cap` of them.
    pub lines: Vec<u64>,
    /// More lines matched than `lines` holds.
    pub truncated: bool,
    /// Lines read.
    pub total: u64,
}

/// Why a scan stopped. Neither variant carries file content.
#[derive(Debug)]
pub enum ScanError {
    /// A line longer than the limit: matching it would need unbounded memory.
    LineTooLong { line: u64, limit: usize },
    /// The read itself failed after `line` complete lines.
    Read { line: u64, error: std::io::Error },
}

/// Reads `reader` to its end, one line (`\n`-terminated, the `\n` not part of the line) at a
/// time, testing each against `re`. Memory stays below `max_line` plus a read buffer whatever
/// the input size; bytes need not be UTF-8.
pub fn scan(reader: impl Read, re: &Regex, cap: usize, max_line: usize) -> Result<Scan, ScanError> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut line = Vec::new();
    let mut found = Scan::default();
    loop {
        line.clear();
        let got = (&mut reader)
            .take(max_line as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|error| ScanError::Read {
                line: found.total,
                error,
            })?;
        if got == 0 {
            return Ok(found);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > max_line {
            return Err(ScanError::LineTooLong {
                line: found.total + 1,
                limit: max_line,
            });
        }
        found.total += 1;
        if re.is_match(&line) {
            found.count += 1;
            if found.lines.len() < cap {
                found.lines.push(found.total);
            } else {
                found.truncated = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> Regex {
        compile(&Needle::Pattern(p.into())).unwrap()
    }

    fn run(text: &[u8], re: &Regex) -> Scan {
        scan(text, re, 1000, 1024).unwrap()
    }

    #[test]
    fn counts_matching_lines_and_their_numbers() {
        let text = b"apiVersion: 1\ndatasources:\n  - name: Loki\n    type: loki\n    type: loki\n";
        let found = run(text, &pattern(r#"^\s*type:\s*["']?loki["']?\s*$"#));
        assert_eq!(
            found,
            Scan {
                count: 2,
                lines: vec![4, 5],
                truncated: false,
                total: 5
            }
        );
        assert_eq!(run(text, &pattern("prometheus")).count, 0);
    }

    #[test]
    fn a_last_line_without_newline_and_empty_input() {
        assert_eq!(run(b"a\nb", &pattern("^b$")).lines, [2]);
        assert_eq!(run(b"", &pattern("")), Scan::default());
        // An empty pattern matches every line, like grep.
        assert_eq!(run(b"x\n\ny\n", &pattern("")).count, 3);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_fine() {
        let text = b"\xff\xfe binary \x00 junk\nkey: value \xc3\x28\nplain\n";
        assert_eq!(run(text, &pattern("^key: ")).lines, [2]);
        assert_eq!(run(text, &pattern(r"(?-u:\xff)")).lines, [1]);
        assert_eq!(run(text, &pattern("junk")).lines, [1]);
    }

    #[test]
    fn carriage_returns_stay_part_of_the_line_like_grep() {
        assert_eq!(run(b"a\r\n", &pattern("^a$")).count, 0);
        assert_eq!(run(b"a\r\n", &pattern("^a\r?$")).count, 1);
    }

    #[test]
    fn fixed_strings_are_literal() {
        let re = compile(&Needle::Fixed("a.b*(c)".into())).unwrap();
        assert_eq!(run(b"axbbc\na.b*(c)\n", &re).lines, [2]);
        let re = compile(&Needle::Fixed("gr\u{e4}fin".into())).unwrap();
        assert_eq!(run("x gr\u{e4}fin y\n".as_bytes(), &re).count, 1);
    }

    #[test]
    fn line_numbers_are_capped_and_the_count_is_not() {
        let text = "hit\n".repeat(25);
        let found = scan(text.as_bytes(), &pattern("hit"), 10, 1024).unwrap();
        assert_eq!(found.count, 25);
        assert_eq!(found.lines, (1..=10).collect::<Vec<u64>>());
        assert!(found.truncated);
    }

    #[test]
    fn an_overlong_line_is_an_error_that_quotes_nothing() {
        let mut text = b"short\n".to_vec();
        text.extend_from_slice(&[b's'; 100]);
        text.push(b'\n');
        match scan(text.as_slice(), &pattern("s"), 10, 50) {
            Err(ScanError::LineTooLong { line: 2, limit: 50 }) => {}
            other => panic!("{other:?}"),
        }
        // Exactly at the limit is fine, with or without the final newline.
        let exact = "s".repeat(50);
        assert_eq!(
            scan(exact.as_bytes(), &pattern("s"), 10, 50).unwrap().count,
            1
        );
        let exact_nl = format!("{exact}\n{exact}\n");
        assert_eq!(
            scan(exact_nl.as_bytes(), &pattern("s"), 10, 50)
                .unwrap()
                .count,
            2
        );
    }

    #[test]
    fn read_errors_say_where() {
        struct Broken(u8);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("disk on fire"));
                }
                self.0 -= 1;
                buf[..2].copy_from_slice(b"x\n");
                Ok(2)
            }
        }
        match scan(Broken(3), &pattern("x"), 10, 50) {
            Err(ScanError::Read { line: 3, error }) => {
                assert_eq!(error.to_string(), "disk on fire")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_patterns_are_named_briefly() {
        let e = compile(&Needle::Pattern("(unclosed".into())).unwrap_err();
        assert!(
            e.starts_with("parameter 'pattern' is not a valid regular expression: "),
            "{e}"
        );
        assert!(e.contains("unclosed group") && !e.contains('\n'), "{e}");
        let e = compile(&Needle::Pattern(r"\w{5000}\w{5000}".into())).unwrap_err();
        assert!(
            e.contains("'pattern' compiles to a program larger than"),
            "{e}"
        );
    }
}
