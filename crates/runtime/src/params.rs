//! Turning the flat JSON that Ansible sends into typed parameters, with Ansible's coercions.
//!
//! Task arguments written as `key=value` reach the module as strings, so `"5"` must be accepted
//! as an int and `"yes"` as a bool; a comma-separated string is a list. What cannot be coerced
//! is an error that names the field and the type it should have.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value as Json};

use crate::spec::{Default, Kind, Param};

/// A parameter value after coercion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Bool(bool),
    Int(i64),
    List(Vec<String>),
    /// A `Dict` parameter, as the task gave it (always a JSON object).
    Dict(Json),
    /// An `Entries` parameter: each dict parsed against the parameter's suboptions.
    Entries(Vec<Params>),
}

impl Value {
    fn to_json(&self) -> Json {
        match self {
            Value::Str(s) => Json::from(s.as_str()),
            Value::Bool(b) => Json::from(*b),
            Value::Int(i) => Json::from(*i),
            Value::List(l) => Json::from(l.clone()),
            Value::Dict(d) => d.clone(),
            Value::Entries(entries) => {
                Json::from(entries.iter().map(Params::args).collect::<Vec<_>>())
            }
        }
    }
}

/// What Ansible tells the module about the run, from the `_ansible_*` keys.
#[derive(Clone, Debug, Default)]
pub struct Context {
    pub module: &'static str,
    pub check_mode: bool,
    pub diff: bool,
    pub no_log: bool,
    pub verbosity: i64,
}

/// The typed parameters of one module run (or of one entry of an `Entries` parameter).
#[derive(Clone, Debug, Default)]
pub struct Params {
    values: BTreeMap<&'static str, Value>,
    given: Vec<&'static str>,
    /// Parameters the task gave as a JSON number (before coercion to a string).
    numbers: Vec<&'static str>,
    secrets: Vec<String>,
    spec: Vec<Param>,
}

/// Two parameter sets are equal when they hold the same values (how they were given aside).
impl PartialEq for Params {
    fn eq(&self, other: &Params) -> bool {
        self.values == other.values
    }
}

impl Eq for Params {}

impl Params {
    fn get(&self, name: &str) -> Option<&Value> {
        // Asking for a parameter the spec does not declare is a bug in the module, not bad
        // input: it panics, and the panic hook turns that into a failed answer.
        assert!(
            self.spec.iter().any(|p| p.name == name),
            "module asked for undeclared parameter '{name}'"
        );
        self.values.get(name)
    }

    /// A `Str` parameter, or `None` when neither the task nor a default sets it.
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(Value::Str(s)) => Some(s.as_str()),
            _ => None,
        }
    }

    /// A `Bool` parameter; unset and without default counts as `false`.
    pub fn bool(&self, name: &str) -> bool {
        matches!(self.get(name), Some(Value::Bool(true)))
    }

    /// An `Int` parameter, or `None` when unset.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// An `Int` parameter as whole seconds; unset or negative counts as zero.
    pub fn secs(&self, name: &str) -> Duration {
        Duration::from_secs(self.int(name).unwrap_or(0).max(0) as u64)
    }

    /// A `List` parameter; unset counts as empty.
    pub fn list(&self, name: &str) -> &[String] {
        match self.get(name) {
            Some(Value::List(l)) => l.as_slice(),
            _ => &[],
        }
    }

    /// A `Dict` parameter (a JSON object), or `None` when unset.
    pub fn dict(&self, name: &str) -> Option<&Map<String, Json>> {
        match self.get(name) {
            Some(Value::Dict(Json::Object(map))) => Some(map),
            _ => None,
        }
    }

    /// An `Entries` parameter, each entry with its own typed values; unset counts as empty.
    pub fn entries(&self, name: &str) -> &[Params] {
        match self.get(name) {
            Some(Value::Entries(entries)) => entries.as_slice(),
            _ => &[],
        }
    }

    /// A `Bool` parameter, or `None` when neither the task nor a default sets it: for options
    /// where "not said" means "leave it as it is" (a unit's `enabled`).
    pub fn opt_bool(&self, name: &str) -> Option<bool> {
        match self.get(name) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// Whether the task itself set the parameter (as opposed to a default filling it in).
    pub fn given(&self, name: &str) -> bool {
        self.given.contains(&name)
    }

    /// Whether the task gave the parameter as a JSON number, even if the spec coerced it to a
    /// string. A file mode written unquoted in YAML (`mode: 0640`) arrives as the number 416:
    /// a module can then take it as the numeric mode, as Ansible's file modules do, instead of
    /// reading the digits "416" as octal.
    pub fn was_number(&self, name: &str) -> bool {
        self.numbers.contains(&name)
    }

    /// The values of `no_log` parameters: the answer never contains them.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// `invocation.module_args` as Ansible shows it, with `no_log` values masked.
    pub fn invocation(&self) -> Json {
        serde_json::json!({ "module_args": self.args() })
    }

    /// The parameters as a JSON object, `no_log` values masked.
    fn args(&self) -> Json {
        let mut args = Map::new();
        for param in &self.spec {
            let value = match self.values.get(param.name) {
                Some(_) if param.no_log => Json::from("VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"),
                Some(Value::Dict(Json::Object(map))) if param.no_log_keys.is_some() => {
                    let secret = param.no_log_keys.unwrap_or(|_| true);
                    Json::Object(
                        map.iter()
                            .map(|(k, v)| {
                                let v = if secret(k) {
                                    Json::from("VALUE_SPECIFIED_IN_NO_LOG_PARAMETER")
                                } else {
                                    v.clone()
                                };
                                (k.clone(), v)
                            })
                            .collect(),
                    )
                }
                Some(v) => v.to_json(),
                None => Json::Null,
            };
            args.insert(param.name.to_string(), value);
        }
        Json::Object(args)
    }
}

/// Who is being parsed: the module's arguments, or entry `index` of the `Entries` parameter
/// `parent`. Only the wording of the errors differs.
#[derive(Clone)]
enum Scope<'a> {
    Module(&'static str),
    /// `label`: the entry's `path` or `name`, which says which entry is meant better than an
    /// index alone.
    Entry {
        parent: &'a str,
        index: usize,
        label: Option<String>,
    },
}

/// Parses the args object against a spec. The error is a message for the user.
pub fn parse(
    module: &'static str,
    spec: &[Param],
    args: &Json,
) -> Result<(Params, Context), String> {
    let mut ctx = Context {
        module,
        ..Context::default()
    };
    let params = parse_object(Scope::Module(module), spec, args, Some(&mut ctx))?;
    Ok((params, ctx))
}

/// Parses one JSON object against a spec: the module's arguments (then `ctx` receives the
/// `_ansible_*` keys) or one entry of an `Entries` parameter.
fn parse_object(
    scope: Scope,
    spec: &[Param],
    args: &Json,
    mut ctx: Option<&mut Context>,
) -> Result<Params, String> {
    // Errors inside an entry name it first: "units[1]: parameter 'state' must be ...".
    let prefix = match &scope {
        Scope::Module(_) => String::new(),
        Scope::Entry {
            parent,
            index,
            label: Some(label),
        } => format!("{parent}[{index}] ({label}): "),
        Scope::Entry {
            parent,
            index,
            label: None,
        } => format!("{parent}[{index}]: "),
    };
    let object = match args {
        Json::Object(map) => map,
        other => {
            return Err(match scope {
                Scope::Module(_) => format!(
                    "the module arguments must be a JSON object, got {}",
                    json_kind(other)
                ),
                Scope::Entry { parent, .. } => format!(
                    "{prefix}each entry of '{parent}' must be a dict, got {}",
                    json_kind(other)
                ),
            })
        }
    };

    let mut unknown = Vec::new();
    let mut params = Params {
        spec: spec.to_vec(),
        ..Params::default()
    };

    for (key, value) in object {
        if let (Some(internal), Some(ctx)) = (key.strip_prefix("_ansible_"), ctx.as_deref_mut()) {
            // Every `_ansible_*` key is accepted (newer ansible-core versions add more);
            // only these change what a module does.
            match internal {
                "check_mode" => ctx.check_mode = lenient_bool(value),
                "diff" => ctx.diff = lenient_bool(value),
                "no_log" => ctx.no_log = lenient_bool(value),
                "verbosity" => ctx.verbosity = value.as_i64().unwrap_or(0),
                _ => {}
            }
            continue;
        }
        let Some(param) = spec
            .iter()
            .find(|p| p.name == key || p.aliases.contains(&key.as_str()))
        else {
            unknown.push(key.clone());
            continue;
        };
        if value.is_null() {
            // `key:` with nothing after it: the same as not setting it.
            continue;
        }
        if params.given.contains(&param.name) {
            return Err(format!(
                "{prefix}parameter '{}' is set twice (directly and through an alias); set it once",
                param.name
            ));
        }
        let coerced = coerce(param, value).map_err(|e| format!("{prefix}{e}"))?;
        if value.is_number() {
            params.numbers.push(param.name);
        }
        params.values.insert(param.name, coerced);
        params.given.push(param.name);
    }

    if !unknown.is_empty() {
        unknown.sort();
        let mut supported: Vec<&str> = spec.iter().map(|p| p.name).collect();
        supported.sort_unstable();
        return Err(match scope {
            Scope::Module(module) => format!(
                "Unsupported parameters for ({module}) module: {}. Supported parameters include: {}.",
                unknown.join(", "),
                supported.join(", ")
            ),
            Scope::Entry { parent, .. } => format!(
                "{prefix}unsupported keys in '{parent}': {}. Supported keys: {}.",
                unknown.join(", "),
                supported.join(", ")
            ),
        });
    }

    for param in spec {
        if params.values.contains_key(param.name) {
            continue;
        }
        if param.required {
            return Err(format!(
                "{prefix}missing required parameter '{}' ({}); set it in the task",
                param.name,
                param.kind.name()
            ));
        }
        if let Some(default) = param.default {
            params.values.insert(param.name, default_value(default));
        }
    }

    for param in spec {
        match params.values.get(param.name) {
            Some(value) if param.no_log => secret_values(value, &mut params.secrets),
            Some(Value::Dict(Json::Object(map))) => {
                if let Some(secret) = param.no_log_keys {
                    secret_values_of(map, secret, &mut params.secrets);
                }
            }
            // An entry's no_log keys are masked in `invocation` and in error messages, but not
            // answer-wide: the module decides what of an entry it shows (`files` shows the
            // content of a non-secret file in its diff, and never that of a secret one).
            _ => {}
        }
    }
    Ok(params)
}

/// Every string a `no_log` value holds: the whole string, each list item, each string (or
/// number) anywhere inside a dict.
fn secret_values(value: &Value, out: &mut Vec<String>) {
    fn json_strings(json: &Json, out: &mut Vec<String>) {
        match json {
            Json::String(s) if !s.is_empty() => out.push(s.clone()),
            Json::Number(n) => out.push(n.to_string()),
            Json::Array(items) => items.iter().for_each(|i| json_strings(i, out)),
            Json::Object(map) => map.values().for_each(|v| json_strings(v, out)),
            _ => {}
        }
    }
    match value {
        Value::Str(s) if !s.is_empty() => out.push(s.clone()),
        Value::List(items) => out.extend(items.iter().filter(|s| !s.is_empty()).cloned()),
        Value::Dict(json) => json_strings(json, out),
        Value::Entries(entries) => {
            for entry in entries {
                for v in entry.values.values() {
                    secret_values(v, out);
                }
            }
        }
        _ => {}
    }
}

/// The secret values of a dict whose secrets are the values under the keys `secret` accepts
/// (each string, or number, inside them).
pub(crate) fn secret_values_of(
    map: &Map<String, Json>,
    secret: fn(&str) -> bool,
    out: &mut Vec<String>,
) {
    for (key, value) in map {
        if secret(key) {
            secret_values(&Value::Dict(value.clone()), out);
        }
    }
}

fn default_value(default: Default) -> Value {
    match default {
        Default::Str(s) => Value::Str(s.to_string()),
        Default::Bool(b) => Value::Bool(b),
        Default::Int(i) => Value::Int(i),
        Default::List(l) => Value::List(l.iter().map(|s| s.to_string()).collect()),
    }
}

fn coerce(param: &Param, value: &Json) -> Result<Value, String> {
    let wrong = || {
        format!(
            "parameter '{}' must be of type {}, got {} {}",
            param.name,
            param.kind.name(),
            json_kind(value),
            shown(param, value)
        )
    };
    let coerced = match param.kind {
        Kind::Str => match value {
            Json::String(s) => Value::Str(s.clone()),
            Json::Number(n) => Value::Str(n.to_string()),
            _ => return Err(wrong()),
        },
        Kind::Bool => match value {
            Json::Bool(b) => Value::Bool(*b),
            Json::String(s) => Value::Bool(parse_bool(s).ok_or_else(|| {
                format!(
                    "parameter '{}' must be a boolean (true/false, yes/no, on/off, 1/0), got {}",
                    param.name,
                    shown(param, value)
                )
            })?),
            Json::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                Value::Bool(n.as_i64() == Some(1))
            }
            _ => return Err(wrong()),
        },
        Kind::Int => match value {
            Json::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                // An integral float such as 5.0 is an int; 5.5 is not.
                None => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::Int(f as i64),
                    _ => return Err(wrong()),
                },
            },
            Json::String(s) => Value::Int(s.trim().parse::<i64>().map_err(|_| wrong())?),
            _ => return Err(wrong()),
        },
        Kind::List => match value {
            Json::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Json::String(s) => out.push(s.clone()),
                        Json::Number(n) => out.push(n.to_string()),
                        _ => {
                            return Err(format!(
                                "parameter '{}' must be a list of strings, but an element is {}",
                                param.name,
                                json_kind(item)
                            ))
                        }
                    }
                }
                Value::List(out)
            }
            Json::String(s) => Value::List(
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect(),
            ),
            Json::Number(n) => Value::List(vec![n.to_string()]),
            _ => return Err(wrong()),
        },
        Kind::Dict => match value {
            Json::Object(_) => Value::Dict(value.clone()),
            _ => return Err(wrong()),
        },
        Kind::Entries => match value {
            Json::Array(items) => {
                let mut entries = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    let label = ["path", "name"]
                        .iter()
                        .find_map(|k| item.get(*k).and_then(Json::as_str))
                        .map(|l| shorten(l, 80));
                    let scope = Scope::Entry {
                        parent: param.name,
                        index,
                        label,
                    };
                    entries.push(parse_object(scope, param.suboptions, item, None)?);
                }
                Value::Entries(entries)
            }
            _ => return Err(wrong()),
        },
    };

    if let (Some(min), Value::Int(i)) = (param.min, &coerced) {
        if *i < min {
            return Err(format!(
                "parameter '{}' must be at least {min}, got {i}",
                param.name
            ));
        }
    }
    if !param.choices.is_empty() {
        let text = match &coerced {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::List(_) | Value::Dict(_) | Value::Entries(_) => String::new(),
        };
        if !param.choices.contains(&text.as_str()) {
            return Err(format!(
                "value of parameter '{}' must be one of: {}; got {}",
                param.name,
                param.choices.join(", "),
                shown(param, value)
            ));
        }
    }
    Ok(coerced)
}

/// Ansible's boolean strings (`module_utils.parsing.convert_bool`).
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "yes" | "on" | "1" | "true" | "y" | "t" => Some(true),
        "no" | "off" | "0" | "false" | "n" | "f" | "" => Some(false),
        _ => None,
    }
}

fn lenient_bool(value: &Json) -> bool {
    match value {
        Json::Bool(b) => *b,
        Json::String(s) => parse_bool(s).unwrap_or(false),
        Json::Number(n) => n.as_i64().unwrap_or(0) != 0,
        _ => false,
    }
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a dict",
    }
}

/// A short rendering of a bad value for an error message; never the value of a secret.
fn shown(param: &Param, value: &Json) -> String {
    if param.no_log {
        return "(value hidden: no_log parameter)".to_string();
    }
    shorten(&value.to_string(), 60)
}

/// `text`, cut to at most `max` characters with `...` when longer.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() > max {
        let cut: String = text.chars().take(max.saturating_sub(3)).collect();
        format!("{cut}...")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPEC: &[Param] = &[
        Param::str("name").required().aliases(&["pkg"]),
        Param::bool("system").default(Default::Bool(true)),
        Param::int("timeout").default(Default::Int(600)).min(0),
        Param::list("units").default(Default::List(&["a.timer", "b.service"])),
        Param::str("state")
            .default(Default::Str("present"))
            .choices(&["present", "absent"]),
        Param::str("password").no_log(),
    ];

    fn ok(args: Json) -> (Params, Context) {
        parse("demo", SPEC, &args).expect("should parse")
    }

    fn err(args: Json) -> String {
        parse("demo", SPEC, &args).expect_err("should fail")
    }

    #[test]
    fn defaults_fill_in_what_the_task_leaves_out() {
        let (p, ctx) = ok(json!({"name": "loki"}));
        assert_eq!(p.str("name"), Some("loki"));
        assert!(p.bool("system"));
        assert_eq!(p.int("timeout"), Some(600));
        assert_eq!(
            p.list("units"),
            &["a.timer".to_string(), "b.service".to_string()]
        );
        assert_eq!(p.str("state"), Some("present"));
        assert_eq!(p.str("password"), None);
        assert!(p.given("name") && !p.given("system"));
        assert!(!ctx.check_mode && !ctx.diff && !ctx.no_log);
    }

    #[test]
    fn key_value_strings_are_coerced_like_ansible() {
        let (p, _) = ok(
            json!({"name": "x", "system": "no", "timeout": " 5 ", "units": "x.timer, y.service,"}),
        );
        assert!(!p.bool("system"));
        assert_eq!(p.int("timeout"), Some(5));
        assert_eq!(p.secs("timeout"), Duration::from_secs(5));
        assert_eq!(
            p.list("units"),
            &["x.timer".to_string(), "y.service".to_string()]
        );
        for (text, want) in [
            ("yes", true),
            ("On", true),
            ("1", true),
            ("TRUE", true),
            ("off", false),
            ("0", false),
            ("False", false),
        ] {
            let (p, _) = ok(json!({"name": "x", "system": text}));
            assert_eq!(p.bool("system"), want, "{text}");
        }
        let (p, _) = ok(json!({"name": 42, "timeout": 7.0, "system": 0}));
        assert_eq!(p.str("name"), Some("42"));
        assert_eq!(p.int("timeout"), Some(7));
        assert!(!p.bool("system"));
    }

    #[test]
    fn internal_keys_are_accepted_and_read() {
        let (_, ctx) = ok(json!({
            "name": "x", "_ansible_check_mode": true, "_ansible_diff": true,
            "_ansible_no_log": false, "_ansible_verbosity": 3,
            "_ansible_some_future_key": {"a": 1}
        }));
        assert!(ctx.check_mode && ctx.diff && !ctx.no_log);
        assert_eq!(ctx.verbosity, 3);
        assert_eq!(ctx.module, "demo");
    }

    #[test]
    fn numbers_given_for_strings_are_remembered() {
        let (p, _) = ok(json!({"name": 416, "state": "present"}));
        assert_eq!(p.str("name"), Some("416"));
        assert!(p.was_number("name"));
        assert!(!p.was_number("state"));
        let (p, _) = ok(json!({"name": "0640"}));
        assert!(!p.was_number("name"));
    }

    #[test]
    fn aliases_and_nulls() {
        let (p, _) = ok(json!({"pkg": "curl", "timeout": null}));
        assert_eq!(p.str("name"), Some("curl"));
        assert_eq!(p.int("timeout"), Some(600));
        assert!(err(json!({"pkg": "a", "name": "b"})).contains("set twice"));
    }

    #[test]
    fn unknown_parameters_are_named_with_the_valid_ones() {
        let e = err(json!({"name": "x", "colour": "red", "bogus": 1}));
        assert!(
            e.contains("Unsupported parameters for (demo) module: bogus, colour."),
            "{e}"
        );
        assert!(
            e.contains(
                "Supported parameters include: name, password, state, system, timeout, units."
            ),
            "{e}"
        );
    }

    #[test]
    fn wrong_types_name_the_field_and_the_type() {
        let e = err(json!({"name": "x", "timeout": "soon"}));
        assert!(e.contains("'timeout'") && e.contains("type int"), "{e}");
        let e = err(json!({"name": "x", "system": "maybe"}));
        assert!(e.contains("'system'") && e.contains("boolean"), "{e}");
        let e = err(json!({"name": ["a"]}));
        assert!(e.contains("'name'") && e.contains("type str"), "{e}");
        let e = err(json!({"name": "x", "units": [{"a": 1}]}));
        assert!(
            e.contains("'units'") && e.contains("list of strings"),
            "{e}"
        );
        let e = err(json!({"name": "x", "timeout": 1.5}));
        assert!(e.contains("'timeout'"), "{e}");
    }

    #[test]
    fn missing_required_bad_choice_and_negative_numbers_fail() {
        assert!(err(json!({})).contains("missing required parameter 'name'"));
        let e = err(json!({"name": "x", "state": "gone"}));
        assert!(
            e.contains("must be one of: present, absent") && e.contains("\"gone\""),
            "{e}"
        );
        let e = err(json!({"name": "x", "timeout": -1}));
        assert!(e.contains("'timeout' must be at least 0"), "{e}");
    }

    #[test]
    fn non_objects_are_rejected() {
        assert!(err(json!([1, 2])).contains("must be a JSON object, got a list"));
        assert!(err(json!("x")).contains("got a string"));
    }

    #[test]
    fn secrets_are_masked_in_invocation_and_errors() {
        let (p, _) = ok(json!({"name": "x", "password": "s3cr3t-value"}));
        assert_eq!(p.secrets(), &["s3cr3t-value".to_string()]);
        let inv = p.invocation().to_string();
        assert!(!inv.contains("s3cr3t-value"), "{inv}");
        assert!(inv.contains("VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"));
        let e = err(json!({"name": "x", "password": ["s3cr3t-value"]}));
        assert!(!e.contains("s3cr3t-value"), "{e}");
    }

    const UNIT: &[Param] = &[
        Param::str("name").required(),
        Param::bool("enabled"),
        Param::str("state").choices(&["started", "stopped"]),
        Param::bool("restart").default(Default::Bool(false)),
        Param::str("token").no_log(),
    ];
    const NESTED: &[Param] = &[
        Param::entries("units", UNIT),
        Param::dict("headers").no_log(),
        Param::dict("json"),
    ];

    #[test]
    fn entries_are_parsed_against_their_own_spec() {
        let (p, _) = parse(
            "demo",
            NESTED,
            &json!({"units": [
                {"name": "a.service", "enabled": "yes", "state": "started", "restart": "False"},
                {"name": "b.service"}
            ]}),
        )
        .unwrap();
        let units = p.entries("units");
        assert_eq!(units.len(), 2);
        assert_eq!(units[0].str("name"), Some("a.service"));
        assert_eq!(units[0].opt_bool("enabled"), Some(true));
        assert!(!units[0].bool("restart"));
        assert_eq!(units[1].opt_bool("enabled"), None);
        assert_eq!(units[1].str("state"), None);
        assert!(!units[1].bool("restart"), "the entry's default applies");
        let inv = p.invocation();
        assert_eq!(inv["module_args"]["units"][1]["restart"], json!(false));
        assert!(p.entries("units")[0] != p.entries("units")[1]);
    }

    #[test]
    fn entry_errors_name_the_entry_and_the_key() {
        let e = |args: Json| parse("demo", NESTED, &args).expect_err("should fail");
        let msg = e(json!({"units": [{"name": "a"}, {"name": "b", "state": "gone"}]}));
        assert!(
            msg.starts_with(
                "units[1] (b): value of parameter 'state' must be one of: started, stopped"
            ),
            "{msg}"
        );
        let msg = e(json!({"units": [{"enabled": true}]}));
        assert!(
            msg.contains("units[0]: missing required parameter 'name'"),
            "{msg}"
        );
        let msg = e(json!({"units": [{"name": "a", "enable": true}]}));
        assert!(
            msg.contains("units[0] (a): unsupported keys in 'units': enable. Supported keys: enabled, name, restart, state, token."),
            "{msg}"
        );
        let msg = e(json!({"units": ["a.service"]}));
        assert!(
            msg.contains("units[0]: each entry of 'units' must be a dict, got a string"),
            "{msg}"
        );
        let msg = e(json!({"units": {"name": "a"}}));
        assert!(
            msg.contains("'units' must be of type list of dicts"),
            "{msg}"
        );
        let msg = e(json!({"json": ["database"]}));
        assert!(msg.contains("'json' must be of type dict"), "{msg}");
    }

    #[test]
    fn secret_dicts_and_entries_hide_every_value() {
        let (p, _) = parse(
            "demo",
            NESTED,
            &json!({"headers": {"Authorization": "Bearer tok-123", "X-Id": 42},
                    "json": {"database": "ok"},
                    "units": [{"name": "a", "token": "unit-secret"}]}),
        )
        .unwrap();
        let mut secrets = p.secrets().to_vec();
        secrets.sort();
        // An entry's no_log key is hidden in `invocation`, but not answer-wide: the module
        // decides what of an entry it shows (see parse_object).
        assert_eq!(secrets, ["42", "Bearer tok-123"]);
        let inv = p.invocation().to_string();
        assert!(
            !inv.contains("tok-123") && !inv.contains("unit-secret"),
            "{inv}"
        );
        assert_eq!(p.dict("json").unwrap()["database"], json!("ok"));
        assert!(p.dict("headers").is_some());
    }

    fn credential(key: &str) -> bool {
        key.eq_ignore_ascii_case("authorization")
    }

    #[test]
    fn a_dict_with_secret_keys_hides_only_their_values() {
        const HEADERS: &[Param] = &[Param::dict("headers").no_log_keys(credential)];
        let (p, _) = parse(
            "demo",
            HEADERS,
            &json!({"headers": {"authorization": "Bearer tok-123", "X-Scope-OrgID": "1"}}),
        )
        .unwrap();
        // "1" is no secret: masking it would mask every "1" in the answer (a URL's port).
        assert_eq!(p.secrets(), &["Bearer tok-123".to_string()]);
        let inv = p.invocation();
        assert_eq!(
            inv["module_args"]["headers"],
            json!({"authorization": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER", "X-Scope-OrgID": "1"})
        );
        assert_eq!(
            p.dict("headers").unwrap()["authorization"],
            json!("Bearer tok-123")
        );
    }

    #[test]
    #[should_panic(expected = "undeclared parameter")]
    fn asking_for_an_undeclared_parameter_is_a_bug() {
        let (p, _) = ok(json!({"name": "x"}));
        let _ = p.str("nope");
    }
}
