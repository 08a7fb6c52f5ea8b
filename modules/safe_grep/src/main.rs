//! `safe_grep`: proves that a file does (or does not) contain a pattern, and optionally that
//! it has the expected owner, group and mode, without ever returning the file's content.
//!
//! The answer holds counts, line numbers and metadata only. Failure messages are built from
//! those and from the task's own parameters; no byte read from the file is ever put into a
//! string that leaves the process (see `matcher`).

mod expect;
#[cfg(test)]
mod fuzz;
mod matcher;

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use runtime::accounts::Db;
use runtime::{Context, Default, Failure, Outcome, Param, Params};

use expect::{Expect, Found};
use matcher::{Needle, Scan, ScanError};

const NAME: &str = "safe_grep";

const SPEC: &[Param] = &[
    Param::str("path").required(),
    Param::str("pattern"),
    Param::str("fixed"),
    Param::str("state")
        .default(Default::Str("present"))
        .choices(&["present", "absent"]),
    Param::int("min_count").min(0),
    Param::int("max_count").min(0),
    Param::str("owner"),
    Param::str("group"),
    Param::str("mode"),
];

/// At most this many line numbers are returned; `count` is always exact.
const LINES_CAP: usize = 1000;
/// Matching is per line, so a line must fit in memory; beyond this the file is not a text
/// file a line-oriented check makes sense for.
const MAX_LINE: usize = 16 * 1024 * 1024;

fn main() {
    runtime::run(NAME, SPEC, safe_grep);
}

struct Task {
    path: String,
    needle: Needle,
    expect: Expect,
}

fn safe_grep(params: &Params, _ctx: &Context) -> Result<Outcome, Failure> {
    // Check mode changes nothing here either: the module only reads, so it runs as usual.
    let task = task(params)?;
    let re = matcher::compile(&task.needle)?;
    let path = task.path.as_str();

    // Opened once, and owner, mode and type taken from the open file: a stat first and an open
    // after could look at two different files if the path is replaced in between. O_NONBLOCK
    // so that opening a FIFO returns at once instead of waiting for a writer; it changes
    // nothing for the regular files we go on to read.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| open_error(path, &e))?;
    let meta = file.metadata().map_err(|e| open_error(path, &e))?;
    let kind = meta.file_type();
    if kind.is_dir() {
        return Err(format!("{path} is a directory; 'path' must name a file").into());
    }
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a pipe (FIFO)"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a device"
        };
        return Err(format!(
            "{path} is not a regular file but {what}; 'path' must name a regular file"
        )
        .into());
    }
    let scan = matcher::scan(file, &re, LINES_CAP, MAX_LINE).map_err(|e| match e {
        ScanError::LineTooLong { line, limit } => format!(
            "line {line} of {path} is longer than {} MiB; safe_grep matches line by line and does not read such files",
            limit / (1024 * 1024)
        ),
        ScanError::Read { line, error } => {
            format!("reading {path} failed after line {line}: {error}")
        }
    })?;

    // Names from /etc/passwd and /etc/group; an id without a name (or unreadable files) shows
    // as its number.
    let accounts = Db::load_or_empty(Path::new("/"));
    let found = Found {
        count: scan.count,
        uid: meta.uid(),
        gid: meta.gid(),
        owner: accounts
            .user_by_uid(meta.uid())
            .map_or_else(|| meta.uid().to_string(), |u| u.name.clone()),
        group: accounts
            .group_by_gid(meta.gid())
            .map_or_else(|| meta.gid().to_string(), |g| g.name.clone()),
        mode: meta.mode() & 0o7777,
    };
    let what = match task.needle {
        Needle::Pattern(_) => "matching the pattern",
        Needle::Fixed(_) => "containing the fixed string",
    };
    let problems = expect::problems(
        &task.expect,
        &found,
        path,
        what,
        &|n| accounts.user(n).map(|u| u.uid),
        &|n| accounts.group(n).map(|g| g.gid),
    );
    let fields = result_fields(path, &scan, &found, meta.len());
    if !problems.is_empty() {
        let mut failure = Failure::new(problems.join("; "));
        for (key, value) in fields {
            failure = failure.with(key, value);
        }
        return Err(failure);
    }
    let msg = match scan.count {
        0 => format!("no line {what} in {path}"),
        1 => format!("1 line {what} in {path}"),
        n => format!("{n} lines {what} in {path}"),
    };
    let mut outcome = Outcome::unchanged(msg);
    for (key, value) in fields {
        outcome.set(key, value);
    }
    Ok(outcome)
}

fn result_fields(
    path: &str,
    scan: &Scan,
    found: &Found,
    size: u64,
) -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::Value as Json;
    vec![
        ("path", Json::from(path)),
        ("matched", Json::from(scan.count > 0)),
        ("count", Json::from(scan.count)),
        ("lines", Json::from(scan.lines.clone())),
        ("lines_truncated", Json::from(scan.truncated)),
        ("owner", Json::from(found.owner.as_str())),
        ("group", Json::from(found.group.as_str())),
        ("uid", Json::from(found.uid)),
        ("gid", Json::from(found.gid)),
        ("mode", Json::from(expect::octal(found.mode))),
        ("size", Json::from(size)),
    ]
}

fn open_error(path: &str, e: &std::io::Error) -> Failure {
    let msg = match e.kind() {
        ErrorKind::NotFound => format!("{path} does not exist"),
        ErrorKind::PermissionDenied => format!(
            "cannot read {path}: permission denied; run the task as a user who may read it (become: true)"
        ),
        _ => format!("cannot read {path}: {e}"),
    };
    Failure::new(msg)
}

/// The task's parameters, validated; every error names the field and the fix.
fn task(p: &Params) -> Result<Task, String> {
    let path = p.str("path").unwrap_or_default().to_string();
    if path.is_empty() {
        return Err(
            "parameter 'path' is empty; give the file to search, e.g. /etc/loki/config.yml".into(),
        );
    }
    let needle = match (p.str("pattern"), p.str("fixed")) {
        (Some(pattern), None) => Needle::Pattern(pattern.to_string()),
        (None, Some(fixed)) => {
            if fixed.contains('\n') {
                return Err("parameter 'fixed' contains a line break; safe_grep matches one line at a time, so search for one line".into());
            }
            Needle::Fixed(fixed.to_string())
        }
        (Some(_), Some(_)) => {
            return Err("set only one of 'pattern' (a regular expression) or 'fixed' (a literal string), not both".into())
        }
        (None, None) => {
            return Err("set one of 'pattern' (a regular expression) or 'fixed' (a literal string)".into())
        }
    };
    let absent = p.str("state") == Some("absent");
    let min = p.int("min_count").map(|n| n as u64);
    let max = p.int("max_count").map(|n| n as u64);
    if absent && (min.is_some() || max.is_some()) {
        return Err("'min_count' and 'max_count' apply to state=present; state=absent already means no matching line".into());
    }
    if let (Some(min), Some(max)) = (min, max) {
        if min > max {
            return Err(format!(
                "'min_count' ({min}) is larger than 'max_count' ({max}); no file can satisfy both"
            ));
        }
    }
    let name = |field: &str| -> Result<Option<String>, String> {
        match p.str(field) {
            Some("") => Err(format!(
                "parameter '{field}' is empty; give a name or a numeric id, or leave it out"
            )),
            other => Ok(other.map(String::from)),
        }
    };
    let mode = match p.str("mode") {
        Some(text) => Some(expect::parse_mode(text, p.was_number("mode"))?),
        None => None,
    };
    Ok(Task {
        path,
        needle,
        expect: Expect {
            min: if absent { 0 } else { min.unwrap_or(1) },
            max: if absent { Some(0) } else { max },
            owner: name("owner")?,
            group: name("group")?,
            mode,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_errors_say_what_to_do() {
        let denied = std::io::Error::from(ErrorKind::PermissionDenied);
        let msg = open_error("/etc/x", &denied).msg;
        assert!(
            msg.contains("cannot read /etc/x: permission denied") && msg.contains("become: true")
        );
        let missing = std::io::Error::from(ErrorKind::NotFound);
        assert_eq!(open_error("/etc/x", &missing).msg, "/etc/x does not exist");
    }
}
