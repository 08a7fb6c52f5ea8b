//! Debian version ordering, exactly as dpkg orders versions (`lib/dpkg/version.c`:
//! `dpkg_version_compare` and `verrevcmp`), so the upgrade guard needs no `dpkg
//! --compare-versions` process per package.
//!
//! A version is `[epoch:]upstream[-revision]`: the epoch is the digits before the first `:`,
//! the revision what follows the last `-`. Upstream and revision are compared in alternating
//! runs of non-digits (letters sort before other characters, `~` before everything, even the
//! end of the string) and digits (as numbers, leading zeros ignored).

use std::cmp::Ordering;

/// A version split into its three parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version<'a> {
    pub epoch: u32,
    pub upstream: &'a str,
    pub revision: &'a str,
}

impl<'a> Version<'a> {
    /// Splits a version the way dpkg does, without judging its characters: for versions dpkg
    /// itself recorded (which it checked when the package was installed). Whitespace around it
    /// is ignored; an epoch that is not a number counts as 0.
    pub fn split(text: &'a str) -> Version<'a> {
        let text = text.trim();
        let (epoch, rest) = match text.split_once(':') {
            Some((e, rest)) => (e.parse().unwrap_or(0), rest),
            None => (0, text),
        };
        let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
        Version {
            epoch,
            upstream,
            revision,
        }
    }

    /// Parses a version given by a task (a pin), with dpkg's syntax rules, so a pin dpkg would
    /// refuse is refused here with dpkg's reason instead of being compared.
    pub fn parse(text: &'a str) -> Result<Version<'a>, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("version string is empty".into());
        }
        if trimmed.contains(char::is_whitespace) {
            return Err("version string has embedded spaces".into());
        }
        if let Some((epoch, _)) = trimmed.split_once(':') {
            if epoch.is_empty() {
                return Err("epoch in version is empty".into());
            }
            if !epoch.bytes().all(|b| b.is_ascii_digit()) {
                return Err("epoch in version is not number".into());
            }
            if epoch.parse::<i32>().is_err() {
                return Err("epoch in version is too big".into());
            }
        }
        let v = Version::split(trimmed);
        if v.upstream.is_empty() {
            return Err("version number is empty".into());
        }
        if !v.upstream.as_bytes()[0].is_ascii_digit() {
            return Err("version number does not start with digit".into());
        }
        if let Some(c) = v
            .upstream
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || ".-+~:".contains(*c)))
        {
            return Err(format!("invalid character '{c}' in version number"));
        }
        if let Some(c) = v
            .revision
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || ".+~".contains(*c)))
        {
            return Err(format!("invalid character '{c}' in revision number"));
        }
        Ok(v)
    }
}

/// dpkg's ordering of two versions.
pub fn compare(a: &Version, b: &Version) -> Ordering {
    a.epoch
        .cmp(&b.epoch)
        .then_with(|| verrevcmp(a.upstream, b.upstream))
        .then_with(|| verrevcmp(a.revision, b.revision))
}

/// The weight of one character in a non-digit run; 0 stands for the end of the string.
fn order(c: u8) -> i32 {
    match c {
        0 => 0,
        b'~' => -1,
        c if c.is_ascii_digit() => 0,
        c if c.is_ascii_alphabetic() => i32::from(c),
        c => i32::from(c) + 256,
    }
}

/// Compares upstream versions or revisions: alternating non-digit runs (by `order`) and digit
/// runs (numerically).
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // Past the end reads as 0, as the C code reads the terminating NUL.
    let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (ac, bc) = (order(at(a, i)), order(at(b, j)));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while at(a, i) == b'0' {
            i += 1;
        }
        while at(b, j) == b'0' {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while at(a, i).is_ascii_digit() && at(b, j).is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if at(a, i).is_ascii_digit() {
            return Ordering::Greater;
        }
        if at(b, j).is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> i32 {
        match compare(&Version::split(a), &Version::split(b)) {
            Ordering::Less => -1,
            Ordering::Equal => 0,
            Ordering::Greater => 1,
        }
    }

    /// dpkg's own vectors: `scripts/t/Dpkg_Version.t` (its __DATA__ section, which the dpkg
    /// test suite also checks against `dpkg --compare-versions`), "a b expected".
    pub(crate) const DPKG_VECTORS: &str = "\
1.0-1 2.0-2 -1
2.2~rc-4 2.2-1 -1
2.2-1 2.2~rc-4 1
1.0000-1 1.0-1 0
1 0:1 0
0 0:0-0 0
2:2.5 1:7.5 1
1:0foo 0foo 1
0:0foo 0foo 0
0foo 0foo 0
0foo- 0foo 0
0foo- 0foo-0 0
0foo 0fo 1
0foo- 0foo+ -1
0foo~1 0foo -1
0foo~foo+Bar 0foo~foo+bar -1
0foo~~ 0foo~ -1
1~ 1 -1
12345+that-really-is-some-ver-0 12345+that-really-is-some-ver-10 -1
0foo-0 0foo-01 -1
0foo.bar 0foobar 1
0foo.bar 0foo1bar 1
0foo.bar 0foo0bar 1
0foo1bar-1 0foobar-1 -1
0foo2.0 0foo2 1
0foo2.0.0 0foo2.10.0 -1
0foo2.0 0foo2.0.0 -1
0foo2.0 0foo2.10 -1
0foo2.1 0foo2.10 -1
1.09 1.9 0
1.0.8+nmu1 1.0.8 1
3.11 3.10+nmu1 1
0.9j-20080306-4 0.9i-20070324-2 1
1.2.0~b7-1 1.2.0~b6-1 1
1.011-1 1.06-2 1
0.0.9+dfsg1-1 0.0.8+dfsg1-3 1
4.6.99+svn6582-1 4.6.99+svn6496-1 1
53 52 1
0.9.9~pre122-1 0.9.9~pre111-1 1
2:2.3.2-2+lenny2 2:2.3.2-2 1
1:3.8.1-1 3.8.GA-1 1
1.0.1+gpl-1 1.0.1-2 1
1a 1000a -1
-0.6.5 0.9.1 -1
";

    #[test]
    fn dpkgs_own_test_vectors() {
        for line in DPKG_VECTORS.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let want: i32 = f[2].parse().unwrap();
            assert_eq!(cmp(f[0], f[1]), want, "{line}");
            // The ordering is antisymmetric: the vectors hold both directions only sometimes.
            assert_eq!(cmp(f[1], f[0]), -want, "reversed: {line}");
        }
    }

    /// `lib/dpkg/t/t-version.c`, test_version_compare: (epoch, upstream, revision) objects.
    #[test]
    fn dpkgs_c_library_compare_cases() {
        let v = |epoch, upstream, revision| Version {
            epoch,
            upstream,
            revision,
        };
        let c = |a: Version, b: Version| compare(&a, &b);
        assert_eq!(c(v(0, "", ""), v(0, "", "")), Ordering::Equal);
        assert_ne!(c(v(1, "", ""), v(2, "", "")), Ordering::Equal);
        assert_ne!(c(v(0, "1", "1"), v(0, "2", "1")), Ordering::Equal);
        assert_ne!(c(v(0, "1", "1"), v(0, "1", "2")), Ordering::Equal);
        assert_eq!(c(v(0, "0", "0"), v(0, "0", "0")), Ordering::Equal);
        assert_eq!(c(v(0, "0", "00"), v(0, "00", "0")), Ordering::Equal);
        assert_eq!(c(v(1, "2", "3"), v(1, "2", "3")), Ordering::Equal);
        assert_eq!(c(v(0, "0", "0"), v(1, "0", "0")), Ordering::Less);
        assert_eq!(c(v(1, "0", "0"), v(0, "0", "0")), Ordering::Greater);
        assert_eq!(c(v(0, "a", "0"), v(0, "b", "0")), Ordering::Less);
        assert_eq!(c(v(0, "0", "a"), v(0, "0", "b")), Ordering::Less);
        assert_eq!(c(v(0, "0", "b"), v(0, "0", "a")), Ordering::Greater);
    }

    /// `lib/dpkg/t/t-version.c`, test_version_parse: how versions split, and what dpkg refuses.
    #[test]
    fn parsing_follows_dpkg() {
        let p = |s| Version::parse(s).unwrap();
        let v = |epoch, upstream, revision| Version {
            epoch,
            upstream,
            revision,
        };
        assert_eq!(p("0"), v(0, "0", ""));
        assert_eq!(p("0:0"), v(0, "0", ""));
        assert_eq!(p("0:0-"), v(0, "0", ""));
        assert_eq!(p("0:0.0-0.0"), v(0, "0.0", "0.0"));
        assert_eq!(p("5:1"), v(5, "1", ""));
        assert_eq!(p("0:0-0-0"), v(0, "0-0", "0"));
        assert_eq!(p("0:0:0-0"), v(0, "0:0", "0"));
        assert_eq!(p("0:0-0:0-0"), v(0, "0-0:0", "0"));
        assert_eq!(p("0:09azAZ.-+~:-0"), v(0, "09azAZ.-+~:", "0"));
        assert_eq!(p("0:0-azAZ09.+~"), v(0, "0", "azAZ09.+~"));
        assert_eq!(p("  \t0:0-1  \t"), v(0, "0", "1"));
        for (bad, why) in [
            ("", "empty"),
            ("  ", "empty"),
            ("0:", "version number is empty"),
            ("0:0 0-1", "embedded spaces"),
            ("-1:0-1", "not number"),
            ("999999999999999999999999:0-1", "too big"),
            ("a:0-0", "not number"),
            ("-0", "version number is empty"),
            ("0:-0", "version number is empty"),
            ("0:abc3-0", "does not start with digit"),
            ("0:0-0:0", "invalid character ':' in revision"),
            ("latest", "does not start with digit"),
        ] {
            let err = Version::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        for c in "!#@$%&/|\\<>()[]{};,_=*^'".chars() {
            let text = format!("0:0{c}-0");
            assert!(Version::parse(&text).is_err(), "{text}");
            let text = format!("0:0-0{c}");
            assert!(Version::parse(&text).is_err(), "{text}");
        }
    }

    #[test]
    fn the_pins_of_this_repository_order_as_expected() {
        assert_eq!(cmp("3.5.7", "3.4.3"), 1);
        assert_eq!(cmp("12.1.1", "12.1.1"), 0);
        assert_eq!(cmp("1.10.2", "1.9.9"), 1);
        assert_eq!(cmp("1.10.2~rc1", "1.10.2"), -1);
        assert_eq!(cmp("1:1.0", "9.9"), 1);
    }
}
