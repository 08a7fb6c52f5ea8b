//! What a module answers: success (`Outcome`) or failure (`Failure`), rendered into the one JSON
//! object Ansible reads.

use serde_json::{Map, Value as Json};

/// A before/after pair for `--diff`. Ansible prints it as a unified diff.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub before: String,
    pub after: String,
    pub before_header: Option<String>,
    pub after_header: Option<String>,
}

impl Diff {
    pub fn new(before: impl Into<String>, after: impl Into<String>) -> Diff {
        Diff {
            before: before.into(),
            after: after.into(),
            ..Diff::default()
        }
    }

    pub fn headers(mut self, before: impl Into<String>, after: impl Into<String>) -> Diff {
        self.before_header = Some(before.into());
        self.after_header = Some(after.into());
        self
    }

    fn to_json(&self) -> Json {
        let mut map = Map::new();
        map.insert("before".into(), Json::from(self.before.as_str()));
        map.insert("after".into(), Json::from(self.after.as_str()));
        if let Some(h) = &self.before_header {
            map.insert("before_header".into(), Json::from(h.as_str()));
        }
        if let Some(h) = &self.after_header {
            map.insert("after_header".into(), Json::from(h.as_str()));
        }
        Json::Object(map)
    }
}

/// A successful run.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub changed: bool,
    pub msg: String,
    fields: Map<String, Json>,
    warnings: Vec<String>,
    diffs: Vec<Diff>,
}

impl Outcome {
    pub fn new(changed: bool, msg: impl Into<String>) -> Outcome {
        Outcome {
            changed,
            msg: msg.into(),
            ..Outcome::default()
        }
    }
    pub fn changed(msg: impl Into<String>) -> Outcome {
        Outcome::new(true, msg)
    }
    pub fn unchanged(msg: impl Into<String>) -> Outcome {
        Outcome::new(false, msg)
    }
    /// Adds a module-specific result field.
    pub fn with(mut self, key: &str, value: impl Into<Json>) -> Outcome {
        self.set(key, value);
        self
    }
    pub fn set(&mut self, key: &str, value: impl Into<Json>) {
        self.fields.insert(key.to_string(), value.into());
    }
    pub fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }
    pub fn warnings(&mut self, warnings: impl IntoIterator<Item = String>) {
        self.warnings.extend(warnings);
    }
    /// The diff is only sent when Ansible asked for one (`--diff`).
    pub fn with_diff(mut self, diff: Diff) -> Outcome {
        self.diffs.push(diff);
        self
    }
    /// Adds one more diff: a module that changes several files shows one per file (Ansible
    /// prints a list of diffs one after the other).
    pub fn add_diff(&mut self, diff: Diff) {
        self.diffs.push(diff);
    }
    pub fn field(&self, key: &str) -> Option<&Json> {
        self.fields.get(key)
    }

    pub(crate) fn to_json(&self, want_diff: bool) -> Map<String, Json> {
        let mut out = self.fields.clone();
        out.insert("changed".into(), Json::from(self.changed));
        out.insert("failed".into(), Json::from(false));
        out.insert("msg".into(), Json::from(self.msg.as_str()));
        if !self.warnings.is_empty() {
            out.insert("warnings".into(), Json::from(self.warnings.clone()));
        }
        if want_diff {
            // One diff is an object, as every module sends it; several are a list, the form
            // ansible-core's callbacks also accept (`_get_diff` iterates over a list).
            match self.diffs.as_slice() {
                [] => {}
                [one] => {
                    out.insert("diff".into(), one.to_json());
                }
                many => {
                    out.insert(
                        "diff".into(),
                        Json::Array(many.iter().map(Diff::to_json).collect()),
                    );
                }
            }
        }
        out
    }
}

/// A failed run: `failed: true` with a message that explains what went wrong and what to do.
#[derive(Clone, Debug, Default)]
pub struct Failure {
    pub msg: String,
    /// A failure after the host was already changed (e.g. group created, user not) says so.
    pub changed: bool,
    fields: Map<String, Json>,
    warnings: Vec<String>,
}

impl Failure {
    pub fn new(msg: impl Into<String>) -> Failure {
        Failure {
            msg: msg.into(),
            ..Failure::default()
        }
    }
    pub fn with(mut self, key: &str, value: impl Into<Json>) -> Failure {
        self.fields.insert(key.to_string(), value.into());
        self
    }
    pub fn after_change(mut self, changed: bool) -> Failure {
        self.changed = changed;
        self
    }
    pub fn warn(mut self, warning: impl Into<String>) -> Failure {
        self.warnings.push(warning.into());
        self
    }
    pub fn field(&self, key: &str) -> Option<&Json> {
        self.fields.get(key)
    }

    pub(crate) fn to_json(&self) -> Map<String, Json> {
        let mut out = self.fields.clone();
        out.insert("changed".into(), Json::from(self.changed));
        out.insert("failed".into(), Json::from(true));
        out.insert("msg".into(), Json::from(self.msg.as_str()));
        if !self.warnings.is_empty() {
            out.insert("warnings".into(), Json::from(self.warnings.clone()));
        }
        out
    }
}

impl From<String> for Failure {
    fn from(msg: String) -> Failure {
        Failure::new(msg)
    }
}

impl From<&str> for Failure {
    fn from(msg: &str) -> Failure {
        Failure::new(msg)
    }
}
