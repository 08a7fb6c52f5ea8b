//! `stat` without checksum, MIME type or attributes: what the playbooks check of a path.

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use runtime::accounts::Db;
use serde_json::{json, Value as Json};

/// The answer for one path. A path that does not exist (or whose parent is not a directory)
/// is `exists: false`, as with ansible.builtin.stat; any other error (no permission to look)
/// is an error naming the path, never a silent "does not exist".
pub fn stat(path: &str, follow: bool, accounts: &Db) -> Result<Json, String> {
    let p = Path::new(path);
    let meta = if follow {
        std::fs::metadata(p)
    } else {
        std::fs::symlink_metadata(p)
    };
    let meta = match meta {
        Ok(meta) => meta,
        // ENOTDIR: a path below a regular file (/etc/passwd/x) does not exist either.
        Err(e)
            if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(nix::libc::ENOTDIR) =>
        {
            return Ok(json!({ "exists": false, "path": path }))
        }
        Err(e) => {
            return Err(format!(
                "cannot stat {path}: {e}{}",
                if e.kind() == ErrorKind::PermissionDenied {
                    " (a directory on the way is not searchable by this user: add `become: true`)"
                } else {
                    ""
                }
            ))
        }
    };
    let kind = meta.file_type();
    let owner = accounts
        .user_by_uid(meta.uid())
        .map_or_else(|| meta.uid().to_string(), |u| u.name.clone());
    let group = accounts
        .group_by_gid(meta.gid())
        .map_or_else(|| meta.gid().to_string(), |g| g.name.clone());
    let mut out = json!({
        "exists": true,
        "path": path,
        "isdir": kind.is_dir(),
        "isreg": kind.is_file(),
        "islnk": kind.is_symlink(),
        "mode": format!("{:04o}", meta.mode() & 0o7777),
        "uid": meta.uid(),
        "gid": meta.gid(),
        "owner": owner,
        "group": group,
        "size": meta.size(),
        "mtime": meta.mtime() as f64 + f64::from(meta.mtime_nsec() as u32) / 1e9,
    });
    if kind.is_symlink() {
        // Where the link points, as text: never followed for this.
        if let Ok(target) = std::fs::read_link(p) {
            out["lnk_target"] = Json::from(target.to_string_lossy().into_owned());
        }
    }
    Ok(out)
}

/// Why a path from a task cannot be looked at, if it cannot.
pub fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("it is not an absolute path (start it with /)".into());
    }
    if path.contains('\0') {
        return Err("it contains a NUL byte".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn accounts() -> Db {
        Db::parse("root:x:0:0:root:/root:/bin/bash\n", "root:x:0:\n")
    }

    #[test]
    fn a_directory_a_file_and_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("data");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o750)).unwrap();
        let f = d.join("f");
        std::fs::write(&f, "12345").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o2640)).unwrap();
        let l = dir.path().join("link");
        std::os::unix::fs::symlink(&d, &l).unwrap();
        let db = accounts();

        let got = stat(d.to_str().unwrap(), false, &db).unwrap();
        assert_eq!(
            (
                got["exists"].clone(),
                got["isdir"].clone(),
                got["isreg"].clone(),
                got["mode"].clone()
            ),
            (json!(true), json!(true), json!(false), json!("0750"))
        );
        let got = stat(f.to_str().unwrap(), false, &db).unwrap();
        assert_eq!(
            (
                got["isreg"].clone(),
                got["size"].clone(),
                got["mode"].clone()
            ),
            (json!(true), json!(5), json!("2640"))
        );
        assert!(got["mtime"].as_f64().unwrap() > 1.6e9);
        let uid = nix::unistd::geteuid().as_raw();
        assert_eq!(got["uid"], json!(uid));
        if uid == 0 {
            assert_eq!(
                (got["owner"].clone(), got["group"].clone()),
                (json!("root"), json!("root"))
            );
        }

        // Not followed: the link itself. Followed: the directory it points at.
        let got = stat(l.to_str().unwrap(), false, &db).unwrap();
        assert_eq!(
            (got["islnk"].clone(), got["isdir"].clone()),
            (json!(true), json!(false))
        );
        assert_eq!(got["lnk_target"], json!(d.to_str().unwrap()));
        let got = stat(l.to_str().unwrap(), true, &db).unwrap();
        assert_eq!(
            (got["islnk"].clone(), got["isdir"].clone()),
            (json!(false), json!(true))
        );
        assert!(got.get("lnk_target").is_none());
    }

    #[test]
    fn what_does_not_exist_is_exists_false() {
        let dir = tempfile::tempdir().unwrap();
        let db = accounts();
        let missing = dir.path().join("missing");
        assert_eq!(
            stat(missing.to_str().unwrap(), false, &db).unwrap()["exists"],
            json!(false)
        );
        // Below a regular file: ENOTDIR, which is "does not exist" too.
        let f = dir.path().join("f");
        std::fs::write(&f, "").unwrap();
        let below = format!("{}/x", f.display());
        assert_eq!(stat(&below, false, &db).unwrap()["exists"], json!(false));
        // A dangling link exists (as a link) unless followed.
        let l = dir.path().join("dangling");
        std::os::unix::fs::symlink(&missing, &l).unwrap();
        assert_eq!(
            stat(l.to_str().unwrap(), false, &db).unwrap()["exists"],
            json!(true)
        );
        assert_eq!(
            stat(l.to_str().unwrap(), true, &db).unwrap()["exists"],
            json!(false)
        );
    }

    #[test]
    fn an_id_without_a_name_is_shown_as_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let got = stat(dir.path().to_str().unwrap(), false, &Db::default()).unwrap();
        assert_eq!(
            got["owner"],
            json!(got["uid"].as_u64().unwrap().to_string())
        );
    }

    #[test]
    fn paths_are_checked() {
        assert!(check_path("/var/lib/loki").is_ok());
        assert!(check_path("var/lib/loki").unwrap_err().contains("absolute"));
        assert!(check_path("/a\0b").unwrap_err().contains("NUL"));
    }
}
