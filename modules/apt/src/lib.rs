//! The apt/dpkg engine shared by the HomeOps apt modules (`apt_packages`, `kernel_headers`,
//! `apt_lockdown`).
//!
//! - [`locks`]: who holds an apt/dpkg lock (from `/proc/locks`), and bounded waits for it.
pub mod locks;
