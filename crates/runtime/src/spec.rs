//! The typed description of a module's parameters, written as a `const` table per module.
//! It is the one declaration of them: the binary prints it (`MODULE --argument-spec`, see
//! `to_json`) and the sidecar docs are tested against that output.

use serde_json::{Map, Value as Json};

/// The type a parameter is coerced to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A string. Numbers are accepted and turned into their decimal text.
    Str,
    /// A boolean. Accepts JSON booleans and Ansible's strings (`yes`, `no`, `on`, `off`, ...).
    Bool,
    /// An integer. Accepts JSON integers and strings holding one (`key=value` args are strings).
    Int,
    /// A list of strings. A comma-separated string is split, as Ansible does.
    List,
    /// A dict with free keys (`type: dict`): request headers, expected JSON fields. Kept as
    /// JSON; the module reads it.
    Dict,
    /// A list of dicts whose keys are a spec of their own (`type: list, elements: dict` with
    /// `suboptions`), each entry coerced and checked like a module's parameters.
    Entries,
}

impl Kind {
    /// The name used in error messages, the same words Ansible uses.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Str => "str",
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::List => "list",
            Kind::Dict => "dict",
            Kind::Entries => "list of dicts",
        }
    }
}

/// A default value, applied when the task does not set the parameter.
#[derive(Clone, Copy, Debug)]
pub enum Default {
    Str(&'static str),
    Bool(bool),
    Int(i64),
    List(&'static [&'static str]),
}

/// One parameter of a module.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub default: Option<Default>,
    /// Allowed values (compared after coercion to a string); empty means any.
    pub choices: &'static [&'static str],
    /// Other names the task may use for this parameter.
    pub aliases: &'static [&'static str],
    /// The value is a secret: masked in `invocation` and anywhere else in the answer.
    pub no_log: bool,
    /// For `Dict`: only the values under the keys this function accepts are secrets (masked
    /// in `invocation` and anywhere else in the answer); the other values are shown.
    pub no_log_keys: Option<fn(&str) -> bool>,
    /// For `Int`: the smallest accepted value (timeouts and counts are never negative).
    pub min: Option<i64>,
    /// For `Entries`: the spec of each entry's keys.
    pub suboptions: &'static [Param],
}

impl Param {
    const fn new(name: &'static str, kind: Kind) -> Param {
        Param {
            name,
            kind,
            required: false,
            default: None,
            choices: &[],
            aliases: &[],
            no_log: false,
            no_log_keys: None,
            min: None,
            suboptions: &[],
        }
    }
    pub const fn str(name: &'static str) -> Param {
        Param::new(name, Kind::Str)
    }
    pub const fn bool(name: &'static str) -> Param {
        Param::new(name, Kind::Bool)
    }
    pub const fn int(name: &'static str) -> Param {
        Param::new(name, Kind::Int)
    }
    pub const fn list(name: &'static str) -> Param {
        Param::new(name, Kind::List)
    }
    pub const fn dict(name: &'static str) -> Param {
        Param::new(name, Kind::Dict)
    }
    /// A list of dicts, each checked against `suboptions` (a `const` table of its own, so the
    /// sidecar-docs test can read it).
    pub const fn entries(name: &'static str, suboptions: &'static [Param]) -> Param {
        let mut param = Param::new(name, Kind::Entries);
        param.suboptions = suboptions;
        param
    }
    pub const fn required(mut self) -> Param {
        self.required = true;
        self
    }
    pub const fn default(mut self, value: Default) -> Param {
        self.default = Some(value);
        self
    }
    pub const fn choices(mut self, choices: &'static [&'static str]) -> Param {
        self.choices = choices;
        self
    }
    pub const fn aliases(mut self, aliases: &'static [&'static str]) -> Param {
        self.aliases = aliases;
        self
    }
    pub const fn no_log(mut self) -> Param {
        self.no_log = true;
        self
    }
    /// For a `Dict` such as request headers: the values under the keys `secret` accepts are
    /// secrets, the others are not (masking a header such as `X-Scope-OrgID: "1"` would mask
    /// every "1" of the answer).
    pub const fn no_log_keys(mut self, secret: fn(&str) -> bool) -> Param {
        self.no_log_keys = Some(secret);
        self
    }
    pub const fn min(mut self, min: i64) -> Param {
        self.min = Some(min);
        self
    }
}

/// The one argument that asks a module binary for its argument spec instead of running it
/// (`library/<name> --argument-spec`). ansible-core always passes the absolute path of the args
/// file and our fast path passes `-`, so this can never be a real invocation's argument.
pub const ARGUMENT_SPEC_FLAG: &str = "--argument-spec";

/// Refuses a spec that contradicts itself (the mistakes a `const` table can hold that the type
/// system does not catch): a name or alias declared twice, a default of another type than the
/// parameter, a default outside the choices or under the minimum, a required parameter with a
/// default, a default on a dict or a list of dicts, `min` on a non-integer, `no_log_keys` on a
/// non-dict. The message names the parameter (with its path for suboptions) and the fix.
pub fn check(spec: &[Param]) -> Result<(), String> {
    check_at(spec, "")
}

fn check_at(spec: &[Param], prefix: &str) -> Result<(), String> {
    let mut seen: Vec<&str> = Vec::new();
    for param in spec {
        let at = format!("{prefix}{}", param.name);
        for name in std::iter::once(&param.name).chain(param.aliases.iter()) {
            if seen.contains(name) {
                return Err(format!(
                    "parameter '{at}': the name '{prefix}{name}' is declared twice in the spec; \
                     give each parameter and alias one name"
                ));
            }
            seen.push(name);
        }
        if let Some(default) = param.default {
            let fits = matches!(
                (param.kind, default),
                (Kind::Str, Default::Str(_))
                    | (Kind::Bool, Default::Bool(_))
                    | (Kind::Int, Default::Int(_))
                    | (Kind::List, Default::List(_))
            );
            if !fits {
                return Err(format!(
                    "parameter '{at}' is a {} but its default is {default:?}: give it a default \
                     of its own type (or none for a dict or a list of dicts)",
                    param.kind.name()
                ));
            }
            if param.required {
                return Err(format!(
                    "parameter '{at}' is required and has a default: drop one of the two"
                ));
            }
            let values: Vec<String> = match default {
                Default::Str(s) => vec![s.to_string()],
                Default::Bool(b) => vec![b.to_string()],
                Default::Int(i) => vec![i.to_string()],
                Default::List(items) => items.iter().map(|s| s.to_string()).collect(),
            };
            if !param.choices.is_empty() {
                if let Some(bad) = values.iter().find(|v| !param.choices.contains(&v.as_str())) {
                    return Err(format!(
                        "parameter '{at}': the default '{bad}' is not one of its choices {:?}",
                        param.choices
                    ));
                }
            }
            if let (Some(min), Default::Int(i)) = (param.min, default) {
                if i < min {
                    return Err(format!(
                        "parameter '{at}': the default {i} is below its minimum {min}"
                    ));
                }
            }
        }
        if param.min.is_some() && param.kind != Kind::Int {
            return Err(format!(
                "parameter '{at}' is a {} with a minimum: only an int has one",
                param.kind.name()
            ));
        }
        if param.no_log_keys.is_some() && param.kind != Kind::Dict {
            return Err(format!(
                "parameter '{at}' is a {} with no_log_keys: only a dict has keys to hide",
                param.kind.name()
            ));
        }
        if param.kind == Kind::Entries {
            if param.suboptions.is_empty() {
                return Err(format!(
                    "parameter '{at}' is a list of dicts without suboptions: \
                     declare its keys with Param::entries(name, TABLE)"
                ));
            }
            check_at(param.suboptions, &format!("{at}."))?;
        }
    }
    Ok(())
}

/// The spec as JSON, in the words of an Ansible argument spec (and of a DOCUMENTATION
/// option): `{"name": {"type", "required", "default", "choices", "aliases", "elements",
/// "no_log", "no_log_keys", "min", "suboptions"}}`, sorted by name. `no_log_keys` is
/// `true` when only some keys of a dict are secret (the function itself cannot be printed).
pub fn to_json(spec: &[Param]) -> Json {
    let mut options = Map::new();
    for param in spec {
        let mut o = Map::new();
        let (ty, elements) = match param.kind {
            Kind::Str => ("str", None),
            Kind::Bool => ("bool", None),
            Kind::Int => ("int", None),
            Kind::List => ("list", Some("str")),
            Kind::Dict => ("dict", None),
            Kind::Entries => ("list", Some("dict")),
        };
        o.insert("type".into(), Json::from(ty));
        o.insert(
            "elements".into(),
            elements.map(Json::from).unwrap_or(Json::Null),
        );
        o.insert("required".into(), Json::from(param.required));
        let default = match param.default {
            None => Json::Null,
            Some(Default::Str(s)) => Json::from(s),
            Some(Default::Bool(b)) => Json::from(b),
            Some(Default::Int(i)) => Json::from(i),
            Some(Default::List(items)) => Json::from(items.to_vec()),
        };
        o.insert("default".into(), default);
        o.insert("choices".into(), Json::from(param.choices.to_vec()));
        o.insert("aliases".into(), Json::from(param.aliases.to_vec()));
        o.insert("no_log".into(), Json::from(param.no_log));
        o.insert(
            "no_log_keys".into(),
            Json::from(param.no_log_keys.is_some()),
        );
        o.insert(
            "min".into(),
            param.min.map(Json::from).unwrap_or(Json::Null),
        );
        let suboptions = if param.kind == Kind::Entries {
            to_json(param.suboptions)
        } else {
            Json::Null
        };
        o.insert("suboptions".into(), suboptions);
        options.insert(param.name.into(), Json::Object(o));
    }
    Json::Object(options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENTRY: &[Param] = &[
        Param::str("name").required(),
        Param::bool("restart").default(Default::Bool(false)),
    ];
    const DEFAULT_UNITS: &[&str] = &["a.timer", "b.service"];
    const SPEC: &[Param] = &[
        Param::str("state")
            .default(Default::Str("locked"))
            .choices(&["locked", "released"]),
        Param::list("units")
            .default(Default::List(DEFAULT_UNITS))
            .aliases(&["unit"]),
        Param::int("wait").default(Default::Int(600)).min(0),
        Param::str("secret").no_log().required(),
        Param::dict("headers").no_log_keys(|k| k == "Authorization"),
        Param::entries("items", ENTRY),
    ];

    #[test]
    fn the_json_spec_holds_every_field_of_every_parameter() {
        check(SPEC).unwrap();
        let spec = to_json(SPEC);
        assert_eq!(
            spec["state"],
            json!({"type": "str", "elements": null, "required": false, "default": "locked",
                   "choices": ["locked", "released"], "aliases": [], "no_log": false,
                   "no_log_keys": false, "min": null, "suboptions": null})
        );
        assert_eq!(spec["units"]["type"], json!("list"));
        assert_eq!(spec["units"]["elements"], json!("str"));
        assert_eq!(spec["units"]["default"], json!(["a.timer", "b.service"]));
        assert_eq!(spec["units"]["aliases"], json!(["unit"]));
        assert_eq!(spec["wait"]["default"], json!(600));
        assert_eq!(spec["wait"]["min"], json!(0));
        assert_eq!(spec["secret"]["required"], json!(true));
        assert_eq!(spec["secret"]["no_log"], json!(true));
        assert_eq!(spec["headers"]["type"], json!("dict"));
        assert_eq!(spec["headers"]["no_log_keys"], json!(true));
        assert_eq!(spec["headers"]["no_log"], json!(false));
        assert_eq!(spec["items"]["elements"], json!("dict"));
        assert_eq!(
            spec["items"]["suboptions"]["restart"]["default"],
            json!(false)
        );
        assert_eq!(spec["items"]["suboptions"]["name"]["required"], json!(true));
        assert_eq!(spec.as_object().unwrap().len(), SPEC.len());
    }

    #[test]
    fn an_empty_list_default_is_an_empty_list_not_none() {
        const S: &[Param] = &[Param::list("x").default(Default::List(&[]))];
        assert_eq!(to_json(S)["x"]["default"], json!([]));
    }

    fn refused(spec: &[Param]) -> String {
        check(spec).expect_err("the spec should be refused")
    }

    #[test]
    fn a_spec_that_contradicts_itself_is_refused_naming_the_parameter() {
        let cases: Vec<(Vec<Param>, &str)> = vec![
            (
                vec![Param::str("a"), Param::str("a")],
                "'a' is declared twice",
            ),
            (
                vec![Param::str("a").aliases(&["b"]), Param::str("b")],
                "'b' is declared twice",
            ),
            (
                vec![Param::int("a").default(Default::Str("x"))],
                "'a' is a int but its default is Str",
            ),
            (
                vec![Param::dict("a").default(Default::Str("x"))],
                "'a' is a dict but its default",
            ),
            (
                vec![Param::str("a").required().default(Default::Str("x"))],
                "'a' is required and has a default",
            ),
            (
                vec![Param::str("a")
                    .default(Default::Str("x"))
                    .choices(&["y", "z"])],
                "the default 'x' is not one of its choices",
            ),
            (
                vec![Param::int("a").default(Default::Int(-1)).min(0)],
                "the default -1 is below its minimum 0",
            ),
            (vec![Param::str("a").min(0)], "'a' is a str with a minimum"),
            (
                vec![Param::str("a").no_log_keys(|_| true)],
                "'a' is a str with no_log_keys",
            ),
            (
                vec![Param::entries("a", &[])],
                "'a' is a list of dicts without suboptions",
            ),
        ];
        for (spec, expected) in cases {
            let msg = refused(&spec);
            assert!(msg.contains(expected), "{msg:?} lacks {expected:?}");
        }
        const BAD_ENTRY: &[Param] = &[Param::str("n"), Param::str("n")];
        let msg = refused(&[Param::entries("files", BAD_ENTRY)]);
        assert!(msg.contains("'files.n' is declared twice"), "{msg}");
    }
}
