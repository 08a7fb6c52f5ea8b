//! What makes an answer "ready": its status, the JSON fields the task names, a body pattern.

use serde_json::{Map, Value as Json};

/// The value at a dotted path: `database`, `status.db`, `items.0.name` (a number indexes a
/// list). Keys that contain a dot cannot be named.
pub fn lookup<'a>(json: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('.').try_fold(json, |node, key| match node {
        Json::Object(map) => map.get(key),
        Json::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Whether the actual value is the expected one. A string expectation also matches a number
/// or boolean with that text: values templated by Jinja often arrive as strings (`"1"`,
/// `"true"`).
pub fn matches(actual: &Json, expected: &Json) -> bool {
    if actual == expected {
        return true;
    }
    match (actual, expected) {
        (Json::Number(n), Json::String(s)) => n.to_string() == *s,
        (Json::Bool(b), Json::String(s)) => b.to_string() == s.to_ascii_lowercase(),
        _ => false,
    }
}

/// What the answer holds at a path, for the task's output: scalars as they are, containers
/// only as their kind and size (a whole sub-document may hold what the task did not ask for).
pub fn shown(actual: Option<&Json>) -> Json {
    match actual {
        None => Json::Null,
        Some(Json::Object(map)) => Json::from(format!("(a dict of {} keys)", map.len())),
        Some(Json::Array(items)) => Json::from(format!("(a list of {} items)", items.len())),
        Some(v) => v.clone(),
    }
}

/// The checked fields: `Ok(values)` with the actual value of each path, and the first
/// mismatch as a message, or `Err` when the body is not JSON at all.
pub fn check_json(
    body: &[u8],
    expected: &Map<String, Json>,
) -> Result<(Map<String, Json>, Option<String>), String> {
    let doc: Json = serde_json::from_slice(body).map_err(|e| {
        // Never quote the body: only where the parser stopped.
        format!(
            "the body is not JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let mut values = Map::new();
    let mut mismatch = None;
    for (path, want) in expected {
        let actual = lookup(&doc, path);
        values.insert(path.clone(), shown(actual));
        if mismatch.is_none() {
            mismatch = match actual {
                None => Some(format!(
                    "the JSON field '{path}' is missing (expected {want})"
                )),
                Some(v) if !matches(v, want) => Some(format!(
                    "the JSON field '{path}' is {} (expected {want})",
                    shown(Some(v))
                )),
                _ => None,
            };
        }
    }
    Ok((values, mismatch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_paths_reach_into_dicts_and_lists() {
        let doc = json!({"database": "ok", "a": {"b": [{"c": 1}, {"c": 2}]}, "x.y": 3});
        assert_eq!(lookup(&doc, "database"), Some(&json!("ok")));
        assert_eq!(lookup(&doc, "a.b.1.c"), Some(&json!(2)));
        assert_eq!(lookup(&doc, "a.b.2.c"), None);
        assert_eq!(lookup(&doc, "a.b.first"), None);
        assert_eq!(lookup(&doc, "database.more"), None);
        assert_eq!(lookup(&doc, "x.y"), None, "keys with dots cannot be named");
    }

    #[test]
    fn values_match_exactly_or_by_their_text() {
        assert!(matches(&json!("ok"), &json!("ok")));
        assert!(!matches(&json!("OK"), &json!("ok")));
        assert!(matches(&json!(1), &json!("1")) && matches(&json!(1), &json!(1)));
        assert!(matches(&json!(true), &json!("True")));
        assert!(
            !matches(&json!("1"), &json!(1)),
            "a number expectation wants a number"
        );
        assert!(!matches(&json!(null), &json!("null")));
    }

    #[test]
    fn checks_report_actual_values_and_the_first_mismatch_never_the_body() {
        let want: Map<String, Json> =
            serde_json::from_value(json!({"database": "ok", "version": "11.3.0"})).unwrap();
        let body = br#"{"database": "failing", "version": "11.3.0", "secret": "s3cr3t"}"#;
        let (values, mismatch) = check_json(body, &want).unwrap();
        assert_eq!(
            values,
            *json!({"database": "failing", "version": "11.3.0"})
                .as_object()
                .unwrap()
        );
        assert_eq!(
            mismatch.unwrap(),
            r#"the JSON field 'database' is "failing" (expected "ok")"#
        );
        let (_, mismatch) = check_json(br#"{"version": "11.3.0"}"#, &want).unwrap();
        assert_eq!(
            mismatch.unwrap(),
            r#"the JSON field 'database' is missing (expected "ok")"#
        );
        let (values, _) = check_json(br#"{"database": {"a": 1}}"#, &want).unwrap();
        assert_eq!(values["database"], json!("(a dict of 1 keys)"));
        let e = check_json(b"<html>secret</html>", &want).unwrap_err();
        assert_eq!(e, "the body is not JSON (line 1, column 1)");
    }
}
