//! `apt_packages`: Debian packages present, absent or latest, without the two ways
//! `ansible.builtin.apt` breaks deploys: failing at once on a held dpkg lock, and doing cache
//! work (and taking locks) even when every package is already as wanted.
//!
//! The order of work:
//! 1. dpkg-query for the named packages (no lock). Everything as wanted: answer unchanged now,
//!    without updating the cache, whatever `update_cache` says.
//! 2. Otherwise, with one lock deadline (`lock_timeout`): update the lists if stale (retried
//!    on the lists lock), ask `apt-cache policy` for `latest`, then apt-get install/remove with
//!    `-o DPkg::Lock::Timeout=<what is left>`, retrying transient failures and repairing an
//!    interrupted dpkg once.
//! 3. Report what changed from dpkg's view before and after (dependencies included).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use apt::engine::{cache_is_stale, check_dpkg_options, AptError};
use apt::names::parse_specs;
use apt::plan::{self, Wanted};
use apt::query::{compare, Change, Changes};
use apt::{Engine, Host, PackageSpec, Report, Settings, System};
use runtime::{Context, Default, Diff, Failure, Outcome, Param, Params};
use serde_json::{json, Value as Json};

const NAME: &str = "apt_packages";

const SPEC: &[Param] = &[
    Param::list("name")
        .aliases(&["pkg", "package"])
        .default(Default::List(&[])),
    Param::str("state")
        .default(Default::Str("present"))
        .choices(&["present", "absent", "latest"]),
    Param::bool("update_cache").default(Default::Bool(false)),
    Param::int("cache_valid_time")
        .default(Default::Int(0))
        .min(0),
    Param::int("lock_timeout").default(Default::Int(600)).min(0),
    Param::int("retries").default(Default::Int(3)).min(0),
    Param::int("retry_delay").default(Default::Int(5)).min(0),
    Param::bool("install_recommends").default(Default::Bool(false)),
    Param::list("dpkg_options").default(Default::List(&["force-confdef", "force-confold"])),
    Param::bool("allow_downgrade").default(Default::Bool(false)),
];

fn main() {
    runtime::run(NAME, SPEC, |params, ctx| {
        let request = Request::from_params(params)?;
        runtime::require_root(ctx)?;
        apply(&request, ctx, &System)
    })
}

/// A task's parameters, checked and typed.
#[derive(Clone, Debug)]
struct Request {
    specs: Vec<PackageSpec>,
    wanted: Wanted,
    update_cache: bool,
    cache_valid_time: Duration,
    settings: Settings,
}

impl Request {
    fn from_params(params: &Params) -> Result<Request, Failure> {
        let specs = parse_specs(params.list("name"), "name")?;
        let wanted = params
            .str("state")
            .and_then(Wanted::parse)
            .ok_or("state: must be one of present, absent, latest")?;
        Ok(Request {
            specs,
            wanted,
            update_cache: params.bool("update_cache"),
            cache_valid_time: params.secs("cache_valid_time"),
            settings: Settings {
                install_recommends: params.bool("install_recommends"),
                dpkg_options: check_dpkg_options(params.list("dpkg_options"))?,
                allow_downgrade: params.bool("allow_downgrade"),
                lock_timeout: params.secs("lock_timeout"),
                retries: u32::try_from(params.int("retries").unwrap_or(0)).unwrap_or(u32::MAX),
                retry_delay: params.secs("retry_delay"),
            },
        })
    }
}

fn apply(req: &Request, ctx: &Context, host: &dyn Host) -> Result<Outcome, Failure> {
    let mut engine = Engine::new(host, req.settings.clone());
    let names: Vec<String> = req.specs.iter().map(|s| s.name.clone()).collect();

    if req.specs.is_empty() && !req.update_cache {
        return Ok(finish(
            Outcome::unchanged("no packages named and update_cache is false: nothing to do"),
            &engine.report,
            &Changes::default(),
        ));
    }

    let dpkg = if names.is_empty() {
        BTreeMap::new()
    } else {
        engine.dpkg_query(&names).map_err(Failure::new)?
    };
    let plan = plan::plan(&req.specs, req.wanted, &dpkg)?;
    let stale = cache_is_stale(req.update_cache, req.cache_valid_time, engine.cache_age());

    // The fast path: dpkg alone says everything is as wanted. No lock, no cache work.
    if !req.specs.is_empty() && plan.is_noop() {
        let msg = format!(
            "all {} package(s) already {}: {}",
            req.specs.len(),
            state_word(req.wanted),
            list_specs(&req.specs)
        );
        return Ok(finish(
            Outcome::unchanged(msg),
            &engine.report,
            &Changes::default(),
        ));
    }

    if ctx.check_mode {
        return check(req, &mut engine, plan, stale);
    }

    let before = engine.installed(&[]).map_err(Failure::new)?;
    let result = (|| -> Result<(), AptError> {
        if stale {
            engine.update()?;
        }
        let mut install = plan.install.clone();
        if !plan.check_latest.is_empty() {
            let policies = engine
                .policy(&spec_names(&plan.check_latest))
                .map_err(|msg| AptError {
                    kind: apt::ErrorKind::CannotRun,
                    msg,
                    rc: None,
                })?;
            install.extend(plan::upgrades(&plan.check_latest, &policies));
        }
        if !install.is_empty() {
            engine.install(&install)?;
        }
        if !plan.remove.is_empty() {
            engine.remove(&plan.remove)?;
        }
        Ok(())
    })();
    let after = engine.installed(&[]);

    if let Err(err) = result {
        // A failure may still have changed the host (an update, part of a transaction).
        let changed = after.as_ref().is_ok_and(|a| *a != before);
        return Err(engine.report.failure(err).after_change(changed));
    }
    let after = after.map_err(Failure::new)?;
    // apt-get's own summary decides when it has one: in a storm of concurrent runs, dpkg's
    // state changes while this run waits for the lock, but only the run that did the work
    // may say changed.
    let changes = if engine.report.transactions_changed == Some(false) {
        Changes::default()
    } else {
        compare(&before, &after)
    };
    for spec in &req.specs {
        let now = after.get(&spec.name);
        let ok = match req.wanted {
            Wanted::Absent => spec.version.is_some() || now.is_none(),
            _ => now.is_some_and(|v| spec.version.as_ref().is_none_or(|w| w == v)),
        };
        if !ok {
            engine.report.warnings.push(format!(
                "'{spec}' is not {} according to dpkg after apt-get finished; if it is a virtual package, name the package that provides it",
                state_word(req.wanted)
            ));
        }
    }

    let mut msg = describe(&changes, false);
    if changes.is_empty() {
        msg = format!(
            "no package changed{}",
            if engine.report.cache_updated {
                " (package lists updated)"
            } else {
                ""
            }
        );
    }
    let mut outcome = Outcome::new(!changes.is_empty(), msg);
    let relevant = relevant_names(&names, &changes);
    outcome = outcome.with_diff(
        Diff::new(listing(&before, &relevant), listing(&after, &relevant))
            .headers("packages before", "packages after"),
    );
    Ok(finish(outcome, &engine.report, &changes))
}

/// Check mode: what would change, from `apt-get -s` where it can, from the plan otherwise.
fn check(
    req: &Request,
    engine: &mut Engine,
    plan: plan::Plan,
    stale: bool,
) -> Result<Outcome, Failure> {
    if stale {
        engine.report.warnings.push(
            "check mode: the package lists were not updated; the answer is from the current lists"
                .into(),
        );
    }
    let mut install = plan.install.clone();
    if !plan.check_latest.is_empty() {
        let policies = engine
            .policy(&spec_names(&plan.check_latest))
            .map_err(Failure::new)?;
        install.extend(plan::upgrades(&plan.check_latest, &policies));
    }
    if install.is_empty() && plan.remove.is_empty() {
        let msg = if req.specs.is_empty() && stale {
            "check mode: would update the package lists".to_string()
        } else if req.specs.is_empty() {
            "the package lists are fresh (cache_valid_time)".to_string()
        } else {
            format!(
                "all {} package(s) already {}",
                req.specs.len(),
                state_word(req.wanted)
            )
        };
        return Ok(finish(
            Outcome::unchanged(msg),
            &engine.report,
            &Changes::default(),
        ));
    }

    let names: Vec<String> = req.specs.iter().map(|s| s.name.clone()).collect();
    let before = engine.installed(&names).map_err(Failure::new)?;
    let mut changes = Changes::default();
    let mut simulated = true;
    for (specs, remove) in [(&install, false), (&plan.remove, true)] {
        if specs.is_empty() {
            continue;
        }
        match engine.simulate(specs, remove) {
            Ok(c) => {
                changes.installed.extend(c.installed);
                changes.upgraded.extend(c.upgraded);
                changes.removed.extend(c.removed);
            }
            Err(why) => {
                simulated = false;
                engine.report.warnings.push(format!(
                    "check mode: apt-get could not simulate the transaction ({why}); reporting the plan only"
                ));
                for spec in specs.iter() {
                    let change = Change {
                        name: spec.name.clone(),
                        version: spec
                            .version
                            .clone()
                            .or_else(|| before.get(&spec.name).cloned())
                            .unwrap_or_default(),
                        from: None,
                    };
                    match (remove, before.contains_key(&spec.name)) {
                        (true, _) => changes.removed.push(change),
                        (false, true) => changes.upgraded.push(Change {
                            from: before.get(&spec.name).cloned(),
                            ..change
                        }),
                        (false, false) => changes.installed.push(change),
                    }
                }
            }
        }
    }
    let mut after = before.clone();
    for c in changes.installed.iter().chain(changes.upgraded.iter()) {
        after.insert(c.name.clone(), c.version.clone());
    }
    for c in &changes.removed {
        after.remove(&c.name);
    }
    let relevant = relevant_names(&names, &changes);
    let mut msg = describe(&changes, true);
    if !simulated {
        msg.push_str(" (from the plan; apt-get -s failed)");
    }
    let outcome = Outcome::changed(msg).with_diff(
        Diff::new(listing(&before, &relevant), listing(&after, &relevant))
            .headers("packages before", "packages after (check mode)"),
    );
    Ok(finish(outcome, &engine.report, &changes))
}

/// Adds the fields every answer carries.
fn finish(mut outcome: Outcome, report: &Report, changes: &Changes) -> Outcome {
    outcome.set("installed", changes_json(&changes.installed));
    outcome.set("upgraded", changes_json(&changes.upgraded));
    outcome.set("removed", changes_json(&changes.removed));
    report.add_to(outcome)
}

fn changes_json(changes: &[Change]) -> Json {
    Json::Array(
        changes
            .iter()
            .map(|c| match &c.from {
                Some(from) => json!({"name": c.name, "version": c.version, "from": from}),
                None => json!({"name": c.name, "version": c.version}),
            })
            .collect(),
    )
}

fn describe(changes: &Changes, check: bool) -> String {
    let verb = |done: &str, would: &str| {
        if check {
            would.to_string()
        } else {
            done.to_string()
        }
    };
    let mut parts = Vec::new();
    for (list, done, would) in [
        (&changes.installed, "installed", "would install"),
        (&changes.upgraded, "upgraded", "would upgrade"),
        (&changes.removed, "removed", "would remove"),
    ] {
        if !list.is_empty() {
            let items: Vec<String> = list
                .iter()
                .map(|c| format!("{} {}", c.name, c.version).trim().to_string())
                .collect();
            parts.push(format!("{} {}", verb(done, would), items.join(", ")));
        }
    }
    if parts.is_empty() {
        "no package would change".into()
    } else {
        parts.join("; ")
    }
}

fn state_word(wanted: Wanted) -> &'static str {
    match wanted {
        Wanted::Present => "present",
        Wanted::Absent => "absent",
        Wanted::Latest => "at the latest version",
    }
}

fn list_specs(specs: &[PackageSpec]) -> String {
    specs
        .iter()
        .map(PackageSpec::apt_arg)
        .collect::<Vec<_>>()
        .join(", ")
}

fn spec_names(specs: &[PackageSpec]) -> Vec<String> {
    specs.iter().map(|s| s.name.clone()).collect()
}

fn relevant_names(names: &[String], changes: &Changes) -> BTreeSet<String> {
    names
        .iter()
        .cloned()
        .chain(
            changes
                .installed
                .iter()
                .chain(&changes.upgraded)
                .chain(&changes.removed)
                .map(|c| c.name.clone()),
        )
        .collect()
}

/// "name version" lines for the diff; packages not installed are left out.
fn listing(installed: &BTreeMap<String, String>, names: &BTreeSet<String>) -> String {
    names
        .iter()
        .filter_map(|n| installed.get(n).map(|v| format!("{n} {v}\n")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use apt::fake::{fail, ok, FakeHost};
    use apt::locks::{FRONTEND_LOCK, LISTS_LOCK};

    fn request(args: Json) -> Result<Request, String> {
        let (params, _) = runtime::parse(NAME, SPEC, &args)?;
        Request::from_params(&params).map_err(|f| f.msg)
    }

    fn run(host: &FakeHost, args: Json, check_mode: bool) -> Result<Json, Json> {
        let req = request(args).expect("valid request");
        runtime::testing::answer_with_diff(NAME, SPEC, check_mode, |ctx| apply(&req, ctx, host))
    }

    const DPKG_CURL: &str = "curl\tinstall ok installed\t7.88.1\n";

    #[test]
    fn installed_packages_are_answered_from_dpkg_without_locks_or_cache_work() {
        let host = FakeHost::new();
        // Someone holds every lock for an hour: the fast path must not care.
        host.hold(
            FRONTEND_LOCK,
            812,
            "unattended-upgrade",
            Duration::from_secs(3600),
        );
        host.hold(LISTS_LOCK, 813, "apt-get update", Duration::from_secs(3600));
        host.on("dpkg-query", ok(DPKG_CURL));
        let json = run(
            &host,
            json!({"name": "curl", "update_cache": true, "cache_valid_time": 0}),
            false,
        )
        .unwrap();
        assert_eq!(json["changed"], json!(false));
        assert_eq!(json["attempts"], json!(0));
        assert_eq!(json["lock_holder"], Json::Null);
        assert_eq!(json["cache_updated"], json!(false));
        assert_eq!(host.commands().len(), 1, "{:?}", host.commands());
        assert_eq!(host.elapsed(), Duration::ZERO);
        assert!(json["msg"].as_str().unwrap().contains("already present"));
    }

    #[test]
    fn a_pinned_version_counts_only_when_it_is_the_installed_one() {
        let host = FakeHost::new();
        host.on("dpkg-query", ok(DPKG_CURL));
        let json = run(&host, json!({"name": ["curl=7.88.1"]}), false).unwrap();
        assert_eq!(json["changed"], json!(false));

        let host = FakeHost::new();
        host.on("dpkg-query", ok(DPKG_CURL));
        host.on("dpkg-query", ok(DPKG_CURL));
        host.on("apt-get", ok(""));
        host.on("dpkg-query", ok("curl\tinstall ok installed\t7.88.2\n"));
        let json = run(&host, json!({"name": ["curl=7.88.2"]}), false).unwrap();
        assert_eq!(json["changed"], json!(true));
        assert_eq!(
            json["upgraded"],
            json!([{"name": "curl", "version": "7.88.2", "from": "7.88.1"}])
        );
        assert!(
            host.commands()[2].ends_with("install curl=7.88.2"),
            "{:?}",
            host.commands()
        );
    }

    #[test]
    fn a_run_whose_work_another_run_did_meanwhile_reports_no_change() {
        // The storm: this run saw jq missing, waited for the lock while a concurrent run
        // installed it, and then apt-get had nothing left to do.
        let host = FakeHost::new();
        host.hold(
            FRONTEND_LOCK,
            900,
            "apt-get install jq",
            Duration::from_secs(5),
        );
        host.on("dpkg-query", ok(DPKG_CURL));
        host.on("dpkg-query", ok(DPKG_CURL));
        host.on(
            "apt-get",
            ok("jq is already the newest version (1.6-2.1).\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n"),
        );
        host.on(
            "dpkg-query",
            ok("curl\tinstall ok installed\t7.88.1\njq\tinstall ok installed\t1.6-2.1\n"),
        );
        let json = run(&host, json!({"name": "jq"}), false).unwrap();
        assert_eq!(json["changed"], json!(false), "{json}");
        assert_eq!(json["installed"], json!([]));
        assert_eq!(json["attempts"], json!(1));
    }

    #[test]
    fn missing_packages_are_installed_after_the_lock_is_free_and_reported() {
        let host = FakeHost::new();
        host.hold(
            FRONTEND_LOCK,
            812,
            "/usr/bin/unattended-upgrade",
            Duration::from_secs(30),
        );
        host.on(
            "dpkg-query -W '-f=${Package}\\t${Status}\\t${Version}\\n' curl jq",
            ok(DPKG_CURL),
        );
        host.on("dpkg-query", ok(DPKG_CURL));
        host.on(
            "apt-get",
            ok("Setting up libjq1 (1.6-2.1) ...\nSetting up jq (1.6-2.1) ...\n"),
        );
        host.on(
            "dpkg-query",
            ok("curl\tinstall ok installed\t7.88.1\njq\tinstall ok installed\t1.6-2.1\nlibjq1\tinstall ok installed\t1.6-2.1\n"),
        );
        let json = run(
            &host,
            json!({"name": "curl,jq", "lock_timeout": 100}),
            false,
        )
        .unwrap();
        assert_eq!(json["changed"], json!(true));
        assert_eq!(
            json["installed"],
            json!([{"name": "jq", "version": "1.6-2.1"}, {"name": "libjq1", "version": "1.6-2.1"}])
        );
        assert_eq!(
            json["lock_holder"],
            json!({"pid": 812, "command": "/usr/bin/unattended-upgrade"})
        );
        assert_eq!(json["lock_wait_seconds"], json!(30.0));
        assert_eq!(json["attempts"], json!(1));
        assert!(
            host.commands()[2].contains("DPkg::Lock::Timeout=70"),
            "{:?}",
            host.commands()
        );
        assert!(json["warnings"][0].as_str().unwrap().contains("PID 812"));
        assert_eq!(json["diff"]["before"], json!("curl 7.88.1\n"));
        assert_eq!(
            json["diff"]["after"],
            json!("curl 7.88.1\njq 1.6-2.1\nlibjq1 1.6-2.1\n")
        );
        assert_eq!(
            json["stdout_tail"],
            json!("Setting up libjq1 (1.6-2.1) ...\nSetting up jq (1.6-2.1) ...")
        );
    }

    #[test]
    fn a_stale_cache_is_updated_before_installing_and_a_fresh_one_is_not() {
        let host = FakeHost::new();
        host.modified_ago("/var/lib/apt/lists", Duration::from_secs(7200));
        host.on("dpkg-query", ok(""));
        host.on("dpkg-query", ok(""));
        host.on("apt-get -q -y update", ok(""));
        host.on("install jq", ok(""));
        host.on("dpkg-query", ok("jq\tinstall ok installed\t1.6\n"));
        let json = run(
            &host,
            json!({"name": "jq", "update_cache": true, "cache_valid_time": 3600}),
            false,
        )
        .unwrap();
        assert_eq!(json["cache_updated"], json!(true));
        assert_eq!(json["attempts"], json!(2));

        let host = FakeHost::new();
        host.modified_ago("/var/lib/apt/lists", Duration::from_secs(60));
        // The lists hold a package index: fetched a minute ago, not merely an empty dir.
        host.modified_ago(
            "/var/lib/apt/lists/deb.example_dists_stable_main_binary-amd64_Packages",
            Duration::from_secs(60),
        );
        host.on("dpkg-query", ok(""));
        host.on("dpkg-query", ok(""));
        host.on("install jq", ok(""));
        host.on("dpkg-query", ok("jq\tinstall ok installed\t1.6\n"));
        let json = run(
            &host,
            json!({"name": "jq", "update_cache": true, "cache_valid_time": 3600}),
            false,
        )
        .unwrap();
        assert_eq!(json["cache_updated"], json!(false));
        assert_eq!(host.count("update"), 0);
    }

    #[test]
    fn update_cache_alone_refreshes_the_lists_and_reports_no_package_change() {
        let host = FakeHost::new();
        host.on("dpkg-query", ok(DPKG_CURL));
        host.on("update", ok(""));
        host.on("dpkg-query", ok(DPKG_CURL));
        let json = run(&host, json!({"update_cache": true}), false).unwrap();
        assert_eq!(json["changed"], json!(false));
        assert_eq!(json["cache_updated"], json!(true));
        assert!(json["msg"]
            .as_str()
            .unwrap()
            .contains("package lists updated"));

        let host = FakeHost::new();
        let json = run(&host, json!({}), false).unwrap();
        assert_eq!(json["changed"], json!(false));
        assert!(host.commands().is_empty());
    }

    #[test]
    fn latest_upgrades_only_when_the_candidate_is_newer() {
        let host = FakeHost::new();
        host.on("dpkg-query", ok(DPKG_CURL));
        host.on("dpkg-query", ok(DPKG_CURL));
        host.on(
            "apt-cache policy curl",
            ok("curl:\n  Installed: 7.88.1\n  Candidate: 7.88.1\n"),
        );
        host.on("dpkg-query", ok(DPKG_CURL));
        let json = run(&host, json!({"name": "curl", "state": "latest"}), false).unwrap();
        assert_eq!(json["changed"], json!(false));
        assert_eq!(host.count("apt-get"), 0);

        let host = FakeHost::new();
        host.on("dpkg-query", ok(DPKG_CURL));
        host.on("dpkg-query", ok(DPKG_CURL));
        host.on(
            "apt-cache policy curl",
            ok("curl:\n  Installed: 7.88.1\n  Candidate: 7.88.2\n"),
        );
        host.on("install curl", ok(""));
        host.on("dpkg-query", ok("curl\tinstall ok installed\t7.88.2\n"));
        let json = run(&host, json!({"name": "curl", "state": "latest"}), false).unwrap();
        assert_eq!(json["changed"], json!(true));
        assert_eq!(json["upgraded"][0]["version"], json!("7.88.2"));
    }

    #[test]
    fn absent_removes_installed_packages() {
        let host = FakeHost::new();
        host.on("dpkg-query", ok(DPKG_CURL));
        host.on("dpkg-query", ok(DPKG_CURL));
        host.on("remove curl", ok(""));
        host.on("dpkg-query", ok(""));
        let json = run(
            &host,
            json!({"name": ["curl", "nano"], "state": "absent"}),
            false,
        )
        .unwrap();
        assert_eq!(json["changed"], json!(true));
        assert_eq!(
            json["removed"],
            json!([{"name": "curl", "version": "7.88.1"}])
        );
        assert!(
            host.commands()[2].ends_with("remove curl"),
            "{:?}",
            host.commands()
        );
    }

    #[test]
    fn check_mode_simulates_and_changes_nothing() {
        let host = FakeHost::new();
        host.modified_ago("/var/lib/apt/lists", Duration::from_secs(7200));
        host.on("dpkg-query", ok(DPKG_CURL));
        host.on("dpkg-query", ok(DPKG_CURL));
        host.on(
            "-s -o Debug::NoLocking=1",
            ok("Inst libjq1 (1.6-2.1 Debian:12 [amd64])\nInst jq (1.6-2.1 Debian:12 [amd64])\n"),
        );
        let json = run(
            &host,
            json!({"name": "curl,jq", "update_cache": true}),
            true,
        )
        .unwrap();
        assert_eq!(json["changed"], json!(true));
        assert_eq!(json["installed"].as_array().unwrap().len(), 2);
        assert!(json["msg"].as_str().unwrap().starts_with("would install"));
        assert!(json["warnings"][0]
            .as_str()
            .unwrap()
            .contains("not updated"));
        assert_eq!(json["attempts"], json!(0));
        assert_eq!(
            json["diff"]["after"],
            json!("curl 7.88.1\njq 1.6-2.1\nlibjq1 1.6-2.1\n")
        );
        assert!(host
            .commands()
            .iter()
            .all(|c| !c.contains(" install ") || c.contains("-s")));
        assert_eq!(host.count("update"), 0);

        // apt-get -s fails (e.g. a cache that has not seen the package yet): the plan.
        let host = FakeHost::new();
        host.on("dpkg-query", ok(""));
        host.on("dpkg-query", ok(""));
        host.on("-s", fail(100, "E: Unable to locate package jq"));
        let json = run(&host, json!({"name": "jq=1.6"}), true).unwrap();
        assert_eq!(json["installed"], json!([{"name": "jq", "version": "1.6"}]));
        assert!(json["msg"].as_str().unwrap().contains("from the plan"));
    }

    #[test]
    fn failures_carry_the_report_and_say_whether_the_host_changed() {
        let host = FakeHost::new();
        host.hold(
            FRONTEND_LOCK,
            812,
            "unattended-upgrade",
            Duration::from_secs(3600),
        );
        host.always("dpkg-query", ok(""));
        let err = run(&host, json!({"name": "jq", "lock_timeout": 5}), false).unwrap_err();
        assert_eq!(err["failed"], json!(true));
        assert_eq!(err["changed"], json!(false));
        assert_eq!(err["failure_kind"], json!("lock_timeout"));
        assert_eq!(err["lock_holder"]["pid"], json!(812));
        assert_eq!(err["lock_wait_seconds"], json!(5.0));
        let msg = err["msg"].as_str().unwrap();
        assert!(
            msg.contains("held by PID 812 (unattended-upgrade)") && msg.contains("5 s"),
            "{msg}"
        );

        let host = FakeHost::new();
        host.on("dpkg-query", ok(""));
        host.on("dpkg-query", ok(""));
        host.on("apt-get", fail(100, "E: Unable to locate package jq"));
        host.on("dpkg-query", ok(""));
        let err = run(&host, json!({"name": "jq"}), false).unwrap_err();
        assert_eq!(err["failure_kind"], json!("not_found"));
        assert_eq!(err["rc"], json!(100));
        assert_eq!(err["stderr_tail"], json!("E: Unable to locate package jq"));
    }

    #[test]
    fn bad_requests_are_refused_with_the_field_named() {
        let e = request(json!({"name": ["curl;rm"]})).unwrap_err();
        assert!(e.starts_with("name: 'curl;rm'"), "{e}");
        let e = request(json!({"name": "-oFoo"})).unwrap_err();
        assert!(e.contains("apt-get would read it as an option"), "{e}");
        let e = request(json!({"name": "curl", "dpkg_options": "force confnew"})).unwrap_err();
        assert!(e.starts_with("dpkg_options:"), "{e}");
        let e = request(json!({"name": "curl", "lock_timeout": -1})).unwrap_err();
        assert!(e.contains("'lock_timeout' must be at least 0"), "{e}");
        let host = FakeHost::new();
        host.on("dpkg-query", ok(DPKG_CURL));
        let err = run(&host, json!({"name": "curl=1", "state": "latest"}), false).unwrap_err();
        assert!(err["msg"].as_str().unwrap().contains("state=latest"));
    }
}
