//! The typed description of a module's parameters, written as a `const` table per module.

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
