//! Modules that change the system need root; without it they must say so at once.
//!
//! Without this check a non-root run looks like something else: apt_packages waits its whole
//! lock_timeout on locks it may not open and then blames "another process", system_account
//! retries useradd until it gives up. Check mode only reads, so it runs as any user.

use crate::outcome::Failure;
use crate::params::Context;

/// `Ok` when the process runs as root (effective uid 0) or in check mode; otherwise the
/// failure that names the user and the fix.
pub fn require_root(ctx: &Context) -> Result<(), Failure> {
    require_root_as(ctx, effective_uid())
}

fn require_root_as(ctx: &Context, uid: u32) -> Result<(), Failure> {
    if uid == 0 || ctx.check_mode {
        return Ok(());
    }
    Err(Failure::new(format!(
        "{} must run as root to change the system, but it runs as uid {uid}: add `become: true` to the task (or play), or connect as root",
        ctx.module
    ))
    .with("uid", uid))
}

/// The effective uid, from the kernel's own account of this process.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(check_mode: bool) -> Context {
        Context {
            module: "apt_packages",
            check_mode,
            diff: false,
            no_log: false,
            verbosity: 0,
        }
    }

    #[test]
    fn root_and_check_mode_pass_anyone_else_is_told_to_become() {
        assert!(require_root_as(&ctx(false), 0).is_ok());
        assert!(require_root_as(&ctx(true), 1000).is_ok());
        let failure = require_root_as(&ctx(false), 1000).unwrap_err();
        assert_eq!(
            failure.msg,
            "apt_packages must run as root to change the system, but it runs as uid 1000: add `become: true` to the task (or play), or connect as root"
        );
        assert!(!failure.changed);
    }
}
