//! `.databrickscfg`: one line grammar ([`lines`]), the reader that picks a profile ([`mod@file`]) and the
//! line-based editor ([`edit`]).
//!
//! [`update_databricks_cfg`] sets keys of one profile with a line-based edit, so other profiles, comments and
//! blank lines survive byte for byte. It runs under the file's cross-process lock
//! ([`crate::fsutil::update_file`]), refuses a file, symlink or folder another user controls
//! ([`crate::fsutil::check_file`]), writes through a trusted symlink to the final target, tightens a looser file
//! to 0600 (with a warning) and replaces the file atomically.

pub mod edit;
pub mod file;
pub mod lines;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil::{ensure_private_dir, update_file};

/// Set `values` in `profile` of the `.databrickscfg` at `path` (created, 0600, when missing), keeping other
/// profiles, keys and comments. Returns `path`.
pub fn update_databricks_cfg(path: &Path, profile: &str, values: &[(String, String)]) -> Result<PathBuf> {
    edit::check_edit(profile, values)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_private_dir(dir)?;
    }
    update_file(path, |current| {
        let text = match current {
            None => String::new(),
            Some(bytes) => String::from_utf8(bytes.to_vec()).map_err(|_| {
                Error::Config(format!(
                    "{}: not UTF-8 text; the file was left untouched",
                    path.display()
                ))
            })?,
        };
        let new = edit::set_profile_values(&text, profile, values)
            .map_err(|e| Error::Config(format!("{}: {e}; the file was left untouched", path.display())))?;
        Ok((new != text || current.is_none()).then(|| new.into_bytes()))
    })?;
    Ok(path.to_path_buf())
}
