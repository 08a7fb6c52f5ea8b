//! `ini` entries: set options in sections of an ini file and keep every other byte of it.
//!
//! The rules are community.general.ini_file's defaults (`exclusive: true`,
//! `modify_inactive_option: true`, `no_extra_spaces: false`, `ignore_spaces: false`), so a file
//! that role wrote is already what this writes, and the deploy keeps its output:
//! - a section is the first line `[name]` (spaces allowed inside the brackets); it ends at the
//!   next line starting with `[`;
//! - an option's lines in the section are the active `option = value` lines and the commented
//!   ones (`;option = value`, `# option=value`, `option` alone); the one that already has the
//!   value, else the first, becomes `option = value`, the others are removed;
//! - an option the section lacks goes after the section's last line that is neither blank nor a
//!   comment; a section the file lacks goes at its end, with its options.
//!
//! Where this differs from ini_file, on purpose: a missing file starts empty (ini_file begins
//! it with a blank line); a missing final newline is added only when a line is appended after
//! it; CRLF files stay CRLF (ini_file rewrites them with LF), new lines take the ending of the
//! file's first line; a UTF-8 byte order mark is kept.
//!
//! Values are never quoted in errors: the entry may be secret.

use serde_json::{Map, Value as Json};

/// The options to set: sections in order, each with its options in order. Values are one line.
pub type Settings = Vec<(String, Vec<(String, String)>)>;

/// Reads the entry's `ini` dict: `{section: {option: value}}`. A value is a string or an
/// integer (written in decimal); booleans, floats and null are refused: YAML's `true` or `1.10`
/// would otherwise reach the file as something the user did not write (`True`, `1.1`). Errors
/// name `ini.<section>.<option>` and never the value.
pub fn settings(ini: &Map<String, Json>) -> Result<Settings, String> {
    if ini.is_empty() {
        return Err(
            "'ini' is empty; give at least one section with an option, e.g. {security: {admin_user: admin}}"
                .into(),
        );
    }
    let mut out = Vec::with_capacity(ini.len());
    for (section, options) in ini {
        check_name(section, "section", &format!("ini.{section}"))?;
        if section.contains(']') {
            return Err(format!(
                "ini.{section}: a section name cannot contain ']'; fix the name"
            ));
        }
        let Json::Object(options) = options else {
            return Err(format!(
                "ini.{section}: must be a dict of option: value, got {}",
                kind(options)
            ));
        };
        if options.is_empty() {
            return Err(format!(
                "ini.{section}: sets no option; give at least one (option: value), or remove the section"
            ));
        }
        let mut pairs = Vec::with_capacity(options.len());
        for (option, value) in options {
            let at = format!("ini.{section}.{option}");
            check_name(option, "option", &at)?;
            if option.contains('=') || option.starts_with(['[', ';', '#']) {
                return Err(format!(
                    "{at}: an option name cannot contain '=' or start with '[', ';' or '#'; fix the name"
                ));
            }
            let value = match value {
                Json::String(s) => s.clone(),
                Json::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                other => {
                    return Err(format!(
                    "{at}: the value must be a string (or an integer), got {}; quote it in YAML \
                         (\"true\", \"1.10\"), or use {{{{ x | string }}}} for a templated one",
                    kind(other)
                ))
                }
            };
            if value.contains(['\n', '\r']) {
                return Err(format!(
                    "{at}: the value has a line break; an ini value is one line (value not shown)"
                ));
            }
            pairs.push((option.clone(), value));
        }
        out.push((section.clone(), pairs));
    }
    Ok(out)
}

fn check_name(name: &str, what: &str, at: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("{at}: the {what} name is empty; give a name"));
    }
    if name.trim() != name || name.contains(['\n', '\r']) {
        return Err(format!(
            "{at}: the {what} name has surrounding spaces or a line break; write it without"
        ));
    }
    Ok(())
}

fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null (no value)",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a non-integer number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a dict",
    }
}

/// `text` with every setting applied (see the module comment). The same text comes back when
/// the file already has them.
pub fn apply(text: &str, settings: &Settings) -> String {
    const BOM: char = '\u{feff}';
    let (bom, text) = match text.strip_prefix(BOM) {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let mut lines: Vec<String> = text.split_inclusive('\n').map(String::from).collect();
    let nl = match lines.first() {
        Some(first) if first.ends_with("\r\n") => "\r\n",
        _ => "\n",
    };
    for (section, options) in settings {
        for (option, value) in options {
            set(&mut lines, nl, section, option, value);
        }
    }
    let mut out = String::with_capacity(text.len() + 64);
    if bom {
        out.push(BOM);
    }
    out.extend(lines);
    out
}

/// What a diff of an `ini` entry shows: only the options it sets, one line each,
/// `[section] option = value`, before (from `text`, the file now; `None`: no file) and after.
/// Never the rest of the file: it may hold secrets another entry (or task) wrote. An option the
/// section has no active line for is `(not set)` before.
pub fn diff(text: Option<&str>, settings: &Settings) -> (String, String) {
    let (mut before, mut after) = (String::new(), String::new());
    for (section, options) in settings {
        for (option, value) in options {
            match text.and_then(|t| current(t, section, option)) {
                Some(old) => before.push_str(&format!("[{section}] {option} = {old}\n")),
                None => before.push_str(&format!("[{section}] {option} (not set)\n")),
            }
            after.push_str(&format!("[{section}] {option} = {value}\n"));
        }
    }
    if before == after {
        // The values are there already; only the lines holding them change.
        after.push_str(
            "(the same values; their lines are rewritten: spacing, duplicates or commented-out copies)\n",
        );
    }
    (before, after)
}

/// The value `option` has in `section` of `text`: its first active (not commented-out) line's,
/// in the first `[section]`, as `set` finds them.
pub fn current(text: &str, section: &str, option: &str) -> Option<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n').map(body);
    lines.find(|l| is_header(l, section))?;
    lines
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !blanks(l).starts_with(['#', ';']))
        .find_map(|l| option_value(l, option))
        .map(String::from)
}

/// One option, as one ini_file task would set it.
fn set(lines: &mut Vec<String>, nl: &str, section: &str, option: &str, value: &str) {
    let Some(header) = lines.iter().position(|l| is_header(body(l), section)) else {
        end_line(lines, nl);
        lines.push(format!("[{section}]{nl}"));
        lines.push(format!("{option} = {value}{nl}"));
        return;
    };
    let end = lines[header + 1..]
        .iter()
        .position(|l| l.starts_with('['))
        .map_or(lines.len(), |i| header + 1 + i);
    let found: Vec<(usize, &str)> = (header + 1..end)
        .filter_map(|i| option_value(body(&lines[i]), option).map(|v| (i, v)))
        .collect();
    let Some(&(first, _)) = found.first() else {
        // After the last line of the section that is neither blank nor a comment (at least
        // the header).
        let last = (header..end)
            .rev()
            .find(|&i| !blank_or_comment(body(&lines[i])))
            .unwrap_or(header);
        if !lines[last].ends_with('\n') {
            lines[last].push_str(nl);
        }
        lines.insert(last + 1, format!("{option} = {value}{nl}"));
        return;
    };
    // ini_file keeps the line that already has the value (so no line moves), else the first.
    let keep = found
        .iter()
        .find(|(_, v)| *v == value)
        .map_or(first, |&(i, _)| i);
    let drop: Vec<usize> = found
        .iter()
        .map(|&(i, _)| i)
        .filter(|&i| i != keep)
        .collect();
    let ending = &lines[keep][body(&lines[keep]).len()..];
    lines[keep] = format!("{option} = {value}{ending}");
    for i in drop.into_iter().rev() {
        lines.remove(i);
    }
}

/// Makes sure the last line ends with a newline before something is appended after it.
fn end_line(lines: &mut [String], nl: &str) {
    if let Some(last) = lines.last_mut() {
        if !last.ends_with('\n') {
            last.push_str(nl);
        }
    }
}

/// The line without its `\n` or `\r\n`.
fn body(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

/// `[section]`, `[ section ]`, `[section] ; comment`: ini_file's `^\[\s*section\s*]`.
fn is_header(line: &str, section: &str) -> bool {
    line.strip_prefix('[')
        .map(str::trim_start)
        .and_then(|rest| rest.strip_prefix(section))
        .is_some_and(|rest| rest.trim_start().starts_with(']'))
}

fn blanks(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

/// Blank, or a comment (`;` or `#` after spaces): ini_file's `^[ \t]*([#;].*)?$`.
fn blank_or_comment(line: &str) -> bool {
    let rest = blanks(line);
    rest.is_empty() || rest.starts_with(['#', ';'])
}

/// The value of a line that sets `option`, active or commented out (ini_file's `match_opt`:
/// `^[ \t]*[#;]?[ \t]*option[ \t]*(=|$)[ \t]*(.*)`); `""` for an option alone on its line.
fn option_value<'a>(line: &'a str, option: &str) -> Option<&'a str> {
    let rest = blanks(line);
    let rest = rest.strip_prefix(['#', ';']).unwrap_or(rest);
    let rest = blanks(blanks(rest).strip_prefix(option)?);
    if rest.is_empty() {
        return Some("");
    }
    rest.strip_prefix('=').map(blanks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(section: &str, option: &str, value: &str) -> Settings {
        vec![(section.into(), vec![(option.into(), value.into())])]
    }

    fn set1(text: &str, section: &str, option: &str, value: &str) -> String {
        apply(text, &one(section, option, value))
    }

    #[test]
    fn an_active_line_is_replaced_in_place() {
        let text = "; top\n[server]\nhttp_port = 3000\n\n[security]\nadmin_user = old\nx = 1\n";
        assert_eq!(
            set1(text, "security", "admin_user", "admin"),
            "; top\n[server]\nhttp_port = 3000\n\n[security]\nadmin_user = admin\nx = 1\n"
        );
        // Already so: the same text, byte for byte.
        let done = "[security]\nadmin_user = admin\n";
        assert_eq!(set1(done, "security", "admin_user", "admin"), done);
        // The same option in another section is not touched.
        assert_eq!(
            set1("[a]\nk = 1\n[b]\nk = 1\n", "b", "k", "2"),
            "[a]\nk = 1\n[b]\nk = 2\n"
        );
    }

    #[test]
    fn a_commented_default_is_replaced_as_ini_file_does() {
        // grafana.ini as packaged: the defaults are commented out in [security].
        let text = "[server]\nhttp_port = 3000\n\n[security]\n;admin_user = admin\n;admin_password = admin\n\n[users]\n";
        let settings = vec![(
            "security".to_string(),
            vec![
                ("admin_password".to_string(), "pw".to_string()),
                ("admin_user".to_string(), "root".to_string()),
            ],
        )];
        assert_eq!(
            apply(text, &settings),
            "[server]\nhttp_port = 3000\n\n[security]\nadmin_user = root\nadmin_password = pw\n\n[users]\n"
        );
        // `#` comments, spaces after the mark, and the option alone on its line count too;
        // a comment that only mentions the option does not.
        for line in [
            "# admin_user = x",
            ";\tadmin_user=x",
            "  ;admin_user",
            "admin_user",
        ] {
            let text = format!("[s]\n{line}\n");
            assert_eq!(
                set1(&text, "s", "admin_user", "a"),
                "[s]\nadmin_user = a\n",
                "{line}"
            );
        }
        let text = "[s]\n; admin_user is the login\nadmin_username = x\n";
        assert_eq!(
            set1(text, "s", "admin_user", "a"),
            "[s]\n; admin_user is the login\nadmin_username = x\nadmin_user = a\n"
        );
    }

    #[test]
    fn a_missing_option_goes_after_the_last_setting_of_its_section() {
        let text = "[s]\na = 1\n\n; about b\n\n[t]\nc = 3\n";
        assert_eq!(
            set1(text, "s", "b", "2"),
            "[s]\na = 1\nb = 2\n\n; about b\n\n[t]\nc = 3\n"
        );
        // A section of comments only: right after its header.
        assert_eq!(
            set1("[s]\n; nothing yet\n", "s", "b", "2"),
            "[s]\nb = 2\n; nothing yet\n"
        );
        // Options before the first header are not in any section.
        assert_eq!(set1("b = 1\n[s]\n", "s", "b", "2"), "b = 1\n[s]\nb = 2\n");
        // Keys compare exactly.
        assert_eq!(
            set1("[s]\nAdmin_User = x\n", "s", "admin_user", "y"),
            "[s]\nAdmin_User = x\nadmin_user = y\n"
        );
    }

    #[test]
    fn a_missing_section_goes_at_the_end() {
        assert_eq!(
            set1("[a]\nk = 1\n", "security", "admin_user", "admin"),
            "[a]\nk = 1\n[security]\nadmin_user = admin\n"
        );
        // Headers may have spaces inside the brackets or a comment after them.
        assert_eq!(
            set1("[ s ] ; the s part\nk = 1\n", "s", "k", "2"),
            "[ s ] ; the s part\nk = 2\n"
        );
        assert_eq!(
            set1("[ss]\nk = 1\n", "s", "k", "2"),
            "[ss]\nk = 1\n[s]\nk = 2\n"
        );
        // Two settings of one new section: one header.
        let settings = vec![(
            "n".to_string(),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())],
        )];
        assert_eq!(apply("", &settings), "[n]\na = 1\nb = 2\n");
    }

    #[test]
    fn a_diff_shows_only_the_options_set_never_the_rest_of_the_file() {
        let text = "[database]\npassword = other-S3cret\n[security]\n;admin_user = admin\nadmin_password = old\n";
        let settings = vec![(
            "security".to_string(),
            vec![
                ("admin_password".to_string(), "new".to_string()),
                ("admin_user".to_string(), "root".to_string()),
            ],
        )];
        let (before, after) = diff(Some(text), &settings);
        assert_eq!(
            before,
            "[security] admin_password = old\n[security] admin_user (not set)\n"
        );
        assert_eq!(
            after,
            "[security] admin_password = new\n[security] admin_user = root\n"
        );
        assert!(!format!("{before}{after}").contains("S3cret"));
        // No file yet: everything is not set.
        let (before, _) = diff(None, &settings);
        assert_eq!(
            before,
            "[security] admin_password (not set)\n[security] admin_user (not set)\n"
        );
        // Same values, other spelling: the diff still shows that something changes.
        let (before, after) = diff(Some("[s]\nk=1\nk = 1\n"), &one("s", "k", "1"));
        assert_eq!(before, "[s] k = 1\n");
        assert!(after.starts_with("[s] k = 1\n(the same values"), "{after}");
        // The value is read from the named section only, past its commented-out lines.
        assert_eq!(
            current("[a]\nk = 1\n[b]\n# k = 0\nk = 2\n", "b", "k").as_deref(),
            Some("2")
        );
        assert_eq!(current("[a]\nk = 1\n", "b", "k"), None);
    }

    #[test]
    fn an_empty_or_missing_file_gets_just_the_settings() {
        assert_eq!(set1("", "s", "k", "v"), "[s]\nk = v\n");
    }

    #[test]
    fn duplicates_keep_the_line_with_the_value_else_the_first() {
        assert_eq!(
            set1("[s]\nk = 1\nx = 0\nk = 2\n;k = 3\n", "s", "k", "9"),
            "[s]\nk = 9\nx = 0\n"
        );
        assert_eq!(
            set1("[s]\n;k = 1\nx = 0\nk = 2\n", "s", "k", "2"),
            "[s]\nx = 0\nk = 2\n"
        );
        // A duplicate section: the first one is used, as ini_file does.
        assert_eq!(
            set1("[s]\nk = 1\n[s]\nk = 1\n", "s", "k", "2"),
            "[s]\nk = 2\n[s]\nk = 1\n"
        );
    }

    #[test]
    fn any_spacing_is_recognised_and_written_as_ini_file_writes_it() {
        for line in ["k=1", "k = 1", "  k\t=   1", "k =1"] {
            let text = format!("[s]\n{line}\n");
            assert_eq!(set1(&text, "s", "k", "2"), "[s]\nk = 2\n", "{line}");
            // The same value in another spacing is rewritten once (as ini_file does), then stays.
            assert_eq!(set1(&text, "s", "k", "1"), "[s]\nk = 1\n", "{line}");
        }
    }

    #[test]
    fn crlf_and_a_missing_final_newline_are_kept() {
        assert_eq!(set1("[s]\r\nk = 1\r\n", "s", "k", "2"), "[s]\r\nk = 2\r\n");
        assert_eq!(
            set1("[s]\r\nk = 1\r\n", "s", "j", "2"),
            "[s]\r\nk = 1\r\nj = 2\r\n"
        );
        assert_eq!(
            set1("[a]\r\nk = 1", "s", "j", "2"),
            "[a]\r\nk = 1\r\n[s]\r\nj = 2\r\n"
        );
        // Replacing the last line keeps it without a newline; appending after it adds one.
        assert_eq!(set1("[s]\nk = 1", "s", "k", "2"), "[s]\nk = 2");
        assert_eq!(set1("[s]\nk = 1", "s", "j", "2"), "[s]\nk = 1\nj = 2\n");
        let bom = "\u{feff}[s]\nk = 1\n";
        assert_eq!(set1(bom, "s", "k", "2"), "\u{feff}[s]\nk = 2\n");
    }

    #[test]
    fn values_with_equals_signs_and_semicolons_are_written_as_given() {
        let got = set1("[s]\npw = a=b\n", "s", "pw", "x=y;z #w");
        assert_eq!(got, "[s]\npw = x=y;z #w\n");
        assert_eq!(set1(&got, "s", "pw", "x=y;z #w"), got, "idempotent");
        assert_eq!(set1("[s]\n", "s", "pw", ""), "[s]\npw = \n");
    }

    #[test]
    fn settings_are_typed_and_errors_never_show_a_value() {
        let ok = json!({"security": {"admin_user": "admin", "port": 3000}});
        assert_eq!(
            settings(ok.as_object().unwrap()).unwrap(),
            vec![(
                "security".to_string(),
                vec![
                    ("admin_user".to_string(), "admin".to_string()),
                    ("port".to_string(), "3000".to_string())
                ]
            )]
        );
        let cases = [
            (json!({}), "'ini' is empty"),
            (json!({"s": "x"}), "ini.s: must be a dict of option: value"),
            (json!({"s": {}}), "ini.s: sets no option"),
            (
                json!({"s": {"k": true}}),
                "ini.s.k: the value must be a string (or an integer), got a boolean",
            ),
            (json!({"s": {"k": 1.5}}), "got a non-integer number"),
            (json!({"s": {"k": null}}), "got null"),
            (json!({"s": {"k": ["S3cret"]}}), "got a list"),
            (
                json!({"s": {"k": "S3cret\nx"}}),
                "ini.s.k: the value has a line break",
            ),
            (json!({"s": {"a=b": "x"}}), "cannot contain '='"),
            (json!({"s": {";a": "x"}}), "start with '['"),
            (json!({"s": {" a": "x"}}), "surrounding spaces"),
            (json!({"": {"a": "x"}}), "ini.: the section name is empty"),
            (json!({"a]": {"a": "x"}}), "cannot contain ']'"),
        ];
        for (ini, needle) in cases {
            let e = settings(ini.as_object().unwrap()).unwrap_err();
            assert!(e.contains(needle), "{ini}: {e}");
            assert!(!e.contains("S3cret"), "{e}");
        }
    }
}
