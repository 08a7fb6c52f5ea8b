//! What the task expects of the file, and the messages for what is not met. Pure functions:
//! the messages are built from counts, ids, modes and the path, never from the file's text.

/// The task's expectations, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    /// Lower bound on matching lines (state=present: `min_count`, default 1).
    pub min: u64,
    /// Upper bound (state=absent: 0).
    pub max: Option<u64>,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Permission bits, `0o7777` at most.
    pub mode: Option<u32>,
}

/// What was found: the scan and the file's metadata, with names resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub count: u64,
    pub uid: u32,
    pub gid: u32,
    pub owner: String,
    pub group: String,
    pub mode: u32,
}

/// How an expected owner or group name resolves: the id a name stands for, or `None` when
/// no such account exists (then only a number can match).
pub type Resolve<'a> = &'a dyn Fn(&str) -> Option<u32>;

/// The unmet expectations, one message each; empty when all are met.
pub fn problems(
    expect: &Expect,
    found: &Found,
    path: &str,
    what: &str,
    user: Resolve,
    group: Resolve,
) -> Vec<String> {
    let mut out = Vec::new();
    let lines = |n: u64| if n == 1 { "line" } else { "lines" };
    if expect.max == Some(0) {
        if found.count > 0 {
            out.push(format!(
                "expected no line {what} in {path}, found {}",
                found.count
            ));
        }
    } else {
        if found.count < expect.min {
            out.push(format!(
                "expected at least {} {} {what} in {path}, found {}",
                expect.min,
                lines(expect.min),
                found.count
            ));
        }
        if let Some(max) = expect.max.filter(|max| found.count > *max) {
            out.push(format!(
                "expected at most {max} {} {what} in {path}, found {}",
                lines(max),
                found.count
            ));
        }
    }
    let mut ids = |kind: &str,
                   want: &Option<String>,
                   have_id: u32,
                   have: &str,
                   resolve: Resolve| {
        let Some(want) = want else { return };
        let want_id = resolve(want).or_else(|| want.parse::<u32>().ok());
        match want_id {
            Some(id) if id == have_id => {}
            Some(_) => out.push(format!(
                "expected {kind} {want} of {path}, found {have}"
            )),
            None => out.push(format!(
                "expected {kind} {want} of {path}, but there is no {kind} named {want} in /etc/{}; found {have}",
                if kind == "owner" { "passwd" } else { "group" }
            )),
        }
    };
    ids("owner", &expect.owner, found.uid, &found.owner, user);
    ids("group", &expect.group, found.gid, &found.group, group);
    if let Some(mode) = expect.mode.filter(|m| *m != found.mode) {
        out.push(format!(
            "expected mode {} of {path}, found {}",
            octal(mode),
            octal(found.mode)
        ));
    }
    out
}

// Shared with the files module, which takes and shows modes the same way.
pub use runtime::{octal, parse_mode};

#[cfg(test)]
mod tests {
    use super::*;

    fn users(name: &str) -> Option<u32> {
        match name {
            "root" => Some(0),
            "grafana" => Some(106),
            _ => None,
        }
    }

    fn groups(name: &str) -> Option<u32> {
        match name {
            "root" => Some(0),
            "grafana" => Some(107),
            _ => None,
        }
    }

    fn found(count: u64) -> Found {
        Found {
            count,
            uid: 0,
            gid: 107,
            owner: "root".into(),
            group: "grafana".into(),
            mode: 0o640,
        }
    }

    fn check(expect: &Expect, found: &Found) -> Vec<String> {
        problems(
            expect,
            found,
            "/etc/x",
            "matching the pattern",
            &users,
            &groups,
        )
    }

    fn present() -> Expect {
        Expect {
            min: 1,
            ..Expect::default()
        }
    }

    #[test]
    fn present_needs_a_match_and_respects_bounds() {
        assert!(check(&present(), &found(1)).is_empty());
        assert_eq!(
            check(&present(), &found(0)),
            ["expected at least 1 line matching the pattern in /etc/x, found 0"]
        );
        let bounded = Expect {
            min: 2,
            max: Some(3),
            ..Expect::default()
        };
        assert_eq!(
            check(&bounded, &found(1)),
            ["expected at least 2 lines matching the pattern in /etc/x, found 1"]
        );
        assert!(check(&bounded, &found(3)).is_empty());
        assert_eq!(
            check(&bounded, &found(4)),
            ["expected at most 3 lines matching the pattern in /etc/x, found 4"]
        );
        let any = Expect {
            min: 0,
            max: Some(1),
            ..Expect::default()
        };
        assert!(check(&any, &found(0)).is_empty());
    }

    #[test]
    fn absent_means_no_match() {
        let absent = Expect {
            max: Some(0),
            ..Expect::default()
        };
        assert!(check(&absent, &found(0)).is_empty());
        assert_eq!(
            check(&absent, &found(2)),
            ["expected no line matching the pattern in /etc/x, found 2"]
        );
    }

    #[test]
    fn owner_group_and_mode_by_name_or_number() {
        let mut e = Expect {
            owner: Some("root".into()),
            group: Some("grafana".into()),
            mode: Some(0o640),
            ..Expect::default()
        };
        assert!(check(&e, &found(0)).is_empty());
        e.owner = Some("0".into());
        e.group = Some("107".into());
        assert!(check(&e, &found(0)).is_empty());
        e.owner = Some("grafana".into());
        e.group = Some("root".into());
        e.mode = Some(0o600);
        assert_eq!(
            check(&e, &found(0)),
            [
                "expected owner grafana of /etc/x, found root",
                "expected group root of /etc/x, found grafana",
                "expected mode 0600 of /etc/x, found 0640",
            ]
        );
        e = Expect {
            owner: Some("nosuchuser".into()),
            ..Expect::default()
        };
        assert_eq!(
            check(&e, &found(0)),
            ["expected owner nosuchuser of /etc/x, but there is no owner named nosuchuser in /etc/passwd; found root"]
        );
    }

    #[test]
    fn modes_from_strings_and_unquoted_yaml_numbers() {
        assert_eq!(parse_mode("0640", false), Ok(0o640));
        assert_eq!(parse_mode("640", false), Ok(0o640));
        assert_eq!(parse_mode("2750", false), Ok(0o2750));
        assert_eq!(parse_mode("0o755", false), Ok(0o755));
        // YAML `mode: 0640` arrives as 416.
        assert_eq!(parse_mode("416", true), Ok(0o640));
        for bad in ["", "64", "0648", "u=rw", "07777x", "10000"] {
            let e = parse_mode(bad, false).unwrap_err();
            assert!(
                e.contains("'mode' must be an octal mode such as \"0640\""),
                "{e}"
            );
        }
        assert!(parse_mode("4096", true).is_err());
        assert_eq!(octal(0o100640), "0640");
    }
}
