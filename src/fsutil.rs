//! Private, atomic file writes.
//!
//! Every file is written to a temporary file in the same folder, created with mode 0600 from its first byte
//! (never chmod-after), then fsynced, renamed over the target and the folder fsynced. Any failure removes the
//! temporary file, so the previous file stays byte-identical and nothing is left behind.
//!
//! We use `tempfile` (0600 temp files, rename that hands the file back on failure) and do the two fsyncs
//! ourselves. atomic-write-file 0.3.1 was tried first: it leaves its temporary file behind when the final
//! rename fails (it marks itself finished before renaming), which our tests caught.
//! Folders we create are 0700. A target that is a symlink is written through: the link's final target is
//! replaced atomically and the link is kept.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Mode of every file we write.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every folder we create.
pub const DIR_MODE: u32 = 0o700;

/// Create `dir` and any missing parents with mode 0700 (existing folders are left as they are).
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| Error::io("create directory", dir, e))
}

/// Where a write to `path` really lands: the final target when `path` is a symlink, else `path`.
pub fn write_target(path: &Path) -> PathBuf {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).unwrap_or_else(|_| {
            // A dangling link: follow it one level (relative to the link's folder).
            std::fs::read_link(path)
                .map(|t| path.parent().map_or(t.clone(), |p| p.join(&t)))
                .unwrap_or_else(|_| path.to_path_buf())
        }),
        _ => path.to_path_buf(),
    }
}

/// Atomically replace `path` with `contents`, private (0600) from the first byte.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let target = write_target(path);
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map(|n| format!(".{}.", n.to_string_lossy()))
        .unwrap_or_default();
    // Dropping `tmp` on any early return removes the temporary file.
    let mut tmp = tempfile::Builder::new()
        .prefix(&name)
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .tempfile_in(&dir)
        .map_err(|e| Error::io("create a temporary file in", &dir, e))?;
    tmp.write_all(contents).map_err(|e| Error::io("write", &target, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io("sync", &target, e))?;
    // On failure `persist` hands the temporary file back inside the error; dropping it removes it.
    tmp.persist(&target)
        .map_err(|e| Error::io("replace", &target, e.error))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", &dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_are_private_and_replace_looser_files() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        ensure_private_dir(&sub).unwrap();
        assert_eq!(mode(&sub), DIR_MODE);
        assert_eq!(mode(&dir.path().join("a")), DIR_MODE);
        let f = sub.join("f.json");
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&f, b"new").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
        assert_eq!(mode(&f), FILE_MODE);
        let leftovers: Vec<_> = std::fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("f.json")]);
    }

    #[test]
    fn symlinks_are_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("link.json");
        std::fs::write(&real, "old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_private(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/folder/f");
        let err = write_private(&missing, b"x").unwrap_err();
        assert!(err.to_string().contains("no/such/folder"), "{err}");
    }
}
