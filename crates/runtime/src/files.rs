//! Writing files so that a crash never leaves half of one behind.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `data` to `path` atomically: a temporary file in the same directory, fsync, rename.
/// Readers see the old content or the new one, never a mix; a crash leaves the old file.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(data)?;
        // The umask may have narrowed the mode; the caller asked for this one.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        crate::entry::note_change();
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

/// `0640`, `2750`: four octal digits.
pub fn octal(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// A mode from the task: an octal string (`"0640"`, `"640"`), or the number an unquoted YAML
/// octal became (`0640` → 416), which is the mode itself, as for Ansible's file modules.
pub fn parse_mode(text: &str, was_number: bool) -> Result<u32, String> {
    let bad = || {
        format!(
            "parameter 'mode' must be an octal mode such as \"0640\" (quote it in YAML); got {text:?}"
        )
    };
    let mode = if was_number {
        text.parse::<u32>().map_err(|_| bad())?
    } else {
        let digits = text.strip_prefix("0o").unwrap_or(text);
        if !(3..=4).contains(&digits.len()) || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(bad());
        }
        u32::from_str_radix(digits, 8).map_err(|_| bad())?
    };
    if mode > 0o7777 {
        return Err(bad());
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replaces_and_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o640).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let err = write_atomic(Path::new("/nonexistent-dir/x"), b"x", 0o600).unwrap_err();
        assert!(err.contains("cannot write /nonexistent-dir/x"), "{err}");
    }
}
