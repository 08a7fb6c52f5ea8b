//! `host_facts`: the facts and state reads the playbooks need, from a static binary, so a host
//! needs no Python for them: kernel release and architecture (uname), unit states (one
//! `systemctl show` for all units), stat without checksum, local users and groups
//! (`/etc/passwd`, `/etc/group`), and dpkg package versions, optionally compared with a pin
//! in dpkg's own ordering.
//!
//! Read-only: `changed` is always false and check mode runs the same reads. The answer is
//! `ansible_facts`, so a task's results are host facts for the rest of the run:
//! `kernel` and `architecture` under setup's names (the fast path then skips its `uname -m`),
//! the rest under `homeops_units`, `homeops_paths`, `homeops_users`, `homeops_groups`,
//! `homeops_packages`, each a dict keyed by the name the task gave. Only what the task asks
//! for is read and returned; a later call replaces only the keys it returns.

mod dpkg;
mod paths;
mod units;
mod version;

use std::path::Path;

use runtime::accounts::Db as Accounts;
use runtime::{Command, Context, Default, Failure, Outcome, Param, Params};
use serde_json::{json, Map, Value as Json};

const NAME: &str = "host_facts";

const SPEC: &[Param] = &[
    Param::bool("kernel").default(Default::Bool(false)),
    Param::bool("architecture").default(Default::Bool(false)),
    Param::list("units"),
    Param::list("paths"),
    Param::bool("follow").default(Default::Bool(false)),
    Param::list("users"),
    Param::list("groups"),
    Param::list("packages"),
    Param::str("admindir").default(Default::Str(DPKG_ADMINDIR)),
];

/// systemd's own test for "booted with systemd" (sd_booted).
const SYSTEMD_MARKER: &str = "/run/systemd/system";
const DPKG_ADMINDIR: &str = "/var/lib/dpkg";
/// `systemctl show` answers in milliseconds; a hung D-Bus must not hang the play.
const SHOW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn main() {
    runtime::run(NAME, SPEC, |params, ctx| host_facts(params, ctx, &RealHost));
}

/// What the module reads from outside the process, so tests can give it another host.
trait Host {
    /// `/` on a real host: where etc/passwd, etc/group and var/lib/dpkg are found.
    fn root(&self) -> &Path;
    fn uname(&self) -> (String, String);
    fn systemd_running(&self) -> bool;
    /// The output of `systemctl show -p PROPERTIES -- UNITS`, or why it failed.
    fn systemctl_show(&self, units: &[String]) -> Result<String, String>;
}

struct RealHost;

impl Host for RealHost {
    fn root(&self) -> &Path {
        Path::new("/")
    }

    fn uname(&self) -> (String, String) {
        let u = nix::sys::utsname::uname().ok();
        let text = |s: Option<&std::ffi::OsStr>| s.map(|s| s.to_string_lossy().into_owned());
        (
            text(u.as_ref().map(|u| u.release())).unwrap_or_default(),
            text(u.as_ref().map(|u| u.machine())).unwrap_or_default(),
        )
    }

    fn systemd_running(&self) -> bool {
        Path::new(SYSTEMD_MARKER).is_dir()
    }

    fn systemctl_show(&self, units: &[String]) -> Result<String, String> {
        let cmd = Command::new("systemctl")
            .args(["show", "-p", units::PROPERTIES, "--"])
            .args(units.iter().cloned())
            .timeout(SHOW_TIMEOUT);
        let out = cmd.run()?;
        if out.timed_out {
            return Err(format!(
                "{} timed out after {}s",
                cmd.display(),
                SHOW_TIMEOUT.as_secs()
            ));
        }
        out.check(&cmd)?;
        Ok(out.stdout)
    }
}

/// The checked task: what to read.
struct Task {
    kernel: bool,
    architecture: bool,
    units: Vec<String>,
    paths: Vec<String>,
    follow: bool,
    users: Vec<String>,
    groups: Vec<String>,
    /// (name, pin) pairs, from `name` or `name=pin`.
    packages: Vec<(String, Option<String>)>,
    /// dpkg's database directory (`dpkg --admindir`).
    admindir: String,
}

fn task(params: &Params) -> Result<Task, Failure> {
    // Each list item is checked here, before anything is read, and named by its position.
    let checked = |field: &str, check: &dyn Fn(&str) -> Result<(), String>, hint: &str| {
        let items = params.list(field).to_vec();
        for (i, item) in items.iter().enumerate() {
            check(item).map_err(|why| {
                Failure::new(format!("{field}[{i}]: '{item}' is not {hint}: {why}"))
            })?;
        }
        Ok::<Vec<String>, Failure>(dedup(items))
    };
    let units = checked("units", &units::check_name, "a unit name")?;
    let paths = checked("paths", &paths::check_path, "a path to look at")?;
    let users = checked("users", &check_account, "a user name")?;
    let groups = checked("groups", &check_account, "a group name")?;
    let mut packages = Vec::new();
    for (i, item) in params.list("packages").iter().enumerate() {
        let (name, pin) = match item.split_once('=') {
            Some((name, pin)) => (name.trim(), Some(pin.trim())),
            None => (item.trim(), None),
        };
        dpkg::check_name(name).map_err(|why| {
            Failure::new(format!(
                "packages[{i}]: '{item}' is not a package: {why}; write NAME or NAME=PIN, e.g. loki=3.5.7"
            ))
        })?;
        if let Some(pin) = pin {
            version::Version::parse(pin).map_err(|why| {
                Failure::new(format!(
                    "packages[{i}]: the pin of {name} is not a Debian version: '{pin}': {why}; pin an exact version such as 3.5.7"
                ))
            })?;
        }
        if !packages
            .iter()
            .any(|(n, _): &(String, Option<String>)| n == name)
        {
            packages.push((name.to_string(), pin.map(String::from)));
        }
    }
    let t = Task {
        kernel: params.bool("kernel"),
        architecture: params.bool("architecture"),
        units,
        paths,
        follow: params.bool("follow"),
        users,
        groups,
        packages,
        admindir: params.str("admindir").unwrap_or(DPKG_ADMINDIR).to_string(),
    };
    if !(t.kernel
        || t.architecture
        || !t.units.is_empty()
        || !t.paths.is_empty()
        || !t.users.is_empty()
        || !t.groups.is_empty()
        || !t.packages.is_empty())
    {
        return Err(Failure::new(
            "nothing to read: set kernel or architecture to true, or give units, paths, users, groups or packages",
        ));
    }
    if !t.admindir.starts_with('/') {
        return Err(Failure::new(format!(
            "admindir: '{}' is not an absolute path; dpkg's database is {DPKG_ADMINDIR}",
            t.admindir
        )));
    }
    if params.given("follow") && t.paths.is_empty() {
        return Err(Failure::new(
            "follow applies to paths, but no paths are given: add paths or drop follow",
        ));
    }
    Ok(t)
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// User and group names as shadow-utils writes them into /etc/passwd and /etc/group.
fn check_account(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("{c:?} cannot be part of an account name"));
    }
    Ok(())
}

fn host_facts(params: &Params, _ctx: &Context, host: &dyn Host) -> Result<Outcome, Failure> {
    // Check mode reads the same: nothing here changes the host.
    let task = task(params)?;
    let mut facts = Map::new();
    let mut read = Vec::new();

    if task.kernel || task.architecture {
        let (release, machine) = host.uname();
        if task.kernel {
            facts.insert("kernel".into(), Json::from(release));
            read.push("kernel".to_string());
        }
        if task.architecture {
            // Ansible's `architecture` on Linux is `uname -m` (x86_64, aarch64, armv7l).
            facts.insert("architecture".into(), Json::from(machine));
            read.push("architecture".to_string());
        }
    }

    if !task.units.is_empty() {
        if !host.systemd_running() {
            return Err(Failure::new(format!(
                "units: systemd is not running on this host ({SYSTEMD_MARKER} is missing), so no unit has a state; drop units for this host"
            )));
        }
        let text = host
            .systemctl_show(&task.units)
            .map_err(|e| Failure::new(format!("units: reading the unit states failed: {e}")))?;
        let mut out = Map::new();
        for (unit, state) in task
            .units
            .iter()
            .zip(units::states_json(&task.units, &text))
        {
            out.insert(unit.clone(), state);
        }
        read.push(count(out.len(), "unit"));
        facts.insert("homeops_units".into(), Json::Object(out));
    }

    // /etc/passwd and /etc/group once, for owner names and for users and groups.
    let need_accounts = !task.paths.is_empty() || !task.users.is_empty() || !task.groups.is_empty();
    let accounts = if !task.users.is_empty() || !task.groups.is_empty() {
        // Asked for accounts: an unreadable database is an error, not "no such user".
        Accounts::load(host.root()).map_err(|e| Failure::new(format!("users/groups: {e}")))?
    } else if need_accounts {
        Accounts::load_or_empty(host.root())
    } else {
        Accounts::default()
    };

    if !task.paths.is_empty() {
        let mut out = Map::new();
        for (i, path) in task.paths.iter().enumerate() {
            let stat = paths::stat(path, task.follow, &accounts)
                .map_err(|e| Failure::new(format!("paths[{i}]: {e}")))?;
            out.insert(path.clone(), stat);
        }
        read.push(count(out.len(), "path"));
        facts.insert("homeops_paths".into(), Json::Object(out));
    }

    if !task.users.is_empty() {
        let mut out = Map::new();
        for name in &task.users {
            out.insert(name.clone(), user_json(&accounts, name));
        }
        read.push(count(out.len(), "user"));
        facts.insert("homeops_users".into(), Json::Object(out));
    }

    if !task.groups.is_empty() {
        let mut out = Map::new();
        for name in &task.groups {
            let g = accounts.group(name).map_or_else(
                || json!({ "exists": false }),
                |g| json!({ "exists": true, "gid": g.gid, "members": g.members }),
            );
            out.insert(name.clone(), g);
        }
        read.push(count(out.len(), "group"));
        facts.insert("homeops_groups".into(), Json::Object(out));
    }

    if !task.packages.is_empty() {
        let db = dpkg::Db::load(&host.root().join(task.admindir.trim_start_matches('/')))
            .map_err(|e| Failure::new(format!("packages: {e}")))?;
        let mut out = Map::new();
        for (name, pin) in &task.packages {
            out.insert(
                name.clone(),
                package_json(name, db.find(name), pin.as_deref()),
            );
        }
        read.push(count(out.len(), "package"));
        facts.insert("homeops_packages".into(), Json::Object(out));
    }

    Ok(Outcome::unchanged(format!("read {}", read.join(", "))).with("ansible_facts", facts))
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// A user as getent shows it, without the password field, plus its primary group's name.
fn user_json(accounts: &Accounts, name: &str) -> Json {
    match accounts.user(name) {
        None => json!({ "exists": false }),
        Some(u) => json!({
            "exists": true,
            "uid": u.uid,
            "gid": u.gid,
            "group": accounts.group_by_gid(u.gid).map(|g| g.name.clone()),
            "comment": u.comment,
            "home": u.home,
            "shell": u.shell,
        }),
    }
}

/// A package's state, and with a pin how the installed version orders against it. Only an
/// installed package (dpkg status `installed`) is compared, as the upgrade guard always did:
/// a package left as config-files or half-installed has no version to protect.
fn package_json(name: &str, record: Option<&dpkg::Record>, pin: Option<&str>) -> Json {
    let mut out = match record {
        None => {
            json!({ "name": name, "installed": false, "status": "not-installed", "version": null, "architecture": null })
        }
        Some(r) => json!({
            "name": name,
            "installed": r.installed(),
            "status": r.status,
            "version": if r.version.is_empty() { Json::Null } else { Json::from(r.version.as_str()) },
            "architecture": if r.architecture.is_empty() { Json::Null } else { Json::from(r.architecture.as_str()) },
        }),
    };
    if let Some(pin) = pin {
        out["pin"] = Json::from(pin);
        let installed = record.filter(|r| r.installed() && !r.version.is_empty());
        let order = installed.map(|r| {
            version::compare(
                &version::Version::split(&r.version),
                &version::Version::split(pin),
            )
        });
        out["compare"] = order.map_or(Json::Null, |o| Json::from(o as i8));
        out["newer_than_pin"] = Json::from(order == Some(std::cmp::Ordering::Greater));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::path::PathBuf;

    /// A host made of files in a temp dir and a canned `systemctl show`.
    struct FakeHost {
        root: PathBuf,
        systemd: bool,
        show: Result<String, String>,
        calls: RefCell<Vec<Vec<String>>>,
    }

    impl Host for FakeHost {
        fn root(&self) -> &Path {
            &self.root
        }
        fn uname(&self) -> (String, String) {
            ("6.1.0-13-amd64".into(), "aarch64".into())
        }
        fn systemd_running(&self) -> bool {
            self.systemd
        }
        fn systemctl_show(&self, units: &[String]) -> Result<String, String> {
            self.calls.borrow_mut().push(units.to_vec());
            self.show.clone()
        }
    }

    fn fake(dir: &Path) -> FakeHost {
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::create_dir_all(dir.join("var/lib/dpkg")).unwrap();
        std::fs::write(
            dir.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nloki:x:999:998:Loki:/var/lib/loki:/usr/sbin/nologin\n",
        )
        .unwrap();
        std::fs::write(dir.join("etc/group"), "root:x:0:\nloki:x:998:alice,bob\n").unwrap();
        std::fs::write(
            dir.join("var/lib/dpkg/status"),
            "Package: loki\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3.5.7\n\n\
             Package: grafana\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 12.2.0\n",
        )
        .unwrap();
        FakeHost {
            root: dir.to_path_buf(),
            systemd: true,
            show: Ok("Id=loki.service\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\n\n\
                      Id=alloy.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\n"
                .into()),
            calls: RefCell::new(Vec::new()),
        }
    }

    fn run(host: &FakeHost, args: Json) -> Result<Json, Json> {
        let (json, code) = runtime::answer(
            NAME,
            SPEC,
            Some("-"),
            &mut std::io::Cursor::new(args.to_string().into_bytes()),
            |p, c| host_facts(p, c, host),
        );
        if code == 0 {
            Ok(json)
        } else {
            Err(json)
        }
    }

    #[test]
    fn reads_everything_asked_for_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let host = fake(dir.path());
        let got = run(
            &host,
            json!({"kernel": true, "units": ["loki.service", "alloy.service"], "users": ["loki", "nobody"],
                   "groups": ["loki"], "packages": ["loki=3.4.3", "grafana=12.1.1", "alloy"],
                   "_ansible_check_mode": true}),
        )
        .unwrap();
        let f = &got["ansible_facts"];
        assert_eq!(got["changed"], json!(false));
        assert_eq!(f["kernel"], json!("6.1.0-13-amd64"));
        assert!(f.get("architecture").is_none() && f.get("homeops_paths").is_none());
        assert_eq!(
            f["homeops_units"]["loki.service"]["state"],
            json!("running")
        );
        assert_eq!(
            f["homeops_units"]["alloy.service"]["state"],
            json!("not-found")
        );
        assert_eq!(
            f["homeops_users"]["loki"],
            json!({"exists": true, "uid": 999, "gid": 998, "group": "loki", "comment": "Loki",
                   "home": "/var/lib/loki", "shell": "/usr/sbin/nologin"})
        );
        assert_eq!(f["homeops_users"]["nobody"], json!({"exists": false}));
        assert_eq!(
            f["homeops_groups"]["loki"],
            json!({"exists": true, "gid": 998, "members": ["alice", "bob"]})
        );
        assert_eq!(
            f["homeops_packages"]["loki"],
            json!({"name": "loki", "installed": true, "status": "installed", "version": "3.5.7", "architecture": "amd64",
                   "pin": "3.4.3", "compare": 1, "newer_than_pin": true})
        );
        // config-files: a version is recorded, but nothing installed to protect.
        assert_eq!(
            f["homeops_packages"]["grafana"]["newer_than_pin"],
            json!(false)
        );
        assert_eq!(f["homeops_packages"]["grafana"]["compare"], json!(null));
        assert_eq!(
            f["homeops_packages"]["alloy"],
            json!({"name": "alloy", "installed": false, "status": "not-installed", "version": null, "architecture": null})
        );
        assert_eq!(
            got["msg"],
            json!("read kernel, 2 units, 2 users, 1 group, 3 packages")
        );
        // ONE systemctl call for all units.
        assert_eq!(
            *host.calls.borrow(),
            [vec![
                "loki.service".to_string(),
                "alloy.service".to_string()
            ]]
        );
    }

    #[test]
    fn architecture_is_unames_machine_and_equal_pins_are_not_newer() {
        let dir = tempfile::tempdir().unwrap();
        let host = fake(dir.path());
        let got = run(
            &host,
            json!({"architecture": true, "packages": "loki=3.5.7"}),
        )
        .unwrap();
        assert_eq!(got["ansible_facts"]["architecture"], json!("aarch64"));
        assert_eq!(
            got["ansible_facts"]["homeops_packages"]["loki"]["compare"],
            json!(0)
        );
        assert_eq!(
            got["ansible_facts"]["homeops_packages"]["loki"]["newer_than_pin"],
            json!(false)
        );
        assert!(
            host.calls.borrow().is_empty(),
            "no units asked, no systemctl"
        );
    }

    #[test]
    fn bad_fields_fail_naming_the_field_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let host = fake(dir.path());
        for (args, needles) in [
            (json!({}), vec!["nothing to read", "kernel"]),
            (
                json!({"kernel": false, "units": []}),
                vec!["nothing to read"],
            ),
            (
                json!({"units": ["loki.service", "--all"]}),
                vec!["units[1]: '--all'", "option"],
            ),
            (json!({"units": ["loki"]}), vec!["units[0]", "loki.service"]),
            (
                json!({"paths": ["var/lib/loki"]}),
                vec!["paths[0]", "absolute"],
            ),
            (json!({"users": ["lo:ki"]}), vec!["users[0]", "':'"]),
            (json!({"groups": [""]}), vec!["groups[0]", "empty"]),
            (
                json!({"packages": ["Loki"]}),
                vec!["packages[0]", "NAME=PIN"],
            ),
            (
                json!({"packages": ["loki=latest"]}),
                vec!["packages[0]", "pin of loki", "does not start with digit"],
            ),
            (
                json!({"follow": true, "kernel": true}),
                vec!["follow applies to paths"],
            ),
            (
                json!({"packages": ["loki"], "admindir": "var/lib/dpkg"}),
                vec!["admindir", "absolute"],
            ),
            (json!({"kernel": "maybe"}), vec!["kernel", "boolean"]),
            (json!({"units": {"a": 1}}), vec!["units", "list"]),
        ] {
            let err = run(&host, args.clone()).expect_err(&args.to_string());
            assert_eq!(err["failed"], json!(true));
            assert_eq!(err["changed"], json!(false));
            let msg = err["msg"].as_str().unwrap();
            for n in needles {
                assert!(msg.contains(n), "{args}: {n:?} not in {msg:?}");
            }
        }
        assert!(
            host.calls.borrow().is_empty(),
            "nothing is read before the task is checked"
        );
    }

    #[test]
    fn systemd_trouble_is_a_clear_failure() {
        let dir = tempfile::tempdir().unwrap();
        let mut host = fake(dir.path());
        host.systemd = false;
        let err = run(&host, json!({"units": ["loki.service"]})).unwrap_err();
        assert!(
            err["msg"]
                .as_str()
                .unwrap()
                .contains("systemd is not running"),
            "{err}"
        );
        host.systemd = true;
        host.show = Err("systemctl show failed (rc 1): Failed to connect to bus".into());
        let err = run(&host, json!({"units": ["loki.service"]})).unwrap_err();
        assert!(
            err["msg"]
                .as_str()
                .unwrap()
                .contains("units: reading the unit states failed: systemctl show failed"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_account_or_package_database_fails_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let host = fake(dir.path());
        std::fs::remove_file(dir.path().join("etc/group")).unwrap();
        std::fs::remove_file(dir.path().join("var/lib/dpkg/status")).unwrap();
        let err = run(&host, json!({"users": ["loki"]})).unwrap_err();
        assert!(err["msg"].as_str().unwrap().contains("etc/group"), "{err}");
        let err = run(&host, json!({"packages": ["loki"]})).unwrap_err();
        assert!(
            err["msg"].as_str().unwrap().contains("dpkg database"),
            "{err}"
        );
        // Another database directory (dpkg --admindir), e.g. of an image being prepared.
        std::fs::create_dir_all(dir.path().join("srv/dpkg")).unwrap();
        std::fs::write(
            dir.path().join("srv/dpkg/status"),
            "Package: loki\nStatus: install ok installed\nVersion: 3.6.0\n",
        )
        .unwrap();
        let got = run(
            &host,
            json!({"packages": ["loki"], "admindir": "/srv/dpkg"}),
        )
        .unwrap();
        assert_eq!(
            got["ansible_facts"]["homeops_packages"]["loki"]["version"],
            json!("3.6.0")
        );
        // Paths only need names for owners: they fall back to numbers.
        let got = run(&host, json!({"paths": [dir.path().to_str().unwrap()]})).unwrap();
        assert_eq!(
            got["ansible_facts"]["homeops_paths"][dir.path().to_str().unwrap()]["exists"],
            json!(true)
        );
    }

    #[test]
    fn duplicates_are_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let host = fake(dir.path());
        let got = run(
            &host,
            json!({"units": ["loki.service", "loki.service"], "packages": ["loki", "loki=1.0"]}),
        )
        .unwrap();
        assert_eq!(*host.calls.borrow(), [vec!["loki.service".to_string()]]);
        // The first mention of a package wins.
        assert!(got["ansible_facts"]["homeops_packages"]["loki"]
            .get("pin")
            .is_none());
    }
}
