//! The apt/dpkg engine shared by the HomeOps apt modules (`apt_packages`, `kernel_headers`,
//! `apt_lockdown`).
//!
//! - [`locks`]: who holds an apt/dpkg lock (from `/proc/locks`), and bounded waits for it.
//! - [`names`]: package names and versions from tasks, checked against Debian policy.
//! - [`query`]: lock-free reads (`dpkg-query`, `apt-cache policy`, `apt-get -s`), parsed.
//! - [`plan`]: what a task wants against what is installed, as a pure function.
//! - [`classify`]: why apt-get failed, and whether waiting or retrying can help.
//! - [`engine`]: apt-get runs with one lock deadline, retries and dpkg repair.
//! - [`host`]: the machine behind a trait; [`fake`] scripts it for tests.

pub mod classify;
pub mod engine;
pub mod fake;
pub mod host;
pub mod locks;
pub mod names;
pub mod plan;
pub mod query;

pub use engine::{AptError, Engine, ErrorKind, Report, Settings};
pub use host::{Host, System};
pub use names::PackageSpec;
