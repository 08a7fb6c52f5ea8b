//! Package names and versions as tasks give them (`curl`, `loki=3.5.1`), checked before they
//! go anywhere near apt-get.
//!
//! Everything reaches apt-get as an argument vector, so no shell ever sees a value; the checks
//! are about apt-get itself: an item such as `-oAPT::...` would be read as an option, and a
//! name with a space or a glob is never what a task meant. Debian policy 5.6.1 says a package
//! name is lower-case letters, digits, `+`, `-`, `.`, at least two characters, starting with
//! an alphanumeric; 5.6.12 says a version is `[epoch:]upstream[-revision]` from alphanumerics
//! and `.+~-:`, upstream starting with a digit.

use std::fmt;

/// One requested package: a name and maybe an exact version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PackageSpec {
    pub name: String,
    pub version: Option<String>,
}

impl PackageSpec {
    /// Parses `name` or `name=version`, naming `field` in the error.
    pub fn parse(item: &str, field: &str) -> Result<PackageSpec, String> {
        let item = item.trim();
        let (name, version) = match item.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (item, None),
        };
        check_name(name).map_err(|why| {
            format!("{field}: '{item}' is not a valid Debian package name: {why}; use names like 'curl' or 'curl=7.88.1-10' (lower-case letters, digits, '+', '-', '.')")
        })?;
        if let Some(v) = version {
            check_version(v).map_err(|why| {
                format!("{field}: '{item}' has an invalid version: {why}; write it as apt-cache policy shows it, e.g. 'loki=3.5.1' or 'curl=7.88.1-10+deb12u5'")
            })?;
        }
        Ok(PackageSpec {
            name: name.to_string(),
            version: version.map(String::from),
        })
    }

    /// The argument apt-get gets: `name` or `name=version`.
    pub fn apt_arg(&self) -> String {
        match &self.version {
            Some(v) => format!("{}={v}", self.name),
            None => self.name.clone(),
        }
    }
}

impl fmt::Display for PackageSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.apt_arg())
    }
}

/// Parses a list of items, rejecting duplicates that disagree (`curl=1` and `curl=2`).
pub fn parse_specs(items: &[String], field: &str) -> Result<Vec<PackageSpec>, String> {
    let mut out: Vec<PackageSpec> = Vec::new();
    for item in items {
        let spec = PackageSpec::parse(item, field)?;
        match out.iter().find(|s| s.name == spec.name) {
            Some(existing) if existing.version == spec.version => continue,
            Some(existing) => {
                return Err(format!(
                    "{field}: package '{}' is listed twice with different versions ('{existing}' and '{spec}'); list it once",
                    spec.name
                ))
            }
            None => out.push(spec),
        }
    }
    Ok(out)
}

/// Checks a package name against Debian policy; the error says what is wrong.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.starts_with('-') {
        return Err("it starts with '-', so apt-get would read it as an option".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(*c)))
    {
        return Err(format!("it contains {}", describe_char(bad)));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("it must start with a letter or digit".into());
    }
    if name.len() < 2 {
        return Err("it must be at least two characters long".into());
    }
    Ok(())
}

/// Checks a Debian version string; the error says what is wrong.
pub fn check_version(version: &str) -> Result<(), String> {
    if version.is_empty() {
        return Err("it is empty (write 'name' for any version)".into());
    }
    if let Some(bad) = version
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ".+~:-".contains(*c)))
    {
        return Err(format!("it contains {}", describe_char(bad)));
    }
    if !version.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("it must start with a digit".into());
    }
    Ok(())
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        '\t' | '\n' | '\r' => "whitespace".into(),
        c if c.is_ascii_uppercase() => format!("the upper-case letter '{c}'"),
        c => format!("the character '{c}'"),
    }
}

/// Specs from names that are known to be valid, for tests.
#[cfg(test)]
pub(crate) fn specs(items: &[&str]) -> Vec<PackageSpec> {
    items
        .iter()
        .map(|i| PackageSpec::parse(i, "name").unwrap())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names_and_versions_parse() {
        for (item, name, version) in [
            ("curl", "curl", None),
            ("libc6", "libc6", None),
            ("g++", "g++", None),
            (
                "linux-headers-6.1.0-18-amd64",
                "linux-headers-6.1.0-18-amd64",
                None,
            ),
            ("loki=3.5.1", "loki", Some("3.5.1")),
            ("curl=7.88.1-10+deb12u5", "curl", Some("7.88.1-10+deb12u5")),
            ("grafana=1:11.2.0~beta1", "grafana", Some("1:11.2.0~beta1")),
            ("  alloy  ", "alloy", None),
        ] {
            let spec = PackageSpec::parse(item, "name").unwrap();
            assert_eq!(spec.name, name);
            assert_eq!(spec.version.as_deref(), version);
        }
        assert_eq!(
            PackageSpec::parse("loki=3.5.1", "name").unwrap().apt_arg(),
            "loki=3.5.1"
        );
    }

    #[test]
    fn dangerous_or_malformed_items_are_rejected_with_the_reason() {
        for (item, why) in [
            ("curl;rm", "the character ';'"),
            ("-oFoo", "starts with '-'"),
            ("-o", "starts with '-'"),
            ("curl rm", "a space"),
            ("$(id)", "the character '$'"),
            ("Curl", "upper-case letter 'C'"),
            ("a", "at least two characters"),
            (".hidden", "start with a letter or digit"),
            ("", "it is empty"),
            ("curl*", "the character '*'"),
            ("pkg:amd64", "the character ':'"),
        ] {
            let e = PackageSpec::parse(item, "name").unwrap_err();
            assert!(e.contains(why), "{item}: {e}");
            assert!(e.starts_with("name: "), "{e}");
        }
        for (item, why) in [
            ("curl=", "empty"),
            ("curl=latest", "start with a digit"),
            ("curl=1.0 -y", "a space"),
            ("curl=1.*", "the character '*'"),
            ("curl=1;x", "the character ';'"),
        ] {
            let e = PackageSpec::parse(item, "name").unwrap_err();
            assert!(
                e.contains("invalid version") && e.contains(why),
                "{item}: {e}"
            );
        }
    }

    #[test]
    fn duplicates_are_merged_or_rejected() {
        let items: Vec<String> = ["curl", "curl", "jq=1.6"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let specs = parse_specs(&items, "name").unwrap();
        assert_eq!(specs.len(), 2);
        let items: Vec<String> = ["jq=1.6", "jq=1.7"].iter().map(|s| s.to_string()).collect();
        let e = parse_specs(&items, "name").unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
    }
}
