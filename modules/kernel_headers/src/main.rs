//! `kernel_headers`: the headers package for the running kernel, so DKMS can build its modules.
//!
//! Without headers for the running kernel, a DKMS package's hook fails and with it *every* apt
//! transaction on the host (the ws-01-linux failure). The answer is a package named after the
//! exact kernel release, `linux-headers-$(uname -r)`, whose install leaves
//! `/lib/modules/<release>/build`. Kernels built elsewhere (cloud images, custom builds) have no
//! such package: that is said plainly, with the nearest packages apt does know, and
//! `on_missing: warn` lets a deploy carry on where DKMS is not used.

use std::path::Path;
use std::time::Duration;

use apt::engine::{cache_is_stale, AptError};
use apt::names::check_name;
use apt::{Engine, Host, PackageSpec, Settings, System};
use runtime::{Context, Default, Diff, Failure, Outcome, Param, Params};
use serde_json::Value as Json;

const NAME: &str = "kernel_headers";

const SPEC: &[Param] = &[
    Param::str("kernel"),
    Param::str("package"),
    Param::bool("update_cache").default(Default::Bool(false)),
    Param::int("cache_valid_time")
        .default(Default::Int(0))
        .min(0),
    Param::int("lock_timeout").default(Default::Int(600)).min(0),
    Param::int("retries").default(Default::Int(3)).min(0),
    Param::int("retry_delay").default(Default::Int(5)).min(0),
    Param::str("on_missing")
        .default(Default::Str("fail"))
        .choices(&["fail", "warn"]),
];

/// How many near packages a "no such package" answer lists.
const NEAREST: usize = 5;

fn main() {
    runtime::run(NAME, SPEC, |params, ctx| {
        let request = Request::from_params(params, running_release)?;
        runtime::require_root(ctx)?;
        apply(&request, ctx, &System)
    })
}

#[derive(Clone, Debug)]
struct Request {
    release: String,
    package: String,
    update_cache: bool,
    cache_valid_time: Duration,
    warn_on_missing: bool,
    settings: Settings,
}

impl Request {
    fn from_params(
        params: &Params,
        uname: impl FnOnce() -> Result<String, String>,
    ) -> Result<Request, Failure> {
        let release = match params.str("kernel") {
            Some(k) => {
                check_release(k).map_err(|why| {
                    format!("kernel: '{k}' is not a kernel release: {why}; give it as `uname -r` prints it, e.g. '6.1.0-18-amd64', or leave it out for the running kernel")
                })?;
                k.to_string()
            }
            None => uname().map_err(Failure::new)?,
        };
        let package = match params.str("package") {
            Some(p) => {
                check_name(p).map_err(|why| {
                    format!("package: '{p}' is not a valid Debian package name: {why}")
                })?;
                p.to_string()
            }
            None => {
                let derived = format!("linux-headers-{release}");
                check_name(&derived).map_err(|why| {
                    format!("the headers package for kernel '{release}' would be '{derived}', which is not a valid Debian package name ({why}); set package to the right name")
                })?;
                derived
            }
        };
        Ok(Request {
            release,
            package,
            update_cache: params.bool("update_cache"),
            cache_valid_time: params.secs("cache_valid_time"),
            warn_on_missing: params.str("on_missing") == Some("warn"),
            settings: Settings {
                lock_timeout: params.secs("lock_timeout"),
                retries: u32::try_from(params.int("retries").unwrap_or(0)).unwrap_or(u32::MAX),
                retry_delay: params.secs("retry_delay"),
                ..Settings::default()
            },
        })
    }

    fn build_dir(&self) -> String {
        format!("/lib/modules/{}/build", self.release)
    }
}

/// A kernel release as `uname -r` prints it: one path component, no option look-alike.
fn check_release(release: &str) -> Result<(), String> {
    if release.is_empty() {
        return Err("it is empty".into());
    }
    if release.starts_with(['-', '.']) {
        return Err("it must start with a letter or digit".into());
    }
    if let Some(bad) = release
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._+~-".contains(*c)))
    {
        return Err(format!("it contains '{bad}'"));
    }
    Ok(())
}

/// The running kernel's release, from uname(2) (no command, no NSS).
fn running_release() -> Result<String, String> {
    let uts = nix::sys::utsname::uname().map_err(|errno| {
        format!(
            "uname() failed: {}; set kernel explicitly",
            std::io::Error::from(errno)
        )
    })?;
    let release = uts.release().to_string_lossy().into_owned();
    check_release(&release).map_err(|why| {
        format!("the running kernel's release '{release}' cannot name a package ({why}); set kernel and package explicitly")
    })?;
    Ok(release)
}

/// Edit distance, for ranking the packages apt knows against the one we wanted.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The `n` known names nearest to `wanted`, nearest first (ties alphabetically).
fn nearest(wanted: &str, known: &[String], n: usize) -> Vec<String> {
    let mut ranked: Vec<(usize, &String)> = known
        .iter()
        .filter(|k| k.as_str() != wanted)
        .map(|k| (distance(wanted, k), k))
        .collect();
    ranked.sort();
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().take(n).map(|(_, k)| k.clone()).collect()
}

fn apply(req: &Request, ctx: &Context, host: &dyn Host) -> Result<Outcome, Failure> {
    let mut engine = Engine::new(host, req.settings.clone());
    let build_dir = req.build_dir();
    let fields = |outcome: Outcome, engine: &Engine, version: Option<&str>| -> Outcome {
        engine.report.add_to(
            outcome
                .with("kernel", req.release.as_str())
                .with("package", req.package.as_str())
                .with("version", version.map(Json::from).unwrap_or(Json::Null))
                .with("build_dir", build_dir.as_str()),
        )
    };

    let installed = engine
        .installed(std::slice::from_ref(&req.package))
        .map_err(Failure::new)?
        .remove(&req.package);
    let build_exists = host.exists(Path::new(&build_dir));

    // The fast path: installed and the build tree is there. No lock, no cache.
    if let Some(version) = &installed {
        if build_exists {
            return Ok(fields(
                Outcome::unchanged(format!(
                    "{} {version} is installed and {build_dir} exists",
                    req.package
                )),
                &engine,
                Some(version),
            ));
        }
        return Err(Failure::new(format!(
            "{} {version} is installed but {build_dir} does not exist, so DKMS cannot build for kernel {}; the package does not provide this kernel's build tree (set package to the one that does) or the tree was removed (reinstall the package)",
            req.package, req.release
        ))
        .with("kernel", req.release.as_str())
        .with("package", req.package.as_str())
        .with("version", version.as_str())
        .with("build_dir", build_dir.as_str()));
    }

    let stale = cache_is_stale(req.update_cache, req.cache_valid_time, engine.cache_age());
    if stale {
        if ctx.check_mode {
            engine.report.warnings.push(
                "check mode: the package lists were not updated; the answer is from the current lists".into(),
            );
        } else {
            engine.update().map_err(|e| apt_failure(e, &engine, req))?;
        }
    }

    let candidate = engine
        .policy(std::slice::from_ref(&req.package))
        .map_err(Failure::new)?
        .remove(&req.package)
        .and_then(|p| p.candidate);
    let Some(candidate) = candidate else {
        let known = engine.pkgnames("linux-headers-").unwrap_or_default();
        let near = nearest(&req.package, &known, NEAREST);
        let listed = if near.is_empty() {
            "apt knows no linux-headers-* package at all (are the package lists empty? try update_cache: true)".to_string()
        } else {
            format!("nearest known: {}", near.join(", "))
        };
        let msg = format!(
            "no package '{}' for the running kernel {} in the configured apt sources; {listed}. A kernel without a matching headers package (custom or cloud-provider builds) cannot build DKMS modules: install that kernel's headers another way, set package, or use on_missing: warn where DKMS is not needed",
            req.package, req.release
        );
        if req.warn_on_missing {
            engine.report.warnings.push(msg.clone());
            return Ok(fields(Outcome::unchanged(msg), &engine, None).with("candidates", near));
        }
        return Err(Failure::new(msg)
            .with("kernel", req.release.as_str())
            .with("package", req.package.as_str())
            .with("build_dir", build_dir.as_str())
            .with("candidates", near));
    };

    let diff = Diff::new(
        format!("{}: not installed\n", req.package),
        format!("{} {candidate}\n", req.package),
    )
    .headers("kernel headers before", "kernel headers after");
    if ctx.check_mode {
        return Ok(fields(
            Outcome::changed(format!(
                "would install {} {candidate} for kernel {}",
                req.package, req.release
            )),
            &engine,
            Some(&candidate),
        )
        .with_diff(diff));
    }

    let spec = PackageSpec {
        name: req.package.clone(),
        version: None,
    };
    engine
        .install(std::slice::from_ref(&spec))
        .map_err(|e| apt_failure(e, &engine, req))?;
    let version = engine
        .installed(std::slice::from_ref(&req.package))
        .ok()
        .and_then(|mut m| m.remove(&req.package));
    if !host.exists(Path::new(&build_dir)) {
        return Err(Failure::new(format!(
            "installed {} but {build_dir} still does not exist: this package does not provide kernel {}'s build tree; set package to the one that does",
            req.package, req.release
        ))
        .after_change(true)
        .with("kernel", req.release.as_str())
        .with("package", req.package.as_str())
        .with("version", version.map(Json::from).unwrap_or(Json::Null))
        .with("build_dir", build_dir.as_str()));
    }
    let version = version.unwrap_or(candidate);
    Ok(fields(
        Outcome::changed(format!(
            "installed {} {version}; {build_dir} exists",
            req.package
        )),
        &engine,
        Some(&version),
    )
    .with_diff(Diff::new(
        format!("{}: not installed\n", req.package),
        format!("{} {version}\n", req.package),
    )))
}

fn apt_failure(err: AptError, engine: &Engine, req: &Request) -> Failure {
    let failure = engine
        .report
        .failure(err)
        .with("kernel", req.release.as_str())
        .with("package", req.package.as_str())
        .with("build_dir", req.build_dir());
    // Whether an install half-happened is for dpkg to say; a failed install that got as far
    // as unpacking is reported as a change.
    let changed = engine.report.stdout_tail.contains("Unpacking ");
    failure.after_change(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use apt::fake::{fail, ok, FakeHost};
    use apt::locks::FRONTEND_LOCK;
    use serde_json::json;

    const R: &str = "6.1.0-18-amd64";
    const PKG: &str = "linux-headers-6.1.0-18-amd64";
    const BUILD: &str = "/lib/modules/6.1.0-18-amd64/build";

    fn request(args: Json) -> Result<Request, String> {
        let (params, _) = runtime::parse(NAME, SPEC, &args)?;
        Request::from_params(&params, || Ok(R.to_string())).map_err(|f| f.msg)
    }

    fn run(host: &FakeHost, args: Json, check_mode: bool) -> Result<Json, Json> {
        let req = request(args).expect("valid request");
        runtime::testing::answer_with_diff(NAME, SPEC, check_mode, |ctx| apply(&req, ctx, host))
    }

    fn installed_line() -> String {
        format!("{PKG}\tinstall ok installed\t6.1.76-1\n")
    }

    #[test]
    fn installed_headers_with_a_build_tree_are_a_no_op_without_locks() {
        let host = FakeHost::new();
        host.hold(FRONTEND_LOCK, 9, "apt", Duration::from_secs(3600));
        host.file(BUILD);
        host.on("dpkg-query", ok(&installed_line()));
        let json = run(&host, json!({"update_cache": true}), false).unwrap();
        assert_eq!(json["changed"], json!(false));
        assert_eq!(json["kernel"], json!(R));
        assert_eq!(json["package"], json!(PKG));
        assert_eq!(json["version"], json!("6.1.76-1"));
        assert_eq!(json["build_dir"], json!(BUILD));
        assert_eq!(host.commands().len(), 1);
        assert_eq!(host.elapsed(), Duration::ZERO);
    }

    #[test]
    fn installed_headers_without_a_build_tree_fail_clearly() {
        let host = FakeHost::new();
        host.on("dpkg-query", ok(&installed_line()));
        let err = run(&host, json!({}), false).unwrap_err();
        assert!(
            err["msg"].as_str().unwrap().contains("does not exist"),
            "{err}"
        );
    }

    #[test]
    fn missing_headers_are_installed_and_the_build_tree_checked() {
        let host = FakeHost::new();
        host.on("dpkg-query", ok(""));
        host.on(
            "apt-cache policy",
            ok(&format!(
                "{PKG}:\n  Installed: (none)\n  Candidate: 6.1.76-1\n"
            )),
        );
        host.on(&format!("install {PKG}"), ok("Setting up ...\n"));
        host.on("dpkg-query", ok(&installed_line()));
        // The package creates the build tree: the fake has it from the start of the check.
        host.file(BUILD);
        // ...but the fast path must not see it as installed: dpkg said not installed.
        let json = run(&host, json!({"lock_timeout": 30}), false).unwrap();
        assert_eq!(json["changed"], json!(true), "{json}");
        assert_eq!(json["version"], json!("6.1.76-1"));
        assert_eq!(json["attempts"], json!(1));
        assert!(host.commands()[2].contains("DPkg::Lock::Timeout=30"));
        assert_eq!(json["diff"]["after"], json!(format!("{PKG} 6.1.76-1\n")));

        // Installed, yet no build tree: a clear failure that says the host changed.
        let host = FakeHost::new();
        host.on("dpkg-query", ok(""));
        host.on(
            "apt-cache policy",
            ok(&format!("{PKG}:\n  Candidate: 6.1.76-1\n")),
        );
        host.on("install", ok(""));
        host.on("dpkg-query", ok(&installed_line()));
        let err = run(&host, json!({}), false).unwrap_err();
        assert_eq!(err["changed"], json!(true));
        assert!(err["msg"]
            .as_str()
            .unwrap()
            .contains("still does not exist"));
    }

    #[test]
    fn no_package_for_the_kernel_names_the_release_and_the_nearest_packages() {
        let names = "linux-headers-6.1.0-17-amd64\nlinux-headers-6.1.0-18-cloud-amd64\nlinux-headers-amd64\nlinux-headers-6.1.0-18-common\nlinux-headers-5.10.0-9-amd64\nlinux-headers-6.1.0-18-rt-amd64\nlinux-headers-6.1.0-19-amd64\n";
        let host = FakeHost::new();
        host.always("dpkg-query", ok(""));
        host.always("apt-cache policy", ok(""));
        host.always("pkgnames", ok(names));
        let err = run(&host, json!({}), false).unwrap_err();
        let msg = err["msg"].as_str().unwrap();
        assert!(
            msg.contains(&format!("no package '{PKG}' for the running kernel {R}")),
            "{msg}"
        );
        assert_eq!(
            err["candidates"],
            json!([
                "linux-headers-6.1.0-17-amd64",
                "linux-headers-6.1.0-19-amd64",
                "linux-headers-6.1.0-18-rt-amd64",
                "linux-headers-5.10.0-9-amd64",
                "linux-headers-6.1.0-18-common"
            ])
        );
        assert_eq!(host.count("apt-get"), 0);

        let json = run(&host, json!({"on_missing": "warn"}), false).unwrap();
        assert_eq!(json["changed"], json!(false));
        assert_eq!(json["version"], Json::Null);
        assert!(json["warnings"][0]
            .as_str()
            .unwrap()
            .contains("nearest known"));
    }

    #[test]
    fn check_mode_reports_the_install_and_runs_no_apt_get() {
        let host = FakeHost::new();
        host.on("dpkg-query", ok(""));
        host.on(
            "apt-cache policy",
            ok(&format!("{PKG}:\n  Candidate: 6.1.76-1\n")),
        );
        let json = run(&host, json!({"update_cache": true}), true).unwrap();
        assert_eq!(json["changed"], json!(true));
        assert!(json["msg"].as_str().unwrap().starts_with("would install"));
        assert_eq!(host.count("apt-get"), 0);
        assert!(json["warnings"][0]
            .as_str()
            .unwrap()
            .contains("not updated"));
    }

    #[test]
    fn a_stale_cache_is_updated_before_looking_for_the_package() {
        let host = FakeHost::new();
        host.file(BUILD);
        host.on("dpkg-query", ok(""));
        host.on("update", ok(""));
        host.on(
            "apt-cache policy",
            ok(&format!("{PKG}:\n  Candidate: 6.1.76-1\n")),
        );
        host.on("install", ok(""));
        host.on("dpkg-query", ok(&installed_line()));
        let json = run(&host, json!({"update_cache": true}), false).unwrap();
        assert_eq!(json["cache_updated"], json!(true));

        let host = FakeHost::new();
        host.on("dpkg-query", ok(""));
        host.always(
            "update",
            fail(
                100,
                "E: Failed to fetch x  Temporary failure resolving 'deb'",
            ),
        );
        let err = run(
            &host,
            json!({"update_cache": true, "retries": 1, "retry_delay": 1}),
            false,
        )
        .unwrap_err();
        assert_eq!(err["failure_kind"], json!("transient"));
        assert_eq!(err["attempts"], json!(2));
    }

    #[test]
    fn kernels_and_packages_are_checked() {
        assert!(request(json!({"kernel": "6.1.0-18-amd64"})).is_ok());
        let e = request(json!({"kernel": "../../etc"})).unwrap_err();
        assert!(e.starts_with("kernel: '../../etc'"), "{e}");
        let e = request(json!({"kernel": "-oFoo"})).unwrap_err();
        assert!(e.contains("start with a letter or digit"), "{e}");
        let e = request(json!({"kernel": "5.15.0-1-MANJARO"})).unwrap_err();
        assert!(e.contains("set package"), "{e}");
        let r =
            request(json!({"kernel": "5.15.0-1-MANJARO", "package": "linux515-headers"})).unwrap();
        assert_eq!(r.build_dir(), "/lib/modules/5.15.0-1-MANJARO/build");
        let e = request(json!({"package": "headers;rm"})).unwrap_err();
        assert!(e.starts_with("package: "), "{e}");
    }

    #[test]
    fn nearest_ranks_by_edit_distance() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("same", "same"), 0);
        let known: Vec<String> = ["b", "abc", "abd", "zzzz"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(nearest("abc", &known, 2), ["abd", "b"]);
        assert!(running_release().is_ok());
    }
}
