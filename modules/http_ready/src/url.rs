//! The few URLs this module takes: `http://host[:port][/path][?query]`.

/// A parsed `http://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// The host as written, without brackets for an IPv6 literal.
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub target: String,
    /// The `Host` header: the authority as written (brackets kept, port only when given).
    pub authority: String,
}

pub fn parse(url: &str) -> Result<Url, String> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(format!(
            "url '{url}': https is not supported: http_ready has no TLS (it would need crates this collection does not ship); use ansible.builtin.uri for https endpoints"
        ));
    }
    let Some(rest) = lower
        .starts_with("http://")
        .then(|| &url["http://".len()..])
    else {
        return Err(format!(
            "url '{url}' must start with http://, e.g. http://127.0.0.1:3000/api/health"
        ));
    };
    // The fragment is never sent.
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, target) = match rest.find(['/', '?']) {
        Some(at) if rest[at..].starts_with('?') => (&rest[..at], format!("/{}", &rest[at..])),
        Some(at) => (&rest[..at], rest[at..].to_string()),
        None => (rest, "/".to_string()),
    };
    if authority.contains('@') {
        return Err(
            "url: credentials in the URL are not accepted (they would show in logs): set url_username and url_password (no_log) instead"
                .to_string(),
        );
    }
    if target.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return Err(format!(
            "url '{url}': the path contains spaces or control characters; percent-encode them"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err(format!(
                "url '{url}': an IPv6 address needs its closing ']'"
            ));
        };
        let port =
            match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| {
                    format!("url '{url}': expected ':PORT' after the IPv6 address")
                })?),
            };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_ascii_control() || c == ' ' || c == '/')
    {
        return Err(format!("url '{url}' has no valid host"));
    }
    let port = match port {
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(format!(
                    "url '{url}': port '{p}' is not a number from 1 to 65535"
                ))
            }
        },
    };
    Ok(Url {
        host: host.to_string(),
        port,
        target,
        authority: authority.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_urls_of_our_readiness_checks_parse() {
        let u = parse("http://127.0.0.1:3000/api/health").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("127.0.0.1", 3000, "/api/health")
        );
        assert_eq!(u.authority, "127.0.0.1:3000");
        let u = parse("HTTP://localhost").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("localhost", 80, "/")
        );
        let u = parse("http://[::1]:3100/ready?x=1#frag").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("::1", 3100, "/ready?x=1")
        );
        assert_eq!(u.authority, "[::1]:3100");
        let u = parse("http://host?q=1").unwrap();
        assert_eq!(u.target, "/?q=1");
    }

    #[test]
    fn what_we_cannot_or_will_not_do_is_refused_with_the_fix() {
        let e = parse("https://grafana.example/api/health").unwrap_err();
        assert!(e.contains("use ansible.builtin.uri for https"), "{e}");
        let e = parse("ftp://x/").unwrap_err();
        assert!(e.contains("must start with http://"), "{e}");
        let e = parse("http://admin:hunter2@127.0.0.1/").unwrap_err();
        assert!(e.contains("url_username") && !e.contains("hunter2"), "{e}");
        assert!(parse("http://:80/").unwrap_err().contains("no valid host"));
        assert!(parse("http://h:0/").unwrap_err().contains("port '0'"));
        assert!(parse("http://h:99999/")
            .unwrap_err()
            .contains("port '99999'"));
        assert!(parse("http://[::1/").unwrap_err().contains("closing ']'"));
        assert!(parse("http://h/a b")
            .unwrap_err()
            .contains("percent-encode"));
    }
}
