//! The runtime shared by every HomeOps binary module.
//!
//! ansible-core runs a binary module as `module ARGS_FILE` and reads one JSON object from its
//! standard output (ansible-core's developer guide, "Binary Modules":
//! <https://docs.ansible.com/ansible/latest/dev_guide/developing_program_flow_modules.html>).
//! This crate does all of that once, so a module is only a parameter spec and a function:
//!
//! ```no_run
//! use runtime::{Context, Failure, Outcome, Param, Params};
//!
//! const SPEC: &[Param] = &[Param::str("name").required()];
//!
//! fn main() {
//!     runtime::run("hello", SPEC, hello);
//! }
//!
//! fn hello(params: &Params, ctx: &Context) -> Result<Outcome, Failure> {
//!     let name = params.str("name").unwrap_or_default();
//!     Ok(Outcome::unchanged(format!("hello {name}")))
//! }
//! ```
//!
//! What the runtime guarantees, whatever the module does:
//! - arguments come from the file in `argv[1]`, or from standard input when it is `-` (our fast
//!   path, so arguments that may hold secrets never touch the remote disk);
//! - parameters are typed and coerced the way Ansible's own modules coerce them, and bad input is
//!   a `failed: true` answer naming the field and what it should be;
//! - exactly one JSON object is printed, exit code 0 on success and 1 on failure;
//! - a panic becomes a `failed: true` answer, never a Rust backtrace in Ansible's face;
//! - `no_log` parameter values are masked everywhere in the answer;
//! - `MODULE --argument-spec` prints the parameter spec as JSON (the one declaration of the
//!   parameters; the sidecar docs are tested against it).

pub mod accounts;
mod command;
mod entry;
mod files;
mod outcome;
mod params;
mod privilege;
mod spec;
pub mod systemd;
pub mod testing;

pub use command::{Command, Output};
pub use entry::{answer, argument_spec, note_change, run, run_from};
pub use files::{octal, parse_mode, write_atomic};
pub use outcome::{Diff, Failure, Outcome};
pub use params::{parse, Context, Params, Value};
pub use privilege::{effective_uid, require_root};
pub use spec::{Default, Kind, Param, ARGUMENT_SPEC_FLAG};
